"""The model: a backbone, a temporal head, one output block per task (model.py).

Its names load on first use, so that the config's checks can import the backbone registry and the norm
policies' names without importing torchvision (seconds at every launch)."""

__all__ = ["VideoModel", "build_model", "check_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
