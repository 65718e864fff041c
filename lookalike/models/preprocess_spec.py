"""Preprocessing as data: the `Preprocess` value each catalogue model carries (size, mean/std,
resize mode, channel order). `lookalike.pipeline.preprocess` applies it.

Keeping the numbers (size, mean, std, resize mode) in the model catalogue rather than in code
means a test can check them against the model's documentation, and a new model needs no new code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ResizeMode = Literal["centre_crop", "squash", "letterbox"]


@dataclass(frozen=True)
class Preprocess:
    """How one model wants its input.

    size: side of the square input, in pixels.
    resize: `centre_crop` scales the shorter side to `size / crop_fraction` and cuts the centre square;
        `squash` scales to size x size ignoring the aspect ratio; `letterbox` fits the longer side and
        pads with `pad_value`.
    mean, std: per channel, in 0-255 units, applied as (pixel - mean) / std.
    channels: channel order the model expects.
    """

    size: int
    resize: ResizeMode = "centre_crop"
    crop_fraction: float = 0.875
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    channels: Literal["RGB", "BGR"] = "RGB"
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    pad_value: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "resize": self.resize,
            "crop_fraction": self.crop_fraction,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
            "interpolation": self.interpolation,
            "pad_value": self.pad_value,
        }
