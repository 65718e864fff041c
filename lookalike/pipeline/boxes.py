"""Box maths: boxes given by people or detectors, clipped, parsed, grown, and turned into pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

from lookalike.errors import QueryError
from lookalike.types import Box


def clip_box(box: Box | Sequence[float], size: tuple[int, int], *, min_side: float = 2.0) -> Box:
    """`box` clipped to an image of `size` = (width, height), corners put in order.

    Raises QueryError when the box is not four finite numbers or less than `min_side` pixels of it
    (in either direction) lie inside the image: a box wholly outside, or of zero area.
    """
    values = box.as_list() if isinstance(box, Box) else list(box)
    if len(values) != 4:
        raise QueryError(f"a box is four numbers x1,y1,x2,y2; got {len(values)}: {values}")
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise QueryError(f"a box is four numbers x1,y1,x2,y2; got {values}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise QueryError(f"box {values} has a coordinate that is not a finite number")
    w, h = size
    x1, x2 = sorted((min(max(x1, 0.0), w), min(max(x2, 0.0), w)))
    y1, y2 = sorted((min(max(y1, 0.0), h), min(max(y2, 0.0), h)))
    if x2 - x1 < min_side or y2 - y1 < min_side:
        raise QueryError(
            f"box {values} has no area inside the {w}x{h} photo "
            f"(at least {min_side:g} px each way is needed)"
        )
    return Box(x1, y1, x2, y2)


def parse_box(text: str) -> Box:
    """`"x1,y1,x2,y2"` (pixels) -> Box, unclipped. QueryError when it is not four numbers."""
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise QueryError(f"--box wants four numbers x1,y1,x2,y2, got {text!r}") from None
    if len(values) != 4:
        raise QueryError(f"--box wants four numbers x1,y1,x2,y2, got {text!r}")
    return Box(*values)


def expand_box(box: Box, fraction: float, size: tuple[int, int]) -> Box:
    """`box` grown by `fraction` of its width/height on every side, clipped to the image."""
    dx, dy = (box.x2 - box.x1) * fraction, (box.y2 - box.y1) * fraction
    w, h = size
    return Box(
        max(0.0, box.x1 - dx), max(0.0, box.y1 - dy), min(w, box.x2 + dx), min(h, box.y2 + dy)
    )


def pixels(box: Box) -> tuple[int, int, int, int]:
    """Integer crop rectangle covering `box` (at least 1 px each way)."""
    x1, y1 = math.floor(box.x1), math.floor(box.y1)
    x2, y2 = max(x1 + 1, math.ceil(box.x2)), max(y1 + 1, math.ceil(box.y2))
    return x1, y1, x2, y2


def whole(image: Image.Image) -> Box:
    return Box(0.0, 0.0, float(image.size[0]), float(image.size[1]))
