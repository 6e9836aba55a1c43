"""The norm policies' names and the BatchNorm refusal, without torch or torchvision: the config checks them
before any process starts (framework/config.py), where importing torchvision would cost seconds a launch."""

POLICIES = ("bn", "frozen_bn", "gn", "ln", "none")

LEAK_EXPLANATION = (
    "the model has trainable BatchNorm layers: in training their statistics mix the frames of a batch, so a "
    "frame's output depends on later frames and on other videos (a leak of future information). Use "
    "model.norm=gn (GroupNorm), ln (LayerNorm over channels and space), frozen_bn (pretrained statistics, "
    "frozen) or none, or set model.allow_batchnorm=true if you accept the leak")
