"""Hydra's sweep syntax on the command line (`trainer.lr=1e-3,3e-4 model=a,b`) -> one run per combination.

Each combination is validated before anything is launched, and gets a run folder of its own: two runs
sharing a folder would resume each other's checkpoints.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from framework.config import Config, ConfigError, load_config


@dataclass(frozen=True)
class Point:
    index: int
    overrides: list[str]
    cfg: Config


def expand(overrides: list[str]) -> list[list[str]]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:  # e.g. an unbalanced bracket; name the override, not the grammar's tokens
        raise ConfigError(f"cannot parse override {getattr(e, 'override', '')!r}: {str(e).splitlines()[0]}") from None
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in parsed]
    return [list(combo) for combo in itertools.product(*choices)]


def points(overrides: list[str]) -> list[Point]:
    """Every combination, loaded and checked; run folders made distinct (`<run_dir>/<i>`) where they collide."""
    combos = expand(overrides)
    loaded = [load_config(c)[0] for c in combos]
    if len(combos) > 1 and len({c.run_dir for c in loaded}) < len(combos):
        combos = [_without(c, "run_dir", "logging.mlflow.run_name") + _own_folder(cfg, i)
                  for i, (c, cfg) in enumerate(zip(combos, loaded))]
        loaded = [load_config(c)[0] for c in combos]
    return [Point(i, c, cfg) for i, (c, cfg) in enumerate(zip(combos, loaded))]


def _own_folder(cfg: Config, i: int) -> list[str]:
    return [f"run_dir={cfg.run_dir}/{i}", f"logging.mlflow.run_name={cfg.logging.mlflow.run_name or cfg.name}-{i}"]


def _without(overrides: list[str], *keys: str) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in keys]
