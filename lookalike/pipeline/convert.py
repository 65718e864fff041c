"""Decoded pixels brought to what the models take: turned as the camera meant, 8 bits, reduced,
RGB with transparency on white. High-depth images are converted a band of rows at a time, so no
full-size float copy is ever made.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def transpose(img: Image.Image, orientation: int) -> Image.Image:
    """Pixels turned the way the camera meant them (as `ImageOps.exif_transpose`, applied to the
    already reduced image, which no longer carries the file's EXIF)."""
    method = _TRANSPOSE.get(orientation)
    return img.transpose(method) if method is not None else img


def shrink(img: Image.Image, draft_size: int | None) -> Image.Image:
    """A new 8-bit image, reduced by an integer factor when its shorter side is at least twice
    `draft_size` (never below `draft_size`); `img` is left for the caller to close.

    High-depth pixels are brought to 8 bits first (band by band of rows, so no full-size float
    copy is ever made), and modes `Image.reduce` cannot take (palette, 1-bit) are converted first.
    """
    base = img
    if img.mode.startswith("I") or img.mode == "F":
        base = _high_depth_to_l(img)
    elif img.mode in ("P", "PA"):
        base = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode == "1":
        base = img.convert("L")
    if draft_size and min(base.size) >= 2 * draft_size:
        try:
            return base.reduce(min(base.size) // draft_size)
        except ValueError:  # a mode Pillow cannot reduce (YCbCr, LAB, HSV ...): keep it whole
            pass
    return base if base is not img else img.copy()


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB, whatever the mode; transparency is composited over white (product shots are)."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    # Alpha channels, and palette or colour-key transparency (`info["transparency"]`): through RGBA,
    # so transparent pixels land on white rather than on whatever colour they happen to hold.
    if img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode == "RGB":
        return img
    # 1, L, P, CMYK (Pillow undoes Adobe's inverted CMYK JPEGs on load), YCbCr, LAB, HSV.
    return img.convert("RGB")


_ROWS = 256  # rows converted at a time: bounds the temporary arrays of a high-depth conversion


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale -> 8-bit greyscale.

    Pillow's own `convert("L")` clips I;16 at 255 (a near-white image), so scale instead: 16-bit
    modes by 1/257 (0..65535 -> 0..255); 32-bit and float by their value range when it leaves 0..255.
    Done a band of rows at a time, so the temporaries stay small whatever the image's size.
    """
    width, height = img.size
    sixteen = img.mode.startswith("I;16")
    lo = 0.0
    scale = 1.0
    if not sixteen:
        low, high = img.getextrema()  # no copy of the pixels
        lo, hi = float(low), float(high)  # type: ignore[arg-type]  # one band: two numbers
        if math.isnan(lo) or math.isnan(hi):
            lo, hi = _finite_range(img)
        if lo < 0.0 or hi > 255.0:
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
        else:
            lo = 0.0
    grey = np.empty((height, width), dtype=np.uint8)
    for top in range(0, height, _ROWS):
        # A band cropped out of the image: a full-size numpy copy of the pixels is never made.
        band = np.asarray(img.crop((0, top, width, min(top + _ROWS, height))))
        if sixteen:
            # round(x / 257) in integers: x * 255 / 65535, rounded half up.
            grey[top : top + _ROWS] = (band.astype(np.uint32) * 255 + 32767) // 65535
        else:
            values = (band.astype(np.float32) - lo) * scale
            grey[top : top + _ROWS] = np.nan_to_num(values).clip(0, 255).round()
    return Image.fromarray(grey, "L")


def _finite_range(img: Image.Image) -> tuple[float, float]:
    """(min, max) of a float image's finite values, band by band; (0, 0) when there are none."""
    width, height = img.size
    lo, hi = math.inf, -math.inf
    for top in range(0, height, _ROWS):
        band = np.asarray(img.crop((0, top, width, min(top + _ROWS, height))))
        finite = band[np.isfinite(band)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)
