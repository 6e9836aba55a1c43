"""Run as `python tests/robust_check.py DATA_ROOT WORK_DIR` (one process, gloo; see test_nonfinite.py and
test_safe_loading.py). Prints one JSON line with what each check saw.

1. Non-finite steps on real DeepSpeed engines: at ZeRO 0 in fp32 (our device flag), in bf16 and at ZeRO 1
   (DeepSpeed's own check), a step whose input is NaN leaves the weights (and at ZeRO 0 the optimizer state)
   bitwise as they were and the next finite step applies; `skip` counts the step, `stop` names it at the next
   read, and `skip` stops after `patience` in a row. A checkpoint of non-finite weights is refused.
2. Safe loading: a checkpoint written by checkpoint.save loads; the same checkpoint with a pickled object
   (whose __reduce__ creates a file) in the trainer state or in DeepSpeed's model file is refused, and the file
   is not created (while an unsafe torch.load of the same file does create it: the payload works).
3. vt-train with pretrained weights holding a NaN and trainer.nonfinite=stop: exit status 1, one line naming
   step 1, no checkpoint written.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import torch

from framework import checkpoint
from framework.config import load_config
from framework.engine import build_engine
from framework.entry import leave
from framework.env import detect, init_distributed
from framework.nonfinite import NonFiniteStop


class Canary:
    """Unpickling this creates the file `path`: what a malicious checkpoint would do."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def engine(*overrides: str):
    cfg, _ = load_config(["deepspeed.grad_clip=1.0", "trainer.nonfinite_patience=3", *overrides])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    return build_engine(model, cfg)


def step(eng, bad: bool = False) -> None:
    dtype = next(eng.module.parameters()).dtype
    x = torch.randn(4, 8, dtype=dtype)
    if bad:
        x[0, 0] = float("nan")
    eng.backward(eng(x).float().square().mean())
    eng.step()


def weights(eng) -> list[torch.Tensor]:
    return [p.detach().clone() for p in eng.module.parameters()]


def optimizer_state(eng) -> list[torch.Tensor]:
    return [v.clone() for s in eng.basic_optimizer.state.values() for v in s.values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def message(fn) -> str | None:
    try:
        fn()
    except NonFiniteStop as e:
        return str(e)
    return None


def nonfinite(*options: str) -> dict:
    eng = engine("trainer.nonfinite=skip", *options)
    step(eng)
    w1, s1 = weights(eng), optimizer_state(eng)
    step(eng, bad=True)
    kept = same(weights(eng), w1) and same(optimizer_state(eng), s1)
    step(eng)
    applied = not same(weights(eng), w1)
    eng.nonfinite.read_pending()
    skipped = eng.nonfinite.skipped
    for _ in range(3):
        step(eng, bad=True)
    in_a_row = message(eng.nonfinite.read_pending)
    stop = engine("trainer.nonfinite=stop", *options)
    step(stop)
    step(stop, bad=True)
    return {"own_flag": eng.nonfinite.own, "kept": kept, "applied_after": applied, "skipped": skipped,
            "in_a_row": in_a_row, "stop": message(stop.nonfinite.read_pending),
            "refused_save": refused_save(stop)}


def refused_save(eng) -> str | None:
    with torch.no_grad():
        next(eng.module.parameters())[0, 0] = float("nan")
    return message(lambda: checkpoint.save(eng, WORK / "nan_run", 3, 0, {}, {"step": 3}, {}))


def tamper(path: Path, canary: Path, marker_dir: Path) -> None:
    """Add a Canary to a torch file and update the completion marker, as someone handing over a run would."""
    obj = torch.load(path, weights_only=False)  # our own file, trusted here
    obj["extra"] = Canary(canary)
    torch.save(obj, path)
    marker = json.loads((marker_dir / checkpoint.MARKER).read_text())
    marker["files"][path.name] = path.stat().st_size
    (marker_dir / checkpoint.MARKER).write_text(json.dumps(marker))


def safe_loading() -> dict:
    eng = engine()
    step(eng)
    path = checkpoint.save(eng, WORK / "run", 1, 0, {"rng": checkpoint.rng_state(), "state": None}, {"step": 1}, {})
    ckpt = checkpoint.read_complete(path)
    out = {"complete": ckpt is not None, "loads": sorted(checkpoint.load_rank_state(ckpt, 0))}
    checkpoint.load_engine(engine(), ckpt)
    for name, load in (("trainer_state_rank0.pt", lambda c: checkpoint.load_rank_state(c, 0)),
                       ("mp_rank_00_model_states.pt", lambda c: checkpoint.load_weights(engine(), c))):
        canary = WORK / f"created_by_{name}"
        tamper(path / name, canary, path)
        try:
            load(checkpoint.read_complete(path))
            error = None
        except checkpoint.CheckpointError as e:
            error = str(e)
        created = canary.exists()
        torch.load(path / name, weights_only=False)  # the unsafe way: the payload does run
        out[name] = {"error": error, "created_when_refused": created, "created_unsafely": canary.exists()}
    return out


def nan_pretrained_run(data: Path) -> dict:
    import torchvision

    from framework import train

    state = torchvision.models.resnet18().state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, WORK / "nan.pt")
    run_dir = WORK / "nan_pretrained"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main([f"data.root={data}", f"run_dir={run_dir}", "name=nan", "data.batch_size=2",
                           "data.seq_len=8", "trainer.max_steps=4", "trainer.log_every=2",
                           "trainer.checkpoint_every=1", "trainer.eval=false", "logging.mlflow.enabled=false",
                           f"model.pretrained={WORK / 'nan.pt'}", "trainer.nonfinite=stop"])
    lines = [ln for ln in err.getvalue().splitlines() if "vt-train:" in ln]
    return {"code": code, "lines": lines, "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").glob("*"))}


if __name__ == "__main__":
    DATA, WORK = Path(sys.argv[1]), Path(sys.argv[2])
    init_distributed(detect())
    result = {"zero0_fp32": nonfinite(), "zero0_bf16": nonfinite("deepspeed.bf16=true"),
              "zero1_fp32": nonfinite("deepspeed.zero_stage=1"), "safe_loading": safe_loading(),
              "nan_pretrained": nan_pretrained_run(DATA)}
    print(json.dumps(result), flush=True)
    leave()
