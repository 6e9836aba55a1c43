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

from . import checkpoint, lofi, preempt, resume_guard
from .analysis.hooks import build_hooks
from .atomic import write_atomic
from .data.loader import SequenceBatch, SequenceLoader
from .data.augment import build_augment
from .engine import build_engine
from .env import DistEnv
from .evaluate import eval_loader, run_inference
from .models import build_model
from .models.staged import configure_checkpointing
from .relay import Relay, Topology
from .fingerprint import fingerprint
from .reports import scalars, write_json
from .tasks import TaskSet, build_tasks
from .tracking import build_tracker, credentials, flatten, jsonl
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
        self.tasks = build_tasks(cfg.task, d.root, self.loader.manifest, self.loader.videos, cfg.model)
        self.augment = build_augment(d)  # identity unless data.augment=clip
        self.fidelity = lofi.Schedule(cfg.lofi)  # full fidelity unless lofi.enabled
        configure_checkpointing(cfg.model.checkpointing, device)
        self.engine = build_engine(build_model(cfg.model, self.tasks.out_dim), cfg)
        self.relay = Relay(self.engine.module.head, self.topo, cfg.trainer.handoff)
        self.state = self.engine.module.initial_state(d.batch_size, device=device)  # carried across batches
        self.step, self.saved_step = 0, None
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
        bar = progress_bar(self.cfg.trainer.max_steps, self.step, self.env.is_main and self.cfg.logging.console)
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
            due = self.step % self.cfg.trainer.checkpoint_every == 0 or self.step == self.cfg.trainer.max_steps
            if due and self.saved_step != self.step:  # a new best may have been saved at this step already
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
        fidelity = self.fidelity.at(self.loader.epoch, self.step)
        batch = lofi.reduce_time(batch, fidelity.temporal)  # before the targets: they follow the frames kept
        part = batch.to(self.device)
        stride = getattr(self.engine.module, "temporal_stride", 1)
        targets = {k: t.to(self.device) for k, t in self.tasks.targets(batch, self.loader.videos, stride).items()}
        targets = self.relay.scored(targets)  # handoff=gather: the whole sequence's, as the head sees it whole
        # the frames of the whole SP group's sequences: the ranks' loss shares add up to one process's loss
        group_frames = part.lengths.sum().clamp(min=1).float()
        # the seeds stay on the CPU, where the parameters are drawn: on a GPU they would cost a sync a step
        frames = lofi.resize(self.augment(part.frames, batch.aug_seed), fidelity)  # on the device, one draw per lane
        if self.fidelity.enabled:  # the fidelity in force, every step
            self.tracker.log_metrics(lofi.describe(fidelity, frames.shape[1], frames.shape[2:4]), self.step + 1)
        features = self.engine.module.features(frames)
        result = self.relay.step(features, self.state, part.starts,
                                 lambda out: self.tasks.loss(out, targets, group_frames),
                                 valid=part.valid[:, ::stride])  # a step is real where its first frame is
        self.engine.backward(result.surrogate * self.relay.backward_scale + self.hooks.extra_loss())
        self.engine.step()
        self.state = result.carried  # across batches the state goes on, its gradient stops (truncated BPTT)
        # one tensor, read once per logging window: an .item() here would stall the GPU every step
        return self.relay.share(self.tasks.step_stats(result.loss, result.outputs, targets, group_frames))

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
        n, k = len(window), len(self.tasks.names)
        # losses are shares that add up over an SP group; the DP groups' losses average
        window_metrics = self.tasks.window_metrics(values[n:n + k], n * self.topo.dp)
        metrics = {**{f"train/{key}": v for key, v in window_metrics.items()},
                   "train/lr": self.engine.get_lr()[0], "train/epoch": self.loader.epoch}
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}")
        self.tracker.log_metrics(metrics, self.step)
        if self.env.is_main:  # a local copy that survives any tracking-server trouble
            jsonl.append(self.run_dir / "metrics.jsonl", {"step": self.step, **metrics})
        self.engine.nonfinite.take(values[n + k:], dict(zip(range(self.step - n + 1, self.step + 1), values[:n])))

    def validate(self) -> None:
        """The tasks' metrics on data.val_split, logged under val/ (and to val.jsonl); a new best of
        trainer.best_metric is checkpointed at once and named by the `best` pointer."""
        report, improved = self.validator.run(self.engine.module, self.device, self.step, self.env.is_main)
        if self.env.is_main:
            metrics = {f"val/{k}": v for k, v in scalars(report).items()}
            self.tracker.log_metrics(metrics, self.step)
            jsonl.append(self.run_dir / "val.jsonl", {"step": self.step, **metrics})
        if improved:  # every rank: the report, and so the decision, is the same on all
            self.save(best=True)
            if self.env.is_main:
                print(f"\nstep {self.step}: best {self.validator.metric} so far: {self.validator.best:.4f}")

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, best: bool = False) -> None:
        """A complete checkpoint of this step (every rank); best: also the one `best` names. Then, with
        trainer.keep_last, the older ones go (never those `latest` or `best` name)."""
        self.engine.nonfinite.read_pending()  # a non-finite step the window has not read stops the run first
        rank_state = {"rng": checkpoint.rng_state(), "loader": self.loader.state_dict(), "state": self.state,
                      "validation": self.validator.state_dict(),
                      "hooks": self.hooks.state_dict()}
        path = checkpoint.save(self.engine, self.run_dir, self.step, self.env.rank, rank_state,
                               shared={"step": self.step},
                               fingerprint=fingerprint(self.cfg, self.env.world_size, self.loader.videos), best=best)
        self.saved_step = self.step
        if self.env.is_main and self.cfg.trainer.keep_last:
            checkpoint.prune(path.parent, self.cfg.trainer.keep_last)
        self.tracker.set_tags({"last_checkpoint": path.resolve(), **({"best_checkpoint": path.resolve()} if best
                                                                      else {})})

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
            self.validator.load_state_dict(rank_state.get("validation", {}))  # the best so far goes on
            self.hooks.load_state_dict(rank_state.get("hooks", {}))
        if self.env.is_main:
            for name in ("metrics.jsonl", "val.jsonl"):  # each step once, after a resume
                jsonl.keep_steps_up_to(self.run_dir / name, self.step)
            if self.resumed is not None:
                print(self.resumed.summary(self.step, self.cfg.deepspeed.grad_accum))

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
