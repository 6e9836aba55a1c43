"""Spatiotemporal fusion by Variational DropPath (Zhou et al., CVPR 2020; reference/analysis.md §2): what a
trained fusion3d template learned, its sub-networks, and the best one as a network of its own.

Training (hooks.py, analysis.fusion): warm-up with the gates off, then variational training of the drop rates
with the KL term. Here, after training:
- drop rates p = σ(logit) of every gate, per layer the spatial (1×1×1) and temporal (3×1×1) branch;
- marginals (§2.6): a branch is used with probability 1 − √p (Eq. 7: p stands for the product of the
  architecture and weight Bernoullis, taken equal). The unit marginals P(S) = k_s(1 − k_t),
  P(ST) = (1 − k_s)k_t, P(S+ST) = k_s k_t, P(none) = (1 − k_s)(1 − k_t) with k = 1 − √p treat the two
  branches as independent: an INFERENCE of ours, not a formula of the paper;
- sub-networks (§2.5): each gate kept with probability 1 − p (the reference's selection mode,
  mask = 1 − ⌊u + p⌋), the template's weights as they are (no retraining), scored on a split with the run's
  task metrics; the best one is exported as `model.backbone_kwargs.architecture`, a fixed network that
  trains on its own.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..models.backbones.fusion3d import UNITS, FusionTemplate

MARGINALS = ("INFERENCE: branch keep probability k = 1 − √p (Zhou et al. Eq. 7); unit marginals from the two "
             "branches taken as independent: P(S) = k_s(1 − k_t), P(ST) = (1 − k_s)k_t, P(S+ST) = k_s·k_t, "
             "P(none) = (1 − k_s)(1 − k_t)")


def require_template(model) -> FusionTemplate:
    net = getattr(model.backbone, "net", None)
    if not isinstance(net, FusionTemplate) or not net.gates():
        raise ValueError("the run's backbone is not the fusion3d template (model.backbone=fusion3d without "
                         "an architecture): there are no drop rates to analyse")
    return net


def unit_of(keep_s: bool, keep_t: bool) -> str:
    return {(True, False): "S", (False, True): "ST", (True, True): "S+ST", (False, False): "none"}[(keep_s, keep_t)]


def rates(net: FusionTemplate) -> np.ndarray:
    """[layers, 2] learned drop rates (spatial branch, temporal branch)."""
    return np.array([[layer.gate_s.p.item(), layer.gate_t.p.item()] for layer in net.layers()])


def weight_norms(net: FusionTemplate) -> np.ndarray:
    """[layers, 2] ‖W‖² of each layer's spatial (1×1×1) and temporal (3×1×1) branch conv: what the KL's weight
    term charges, (k/N)(1 − p)‖W‖². (A GroupNorm follows the branches' sum, so their scale is free.)"""
    return np.array([[layer.s.weight.detach().float().pow(2).sum().item(),
                      layer.t.weight.detach().float().pow(2).sum().item()] for layer in net.layers()])


def marginals(p: np.ndarray) -> list[dict]:
    """Per layer: branch keep probabilities 1 − √p and the unit marginals (see MARGINALS)."""
    out = []
    for i, (ps, pt) in enumerate(p):
        ks, kt = 1 - math.sqrt(ps), 1 - math.sqrt(pt)
        units = {"S": ks * (1 - kt), "ST": (1 - ks) * kt, "S+ST": ks * kt, "none": (1 - ks) * (1 - kt)}
        out.append({"layer": i, "p_spatial": float(ps), "p_temporal": float(pt), "keep_spatial": ks,
                    "keep_temporal": kt, "marginals": units, "preferred": max(units, key=units.get)})
    return out


def sample_masks(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[layers, 2] bool keep masks: a gate is dropped with probability p (mask = 1 − ⌊u + p⌋)."""
    return (1 - np.floor(rng.random(p.shape) + p)).astype(bool)


def log_prob(masks: np.ndarray, p: np.ndarray) -> float:
    """log P(masks) under the learned rates: Σ log(1 − p) over kept gates + Σ log p over dropped ones."""
    return float(np.where(masks, np.log1p(-p), np.log(p)).sum())


def architecture(masks: np.ndarray) -> list[str]:
    return [unit_of(bool(s), bool(t)) for s, t in masks]


def set_masks(net: FusionTemplate, masks: np.ndarray | None) -> None:
    """Fixed 0/1 gates (a sub-network), or None: back to the variational gates."""
    if masks is None:
        net.set_gates("variational")
        return
    for layer, (s, t) in zip(net.layers(), masks):
        layer.gate_s.keep.fill_(float(s))
        layer.gate_t.keep.fill_(float(t))
    net.set_gates("fixed")


def score(model, tasks, loader, device) -> dict:
    from ..evaluate import run_inference

    return tasks.evaluate(run_inference(model, loader, device, tasks))


def accuracy(report: dict) -> float:
    """The number sub-networks are ranked by: the first task's top-1 (clip) or accuracy."""
    first = next(iter(report.values()))
    for key in ("top1", "accuracy"):
        if key in first:
            return float(first[key])
    flat = {k: v for k, v in first.items() if isinstance(v, dict) and "accuracy" in v}
    if flat:
        return float(next(iter(flat.values()))["accuracy"])
    raise ValueError(f"no accuracy in the task report ({', '.join(first)}): sub-networks need one to be ranked")


def analyse(model, cfg, tasks, split: str, samples: int, seed: int, device, progress: bool = False) -> dict:
    """Rates, marginals, `samples` sub-networks scored on `split`, the best one; the template left as found."""
    from ..evaluate import eval_loader

    net = require_template(model)
    p = rates(net)
    loader = eval_loader(cfg.data, split, 0, 1, tasks)
    rng = np.random.default_rng(seed)
    results = []
    modes = [g.mode for g, _ in net.gates()]
    try:
        for _ in tqdm(range(samples), desc="sub-networks", disable=not progress):
            masks = sample_masks(p, rng)
            set_masks(net, masks)
            arch = architecture(masks)
            results.append({"architecture": arch, "accuracy": accuracy(score(model, tasks, loader, device)),
                            "log_prob": log_prob(masks, p),
                            "temporal_share": sum(u in ("ST", "S+ST") for u in arch) / len(arch)})
    finally:
        for (g, _), m in zip(net.gates(), modes):
            g.mode = m
    best = max(results, key=lambda r: (r["accuracy"], r["log_prob"]))  # ties: the more probable one
    layers = marginals(p)
    for layer, (ws, wt) in zip(layers, weight_norms(net)):
        layer["weight_sq"] = {"spatial": ws, "temporal": wt}
    return {"convention": MARGINALS, "split": split, "layers": layers, "samples": results, "best": best,
            "correlation_accuracy_log_prob": _correlation([r["log_prob"] for r in results],
                                                          [r["accuracy"] for r in results])}


def _correlation(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def exported_model(cfg, arch: list[str]) -> dict:
    """The run's model config with the sub-network's fixed architecture (no gates)."""
    from dataclasses import asdict

    m = asdict(cfg.model)
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in m["backbone_kwargs"].items()}
    m["backbone_kwargs"] = {**kwargs, "architecture": list(arch)}
    return m


def overrides(arch: list[str]) -> list[str]:
    """Overrides of vt-train that train the sub-network on its own (with the run's other settings)."""
    return ["model.backbone=fusion3d", f"+model.backbone_kwargs.architecture=[{','.join(arch)}]"]


def write(report: dict, cfg, out: Path) -> list[Path]:
    from omegaconf import OmegaConf

    from ..reports import write_json
    from .plots import fusion_marginals, subnet_accuracy

    out.mkdir(parents=True, exist_ok=True)
    arch = report["best"]["architecture"]
    OmegaConf.save(OmegaConf.create({"model": exported_model(cfg, arch)}), out / "best_subnet.yaml")
    (out / "best_subnet_overrides.txt").write_text("\n".join(overrides(arch)) + "\n")
    return [write_json(out / "fusion.json", report), out / "best_subnet.yaml", out / "best_subnet_overrides.txt",
            fusion_marginals(report, out / "marginals.png"), subnet_accuracy(report["samples"], out / "subnets.png")]


def table(report: dict) -> str:
    rows = ["layer  p_s     p_t     P(S)   P(ST)  P(S+ST) P(none) preferred",
            "-----  ------  ------  -----  -----  ------- ------- ---------"]
    for layer in report["layers"]:
        m = layer["marginals"]
        rows.append(f"{layer['layer']:>5}  {layer['p_spatial']:.4f}  {layer['p_temporal']:.4f}  {m['S']:.3f}  "
                    f"{m['ST']:.3f}  {m['S+ST']:.3f}   {m['none']:.3f}   {layer['preferred']}")
    accs = [s["accuracy"] for s in report["samples"]]
    best = report["best"]
    rows.append(f"{len(accs)} sampled sub-networks on {report['split']}: accuracy {min(accs):.3f}..{max(accs):.3f} "
                f"(mean {np.mean(accs):.3f}); best {best['accuracy']:.3f}: {' '.join(best['architecture'])}")
    return "\n".join(rows)


def scalars(report: dict, split: str) -> dict[str, float]:
    out = {f"fusion/{split}/best_accuracy": report["best"]["accuracy"],
           f"fusion/{split}/mean_accuracy": float(np.mean([s["accuracy"] for s in report["samples"]]))}
    for layer in report["layers"]:
        for u in UNITS:
            out[f"fusion/layer{layer['layer']}/P_{u.replace('+', '_')}"] = layer["marginals"][u]
    return out


def read_rates(run_dir: Path) -> list[dict]:
    """fusion_rates.jsonl of a run (the drop rates as they were logged during training)."""
    path = Path(run_dir) / "fusion_rates.jsonl"
    return [json.loads(line) for line in open(path)] if path.is_file() else []

