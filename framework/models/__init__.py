from .model import VideoModel, build_model, check_model

__all__ = ["VideoModel", "build_model", "check_model"]
