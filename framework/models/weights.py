"""Pretrained weights for a backbone: read them, check that they fit, load them.

Sources (`model.pretrained`):
- a local file: a state dict, or a checkpoint holding one under `state_dict`, `model` or `module` (a
  VideoModel's own weights load too: their `backbone.` keys are taken, the head's are left);
- `torchvision:<Weights>` (e.g. `torchvision:ResNet50_Weights.IMAGENET1K_V2`), for users with internet;
- `timm` or `timm:<name.tag>` for timm backbones, from timm's hub (internet).

Weights are loaded after the norm policy converted the network, so they must fit the converted network: the
BatchNorm statistics of a BatchNorm file go into frozen_bn's frozen statistics, its affine parameters into
gn/ln's, and the keys the policy has no place for (statistics under gn/ln, everything under none) are
expected to be left over. Anything else that does not fit is an error that names the keys, before training.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SHOWN = 4  # keys named per kind in the error


def read_weights(source: str) -> dict[str, torch.Tensor]:
    """A state dict from a local file or from torchvision's hub (timm's hub is the timm family's)."""
    from ..config import ConfigError

    if source.startswith("torchvision:"):
        import torchvision

        try:
            weights = torchvision.models.get_weight(source.split(":", 1)[1])
        except (KeyError, ValueError, AttributeError):
            raise ConfigError(f"model.pretrained={source!r}: torchvision has no such weights (expected "
                              "torchvision:<ModelName>_Weights.<NAME>)") from None
        return weights.get_state_dict(progress=True)
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained={source!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise ConfigError(f"model.pretrained={source!r}: not a readable torch weights file "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return unwrap(state, source)


def unwrap(state: dict, source: str = "") -> dict[str, torch.Tensor]:
    """The backbone's tensors out of the usual checkpoint shapes."""
    from ..config import ConfigError

    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"model.pretrained={source!r}: holds no state dict of tensors")
    for prefix in ("module.", "backbone."):  # DistributedDataParallel's wrapper; a VideoModel
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], source: str, backbone: str,
                 ignored_prefixes: tuple[str, ...] = (), expected_leftovers: tuple[str, ...] = ()) -> None:
    """Load `state` into `net`, or raise a one-line ConfigError saying how many keys are missing, unexpected
    or of another shape, and which. The classifier (`ignored_prefixes`) is never loaded: the backbone has
    none. `expected_leftovers`: keys of the file the norm policy has no place for."""
    from ..config import ConfigError

    own = net.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(ignored_prefixes)}
    leftovers = set(expected_leftovers)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and k not in leftovers]
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing{_named(missing)}", f"{len(unexpected)} unexpected{_named(unexpected)}"]
        if shapes:
            parts.append(f"{len(shapes)} of another shape (file vs model){_named(shapes)}")
        raise ConfigError(f"model.pretrained={source!r} does not fit {backbone} ({len(own)} tensors): "
                          + ", ".join(parts))
    net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _named(keys: list[str]) -> str:
    if not keys:
        return ""
    more = f", … {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return f" ({', '.join(keys[:SHOWN])}{more})"
