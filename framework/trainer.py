"""The Trainer: fit() reads as the list of steps a run takes."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from tqdm import tqdm

from . import checkpoint, preempt
from .analysis.hooks import build_hooks
from .data.loader import SequenceBatch, SequenceLoader
from .data.augment import build_augment
from .engine import build_engine
from .env import DistEnv
from .evaluate import eval_loader, run_inference
from .models import build_model
from .models.staged import configure_checkpointing
from .relay import Relay, Topology
from .reports import scalars, write_json
from .tasks import TaskSet, build_tasks
from .tracking import build_tracker, flatten
from .validation import Validator


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
        # what the run learns and how it is scored: targets, output blocks, losses, metrics (framework/tasks/)
        self.tasks = build_tasks(cfg.task, d.root, self.loader.manifest, self.loader.videos)
        self.augment = build_augment(d)  # identity unless data.augment=clip
        configure_checkpointing(cfg.model.checkpointing, device)
        self.engine = build_engine(build_model(cfg.model, self.tasks.out_dim), cfg)
        self.relay = Relay(self.engine.module.head, self.topo, cfg.trainer.handoff)
        self.state = self.engine.module.initial_state(d.batch_size, device=device)  # carried across batches
        self.step = 0
        self.run_dir = cfg.run_path
        self.tracker = build_tracker(cfg, env.is_main)
        self.validator = Validator(cfg, env.rank, env.world_size, self.tasks)  # trainer.eval_every
        self.hooks = build_hooks(cfg, self)  # analysis.*: bias during training, StaticDropout, v-DropPath's KL
        self.raw_cfg = raw_cfg

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> dict:
        self.resume()
        self.log_config()
        self.hooks.begin(self.step)
        bar = progress_bar(self.cfg.trainer.max_steps, self.step, self.env.is_main)
        window, batches = [], self.batches()
        for batch in batches:
            if self.step >= self.cfg.trainer.max_steps:  # e.g. resuming a run that had finished
                break
            window.append(self.train_step(batch))
            self.step += 1
            self.hooks.after_step(self.step)
            bar.update(1)
            if self.step % self.cfg.trainer.log_every == 0:
                self.log_train(window, bar)
                window = []
            if self.validator.due(self.step):
                self.validate()
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
        results = self.evaluate() if self.cfg.trainer.eval else {}
        self.tracker.close()
        return results

    def batches(self):
        while True:  # epochs
            yield from self.loader

    def train_step(self, batch: SequenceBatch) -> torch.Tensor:
        """One batch: the backbone on this rank's frames, the head as a relay across the SP group (with
        sp=1 a relay of one), one engine.backward. Returns the step's sums for the logging window
        (TaskSet.names)."""
        part = batch.to(self.device)
        stride = getattr(self.engine.module, "temporal_stride", 1)
        targets = {k: t.to(self.device) for k, t in self.tasks.targets(batch, self.loader.videos, stride).items()}
        # the frames of the whole SP group's sequences: the ranks' loss shares add up to one process's loss
        group_frames = part.lengths.sum().clamp(min=1).float()
        # the seeds stay on the CPU, where the parameters are drawn: on a GPU they would cost a sync a step
        frames = self.augment(part.frames, batch.aug_seed)  # on the device, one draw per lane
        features = self.engine.module.features(frames)
        result = self.relay.step(features, self.state, part.starts,
                                 lambda out: self.tasks.loss(out, targets, group_frames))
        self.engine.backward(result.surrogate * self.relay.backward_scale + self.hooks.extra_loss())
        self.engine.step()
        self.state = result.carried  # across batches the state goes on, its gradient stops (truncated BPTT)
        # one tensor, read once per logging window: an .item() here would stall the GPU every step
        return self.tasks.step_stats(result.loss, result.outputs, targets, group_frames)

    # -- logging -----------------------------------------------------------------------------
    def log_config(self) -> None:
        if not self.env.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "config.yaml"
        OmegaConf.save(self.raw_cfg, path)
        self.tracker.log_params(flatten(OmegaConf.to_container(self.raw_cfg)))
        self.tracker.set_tags({"grad_allreduce": self.engine.grad_allreduce})
        self.tracker.log_artifact(path)

    def log_train(self, window: list[torch.Tensor], bar) -> None:
        totals = torch.stack(window).sum(0)
        if dist.is_initialized():  # every rank's frames count; the SP shares add up, the DP groups average
            dist.all_reduce(totals)
        # losses are shares that add up over an SP group; the DP groups' losses average
        window_metrics = self.tasks.window_metrics(totals.tolist(), len(window) * self.topo.dp)
        metrics = {**{f"train/{k}": v for k, v in window_metrics.items()},
                   "train/lr": self.engine.get_lr()[0], "train/epoch": self.loader.epoch}
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}")
        self.tracker.log_metrics(metrics, self.step)
        if self.env.is_main:  # a local copy that survives any tracking-server trouble
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, **metrics}) + "\n")

    def validate(self) -> None:
        """The tasks' metrics on data.val_split, logged under val/ (and to val.jsonl)."""
        report, improved = self.validator.run(self.engine.module, self.device, self.step, self.env.is_main)
        if not self.env.is_main:
            return
        metrics = {f"val/{k}": v for k, v in scalars(report).items()}
        self.tracker.log_metrics(metrics, self.step)
        with open(self.run_dir / "val.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **metrics}) + "\n")
        if improved:
            print(f"\nstep {self.step}: best {self.validator.metric} so far: {self.validator.best:.4f}")

    # -- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        rank_state = {"rng": checkpoint.rng_state(), "loader": self.loader.state_dict(), "state": self.state,
                      "hooks": self.hooks.state_dict()}
        path = checkpoint.save(self.engine, self.run_dir, self.step, self.env.rank, rank_state,
                               shared={"step": self.step})
        self.tracker.set_tags({"last_checkpoint": path.resolve()})

    def resume(self) -> None:
        found = checkpoint.resolve_resume(self.cfg.trainer.resume, self.run_dir)
        if found is None:
            return
        rank_state, shared = checkpoint.load(self.engine, *found, self.env.rank)
        self.step = shared["step"]
        self.loader.load_state_dict(rank_state["loader"])
        self.state = rank_state["state"]
        self.hooks.load_state_dict(rank_state.get("hooks", {}))
        checkpoint.set_rng_state(rank_state["rng"])
        if self.env.is_main:
            print(f"resumed from {found[0] / found[1]} at step {self.step}")

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """The tasks' reports on data.eval_split, streamed online over whole videos by all ranks."""
        loader = eval_loader(self.cfg.data, self.cfg.data.eval_split, self.env.rank, self.env.world_size, self.tasks)
        results = run_inference(self.engine.module, loader, self.device, self.tasks, progress=self.env.is_main)
        report = self.tasks.evaluate(results) if self.env.is_main else {}
        if self.env.is_main:
            write_eval(self.tasks, results, report, self.run_dir, self.tracker, self.step)
        return report


def write_eval(tasks: TaskSet, results, report: dict, run_dir: Path, tracker, step: int) -> None:
    """eval.json (every number labelled with its convention), the tasks' plots and exports in eval/, the
    scalars to MLflow under eval/<task>/...."""
    write_json(run_dir / "eval.json", report)
    tasks.write_files(results, report, run_dir / "eval")
    tracker.log_metrics({f"eval/{k}": v for k, v in scalars(report).items()}, step)
    tracker.log_artifact(run_dir / "eval.json")
    if (run_dir / "eval").is_dir():
        tracker.log_artifact(run_dir / "eval", "eval")
