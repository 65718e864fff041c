"""One photo -> its cut-out, and a picture of what the engine looked at (`lookalike isolate`).

`isolate_photo` runs the same stages as indexing: detection, the most relevant object (or the
user's box, or the whole photo when nothing relevant is found), then its isolation. `draw_overlay`
paints the cut-out's mask (tinted) and every detection (box, label, score; the chosen one thicker)
over the photo, so a person can check the boxes and masks behind a search.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from lookalike.pipeline.detect import Detection, Detector, relevance, relevant
from lookalike.pipeline.isolate import Cutout, Garment, Isolator, Mode, clip_box
from lookalike.types import Box


@dataclass(frozen=True)
class Isolated:
    """What `isolate_photo` did with one photo.

    detections: everything the detector found (empty without a detector or with a user box).
    chosen: the object cut out: a detection, a `box` Detection (score 1) for the user's region, or
        None for the whole photo.
    cutout: the isolated object (RGBA; `cutout.box` is the region it shows, in photo pixels).
    """

    detections: tuple[Detection, ...]
    chosen: Detection | None
    cutout: Cutout


def isolate_photo(
    image: Image.Image,
    detector: Detector | None,
    isolator: Isolator,
    *,
    mode: Mode = "salient",
    labels: Collection[str] | None = None,
    garment: Garment = "upper",
    box: Box | Sequence[float] | None = None,
    min_score: float = 0.3,
) -> Isolated:
    """The most relevant object of `image` (or `box`), cut out as `mode` says.

    labels: objects that may be chosen (None: any); for `mode="garment"` only `person` is.
    box: the region to cut out, in photo pixels (clipped; QueryError when it has no area there);
        detection is skipped.
    """
    detections: tuple[Detection, ...] = ()
    chosen: Detection | None
    if box is not None:
        chosen = Detection(clip_box(box, image.size), "box", 1.0)
    else:
        if detector is not None:
            detections = tuple(detector.detect(image))
        wanted = {"person"} if mode == "garment" else labels
        candidates = relevant(detections, wanted, min_score=min_score)
        chosen = max(candidates, key=lambda d: relevance(d, image.size)) if candidates else None
    region = chosen.box if chosen is not None else None
    if mode == "none":
        cut = isolator.plain(image, region)
    elif mode == "salient":
        (cut,) = isolator.salient(image, [region])
    else:
        cut = isolator.garment(image, region, garment)
    return Isolated(detections, chosen, cut)


_CHOSEN = (255, 64, 32)
_OTHER = (40, 160, 255)
_MASK = np.array([0, 230, 90], dtype=np.float32)


def draw_overlay(image: Image.Image, result: Isolated, *, tint: float = 0.5) -> Image.Image:
    """RGB picture: `image` with the cut-out's mask tinted green (`tint` = opacity at alpha 1),
    the region outside the cut-out darkened, every detection's box with `label score`, the chosen
    object in red and thicker, the others in blue."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = base.shape[:2]
    alpha = np.zeros((h, w), dtype=np.float32)
    cut = result.cutout
    x0, y0 = math.floor(cut.box.x1), math.floor(cut.box.y1)
    a = np.asarray(cut.image.getchannel("A"), dtype=np.float32) / 255.0
    # Paste the cut-out's alpha where it lies in the photo (its margin may reach past the edges).
    sx1, sy1 = max(0, x0), max(0, y0)
    sx2, sy2 = min(w, x0 + a.shape[1]), min(h, y0 + a.shape[0])
    if sx2 > sx1 and sy2 > sy1:
        alpha[sy1:sy2, sx1:sx2] = a[sy1 - y0 : sy2 - y0, sx1 - x0 : sx2 - x0]
    shade = 0.55 + 0.45 * np.minimum(1.0, alpha * 4)  # what was cut away is dimmed
    out = base * shade[..., None]
    out = out * (1 - tint * alpha[..., None]) + _MASK * (tint * alpha[..., None])
    picture = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(w, h) / 250))
    boxes = list(result.detections)
    if result.chosen is not None and result.chosen not in boxes:
        boxes.append(result.chosen)
    for d in sorted(boxes, key=lambda d: d == result.chosen):  # the chosen one drawn last
        colour = _CHOSEN if d == result.chosen else _OTHER
        b = d.box
        draw.rectangle(
            (b.x1, b.y1, b.x2, b.y2), outline=colour, width=width * (2 if colour == _CHOSEN else 1)
        )
        text = f"{d.label} {d.score:.2f}"
        tx, ty = b.x1 + width, max(0.0, b.y1 - 12) if b.y1 >= 12 else b.y1 + width
        left, top, right, bottom = draw.textbbox((tx, ty), text)
        draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=colour)
        draw.text((tx, ty), text, fill=(255, 255, 255))
    return picture
