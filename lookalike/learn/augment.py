"""Strong augmentation of views for training (numpy + Pillow; seeded, no torch).

Every view is held as its model input square (`lookalike.pipeline.embed.fit_to_input`: 8-bit
RGB, size x size); an augmented view is another such square, normalised afterwards exactly like
the embedder's input. The draws follow the usual recipe for instance and metric learning
(SimCLR-style crops, flips and colour, plus perspective, blur and erasing): the network must learn
what stays the same when the camera, the light and the framing change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class AugmentSettings:
    """How strongly views are perturbed. scale: area share of the random crop; the others are
    probabilities or relative strengths."""

    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.4
    jitter_p: float = 0.8
    blur: float = 0.2
    perspective: float = 0.3
    erase: float = 0.25
    background: float = 0.5
    """Probability of swapping the plain background of a cut-out for another colour or noise."""


def augment(
    pixels: np.ndarray,
    rng: np.random.Generator,
    settings: AugmentSettings = AugmentSettings(),
    *,
    background: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """One augmented (size, size, 3) uint8 view of `pixels` (size, size, 3) uint8.

    background: the plain colour a cut-out was pasted on (its pixels may be swapped for another
    background); None for photos that keep their own background.
    """
    size = pixels.shape[0]
    image = Image.fromarray(pixels)
    if background is not None and rng.random() < settings.background:
        image = _swap_background(pixels, background, rng)
    image = _resized_crop(image, size, rng, settings)
    if rng.random() < settings.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < settings.perspective:
        image = _perspective(image, rng)
    if settings.jitter > 0 and rng.random() < settings.jitter_p:
        j = settings.jitter
        enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
        for enhance in rng.permutation(3):
            image = enhancers[enhance](image).enhance(float(rng.uniform(1 - j, 1 + j)))
    if rng.random() < settings.blur:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    out = np.asarray(image, dtype=np.uint8).copy()
    if rng.random() < settings.erase:
        _erase(out, rng)
    return out


def _resized_crop(
    image: Image.Image, size: int, rng: np.random.Generator, s: AugmentSettings
) -> Image.Image:
    w, h = image.size
    for _ in range(10):
        area = w * h * rng.uniform(*s.scale)
        ratio = float(np.exp(rng.uniform(np.log(s.ratio[0]), np.log(s.ratio[1]))))
        cw, ch = round(np.sqrt(area * ratio)), round(np.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return image.resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
    return image.resize((size, size), Image.Resampling.BICUBIC)


def _perspective(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A mild random perspective: each corner moves up to 15% of the side."""
    w, h = image.size
    d = 0.15 * np.array([w, h])
    corners = np.array([[0, 0], [0, h], [w, h], [w, 0]], dtype=np.float64)
    moved = corners + rng.uniform(-1, 1, size=(4, 2)) * d
    quad = tuple(float(v) for v in moved.flatten())
    return image.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)


def _erase(out: np.ndarray, rng: np.random.Generator) -> None:
    """Random erasing (Zhong et al. 2020): a rectangle of 2-20% of the area becomes noise."""
    h, w = out.shape[:2]
    area = h * w * rng.uniform(0.02, 0.2)
    ratio = float(np.exp(rng.uniform(np.log(0.3), np.log(3.3))))
    eh, ew = min(h, round(np.sqrt(area / ratio))), min(w, round(np.sqrt(area * ratio)))
    y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
    out[y : y + eh, x : x + ew] = rng.integers(0, 256, size=(eh, ew, 3), dtype=np.uint8)


def _swap_background(
    pixels: np.ndarray, background: tuple[int, int, int], rng: np.random.Generator
) -> Image.Image:
    """The cut-out with its plain background (pixels within a small distance of `background`)
    replaced by a random colour or smooth noise: the network must not rely on the backdrop."""
    diff = np.abs(pixels.astype(np.int16) - np.asarray(background, dtype=np.int16)).max(axis=-1)
    mask = diff <= 8
    if not mask.any():
        return Image.fromarray(pixels)
    h, w = mask.shape
    if rng.random() < 0.5:
        fill = np.broadcast_to(rng.integers(0, 256, size=3, dtype=np.uint8), (h, w, 3))
    else:
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        fill = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
    out = pixels.copy()
    out[mask] = fill[mask]
    return Image.fromarray(out)
