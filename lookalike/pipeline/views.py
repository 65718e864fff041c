"""Views: what the engine indexes and searches with. `views_for_image` and `query_views` are what
the engine calls: a photo -> the views to index (one per kept object, the whole photo when nothing
relevant is found) and the view(s) a query searches with.

For `lookalike isolate`, one photo -> its cut-out, and a picture of what the engine looked at:
`isolate_photo` runs the same stages as indexing: detection, the most relevant object (or the
user's box, or the whole photo when nothing relevant is found), then its isolation. `draw_overlay`
paints the cut-out's mask (tinted) and every detection (box, label, score; the chosen one thicker)
over the photo, so a person can check the boxes and masks behind a search.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

from lookalike.pipeline.detect import Detection, Detector, relevance, relevant
from lookalike.pipeline.isolate import Colour, Cutout, Garment, Isolator, Mode, clip_box, pixels
from lookalike.types import Box


@dataclass(frozen=True)
class ViewSettings:
    """How a photo becomes views. Recorded in the index (`to_dict`): vectors made otherwise differ.

    detect: run the detector; False makes the whole photo the only view.
    isolate: what to do with each kept object (`Mode`).
    labels: COCO labels whose objects are kept (None: every label).
    garment: for `isolate="garment"`, which garment of each person.
    min_score: detections below are ignored.
    min_area: objects smaller than this share of the photo are ignored (too small to embed well).
    max_objects: at most this many objects per catalogue photo (most relevant first).
    include_whole: also index the whole photo as a view when objects were found.
    background: colour the cut-outs are flattened on; None keeps them transparent (RGBA).
    margin, aspect: see `Isolator`.
    fit_small: the detector and PAN run small photos / crops at their own side instead of
        upscaling them to the networks' native sizes (faster; the masks differ slightly, so it is
        recorded: indexes from before it existed read as False and keep the native sizes).
    min_skin: with `isolate="garment"`, a person box with less skin and hair than this share of
        its area is nobody wearing anything: YOLOX calls 269 of the 600 fashion product shots
        (tops alone on white) a person; at 0.02 it drops 219 of those and none of 600 worn photos.
        The photo then keeps its whole view only, like the other product shots. Indexes from
        before it existed read as 0.0 (every person box cut out).
    salient_fit_small: `fit_small` for U^2-NetP's object crops (added after `fit_small`; indexes
        from before read as False: their salient masks were made at 320 px).
    """

    detect: bool = True
    isolate: Mode = "none"
    labels: frozenset[str] | None = None
    garment: Garment = "upper"
    min_score: float = 0.3
    min_area: float = 0.02
    max_objects: int = 3
    include_whole: bool = True
    background: Colour | None = (255, 255, 255)
    margin: float = 0.05
    aspect: float | None = None
    fit_small: bool = True
    min_skin: float = 0.02
    salient_fit_small: bool = True

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "labels": sorted(self.labels) if self.labels is not None else None,
            "background": list(self.background) if self.background is not None else None,
        }


@dataclass(frozen=True)
class ObjectView:
    """One view of a photo: what the embedder sees, and where it came from.

    box: the detected (or user-given) box in photo pixels; None for the whole photo.
    label, score: the detector's label and score; `"image"` and 1.0 for the whole photo, `"box"`
        and 1.0 for a user-given box.
    image: RGB (or RGBA when the background is transparent), ready for the embedder.
    """

    box: Box | None
    label: str
    score: float
    image: Image.Image = field(compare=False, repr=False)


GARMENT_NAMES: dict[str, str] = {"upper": "top", "lower": "trousers or skirt", "all": "garment"}
"""What a person box cut as a garment is called where people read it (`shown_label`)."""


def shown_label(label: str, settings: ViewSettings) -> str:
    """A view's label for people: under garment isolation a `person` box stands for the garment
    cut out of it (what the shop sells), so it is named after the garment, not "person"."""
    if settings.isolate == "garment" and label == "person":
        return GARMENT_NAMES.get(settings.garment, "garment")
    return label


def kept_objects(
    detections: Sequence[Detection], image_size: tuple[int, int], settings: ViewSettings
) -> list[Detection]:
    """The detections that become views: relevant label, score and size; most relevant first."""
    area = float(image_size[0] * image_size[1])
    kept = [
        d
        for d in relevant(detections, settings.labels, min_score=settings.min_score)
        if (d.box.x2 - d.box.x1) * (d.box.y2 - d.box.y1) >= settings.min_area * area
    ]
    return sorted(kept, key=lambda d: relevance(d, image_size), reverse=True)


def _isolate(
    image: Image.Image,
    boxes: Sequence[Box | None],
    isolator: Isolator | None,
    settings: ViewSettings,
) -> list[Image.Image | None]:
    """The view image of each box (None = whole photo) under `settings.isolate`; None for a
    person box nobody wears a garment in (`ViewSettings.min_skin`)."""
    if settings.isolate == "none" or isolator is None:
        return [image if b is None else image.crop(pixels(clip_box(b, image.size))) for b in boxes]
    if settings.isolate == "salient":
        cuts: list[Cutout | None] = list(isolator.salient(image, boxes))
    else:
        cuts = [
            isolator.worn_garment(image, b, settings.garment, min_skin=settings.min_skin)
            for b in boxes
        ]
    return [c.flatten(settings.background) if c is not None else None for c in cuts]


def views_for_image(
    image: Image.Image,
    detector: Detector | None,
    isolator: Isolator | None,
    settings: ViewSettings,
) -> list[ObjectView]:
    """The views to index for one catalogue photo.

    One view per kept object (`kept_objects`, at most `max_objects`), isolated as
    `settings.isolate` says, plus the whole photo when `include_whole`; when nothing is kept (or
    detection is off) the whole photo is the only view. The whole-photo view is never masked:
    product shots on white index well as they are, and shelf photos lose their context when masked.
    For `isolate="garment"` only `person` boxes are cut as garments; other kept objects (bags,
    ties) are salient cut-outs.
    """
    whole = ObjectView(None, "image", 1.0, image)
    if not settings.detect or detector is None:
        return [whole]
    objects = kept_objects(detector.detect(image), image.size, settings)[: settings.max_objects]
    if not objects:
        return [whole]
    views = _object_views(image, objects, isolator, settings)
    return [*views, whole] if views and settings.include_whole else views or [whole]


def _object_views(
    image: Image.Image,
    objects: Sequence[Detection],
    isolator: Isolator | None,
    settings: ViewSettings,
) -> list[ObjectView]:
    if settings.isolate == "garment":
        people = [d for d in objects if d.label == "person"]
        others = [d for d in objects if d.label != "person"]
        images = _isolate(image, [d.box for d in people], isolator, settings)
        images += _isolate(
            image, [d.box for d in others], isolator, replace(settings, isolate="salient")
        )
        ordered = [*people, *others]
    else:
        ordered = list(objects)
        images = _isolate(image, [d.box for d in ordered], isolator, settings)
    return [
        ObjectView(d.box, d.label, d.score, im)
        for d, im in zip(ordered, images, strict=True)
        if im is not None
    ]


def query_views(
    image: Image.Image,
    detector: Detector | None,
    isolator: Isolator | None,
    settings: ViewSettings,
    *,
    box: Box | Sequence[float] | None = None,
    all_objects: bool = False,
    detections: Sequence[Detection] | None = None,
) -> list[ObjectView]:
    """The view(s) a query photo searches with, the one to use first.

    box: a region the user chose (clipped to the photo; QueryError when it has no area there):
        isolated like a detected object, labelled `box`; detection is skipped.
    all_objects: every kept object (most relevant first, at most `settings.max_objects`), for
        results per object; else only the most relevant one.
    detections: the detector's answer for this photo when the caller already has it (a search
        also lists the photo's objects: one detector pass serves both).
    Falls back to the whole photo (label `image`) when detection is off or finds nothing relevant.
    """
    if box is not None:
        region = clip_box(box, image.size)
        # The user chose the region: cut its garment out even where nobody seems to wear it.
        (view,) = _isolate(image, [region], isolator, replace(settings, min_skin=0.0))
        assert view is not None
        return [ObjectView(region, "box", 1.0, view)]
    whole = ObjectView(None, "image", 1.0, image)
    if not settings.detect or detector is None:
        return [whole]
    found = detector.detect(image) if detections is None else detections
    objects = kept_objects(found, image.size, settings)
    if not objects:
        return [whole]
    if all_objects:
        return _object_views(image, objects[: settings.max_objects], isolator, settings) or [whole]
    # The most relevant object that makes a view (a garment nobody wears does not).
    for obj in objects[: settings.max_objects]:
        views = _object_views(image, [obj], isolator, settings)
        if views:
            return views
    return [whole]


# --- one photo -> its cut-out, and a picture of what the engine looked at (`lookalike isolate`) ----


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
    detections = tuple(detector.detect(image)) if box is None and detector is not None else ()
    if box is not None:
        chosen: Detection | None = Detection(clip_box(box, image.size), "box", 1.0)
    else:
        wanted = {"person"} if mode == "garment" else labels
        candidates = relevant(detections, wanted, min_score=min_score)
        chosen = max(candidates, key=lambda d: relevance(d, image.size), default=None)
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
