"""One process, real Trainers on real shards; prints one JSON line per check (read by tests/test_relay.py and
tests/test_ds_config.py through the `engine_check` fixture, so the imports and the set-up are paid once).

    python -m tests.engine_check DATA_ROOT RUN_DIR

one_pass: the Trainer's step at sp=1 in one pass (forward, engine.backward(loss)) against the relay's two passes
(the head's autograd.grad, then a surrogate backward): for each head, two Trainers from the same seed train the
same batches, one with each path; are the weights, the per-step rows and the carried states bitwise equal?

passthrough: a Trainer with deepspeed.config_file (docs/examples/deepspeed.json) and deepspeed.extra at ZeRO 2:
the options DeepSpeed's engine parsed, and two training steps through it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from framework.config import load_config
from framework.entry import entry_point
from framework.env import detect, init_distributed, shutdown
from framework.trainer import Trainer

STEPS = 3
HEADS = {"lstm": ["model.dropout=0.3", "model.layers=2"], "linear": ["model.dropout=0.3"]}  # dropout: RNG use
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "deepspeed.json"


def config(data: str, run_dir: str, *extra: str):
    return load_config([f"data.root={data}", f"run_dir={run_dir}", "data.batch_size=2", "data.seq_len=8",
                        "logging.mlflow.enabled=false", f"trainer.max_steps={STEPS}", *extra])


def train(cfg, raw, env, device, steps: int, one_pass: bool | None = None):
    trainer = Trainer(cfg, raw, env, device)
    if one_pass is not None:
        trainer.relay.one_pass = one_pass
    before = {k: v.clone() for k, v in trainer.engine.module.state_dict().items()}
    batches = trainer.batches()
    rows = torch.stack([trainer.train_step(next(batches)) for _ in range(steps)])
    batches.close()
    weights = {k: v.clone() for k, v in trainer.engine.module.state_dict().items()}
    trained = sum(not torch.equal(before[k], weights[k]) for k in weights)  # the steps did move the weights
    return trainer, weights, rows, trained


def equal_states(a, b) -> bool:
    return (a is None and b is None) or all(torch.equal(x, y) for x, y in zip(a, b))


def one_pass(data: str, run_dir: str, env, device) -> None:
    for head, extra in HEADS.items():
        cfg, raw = config(data, f"{run_dir}/{head}", "model.feature_dropout=0.2", f"model.head={head}", *extra)
        one, relay = (train(cfg, raw, env, device, STEPS, flag) for flag in (None, False))  # None: the default
        print(json.dumps({"check": "one_pass", "head": head, "one_pass_flags": [one[0].relay.one_pass,
                                                                                  relay[0].relay.one_pass],
                          "weights_equal": all(torch.equal(one[1][k], relay[1][k]) for k in one[1]),
                          "rows_equal": torch.equal(one[2], relay[2]),
                          "states_equal": equal_states(one[0].state, relay[0].state),
                          "tensors_trained": [one[3], relay[3], len(one[1])]}), flush=True)


def passthrough(data: str, run_dir: str, env, device) -> None:
    cfg, raw = config(data, f"{run_dir}/passthrough", "deepspeed.zero_stage=2", f"deepspeed.config_file={EXAMPLE}",
                      "+deepspeed.extra.zero_optimization.reduce_bucket_size=123456")
    trainer, _, rows, trained = train(cfg, raw, env, device, 2)
    e = trainer.engine
    print(json.dumps({"check": "passthrough", "zero_stage": e.zero_optimization_stage(),
                      "overlap_comm": e.zero_overlap_comm(), "contiguous_gradients": e.zero_contiguous_gradients(),
                      "reduce_bucket_size": e.zero_reduce_bucket_size(),
                      "allgather_bucket_size": e.zero_allgather_bucket_size(),
                      "communication_data_type": str(e.communication_data_type),
                      "optimizer": type(e.optimizer).__name__, "finite_losses": bool(rows[:, 0].isfinite().all()),
                      "tensors_trained": trained}), flush=True)


@entry_point
def main(data: str, run_dir: str) -> int:
    env = detect()
    device = init_distributed(env)
    one_pass(data, run_dir, env, device)
    passthrough(data, run_dir, env, device)
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
