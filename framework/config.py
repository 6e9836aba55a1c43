"""Typed configuration: dataclasses validated in __post_init__, composed by Hydra from configs/.

`load_config(overrides)` is the one entry point; every mistake a user can make in a config comes out of
it as a ConfigError with a one-line message, before any heavy work starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .analysis.config import AnalysisConfig

CONFIG_DIR = Path(os.environ.get("VT_CONFIG_DIR", Path(__file__).resolve().parents[1] / "configs"))


class ConfigError(ValueError):
    pass


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


ZERO3_REFUSAL = (
    "deepspeed.zero_stage=3 is not supported: stage 3 gathers partitioned parameters only inside the engine's "
    "forward, and the trainer runs the backbone and the temporal head (the sequence-parallel relay) as separate "
    "calls, which hang or fail at stage 3. Use 0, 1 or 2: stage 2 already partitions gradients and optimizer "
    "state, and for a video model the memory goes to activations (see model.checkpointing), not parameters.")


@dataclass
class DataConfig:
    root: str = "data/demo"  # folder with manifest.json and the shards
    train_split: str = "train"
    eval_split: str = "test"  # scored once at the end (trainer.eval)
    val_split: str = "val"  # scored every trainer.eval_every steps, and decides the best checkpoint
    batch_size: int = 2  # sequences per rank per step
    seq_len: int = 16  # consecutive frames per sequence (the truncated-BPTT window)
    shuffle: bool = True  # shuffle the order of videos every epoch
    num_workers: int = 1
    sampling: str = "stream"  # training order: stream (whole videos, state carried) | clips (random clips)
    clip_stride: int = 1  # clips: frames of the video between two frames of a clip
    # clip-consistent augmentation on the training device (framework/data/augment.py): none | clip
    augment: str = "none"
    augment_scale: float = 0.35  # smallest crop area, as a fraction of the frame
    augment_flip: float = 0.5  # probability of a horizontal flip (per sequence)
    augment_jitter: float = 0.4  # brightness/contrast/saturation factors in [1 - jitter, 1 + jitter]

    def __post_init__(self):
        _require(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        _require(self.seq_len >= 1, f"data.seq_len must be >= 1, got {self.seq_len}")
        _require(self.num_workers >= 1, f"data.num_workers must be >= 1, got {self.num_workers}")
        _require(self.sampling in ("stream", "clips"), f"data.sampling={self.sampling!r}: choose stream or clips")
        _require(self.clip_stride == 1 or (self.clip_stride > 1 and self.sampling == "clips"),
                 f"data.clip_stride={self.clip_stride}: must be >= 1, and > 1 only with data.sampling=clips")
        _require(self.augment in ("none", "clip"), f"data.augment={self.augment!r}: choose none or clip")
        _require(0 < self.augment_scale <= 1, f"data.augment_scale must be in (0, 1], got {self.augment_scale}")
        _require(0 <= self.augment_flip <= 1, f"data.augment_flip must be in [0, 1], got {self.augment_flip}")
        _require(0 <= self.augment_jitter < 1, f"data.augment_jitter must be in [0, 1), got {self.augment_jitter}")


@dataclass
class CheckpointingConfig:
    """Activation checkpointing of the backbone (DeepSpeed's checkpointing API), applied to each micro-chunk
    (model.frame_chunk) so the recomputation's peak stays one micro-chunk's worth.
    granularity: none | backbone (keep only each micro-chunk's input) | stage (keep the stage boundaries:
    5 for a ResNet) | blocks (keep every `every`-th block's boundary: residual blocks, transformer blocks)."""
    granularity: str = "none"
    every: int = 1
    cpu_offload: bool = False  # move the kept boundaries to host memory until the backward needs them

    def __post_init__(self):
        options = ("none", "backbone", "stage", "blocks")
        _require(self.granularity in options,
                 f"model.checkpointing.granularity={self.granularity!r}: choose one of {list(options)}")
        _require(self.every >= 1, f"model.checkpointing.every must be >= 1, got {self.every}")
        _require(not self.cpu_offload or self.granularity != "none",
                 "model.checkpointing.cpu_offload needs a granularity other than none (nothing is kept to offload)")


@dataclass
class ModelConfig:
    # torchvision resnet18..152, convnext_tiny..large; video r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v2_s, swin3d_t;
    # timm:<name> (framework/models/backbones/)
    backbone: str = "resnet18"
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)  # more constructor arguments (timm: img_size, ...)
    drop_path: Optional[float] = None  # drop-path (stochastic depth) rate; null: the model's own default
    norm: str = "gn"  # bn | frozen_bn | gn | ln | none (see framework/models/norm.py); no-op without BatchNorm
    allow_batchnorm: bool = False  # accept norm=bn's leak across frames and videos
    # local file (state dict or checkpoint), torchvision:<Weights.NAME>, timm or timm:<name.tag> (internet)
    pretrained: Optional[str] = None
    # lstm | gru | tcn | transformer | linear (frame-only baseline) | actionformer (localization, whole sequence)
    head: str = "lstm"
    hidden: int = 128
    layers: int = 1  # recurrent layers; dilated layers per TCN stage; transformer layers
    dropout: float = 0.0
    stages: int = 2  # tcn: refinement stages (MS-TCN)
    attention_heads: int = 4  # transformer
    window: int = 64  # transformer: frames of memory; actionformer with blocks=attention: ± window//2 points
    levels: int = 6  # actionformer: pyramid levels (strides 1, 2, …, 2^(levels−1) snippets)
    blocks: str = "conv"  # actionformer: conv (strided residual 1-D convs) | attention (local self-attention)
    snippet_len: int = 1  # actionformer: frames per snippet (averaged); a video backbone: its clip (= clip_len)
    snippet_stride: int = 1  # actionformer: frames between snippet starts
    frame_chunk: Optional[int] = None  # frames per backbone call; seq_len must be a multiple of it
    clip_len: Optional[int] = None  # video backbones: frames per clip, each seen alone; null: the whole sequence
    feature_dropout: float = 0.0  # dropout on each frame's backbone features (inside the checkpointed region)
    freeze_stages: int = 0  # freeze the first k stages (ResNet: stem, layer1..4): no gradients, no stored activations
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)

    def __post_init__(self):
        from .models.backbones import check_config
        from .models.heads import HEADS

        check_config(self)
        _require(self.head in HEADS, f"model.head={self.head!r}: choose one of {list(HEADS)}")
        from .models.norm_names import LEAK_EXPLANATION, POLICIES

        _require(self.norm in POLICIES, f"model.norm={self.norm!r}: choose one of {list(POLICIES)}")
        _require(self.norm != "bn" or self.allow_batchnorm, f"model.norm=bn: {LEAK_EXPLANATION}")
        _require(0 <= self.dropout < 1, f"model.dropout must be in [0, 1), got {self.dropout}")
        _require(self.frame_chunk is None or self.frame_chunk >= 1, "model.frame_chunk must be >= 1")
        _require(0 <= self.feature_dropout < 1, f"model.feature_dropout must be in [0, 1), got {self.feature_dropout}")
        _require(self.hidden >= 1 and self.layers >= 1 and self.stages >= 1 and self.window >= 1,
                 "model.hidden, model.layers, model.stages and model.window must be >= 1")
        _require(self.head not in ("transformer", "actionformer") or self.hidden % self.attention_heads == 0,
                 f"model.hidden={self.hidden} must be a multiple of model.attention_heads={self.attention_heads}")
        if self.head == "actionformer":
            self._check_snippets()

    def _check_snippets(self) -> None:
        from .models.backbones import find

        _require(self.levels >= 1, f"model.levels must be >= 1, got {self.levels}")
        _require(self.blocks in ("conv", "attention"), f"model.blocks={self.blocks!r}: conv or attention")
        _require(self.snippet_len >= 1 and self.snippet_stride >= 1,
                 "model.snippet_len and model.snippet_stride must be >= 1")
        fam = find(self.backbone)
        if fam.video:  # a 3D backbone sees each snippet as one clip
            _require(self.clip_len == self.snippet_len == self.snippet_stride,
                     f"model.snippet_len={self.snippet_len}, snippet_stride={self.snippet_stride} with "
                     f"{self.backbone}: "
                     "a video backbone sees each snippet as one clip; set model.clip_len = model.snippet_len = "
                     "model.snippet_stride")


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 0
    bf16: bool = False
    grad_clip: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    # CPU ranks on one machine: reduce gradients through DeepSpeed's shared-memory kernel where it can run
    # (framework/grad_reduce.py says when); elsewhere, and with false, DeepSpeed's own reduction
    shm_allreduce: bool = True
    # any other DeepSpeed option (framework/ds_config.py): a JSON file of the user's, then a dict merged over it;
    # a key the options above set may only repeat their value
    config_file: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _require(self.zero_stage in (0, 1, 2, 3), f"deepspeed.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        _require(self.grad_clip >= 0, f"deepspeed.grad_clip must be >= 0, got {self.grad_clip}")
        _require(self.grad_accum >= 1, f"deepspeed.grad_accum must be >= 1, got {self.grad_accum}")


@dataclass
class TrainerConfig:
    max_steps: int = 100  # batches (micro-steps); the optimizer steps every deepspeed.grad_accum of them
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    warmup_steps: int = 10
    checkpoint_every: int = 50  # steps; a checkpoint is also written at the end
    log_every: int = 10
    # auto: the newest complete checkpoint of the run folder, if any | none | <checkpoint folder>; a checkpoint
    # made with other settings is refused unless force (= auto) / force:<checkpoint folder> (framework/resume_guard.py)
    resume: str = "auto"
    eval: bool = True  # evaluate on data.eval_split at the end
    eval_every: int = 0  # steps between validations on data.val_split (0: none); logged under val/
    best_metric: Optional[str] = None  # a number of the validation report, e.g. phase/frame_pooled/f1; keeps `best`
    best_mode: str = "max"  # max | min: which way best_metric improves
    keep_last: Optional[int] = None  # keep the newest N checkpoints (and those `latest` and `best` name); null: all
    sp: int = 1  # sequence-parallel ranks per sequence group (world = DP × SP); see framework/relay.py
    # exact (gradients cross ranks) | detached (truncated BPTT at rank boundaries) | gather (the SP group's
    # features all-gathered, the head on the whole sequence: heads that are not causal, e.g. actionformer)
    handoff: str = "exact"
    # a non-finite loss or gradient norm (framework/nonfinite.py): stop (the run ends, naming the step) | skip
    # (that optimizer step is dropped and counted) | off (no check)
    nonfinite: str = "stop"
    nonfinite_patience: int = 5  # skip: the run stops after this many non-finite steps in a row
    # how long a collective waits for a peer: a rank that dies or hangs stops the others after at most this
    # long (a killed one at once: its connections close). Above the longest legitimate wait: a checkpoint
    # write, one rank's longer evaluation, the first step's compilation.
    collective_timeout_s: float = 1800.0

    def __post_init__(self):
        _require(self.sp >= 1, f"trainer.sp must be >= 1, got {self.sp}")
        _require(self.handoff in ("exact", "detached", "gather"),
                 f"trainer.handoff={self.handoff!r}: exact, detached or gather")
        _require(self.collective_timeout_s > 0, f"trainer.collective_timeout_s must be > 0, got {self.collective_timeout_s}")
        _require(self.max_steps >= 1, f"trainer.max_steps must be >= 1, got {self.max_steps}")
        _require(self.lr > 0, f"trainer.lr must be > 0, got {self.lr}")
        _require(self.optimizer in ("adamw", "sgd"), f"trainer.optimizer={self.optimizer!r}: adamw or sgd")
        _require(self.checkpoint_every >= 1, "trainer.checkpoint_every must be >= 1")
        _require(self.log_every >= 1, "trainer.log_every must be >= 1")
        _require(0 <= self.warmup_steps, "trainer.warmup_steps must be >= 0")
        _require(self.eval_every >= 0, f"trainer.eval_every must be >= 0, got {self.eval_every}")
        _require(self.keep_last is None or self.keep_last >= 1, f"trainer.keep_last must be >= 1 or null, "
                 f"got {self.keep_last}")
        _require(self.best_mode in ("max", "min"), f"trainer.best_mode={self.best_mode!r}: max or min")
        _require(self.best_metric is None or self.eval_every > 0,
                 "trainer.best_metric needs trainer.eval_every > 0 (the best checkpoint is chosen on validation)")
        _require(self.nonfinite in ("stop", "skip", "off"), f"trainer.nonfinite={self.nonfinite!r}: stop, skip or off")
        _require(self.nonfinite_patience >= 1, "trainer.nonfinite_patience must be >= 1")
        _require(bool(self.resume.strip()), "trainer.resume must be auto, none, force, a checkpoint folder or "
                 "force:<checkpoint folder>")


@dataclass
class LofiConfig:
    """LoFi training (framework/lofi.py): the encoder and head end to end at reduced fidelity, then the head alone
    from scratch at full fidelity on the frozen encoder."""
    enabled: bool = False
    # [r_t, r_s] each: keep every r_t-th frame, frames r_s times smaller per side; r_t · r_s² must be equal for all
    # (constant memory per batch at a fixed batch size). Default: LoFi's S, T and ST configurations
    fidelities: List[Any] = field(default_factory=lambda: [[1, 2.0], [4, 1.0], [2, 2 ** 0.5]])
    cycle: str = "long"  # long: the next fidelity at each epoch boundary | short: every `every` batches
    every: int = 16
    head_steps: int = 0  # then this many steps of the head alone (from scratch, encoder frozen, full fidelity)
    tolerance: float = 0.1  # allowed relative spread of r_t · r_s² across the fidelities

    def __post_init__(self):
        _require(self.cycle in ("long", "short"), f"lofi.cycle={self.cycle!r}: long or short")
        _require(self.every >= 1 and self.head_steps >= 0 and self.tolerance >= 0,
                 "lofi.every must be >= 1, lofi.head_steps and lofi.tolerance >= 0")
        ok = bool(self.fidelities) and all(
            isinstance(f, (list, tuple)) and len(f) == 2 and float(f[0]) == int(f[0]) >= 1 and float(f[1]) >= 1
            for f in self.fidelities)
        _require(ok, f"lofi.fidelities={self.fidelities!r}: a list of [r_t, r_s] with an integer r_t >= 1 and r_s >= 1")


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: Optional[str] = None  # None: sqlite store in the run folder
    experiment: str = "video-training"
    run_name: Optional[str] = None
    system_metrics_every_s: Optional[float] = 10.0  # cpu, memory, GPU memory with the train metrics; null: off
    log_checkpoint: bool = False  # upload the final checkpoint folder as the run's `checkpoint/` artifact

    def __post_init__(self):
        _require(self.system_metrics_every_s is None or self.system_metrics_every_s >= 0,
                 f"logging.mlflow.system_metrics_every_s must be >= 0 or null, got {self.system_metrics_every_s}")


@dataclass
class LoggingConfig:
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    console: bool = True  # false: no progress bar (e.g. in log files); results and errors are printed anyway


@dataclass
class Config:
    name: str = "default"
    run_dir: str = "runs/default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    # {name: options}: one entry per task the run trains (configs/task/, framework/tasks/); empty: phase
    task: Dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    lofi: LofiConfig = field(default_factory=LofiConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # bias measurement during training, StaticDropout, Variational DropPath (framework/analysis/config.py)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def __post_init__(self):
        from .tasks import parse_task_configs

        self.task = parse_task_configs(self.task)  # each task validates its own options
        _require("clip" not in self.task or self.trainer.sp == 1,
                 "task=clip runs with trainer.sp=1: a clip's score pools all its frames, and a clip fits one rank")
        self._check_localization()
        if self.lofi.enabled:
            from .lofi import check

            check(self.lofi, self.data.seq_len)
        best = self.trainer.best_metric
        _require(best is None or best.split("/")[0] in self.task,
                 f"trainer.best_metric={best!r} must start with one of this run's tasks ({', '.join(self.task)}/...), "
                 "e.g. phase/frame_pooled/f1 or tools/mAP")
        chunk = self.model.frame_chunk
        _require(chunk is None or self.data.seq_len % chunk == 0,
                 f"data.seq_len={self.data.seq_len} is not a multiple of model.frame_chunk={chunk}")
        from .models.backbones import check_clips

        check_clips(self.model, self.data.seq_len)
        _require(self.deepspeed.zero_stage < 3, ZERO3_REFUSAL)
        from .ds_config import build

        build(self)  # the user's DeepSpeed options: a contradiction stops here, before any process starts
        self.analysis.check(self)

    def _check_localization(self) -> None:
        loc, af = "localization" in self.task, self.model.head == "actionformer"
        _require(loc == af, "task=localization and model.head=actionformer go together: the head's outputs are "
                            "pyramid points (class logits and distances), which only the localization task reads"
                 if loc else "model.head=actionformer is the localization head: use it with task=localization")
        _require(not loc or len(self.task) == 1,
                 "task=localization runs alone: its outputs are per pyramid point, not per frame")
        _require(not af or self.trainer.sp == 1 or self.trainer.handoff == "gather",
                 "model.head=actionformer sees the whole sequence: with trainer.sp > 1 use trainer.handoff=gather "
                 "(the relay would run it on each rank's chunk alone)")

    def check_world(self, world_size: int) -> None:
        """What can only be checked once the number of processes is known."""
        _require(world_size % self.trainer.sp == 0,
                 f"trainer.sp={self.trainer.sp} must divide the number of processes ({world_size})")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)


def _register() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Config)


def load_config(overrides: list[str] = (), config_name: str = "config"):
    """Compose configs/<config_name>.yaml with Hydra overrides → (validated Config, resolved DictConfig)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    _register()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            raw = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(raw)
        cfg = OmegaConf.to_object(raw)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_one_line(e)) from None
    except ValueError as e:  # __post_init__ errors reach us wrapped by OmegaConf in some versions
        raise ConfigError(str(e)) from None
    return cfg, raw


def _one_line(e: BaseException) -> str:
    """Hydra wraps the OmegaConf error that says what is wrong; OmegaConf adds lines of internals.
    Keep the innermost sentence and the key it is about."""
    while e.__cause__ is not None:
        e = e.__cause__
    if isinstance(e, ConfigError):
        return str(e)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[0] if lines else type(e).__name__
    if any(ln.startswith("Available options in") for ln in lines):  # e.g. experiment=nope: name the choices
        start = next(i for i, ln in enumerate(lines) if ln.startswith("Available options in")) + 1
        end = next((i for i, ln in enumerate(lines) if ln.startswith("Config search path")), len(lines))
        msg += f" (choose one of {', '.join(lines[start:end])})"
    key = getattr(e, "full_key", None)
    if key and key.startswith("deepspeed.extra.") and "not in struct" in msg:  # Hydra adds keys only with a +
        return f"{key}: a DeepSpeed option the config does not have yet needs Hydra's `+`: +{key}...=VALUE"
    return f"{key}: {msg}" if key and key not in msg else msg


def load_saved_config(path: Path, overrides: list[str] = ()):
    """The resolved config a run saved in <run_dir>/config.yaml, validated again, with dotted overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        raw = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path),
                              OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(raw), raw
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None
