"""Isolation: the object inside a box, cut out of its background, as the view the embedder sees.

The masks come from the segmenters (`lookalike.pipeline.segment`); `Isolator` turns them into
`Cutout`s (RGBA, cropped with a margin; `Cutout.flatten` puts them on a plain background).
`lookalike.pipeline.views` decides which views of a photo are indexed and searched with.
The box maths lives here too: boxes given by people or detectors, clipped, parsed, grown, and
turned into pixels.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

import numpy as np
from PIL import Image

from lookalike.errors import QueryError
from lookalike.pipeline.segment import ClothesMasker, ClothesOptions, SalientMasker, SalientOptions
from lookalike.types import Box

if TYPE_CHECKING:
    from lookalike.models.store import ModelStore

Mode = Literal["none", "salient", "garment"]
"""none: the box crop as is; salient: U^2-NetP mask of the box; garment: PAN clothes x salient."""

Garment = Literal["upper", "lower", "all"]
"""Which garment of a person a fashion catalogue sells: tops (`upper`), trousers and skirts
(`lower`), or every garment on the person (`all`, e.g. dresses and jumpsuits)."""

Colour = tuple[int, int, int]


# --- box maths ------------------------------------------------------------------------------------


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


# --- garments -------------------------------------------------------------------------------------


def split_garments(
    clothes: np.ndarray,
    rgb: np.ndarray,
    *,
    min_gap: float = 0.0,
    min_share: float = 0.06,
    band: float | None = 0.1,
    band_gap: float = 30.0,
) -> int | None:
    """The row where the upper garment ends and the lower one begins, or None if there is one garment.

    clothes: (h, w) clothes mask in [0, 1]; rgb: (h, w, 3) uint8, the same crop.
    Each row's clothes pixels are averaged (a roughly perceptual opponent colour space, 0-255
    units); the candidate is the row that maximises the between-part variance of those row means (a
    one-dimensional Otsu on colour), searched below the upper third, each part holding at least
    `min_share` of the clothes pixels. It is kept when the two parts' mean colours differ by at
    least `min_gap` and, with `band`, when the cloth in the bands just above and just below it
    (`band` of the clothes' height each) differs by at least `band_gap`: a real waistline is a
    colour edge *at* the split. The band test is what keeps a one-piece garment with a dark
    collar (the astronaut's suit) whole, where part means alone differ (docs/parts/isolation.md).
    """
    on = clothes >= 0.5
    counts = on.sum(axis=1).astype(np.float64)
    total = counts.sum()
    if total < 50:
        return None
    opp = _opponent(rgb.astype(np.float64))
    sums = (opp * on[..., None]).sum(axis=1)  # (h, 3)
    rows = np.nonzero(counts)[0]
    top, bottom = rows[0], rows[-1] + 1
    cum_n, cum_s = np.cumsum(counts), np.cumsum(sums, axis=0)
    best, best_row, best_gap = -1.0, None, 0.0
    start = top + (bottom - top) // 3
    for r in range(start, bottom - 1):
        n1, n2 = cum_n[r - 1], total - cum_n[r - 1]
        if n1 < min_share * total or n2 < min_share * total:
            continue
        m1 = cum_s[r - 1] / n1
        m2 = (cum_s[-1] - cum_s[r - 1]) / n2
        gap = float(((m1 - m2) ** 2).sum())  # squared distance of the two parts' mean colours
        score = n1 * n2 / total * gap
        if score > best:
            best, best_row, best_gap = score, r, gap
    if best_row is None or math.sqrt(best_gap) < min_gap:
        return None
    if band is not None:
        b = max(3, int(band * (bottom - top)))
        lo, hi = max(0, best_row - b), best_row + b
        above, below = on[lo:best_row], on[best_row:hi]
        if above.sum() < 20 or below.sum() < 20:
            return None
        a_mean = opp[lo:best_row][above].mean(axis=0)
        b_mean = opp[best_row:hi][below].mean(axis=0)
        if float(np.sqrt(((a_mean - b_mean) ** 2).sum())) < band_gap:
            return None
    return int(best_row)


def _opponent(rgb: np.ndarray) -> np.ndarray:
    """RGB (..., 3) -> luminance and two opponent colour axes, roughly perceptual, same units."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([(r + g + b) / 3.0, r - g, (r + g) / 2.0 - b], axis=-1)


# --- cut-outs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cutout:
    """An isolated object.

    image: RGBA; alpha is the object's mask (0 = background), cropped to the mask with a margin.
    box: the region of the photo `image` shows, in the photo's pixel coordinates.
    coverage: share of `box` the mask covers (mean alpha), in [0, 1]; 0 means nothing was found.
    """

    image: Image.Image
    box: Box
    coverage: float

    def flatten(self, background: Colour | None = (255, 255, 255)) -> Image.Image:
        """RGB on a plain `background`; None keeps the RGBA image (transparent background)."""
        if background is None:
            return self.image
        canvas = Image.new("RGB", self.image.size, tuple(background))
        canvas.paste(self.image, mask=self.image.getchannel("A"))
        return canvas


def cut_out(
    image: Image.Image,
    alpha: np.ndarray,
    region: Box,
    *,
    margin: float = 0.05,
    threshold: float = 0.5,
    aspect: float | None = None,
) -> Cutout:
    """The pixels of `region` of `image` with `alpha` as their mask, cropped to the mask.

    alpha: float32 (h, w) in [0, 1], the size of `region` in whole pixels (`pixels(region)`).
    The crop is the bounding box of alpha >= `threshold`, grown by `margin` of its longer side on
    every side (transparent where it leaves the region), then, with `aspect` (width / height), padded
    with transparency to that aspect ratio, object centred. An empty mask gives the whole region
    with zero alpha and coverage 0.
    """
    x1, y1, x2, y2 = pixels(region)
    crop = np.asarray(image.convert("RGB").crop((x1, y1, x2, y2)))
    h, w = crop.shape[:2]
    if alpha.shape != (h, w):
        raise ValueError(f"alpha is {alpha.shape}, region is {(h, w)}")
    rgba = np.dstack([crop, np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)])
    ys, xs = np.nonzero(alpha >= threshold)
    coverage = float(alpha.mean()) if alpha.size else 0.0
    if ys.size == 0:
        return Cutout(Image.fromarray(rgba, "RGBA"), Box(*map(float, (x1, y1, x2, y2))), 0.0)
    bx1, by1, bx2, by2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    pad = round(margin * max(bx2 - bx1, by2 - by1))
    cx1, cy1, cx2, cy2 = bx1 - pad, by1 - pad, bx2 + pad, by2 + pad
    if aspect:
        cw, ch = cx2 - cx1, cy2 - cy1
        if cw / ch < aspect:  # too narrow: widen
            extra = round(ch * aspect) - cw
            cx1, cx2 = cx1 - extra // 2, cx2 + extra - extra // 2
        else:
            extra = round(cw / aspect) - ch
            cy1, cy2 = cy1 - extra // 2, cy2 + extra - extra // 2
    out = np.zeros((cy2 - cy1, cx2 - cx1, 4), dtype=np.uint8)
    sx1, sy1, sx2, sy2 = max(cx1, 0), max(cy1, 0), min(cx2, w), min(cy2, h)
    out[sy1 - cy1 : sy2 - cy1, sx1 - cx1 : sx2 - cx1] = rgba[sy1:sy2, sx1:sx2]
    shown = Box(float(x1 + cx1), float(y1 + cy1), float(x1 + cx2), float(y1 + cy2))
    return Cutout(Image.fromarray(out, "RGBA"), shown, coverage)


@dataclass(frozen=True)
class GarmentParts:
    """The masks behind one garment cut-out, at the person box's size (float32, [0, 1])."""

    person: Box
    skin: np.ndarray
    clothes: np.ndarray
    hair: np.ndarray
    split_row: int | None
    alpha: np.ndarray

    @property
    def skin_share(self) -> float:
        """Share of the person box that is skin or hair: near 0 for a top lying flat that the
        detector took for a person (product shots), 0.04-0.66 for 600 worn photos."""
        return float((np.maximum(self.skin, self.hair) >= 0.5).mean())


class IsolatorOptions(TypedDict, total=False):
    """`Isolator`'s keyword settings, as `Isolator.from_store` takes them."""

    margin: float
    context: float
    min_coverage: float
    aspect: float | None
    garment_salient: bool
    min_clothes: float
    waist: float | None


@dataclass(eq=False)
class Isolator:
    """Masks -> cut-outs. Holds the maskers it needs (None where a mode is not used).

    margin: space around the object, as a fraction of the mask's longer side.
    context: the box is grown by this fraction on each side before the salient mask runs, so an
        object touching its box edge is still seen whole (detector boxes are often tight).
    min_coverage: a salient mask covering less of the box than this is taken as a failure: the plain
        box crop is returned instead (alpha 1), never an empty view.
    aspect: width / height of the cut-outs (padded, object centred); None keeps the mask's own.
    garment_salient: multiply the garment mask by U^2-NetP's mask of the person box. Off: on the
        fashion pairs it did not help (R@1 within noise) and costs a U^2-NetP run per person.
    min_clothes: garment pixels below this mask value are cut.
    waist: where a top ends when no waistline is found, as a share of the person box height
        (None: keep every row). The three were chosen on 400 fashion pairs, see
        docs/parts/isolation.md.
    """

    salient_masker: SalientMasker | None = None
    clothes_masker: ClothesMasker | None = None
    _: KW_ONLY
    margin: float = 0.05
    context: float = 0.05
    min_coverage: float = 0.05
    aspect: float | None = None
    garment_salient: bool = False
    min_clothes: float = 0.3
    waist: float | None = 0.8

    @classmethod
    def from_store(
        cls,
        models: ModelStore,
        modes: Collection[Mode] = ("salient", "garment"),
        *,
        threads: int = 0,
        salient_size: int = 320,
        batch_size: int = 4,
        clothes_size: int | None = None,
        clothes_fit_small: bool = True,
        salient_fit_small: bool = False,
        **options: Unpack[IsolatorOptions],
    ) -> Isolator:
        """An isolator with the maskers `modes` need, their files resolved by `models`.

        clothes_size: PAN's (largest) input side, None: the model's native 512.
        clothes_fit_small: PAN runs small crops at their own side (`ClothesMasker` `fit_small`).
        salient_fit_small: the same for U^2-NetP (`SalientMasker` `fit_small`).
        """
        u2net = SalientOptions(
            input_size=salient_size,
            batch_size=batch_size,
            threads=threads,
            fit_small=salient_fit_small,
        )
        wants_salient = {"salient", "garment"} & set(modes)
        salient = SalientMasker.from_store(models, **u2net) if wants_salient else None
        pan: ClothesOptions = {"threads": threads, "fit_small": clothes_fit_small}
        if clothes_size:
            pan["input_size"] = clothes_size
        clothes = ClothesMasker.from_store(models, **pan) if "garment" in modes else None
        return cls(salient, clothes, **options)

    # -- modes ----------------------------------------------------------------------------------

    def plain(self, image: Image.Image, box: Box | None) -> Cutout:
        """The box crop (or the whole photo) with full alpha: no mask."""
        region = clip_box(box, image.size) if box is not None else whole(image)
        x1, y1, x2, y2 = pixels(region)
        alpha = np.ones((y2 - y1, x2 - x1), dtype=np.float32)
        return cut_out(image, alpha, region, margin=0.0, aspect=self.aspect)

    def salient(self, image: Image.Image, boxes: Sequence[Box | None]) -> list[Cutout]:
        """The salient object of each box (None = the whole photo), masks computed in batches.

        Boxes are clipped to the photo (QueryError for one with no area inside it).
        """
        if self.salient_masker is None:
            raise ValueError("this Isolator has no salient masker")
        regions = [
            expand_box(clip_box(b, image.size), self.context, image.size)
            if b is not None
            else whole(image)
            for b in boxes
        ]
        masks = self.salient_masker.masks([image.crop(pixels(r)) for r in regions])
        return [
            self.plain(image, region)
            if float(mask.mean()) < self.min_coverage
            else cut_out(image, mask, region, margin=self.margin, aspect=self.aspect)
            for region, mask in zip(regions, masks, strict=True)
        ]

    def garment_parts(
        self,
        image: Image.Image,
        person: Box | None,
        garment: Garment = "upper",
        *,
        use_salient: bool | None = None,
        min_clothes: float | None = None,
        waist: float | None = None,
    ) -> GarmentParts:
        """The masks of one person's garment (see `garment`), inside the person box.

        alpha = clothes minus skin and hair (times the salient mask of the person box when
        `use_salient`), restricted to the rows of the wanted garment: above / below the waistline
        `split_garments` finds, or, when it finds none, above / below `waist` x the box height
        (a top and trousers of one colour). Pixels under `min_clothes` are cut (hard edge).
        None takes the isolator's setting for each option.
        """
        if self.clothes_masker is None:
            raise ValueError("this Isolator has no clothes masker")
        use_salient = self.garment_salient if use_salient is None else use_salient
        min_clothes = self.min_clothes if min_clothes is None else min_clothes
        waist = self.waist if waist is None else waist
        region = clip_box(person, image.size) if person is not None else whole(image)
        crop = image.crop(pixels(region))
        skin, clothes, hair = self.clothes_masker.parts(crop)
        alpha = np.clip(clothes - np.maximum(skin, hair), 0.0, 1.0)
        if use_salient and self.salient_masker is not None:
            alpha = alpha * self.salient_masker.masks([crop])[0]
        split = split_garments(alpha, np.asarray(crop.convert("RGB")))
        cut = split if split is not None else (round(waist * alpha.shape[0]) if waist else None)
        if cut is not None and garment != "all":
            if garment == "upper":
                alpha[cut:] = 0.0
            else:
                alpha[:cut] = 0.0
        elif cut is None and garment == "lower":
            alpha = np.zeros_like(alpha)  # one garment only, taken to be the top
        # Below `min_clothes` a pixel is more likely skin or background than cloth: hard edge.
        alpha = np.where(alpha >= min_clothes, alpha, 0.0).astype(np.float32)
        return GarmentParts(region, skin, clothes, hair, split, alpha)

    def garment(self, image: Image.Image, person: Box | None, garment: Garment = "upper") -> Cutout:
        """The garment worn by the person in `person` (None = the whole photo), cut out.

        When no clothes are found the person box crop is returned (coverage 0), never an empty view.
        """
        return self._garment_cut(image, self.garment_parts(image, person, garment))

    def worn_garment(
        self, image: Image.Image, person: Box | None, garment: Garment = "upper", *, min_skin: float
    ) -> Cutout | None:
        """`garment`, or None when the box shows less skin and hair than `min_skin` of its area:
        nobody wears it (a garment photographed alone, which the detector calls a person)."""
        parts = self.garment_parts(image, person, garment)
        return self._garment_cut(image, parts) if parts.skin_share >= min_skin else None

    def _garment_cut(self, image: Image.Image, parts: GarmentParts) -> Cutout:
        if float((parts.alpha >= 0.5).mean()) < 0.01:
            return replace(self.plain(image, parts.person), coverage=0.0)
        return cut_out(image, parts.alpha, parts.person, margin=self.margin, aspect=self.aspect)
