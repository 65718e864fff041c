"""Image preprocessing as data: each model carries a `Preprocess` value
(`lookalike.models.catalog`), and one function applies it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from lookalike.models.catalog import Preprocess
from lookalike.types import F32

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


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
    if not images:
        return np.empty((0, 3, pp.size, pp.size), dtype=np.float32)
    return normalise(np.stack([np.asarray(fit_to_input(image, pp)) for image in images]), pp)
