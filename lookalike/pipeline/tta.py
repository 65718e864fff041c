"""Test-time augmentation of a query photo: embed it as the mean of itself, its mirror image and/or
centre crops (`search.tta`; docs/quality.md has what each mode measured on the grocery photos)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from lookalike.types import F32

if TYPE_CHECKING:
    from PIL import Image

TtaMode = Literal["none", "flip", "crops", "flip+crops"]


def tta_images(image: Image.Image, mode: TtaMode = "flip", crop: float = 0.8) -> list[Image.Image]:
    """The query and its augmentations: "flip" adds the mirror image; "crops" adds a centre crop
    of `crop` of each side; "flip+crops" both (and the mirrored crop). The original comes first."""
    from PIL import ImageOps

    images = [image]
    if mode in ("crops", "flip+crops"):
        w, h = image.size
        dx, dy = round(w * (1 - crop) / 2), round(h * (1 - crop) / 2)
        images.append(image.crop((dx, dy, w - dx, h - dy)))
    if mode in ("flip", "flip+crops"):
        images += [ImageOps.mirror(i) for i in list(images)]
    if mode not in ("none", "flip", "crops", "flip+crops"):
        raise ValueError(f"unknown TTA mode {mode!r}; use none, flip, crops, flip+crops")
    return images


def tta_embed(
    embed: Callable[[Sequence[Image.Image]], F32],
    image: Image.Image,
    mode: TtaMode = "flip+crops",
) -> F32:
    """(1, D) L2-normalised mean of the embeddings of `tta_images(image, mode)` (one batch)."""
    from lookalike.pipeline.embed import l2_normalise

    vectors = embed(tta_images(image, mode))
    return l2_normalise(vectors.mean(axis=0, keepdims=True))
