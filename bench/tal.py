"""Temporal action localization on synthetic data (`vt-prep synthetic --kind tal`) at one memory budget: the
frozen encoder + head, LoFi end to end then the head alone at full fidelity, full fidelity end to end with
windows cut to fit the budget, and full fidelity end to end on the whole windows (over the budget, for
reference); mAP at every tIoU of both conventions and their averages.

All arms start from the same encoder, pre-trained for per-frame action classification on the training videos
(task=phase, the frame labels with background: the classification pre-training LoFi starts from), and train
the same number of steps of the same batch size; LoFi's head stage trains as many steps again, as the frozen
arm's head does. The memory budget is the largest step peak of the LoFi stage, measured per arm in a fresh
process for the arm's batch shape (one rank's part: backbone + head forward and backward; the peak resident
set above the state before the step, with a fixed mmap threshold so that freed tensors leave the resident set).

    python -m bench.tal [--out docs/BENCHMARKS.md] [--steps 150] [--data data/bench-tal]
"""
from __future__ import annotations

import argparse
import re
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.report import machine, memory_bytes, write_section

REPO = Path(__file__).resolve().parents[1]
WINDOW, SIZE, B = 128, 32, 1  # frames per window (32 s at 4 fps), frame side, windows per rank
LOFI = [[1, 2.0], [4, 1.0], [2, 2 ** 0.5]]  # S, T, ST
MODEL = {"backbone": "resnet18", "head": "actionformer", "hidden": 64, "levels": 5, "snippet_len": 2,
         "snippet_stride": 2}
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


# -- memory of one training step -------------------------------------------------------------------------
def one_step(model, frames: torch.Tensor, valid: torch.Tensor, saved: dict, weights: set) -> None:
    """Backbone + head forward and backward on uint8 frames [B, T, H, W, 3]; `saved` collects the bytes autograd
    keeps for the backward (each storage once, weights excluded)."""

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in weights:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = model.head(model.features(frames), None, torch.ones(len(frames), dtype=torch.bool), valid=valid)
    out.square().mean().backward()


def step_memory(model_cfg: dict, full: list[int], fidelities: list[list[float]], classes: int = 3) -> list[dict]:
    """One full-fidelity batch [B, T, H, W] composed at each fidelity [r_t, r_s] by LoFi's rule (framework/lofi.py:
    every r_t-th frame, frames r_s times smaller, the same B); for each, the step's peak resident memory above the
    state before it, its saved bytes and its shape. Run it in a fresh process with MALLOC's fixed mmap threshold
    (glibc would keep freed blocks resident and hide later peaks). A first step at full fidelity allocates the
    gradients."""
    from framework.config import ModelConfig
    from framework.lofi import FULL, Fidelity, reduce_time, resize
    from framework.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(**model_cfg), classes + 2).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    batch = full_batch(*full)

    def composed(f: Fidelity):
        b = reduce_time(batch, f.temporal)
        return resize(b.frames, f), b.valid

    one_step(model, *composed(FULL), {}, weights)
    out = []
    for t, s in fidelities:
        saved: dict = {}
        frames, valid = composed(Fidelity(int(t), float(s)))
        base = memory_bytes("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from the current RSS
        one_step(model, frames, valid, saved, weights)
        out.append({"peak": memory_bytes("VmHWM") - base, "saved": sum(saved.values()),
                    "shape": list(frames.shape[:4])})
    return out


def full_batch(b: int, t: int, h: int, w: int):
    """A SequenceBatch of random frames: b lanes of t valid frames of h × w."""
    from framework.data.loader import SequenceBatch

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (b, t, h, w, 3), generator=g, dtype=torch.uint8)
    return SequenceBatch(frames=frames, labels=torch.zeros(b, t, dtype=torch.long),
                         valid=torch.ones(b, t, dtype=torch.bool), starts=torch.ones(b, dtype=torch.bool),
                         ends=torch.ones(b, dtype=torch.bool), video=torch.arange(b), frame=torch.arange(t).repeat(b, 1), lengths=torch.full((b,), t))


def measure(model_cfg: dict, full: list[int], fidelities=((1, 1.0),)) -> list[dict]:
    """step_memory in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **MALLOC)
    arg = json.dumps([model_cfg, list(full), [list(f) for f in fidelities]])
    proc = subprocess.run([sys.executable, "-m", "bench.tal", "--measure", arg], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the runs ----------------------------------------------------------------------------------------------
def launch(args: list[str], log: Path) -> None:
    cmd = [sys.executable, "-m", "launch.local", "--nproc=2", *args]
    with open(log, "w") as f:
        code = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    if code:
        raise SystemExit(f"bench.tal: a run failed (exit {code}); see {log}")


def prepare_data(root: Path) -> None:
    if (root / "manifest.json").is_file():
        return
    subprocess.run([sys.executable, "-m", "data_prep.cli", "synthetic", "--kind", "tal", "--out", str(root),
                    "--videos", "24", "--test-videos", "6", "--classes", "3", "--video-seconds", "40", "60",
                    "--source-fps", "8", "--source-size", str(SIZE), "--fps", "4", "--size", str(SIZE), "--quiet"],
                   cwd=REPO, check=True)


def pretrain(root: Path, work: Path, steps: int) -> Path:
    """The encoder pre-trained on per-frame action classification (ResNet-18-GN + a linear head, random clips)."""
    run = work / "pretrain"
    if not (run / "checkpoints" / "latest").is_file():
        launch([f"data.root={root}", f"run_dir={run}", "name=pretrain", "task=phase", "model=resnet18_linear",
                "data.sampling=clips", "data.seq_len=16", "data.batch_size=4", f"trainer.max_steps={steps}",
                f"trainer.checkpoint_every={steps}", "trainer.eval=false", "trainer.lr=0.001",
                "logging.mlflow.enabled=false"], work / "pretrain.log")
    tag = (run / "checkpoints" / "latest").read_text().strip()
    return run / "checkpoints" / tag / "mp_rank_00_model_states.pt"


def arms(steps: int) -> dict[str, dict]:
    quarter = WINDOW // 4
    return {
        "frozen encoder + head": {"args": ["model.freeze_stages=5"], "window": WINDOW, "frozen": True},
        "LoFi end to end, then the head alone": {
            "args": ["lofi.enabled=true", "lofi.cycle=long", f"lofi.head_steps={steps}",
                     "lofi.fidelities=" + json.dumps(LOFI).replace(" ", "")], "window": WINDOW, "lofi": True},
        f"full fidelity end to end, {quarter}-frame windows (fits the budget)": {
            "args": [f"data.seq_len={quarter}"], "window": quarter},
        f"full fidelity end to end, {WINDOW}-frame windows (over the budget)": {"args": [], "window": WINDOW},
    }


def run_arm(name: str, arm: dict, root: Path, weights: Path, work: Path, steps: int) -> dict:
    run = work / re.sub(r"[^A-Za-z0-9]+", "_", name.replace("+", "and")).strip("_")  # one folder per arm
    if not (run / "done.json").is_file():
        start = time.time()
        launch([f"data.root={root}", f"run_dir={run}", "experiment=tal", f"model.pretrained={weights}",
                f"data.batch_size={B}", f"data.seq_len={arm['window']}", f"trainer.max_steps={steps}",
                f"trainer.checkpoint_every={steps}", "logging.mlflow.enabled=false", *(f"model.{k}={v}" for k, v in
                                                                                     MODEL.items() if k != "backbone"),
                *arm["args"]], work / f"{run.name}.log")
        (run / "done.json").write_text(json.dumps({"seconds": time.time() - start}))
    report = json.loads(((run / "head") if arm.get("lofi") else run).joinpath("eval.json").read_text())
    return {"report": report["localization"], **json.loads((run / "done.json").read_text())}


def memory_of(arm: dict) -> dict:
    frozen = {**MODEL, "freeze_stages": 5}
    shape = [B, arm["window"], SIZE, SIZE]
    if arm.get("lofi"):
        stage = measure(MODEL, shape, LOFI)
        return {"peak": max(s["peak"] for s in stage), "per_fidelity": stage, "head_stage": measure(frozen, shape)[0]}
    return measure(frozen if arm.get("frozen") else MODEL, shape)[0]


def table(results: dict, budget: int, convention: str) -> str:
    first = next(iter(results.values()))["report"][convention]["mAP"]
    head = "| arm | step peak (MiB) | " + " | ".join(first) + " | average |"
    rows = [head, "|" + "---|" * (len(first) + 3)]
    for name, r in results.items():
        m = r["report"][convention]
        fits = "" if r["memory"]["peak"] <= budget * 1.05 else " (over)"
        rows.append(f"| {name} | {r['memory']['peak'] / 2**20:.0f}{fits} | "
                    + " | ".join(f"{v:.3f}" for v in m["mAP"].values()) + f" | **{m['average_mAP']:.3f}** |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--pretrain-steps", type=int, default=150)
    p.add_argument("--data", type=Path, default=REPO / "data" / "bench-tal")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bench-tal")
    p.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.measure:
        print(json.dumps(step_memory(*json.loads(a.measure))))
        return
    a.work.mkdir(parents=True, exist_ok=True)
    prepare_data(a.data)
    start = time.time()
    weights = pretrain(a.data, a.work, a.pretrain_steps)
    results = {}
    for name, arm in arms(a.steps).items():
        results[name] = {**run_arm(name, arm, a.data, weights, a.work, a.steps), "memory": memory_of(arm)}
        print(json.dumps({name: {"average_mAP": results[name]["report"]["anet"]["average_mAP"],
                                 "thumos": results[name]["report"]["thumos"]["average_mAP"],
                                 "peak_mib": results[name]["memory"]["peak"] / 2**20}}), flush=True)
    budget = next(r for r in results.values() if "per_fidelity" in r["memory"])["memory"]["peak"]
    load = os.getloadavg()
    summary = {"budget_mib": budget / 2**20, "load": load, "minutes": (time.time() - start) / 60,
               "arms": {k: {"memory": v["memory"], "seconds": v["seconds"], "anet": v["report"]["anet"]["mAP"],
                            "anet_average": v["report"]["anet"]["average_mAP"], "thumos": v["report"]["thumos"]["mAP"],
                            "thumos_average": v["report"]["thumos"]["average_mAP"]} for k, v in results.items()}}
    print(json.dumps(summary))
    if a.out:
        write_section(a.out, "tal", body(summary, results, budget, a))


def body(summary: dict, results: dict, budget: int, a) -> str:
    lofi = next(r for r in results.values() if "per_fidelity" in r["memory"])["memory"]
    fid = ", ".join(f"{s['shape'][1]}×{s['shape'][2]}² {s['peak'] / 2**20:.0f} MiB" for s in lofi["per_fidelity"])
    load = ", ".join(f"{x:.1f}" for x in summary["load"])
    return f"""## Temporal action localization at one memory budget (`python -m bench.tal`)
Machine: {machine()}; load average at the end {load} (shared machine; the lead may re-run it on a quiet one).
Data: `vt-prep synthetic --kind tal`, 18 training and 6 validation videos of 40–60 s at 4 fps, {SIZE}×{SIZE}, 3 action
classes (2–8 s) with 2–10 s of background between them. Model: ResNet-18-GN per frame, snippets of 2 frames, the
ActionFormer-style conv pyramid (5 levels, 64 channels); 2 processes, {B} window per process per step, {a.steps} steps
for every arm (LoFi: {a.steps} LoFi steps with the long cycle S (1, 2), T (4, 1), ST (2, √2), then {a.steps} steps of a
new head on the frozen encoder); all arms start from the same encoder pre-trained {a.pretrain_steps} steps on per-frame
classification. Evaluation: whole validation videos, Soft-NMS, ActivityNet's evaluator.

Memory budget = the LoFi stage's largest step peak: **{budget / 2**20:.0f} MiB** per process (step peaks above the
model's state, backbone + head forward and backward, one process's batch; LoFi's fidelities: {fid}; its head stage
{lofi['head_stage']['peak'] / 2**20:.0f} MiB). "(over)": the arm needs more than the budget.

mAP at tIoU 0.50:0.05:0.95 (ActivityNet convention):

{table(results, budget, 'anet')}

mAP at tIoU 0.3:0.1:0.7 (THUMOS14 convention, the same evaluator):

{table(results, budget, 'thumos')}

Wall time of the whole benchmark: {summary['minutes']:.0f} min. Raw numbers: the JSON line `python -m bench.tal`
prints last."""


if __name__ == "__main__":
    main()
