"""Image preprocessing as data: each model carries a `Preprocess` value, and one function applies it.

Keeping the numbers (size, mean, std, resize mode) in the model catalogue rather than in code
means a test can check them against the model's documentation, and a new model needs no new code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from lookalike.types import F32

ResizeMode = Literal["centre_crop", "squash", "letterbox"]

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


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


def _resized(image: Image.Image, pp: Preprocess) -> Image.Image:
    resample = _RESAMPLE[pp.interpolation]
    w, h = image.size
    if pp.resize == "squash":
        return image.resize((pp.size, pp.size), resample)
    if pp.resize == "letterbox":
        scale = pp.size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (pp.size, pp.size), (pp.pad_value,) * 3)
        canvas.paste(image.resize((nw, nh), resample), ((pp.size - nw) // 2, (pp.size - nh) // 2))
        return canvas
    target = pp.size / pp.crop_fraction
    scale = target / min(w, h)
    nw, nh = max(pp.size, round(w * scale)), max(pp.size, round(h * scale))
    image = image.resize((nw, nh), resample)
    left, top = (nw - pp.size) // 2, (nh - pp.size) // 2
    return image.crop((left, top, left + pp.size, top + pp.size))


def fit_to_input(image: Image.Image, pp: Preprocess) -> Image.Image:
    """The RGB image resized (and cropped or padded) to the model's input square, before
    normalisation: `to_tensor` is `normalise` of this. Kept public so training can hold inputs as
    8-bit pixels and normalise them exactly as the embedder does."""
    return _resized(image.convert("RGB"), pp)


def normalise(pixels: np.ndarray, pp: Preprocess) -> F32:
    """(N, size, size, 3) RGB uint8 pixels (`fit_to_input` outputs) -> (N, 3, size, size) float32,
    normalised as `pp` says."""
    mean = np.asarray(pp.mean, dtype=np.float32)
    std = np.asarray(pp.std, dtype=np.float32)
    arr = np.asarray(pixels, dtype=np.float32)
    if pp.channels == "BGR":
        arr = arr[..., ::-1]
    return np.ascontiguousarray(((arr - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)


def to_tensor(images: Sequence[Image.Image], pp: Preprocess) -> F32:
    """RGB PIL images -> (N, 3, size, size) float32 batch, normalised as `pp` says."""
    mean = np.asarray(pp.mean, dtype=np.float32)
    std = np.asarray(pp.std, dtype=np.float32)
    batch = np.empty((len(images), 3, pp.size, pp.size), dtype=np.float32)
    for i, image in enumerate(images):
        arr = np.asarray(fit_to_input(image, pp), dtype=np.float32)
        if pp.channels == "BGR":
            arr = arr[:, :, ::-1]
        batch[i] = ((arr - mean) / std).transpose(2, 0, 1)
    return batch
