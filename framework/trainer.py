"""The Trainer: fit() reads as the list of steps a run takes."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import OmegaConf
from tqdm import tqdm

from . import checkpoint, preempt, resume_guard
from .atomic import write_atomic
from .data.loader import SequenceBatch, SequenceLoader
from .data.augment import build_augment
from .engine import build_engine
from .env import DistEnv
from .evaluate import EvalResult, evaluate, timeline_plot
from .models import build_model
from .models.staged import configure_checkpointing
from .relay import Relay, Topology
from .fingerprint import fingerprint
from .tracking import build_tracker, credentials, flatten, jsonl


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
                         frames: torch.Tensor) -> torch.Tensor:
    """Sum over the valid frames divided by `frames`: the valid frames of the whole SP group's batch, so
    that the ranks' shares add up to the loss one process would compute on the whole sequences. Padding
    past a video's end counts for nothing."""
    losses = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none")
    return (losses * valid.flatten().float()).sum() / frames


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm:
    """A live bar on a terminal; in a log file (SLURM, CI) one line every 30 s instead of a flood."""
    live = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc="train", disable=not enabled, dynamic_ncols=live,
                mininterval=0.1 if live else 30.0)


class Trainer:
    def __init__(self, cfg, raw_cfg, env: DistEnv, device: str):
        self.cfg, self.env, self.device = cfg, env, device
        seed_everything(cfg.seed)  # identical initial weights on every rank
        d, self.topo = cfg.data, Topology(env.rank, env.world_size, cfg.trainer.sp)
        # an SP group plans one batch of sp·T-frame chunks; each of its ranks reads and trains on its T frames
        self.loader = SequenceLoader(d.root, d.train_split, self.topo.dp_rank, self.topo.dp, d.batch_size,
                                     d.seq_len * self.topo.sp, seed=cfg.seed, shuffle=d.shuffle,
                                     num_workers=d.num_workers, sampling=d.sampling, stride=d.clip_stride,
                                     part=(self.topo.sp_rank, self.topo.sp))
        self.labels = self.loader.manifest.labels
        self.augment = build_augment(d)  # identity unless data.augment=clip
        configure_checkpointing(cfg.model.checkpointing, device)
        self.engine = build_engine(build_model(cfg.model, len(self.labels)), cfg)
        self.relay = Relay(self.engine.module.head, self.topo, cfg.trainer.handoff)
        self.state = self.engine.module.initial_state(d.batch_size, device=device)  # carried across batches
        self.step = 0
        self.run_dir = cfg.run_path
        self.tracker = build_tracker(cfg, env.is_main)
        self.raw_cfg = raw_cfg

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> dict:
        self.resume()
        self.log_config()
        bar = progress_bar(self.cfg.trainer.max_steps, self.step, self.env.is_main and self.cfg.logging.console)
        window, batches = [], self.batches()
        for batch in batches:
            if self.step >= self.cfg.trainer.max_steps:  # e.g. resuming a run that had finished
                break
            window.append(self.train_step(batch))
            self.step += 1
            bar.update(1)
            if self.step % self.cfg.trainer.log_every == 0:
                self.log_train(window, bar)
                window = []
            if preempt.should_stop():  # preempt: a signal reached some rank; all save here and leave
                self.save()
                break
            if self.step % self.cfg.trainer.checkpoint_every == 0 or self.step == self.cfg.trainer.max_steps:
                self.save()
        bar.close()
        batches.close()  # stop the loader's reader threads now, not in the interpreter's shutdown
        if preempt.stopped() and self.step < self.cfg.trainer.max_steps:  # preempt: requeued, resume reattaches
            self.tracker.close("KILLED")
            return {}
        results = self.evaluate().metrics if self.cfg.trainer.eval else {}
        self.tracker.close()
        return results

    def batches(self):
        while True:  # epochs
            yield from self.loader

    def train_step(self, batch: SequenceBatch) -> torch.Tensor:
        """One batch: the backbone on this rank's frames, the head as a relay across the SP group (with
        sp=1 a relay of one), one engine.backward. Returns [loss share, correct frames, valid frames]."""
        part = batch.to(self.device)
        group_frames = part.lengths.sum().clamp(min=1).float()
        # the seeds stay on the CPU, where the parameters are drawn: on a GPU they would cost a sync a step
        frames = self.augment(part.frames, batch.aug_seed)  # on the device, one draw per lane
        features = self.engine.module.features(frames)
        result = self.relay.step(features, self.state, part.starts,
                                 lambda out: masked_cross_entropy(out, part.labels, part.valid, group_frames))
        self.engine.backward(result.surrogate * self.relay.backward_scale)
        self.engine.step()
        self.state = result.carried  # across batches the state goes on, its gradient stops (truncated BPTT)
        correct = ((result.outputs.argmax(-1) == part.labels) & part.valid).sum()
        # one tensor, read once per logging window: an .item() here would stall the GPU every step
        return torch.stack([result.loss.float(), correct.float(), part.valid.sum().float()])

    # -- logging -----------------------------------------------------------------------------
    def log_config(self) -> None:
        if not self.env.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "config.yaml"
        # what took effect (a forced resume keeps a few checkpoint values), with no credentials in it
        raw = credentials.redacted_config(self.raw_cfg)
        for key, value in (self.resumed.kept_values() if self.resumed else {}).items():
            OmegaConf.update(raw, key, value)
        write_atomic(path, lambda f: f.write(OmegaConf.to_yaml(raw).encode()))
        self.tracker.log_params(flatten(OmegaConf.to_container(raw)))
        self.tracker.set_tags({"grad_allreduce": self.engine.grad_allreduce})
        self.tracker.log_artifact(path)

    def log_train(self, window: list[torch.Tensor], bar) -> None:
        steps = torch.stack(window)
        flags = self.engine.nonfinite.device_flags()  # the non-finite check rides on the window's one transfer
        payload = torch.cat([steps[:, 0], steps.sum(0), *(f.reshape(1).to(steps.dtype) for f in flags)])
        if dist.is_initialized():  # every rank's frames count; the SP shares add up, the DP groups average
            dist.all_reduce(payload)
        values = payload.tolist()
        n = len(window)
        loss, correct, frames = values[n:n + 3]
        metrics = {"train/loss": loss / (len(window) * self.topo.dp),
                   "train/accuracy": correct / max(1.0, frames),
                   "train/lr": self.engine.get_lr()[0], "train/epoch": self.loader.epoch}
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", acc=f"{metrics['train/accuracy']:.3f}")
        self.tracker.log_metrics(metrics, self.step)
        if self.env.is_main:  # a local copy that survives any tracking-server trouble
            jsonl.append(self.run_dir / "metrics.jsonl", {"step": self.step, **metrics})
        self.engine.nonfinite.take(values[n + 3:], dict(zip(range(self.step - n + 1, self.step + 1), values[:n])))

    # -- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        self.engine.nonfinite.read_pending()  # a non-finite step the window has not read stops the run first
        rank_state = {"rng": checkpoint.rng_state(), "loader": self.loader.state_dict(), "state": self.state}
        path = checkpoint.save(self.engine, self.run_dir, self.step, self.env.rank, rank_state,
                               shared={"step": self.step},
                               fingerprint=fingerprint(self.cfg, self.env.world_size, self.loader.videos))
        self.tracker.set_tags({"last_checkpoint": path.resolve()})

    def resume(self) -> None:
        """From the newest complete checkpoint (or trainer.resume's), refusing one made with other settings
        unless trainer.resume=force (framework/resume_guard.py)."""
        self.resumed = resume_guard.plan(self.cfg, self.env.world_size, self.loader.videos, warn=self.env.is_main)
        if self.resumed is not None:
            self.step = resume_guard.restore_engine(self.engine, self.resumed, self.cfg.deepspeed.grad_accum)
        if self.resumed is not None and (self.resumed.data or self.resumed.rng):
            rank_state = checkpoint.load_rank_state(self.resumed.ckpt, self.env.rank)
            if self.resumed.data:
                self.loader.load_state_dict(rank_state["loader"])
                state = rank_state["state"]  # loaded on the CPU
                self.state = None if state is None else tuple(t.to(self.device) for t in state)
            if self.resumed.rng:
                checkpoint.set_rng_state(rank_state["rng"])
        if self.env.is_main:
            jsonl.keep_steps_up_to(self.run_dir / "metrics.jsonl", self.step)  # each step once, after a resume
            if self.resumed is not None:
                print(self.resumed.summary(self.step, self.cfg.deepspeed.grad_accum))

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self) -> EvalResult:
        d = self.cfg.data
        loader = SequenceLoader(d.root, d.eval_split, self.env.rank, self.env.world_size, d.batch_size,
                                d.seq_len, shuffle=False, num_workers=d.num_workers)
        result = evaluate(self.engine.module, loader, self.device)
        if self.env.is_main:
            write_eval(result, self.run_dir, self.tracker, self.step)
        return result


def write_eval(result: EvalResult, run_dir: Path, tracker, step: int) -> None:
    (run_dir / "eval.json").write_text(json.dumps(result.metrics, indent=1))
    timeline_plot(result, run_dir / "eval_timeline.png")
    tracker.log_metrics({f"eval/{k}": v for k, v in result.metrics.items()}, step)
    for name in ("eval.json", "eval_timeline.png"):
        tracker.log_artifact(run_dir / name)
