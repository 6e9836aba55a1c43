"""The one shard schema, shared by the writer (data_prep) and the reader (framework.data).

One FFCV sample per frame. Field order matters to FFCV: the writer's tuples and the reader's
pipelines are both built from FIELDS so they cannot drift apart.
"""
from __future__ import annotations

from . import jit_cache

FIELDS = ("image", "video", "frame", "time", "label")


def writer_fields(jpeg_quality: int = 90, raw: bool = False) -> dict:
    jit_cache.enable()  # before the first ffcv import: the import itself compiles
    from ffcv.fields import FloatField, IntField, RGBImageField

    image = RGBImageField(write_mode="raw" if raw else "jpg", jpeg_quality=jpeg_quality)
    return {
        "image": image,
        "video": IntField(),  # index into Manifest.videos
        "frame": IntField(),  # index of the sampled frame within its video
        "time": FloatField(),  # presentation time in seconds
        "label": IntField(),  # index into Manifest.labels
    }


def reader_pipelines(square: int | None = None) -> dict:
    """square: frames of several sizes (shards made with --short-side): decode the centred square of each
    frame's short side, resized to square × square, so that the frames of a batch stack."""
    jit_cache.enable()
    from ffcv.fields.basics import FloatDecoder, IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, SimpleRGBImageDecoder
    from ffcv.transforms import ToTensor

    def scalar(decoder):
        return [decoder(), ToTensor()]

    return {
        "image": [SimpleRGBImageDecoder() if square is None else CenterCropRGBImageDecoder((square, square), 1.0),
                  ToTensor()],
        "video": scalar(IntDecoder),
        "frame": scalar(IntDecoder),
        "time": scalar(FloatDecoder),
        "label": scalar(IntDecoder),
    }
