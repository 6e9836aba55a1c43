"""Activation checkpointing and stage freezing of the per-frame backbone."""
import pytest
import torch

from framework.config import CheckpointingConfig, ConfigError, ModelConfig, load_config
from framework.models import build_model

B, T, SIZE, CLASSES = 2, 8, 32, 5


def frames() -> torch.Tensor:
    return torch.randint(0, 256, (B, T, SIZE, SIZE, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def gradients(granularity="none", every=1, freeze=0, dropout_seed=0, device="cpu"):
    """Gradients of a CNN-GRU with dropout inside the backbone (feature_dropout) and in the head."""
    torch.manual_seed(0)
    cfg = ModelConfig(head="gru", hidden=16, feature_dropout=0.3, dropout=0.2, freeze_stages=freeze,
                      frame_chunk=4, checkpointing=CheckpointingConfig(granularity=granularity, every=every))
    net = build_model(cfg, CLASSES).to(device).train()
    torch.manual_seed(dropout_seed)
    out, _ = net(frames().to(device), net.initial_state(B, device=device), torch.ones(B, dtype=torch.bool, device=device))
    out.square().sum().backward()
    after = torch.rand(1, device=device)  # the RNG stream after the step: a recomputation must not have shifted it
    return {n: p.grad for n, p in net.named_parameters()}, after


def max_relative_error(got: dict, want: dict) -> float:
    return max(((got[n] - w).norm() / w.norm().clamp(min=1e-12)).item() for n, w in want.items() if w is not None)


@pytest.mark.parametrize("granularity,every", [("backbone", 1), ("stage", 1), ("blocks", 1), ("blocks", 3)])
def test_checkpointing_gives_the_gradients_of_no_checkpointing_with_dropout(granularity, every):
    want, rng_want = gradients()
    other_masks, _ = gradients(dropout_seed=1)
    assert max_relative_error(other_masks, want) > 1e-3, "dropout must be active for this test to mean anything"
    got, rng_got = gradients(granularity, every)
    assert max_relative_error(got, want) <= 1e-5
    assert torch.equal(rng_got, rng_want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="offloading activations to host memory needs a GPU")
def test_cpu_offload_of_checkpoints_gives_the_same_gradients(monkeypatch):
    """checkpoint_in_cpu is a process-wide DeepSpeed setting, configured through torch.distributed."""
    import deepspeed
    import torch.distributed as dist

    from framework.env import free_port
    from framework.models.staged import configure_checkpointing

    port = free_port()
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    deepspeed.init_distributed("nccl")
    try:
        want, _ = gradients(device="cuda")
        configure_checkpointing(CheckpointingConfig(granularity="stage", cpu_offload=True), "cuda")
        got, _ = gradients("stage", device="cuda")
        deepspeed.checkpointing.configure(None, checkpoint_in_cpu=False)
    finally:
        dist.destroy_process_group()
    assert max_relative_error(got, want) <= 1e-5


def test_frozen_stages_get_no_gradient_and_keep_their_weights():
    grads, _ = gradients("stage", freeze=2)
    frozen = [n for n, g in grads.items() if g is None]
    assert frozen and all(n.split(".")[1] in ("conv1", "bn1", "layer1") for n in frozen)
    assert all(g is not None for n, g in grads.items() if n.startswith(("backbone.layer2", "head")))
    # freezing changes nothing upstream of the frozen part: the trainable gradients are those of the full model
    want, _ = gradients("none")
    assert max_relative_error({n: g for n, g in grads.items() if g is not None},
                              {n: want[n] for n, g in grads.items() if g is not None}) <= 1e-5


def test_frozen_stages_store_no_activations():
    """Every activation autograd saves for the backward is counted (weights aside): the frozen stem and layer1
    save nothing."""
    def saved_bytes(freeze: int) -> int:
        torch.manual_seed(0)
        net = build_model(ModelConfig(head="linear", freeze_stages=freeze), CLASSES).train()
        weights = {p.data_ptr() for p in net.parameters()}
        total = 0

        def pack(t):
            nonlocal total
            total += 0 if t.data_ptr() in weights else t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(frames(), None, torch.ones(B, dtype=torch.bool))
        return total

    none, two = saved_bytes(0), saved_bytes(2)
    # stem + layer1 at 32² hold most of a ResNet's activations (highest resolution)
    assert two < 0.5 * none


def test_whole_backbone_frozen_is_the_frozen_feature_baseline():
    grads, _ = gradients(freeze=5)
    assert all(g is None for n, g in grads.items() if n.startswith("backbone"))
    assert all(g is not None for n, g in grads.items() if n.startswith("head"))


@pytest.mark.parametrize("override,message", [
    ("model.checkpointing.granularity=layers",
     "model.checkpointing.granularity='layers': choose one of ['none', 'backbone', 'stage', 'blocks']"),
    ("model.checkpointing.cpu_offload=true",
     "model.checkpointing.cpu_offload needs a granularity other than none (nothing is kept to offload)"),
    ("model.freeze_stages=6", "model.freeze_stages=6: 0 (none) to 5 (the whole backbone), counting the stem and "
                              "layer1..layer4"),
])
def test_bad_memory_options_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError) as e:
        load_config([override])
    assert str(e.value) == message


def test_zero3_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="deepspeed.zero_stage=3 is not supported: stage 3 gathers"):
        load_config(["deepspeed.zero_stage=3"])
