"""Run as `python -m tests.lofi_memory`: one training step (backbone + localization head forward and backward)
per fidelity, composed by LoFi's rule from the same batch, and the step's peak memory above the state before
it. Prints one JSON line: {fidelity: {"peak": bytes, "saved": bytes, "shape": [B, T, H, W]}}.

Peak: the process's resident high-water mark (VmHWM, reset through /proc/self/clear_refs before each step).
glibc would keep freed blocks resident and hide later peaks, so the caller runs this with a fixed mmap
threshold (MALLOC_MMAP_THRESHOLD_): every large tensor is mapped on allocation and unmapped on free.
Saved: the bytes autograd keeps for the backward (saved-tensor hooks, each storage once, weights excluded).
"""
import json
from pathlib import Path

import torch

from bench.report import memory_bytes
from framework.config import ModelConfig
from framework.data.loader import SequenceBatch
from framework.lofi import FULL, Fidelity, reduce_time, resize
from framework.models import build_model

B, T, SIZE = 2, 32, 64
FIDELITIES = {"full": FULL, "S (1, 2)": Fidelity(1, 2.0), "T (4, 1)": Fidelity(4, 1.0),
              "ST (2, √2)": Fidelity(2, 2 ** 0.5)}


def batch() -> SequenceBatch:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (B, T, SIZE, SIZE, 3), generator=g, dtype=torch.uint8)
    return SequenceBatch(frames=frames, labels=torch.zeros(B, T, dtype=torch.long),
                         valid=torch.ones(B, T, dtype=torch.bool), starts=torch.ones(B, dtype=torch.bool),
                         ends=torch.ones(B, dtype=torch.bool), video=torch.arange(B),
                         frame=torch.arange(T).repeat(B, 1), lengths=torch.full((B,), T))


def step(model, fidelity: Fidelity, saved: dict, weights: set) -> list[int]:
    b = reduce_time(batch(), fidelity.temporal)
    frames = resize(b.frames, fidelity)

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in weights:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = model.head(model.features(frames), None, b.starts, valid=b.valid)
    out.square().mean().backward()
    return list(frames.shape[:4])


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", head="actionformer", hidden=32, levels=3, snippet_len=2, snippet_stride=2)
    model = build_model(cfg, 3 + 2).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    step(model, FULL, {}, weights)  # gradients allocated, allocator warm
    out = {}
    for name, fidelity in FIDELITIES.items():
        saved: dict = {}
        base = memory_bytes("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from the current RSS
        shape = step(model, fidelity, saved, weights)
        out[name] = {"peak": memory_bytes("VmHWM") - base, "saved": sum(saved.values()), "shape": shape}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
