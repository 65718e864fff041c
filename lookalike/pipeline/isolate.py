"""Isolation: the object inside a box, cut out of its background, as the view the embedder sees.

Two maskers, each a model with its pre/post-processing here and its ONNX session from
`lookalike.models.runtime`:

- `SalientMasker` (U^2-NetP): the salient object of a crop. Input (N, 3, S, S) RGB divided by the
  crop's maximum, then ImageNet mean/std; output 0 (already sigmoid) is min-max normalised per crop
  and resized back, so masks are float32 (H, W) in [0, 1] at the crop's size. The model ships with a
  fixed 1x3x320x320 input; when the `onnx` package is present the input is made dynamic in memory
  so crops run in batches and at a smaller side (`input_size`), see `SalientMasker`.
- `ClothesMasker` (PAN): skin, clothes and hair of the person in a person box. Input
  (1, 3, S, S) RGB / 255, ImageNet mean/std (the box squashed; S = 512, the model's native side, or
  the box's own longer side rounded up to 64 when smaller, the graph rebuilt for S in memory);
  output sigmoid masks, channel 0 skin, 1 clothes, 2 hair, resized back to the box.

`Isolator` turns masks into `Cutout`s (RGBA, cropped with a margin; `Cutout.flatten` puts them on a
plain background). `views_for_image` and `query_view` are what the engine calls: a photo -> the
views to index (one per kept object, the whole photo when nothing relevant is found) and the view a
query searches with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from lookalike.errors import QueryError
from lookalike.types import Box

if TYPE_CHECKING:
    from lookalike.models.store import ModelStore
    from lookalike.pipeline.detect import Detection, Detector

Mode = Literal["none", "salient", "garment"]
"""none: the box crop as is; salient: U^2-NetP mask of the box; garment: PAN clothes x salient."""

Garment = Literal["upper", "lower", "all"]
"""Which garment of a person a fashion catalogue sells: tops (`upper`), trousers and skirts
(`lower`), or every garment on the person (`all`, e.g. dresses and jumpsuits)."""

Colour = tuple[int, int, int]

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# --- boxes ---------------------------------------------------------------------------------------


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


def _pixels(box: Box) -> tuple[int, int, int, int]:
    """Integer crop rectangle covering `box` (at least 1 px each way)."""
    x1, y1 = math.floor(box.x1), math.floor(box.y1)
    x2, y2 = max(x1 + 1, math.ceil(box.x2)), max(y1 + 1, math.ceil(box.y2))
    return x1, y1, x2, y2


# --- sessions ------------------------------------------------------------------------------------


def _dynamic_model_bytes(path: Path) -> bytes | None:
    """The ONNX model at `path` with batch, height and width of its inputs/outputs made symbolic
    (and the anchor count of a detector's (N, anchors, values) output, which follows the side).

    None when the `onnx` package is not installed (then the model runs at its fixed shape). Safe for
    fully convolutional graphs whose resizes take their sizes from `Shape` ops, as U^2-NetP's do.
    """
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "N", "H", "W"
        elif len(dims) == 3:  # else ORT warns on every run that the output's shape differs
            dims[0].dim_param, dims[1].dim_param = "N", "A"
    del model.graph.value_info[:]  # inferred shapes of the fixed graph; ORT re-infers them
    return model.SerializeToString()


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _resized_model_bytes(path: Path, size: int) -> bytes:
    """The fixed-size segmentation model at `path` rebuilt for a square input of `size` px.

    For PAN: its input/output sides are fixed, and so are the `sizes` of the resizes in its feature
    pyramid (constants, or constants concatenated after the batch and channel taken from a `Shape`),
    all computed for the native side. Each spatial constant is scaled by size / native (a new
    initializer, the original may be shared); everything else is untouched. `size` must divide like
    the native side does (a multiple of 64 for PAN's 1/64 level). Needs the `onnx` package.
    """
    import onnx
    from onnx import numpy_helper

    from lookalike.errors import ModelError

    model = onnx.load(str(path))
    graph = model.graph
    native = graph.input[0].type.tensor_type.shape.dim[2].dim_value
    if native <= 0 or size <= 0 or size % 64:
        raise ModelError(f"cannot run a {native} px model at {size} px (use a multiple of 64)")
    for value in (graph.input[0], *graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_value, dims[3].dim_value = size, size
    del graph.value_info[:]
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values.update(
        {
            n.output[0]: numpy_helper.to_array(n.attribute[0].t)
            for n in graph.node
            if n.op_type == "Constant"
        }
    )
    producer = {out: node for node in graph.node for out in node.output}
    made: set[str] = set()

    def scaled(name: str, first_spatial: int) -> str:
        new = f"{name}_at{size}"
        if new not in made:
            arr = values[name].copy()
            arr[first_spatial:] = arr[first_spatial:] * size // native
            graph.initializer.append(numpy_helper.from_array(arr, new))
            made.add(new)
        return new

    for node in graph.node:
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        sizes = node.input[3]
        if sizes in values:  # (N, C, H, W) constant
            node.input[3] = scaled(sizes, 2)
        elif sizes in producer and producer[sizes].op_type == "Concat":
            concat = producer[sizes]  # Concat(Shape(x)[:2], H, W)
            for k, name in enumerate(concat.input):
                if k > 0 and name in values:
                    concat.input[k] = scaled(name, 0)
    # The native sizes no node reads any more (else ORT warns about each one when it loads).
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model.SerializeToString()


def _session(model: Path | bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session on a file or on model bytes, with the project's thread policy."""
    if isinstance(model, Path):
        from lookalike.models.runtime import open_session

        return open_session(model, threads=threads, spinning=False)
    import os

    import onnxruntime as ort

    from lookalike.errors import ModelError

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads if threads > 0 else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # No busy-waiting between runs: the detector, PAN, U^2-NetP and the embedder take turns on the
    # same cores, and a finished session's spinning threads slowed the next one down.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load ONNX model: {exc}") from exc


# --- U^2-NetP ------------------------------------------------------------------------------------


class SalientMasker:
    """U^2-NetP salient-object masks of crops.

    input_size: side the crops are squashed to. 320 is the model's native size; smaller sides
        (e.g. 192) cost about (side / 320)^2 as much and need the dynamic graph (the `onnx` package).
    batch_size: crops per inference call (needs the dynamic graph too).
    fit_small: a crop whose longer side is below `input_size` runs at that side rounded up to a
        multiple of 32 instead of being upscaled (object crops of 348 px grocery photos are
        100-250 px: 1.6-10x cheaper); crops of one side are batched together.
    Without `onnx`, the model runs at 320 one crop at a time whatever is asked.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        input_size: int = 320,
        batch_size: int = 4,
        threads: int = 0,
        dynamic: bool = True,
        fit_small: bool = False,
    ) -> None:
        model: Path | bytes = Path(model_path)
        fixed = True
        if dynamic and (input_size != 320 or batch_size > 1 or fit_small):
            data = _dynamic_model_bytes(Path(model_path))
            if data is not None:
                model, fixed = data, False
        self.input_size = 320 if fixed else int(input_size)
        self.batch_size = 1 if fixed else max(1, int(batch_size))
        self.fit_small = fit_small and not fixed
        self._session = _session(model, threads)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    @classmethod
    def from_store(cls, models: ModelStore, name: str = "u2netp", **options: Any) -> SalientMasker:
        spec = models.spec(name)
        options.setdefault("input_size", int(spec.extra.get("input_size", 320)))
        return cls(models.path(name) / spec.files[0].filename, **options)

    def size_for(self, crop_size: tuple[int, int]) -> int:
        """The network side (px) a crop of `crop_size` = (w, h) runs at."""
        from lookalike.pipeline.detect import fit_side

        return fit_side(crop_size, self.input_size, 32) if self.fit_small else self.input_size

    def tensor(self, crops: Sequence[Image.Image], side: int | None = None) -> np.ndarray:
        """Crops -> (N, 3, S, S) float32: squashed, divided by each crop's max, ImageNet mean/std."""
        s = side or self.input_size
        batch = np.empty((len(crops), 3, s, s), dtype=np.float32)
        for i, crop in enumerate(crops):
            arr = np.asarray(crop.convert("RGB").resize((s, s), Image.Resampling.BILINEAR))
            arr = arr.astype(np.float32) / max(1.0, float(arr.max()))
            batch[i] = ((arr - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)
        return batch

    def masks(self, crops: Sequence[Image.Image]) -> list[np.ndarray]:
        """One float32 (h, w) mask in [0, 1] per crop, at the crop's own size."""
        out: dict[int, np.ndarray] = {}
        by_side: dict[int, list[int]] = {}
        for i, crop in enumerate(crops):
            by_side.setdefault(self.size_for(crop.size), []).append(i)
        for side, indices in by_side.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                tensor = self.tensor([crops[i] for i in chunk], side)
                (pred,) = self._session.run([self._output], {self._input: tensor})
                for i, p in zip(chunk, pred[:, 0], strict=True):
                    lo, hi = float(p.min()), float(p.max())
                    p = (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)
                    out[i] = _resize_mask(p, crops[i].size)
        return [out[i] for i in range(len(crops))]


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 (h, w) mask -> (size[1], size[0]), bilinear, clipped to [0, 1]."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask.astype(np.float32, copy=False)
    img = Image.fromarray(mask.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


# --- PAN clothes / skin / hair -------------------------------------------------------------------


class ClothesMasker:
    """PAN (MobileNetV3) skin / clothes / hair masks of a person crop."""

    CHANNELS = ("skin", "clothes", "hair")
    NATIVE_SIZE = 512

    def __init__(
        self, model_path: Path, *, input_size: int = 512, threads: int = 0, fit_small: bool = True
    ) -> None:
        """input_size: the side crops are squashed to (at most, with `fit_small`); anything but the
        native 512 runs a graph rebuilt for that side (`_resized_model_bytes`, a multiple of 64;
        needs `onnx`).
        fit_small: a crop whose longer side is below `input_size` runs at that side rounded up to a
        multiple of 64 (`fit_side`) instead of being upscaled: the person crops of 192x256 worn
        photos run at 256 px, ~4x cheaper than 512 and as good (docs/parts/isolation.md, "Speed").
        One session per side used, built on first use.
        """
        self.input_size = int(input_size)
        self.fit_small = fit_small and _has_onnx()  # other sides need the graph rebuilt
        self._path = Path(model_path)
        self._threads = threads
        self._sessions: dict[int, Any] = {}
        self._session_for(self.input_size)  # fail now on a bad file or side, not on first crop

    def size_for(self, crop_size: tuple[int, int]) -> int:
        """The network side (px) a crop of `crop_size` = (w, h) runs at."""
        from lookalike.pipeline.detect import fit_side

        return fit_side(crop_size, self.input_size, 64) if self.fit_small else self.input_size

    def _session_for(self, size: int) -> Any:
        if size not in self._sessions:
            model: Path | bytes = self._path
            if size != self.NATIVE_SIZE:
                model = _resized_model_bytes(self._path, size)
            self._sessions[size] = _session(model, self._threads)
        return self._sessions[size]

    @classmethod
    def from_store(
        cls, models: ModelStore, name: str = "pan-clothes-skin-hair", **options: Any
    ) -> ClothesMasker:
        spec = models.spec(name)
        if spec.preprocess is not None:
            options.setdefault("input_size", spec.preprocess.size)
        return cls(models.path(name) / spec.files[0].filename, **options)

    def parts(self, crop: Image.Image) -> np.ndarray:
        """(3, h, w) float32 in [0, 1] at the crop's size: skin, clothes, hair."""
        s = self.size_for(crop.size)
        session = self._session_for(s)
        arr = np.asarray(crop.convert("RGB").resize((s, s), Image.Resampling.BILINEAR))
        x = ((arr.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)
        (pred,) = session.run(None, {session.get_inputs()[0].name: x[None]})
        return np.stack([_resize_mask(np.clip(c, 0, 1), crop.size) for c in pred[0]])


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
    best, best_row = -1.0, None
    start = top + (bottom - top) // 3
    for r in range(start, bottom - 1):
        n1, n2 = cum_n[r - 1], total - cum_n[r - 1]
        if n1 < min_share * total or n2 < min_share * total:
            continue
        m1 = cum_s[r - 1] / n1
        m2 = (cum_s[-1] - cum_s[r - 1]) / n2
        score = n1 * n2 / total * float(((m1 - m2) ** 2).sum())
        if score > best:
            best, best_row = score, r
    if best_row is None:
        return None
    n1 = cum_n[best_row - 1]
    m1 = cum_s[best_row - 1] / n1
    m2 = (cum_s[-1] - cum_s[best_row - 1]) / (total - n1)
    if float(np.sqrt(((m1 - m2) ** 2).sum())) < min_gap:
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

    alpha: float32 (h, w) in [0, 1], the size of `region` in whole pixels (`_pixels(region)`).
    The crop is the bounding box of alpha >= `threshold`, grown by `margin` of its longer side on
    every side (transparent where it leaves the region), then, with `aspect` (width / height), padded
    with transparency to that aspect ratio, object centred. An empty mask gives the whole region
    with zero alpha and coverage 0.
    """
    x1, y1, x2, y2 = _pixels(region)
    crop = np.asarray(image.convert("RGB").crop((x1, y1, x2, y2)))
    h, w = crop.shape[:2]
    if alpha.shape != (h, w):
        raise ValueError(f"alpha is {alpha.shape}, region is {(h, w)}")
    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgba = np.dstack([crop, a8])
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

    def __init__(
        self,
        salient: SalientMasker | None = None,
        clothes: ClothesMasker | None = None,
        *,
        margin: float = 0.05,
        context: float = 0.05,
        min_coverage: float = 0.05,
        aspect: float | None = None,
        garment_salient: bool = False,
        min_clothes: float = 0.3,
        waist: float | None = 0.8,
    ) -> None:
        self.salient_masker = salient
        self.clothes_masker = clothes
        self.garment_salient = garment_salient
        self.min_clothes = min_clothes
        self.waist = waist
        self.margin = margin
        self.context = context
        self.min_coverage = min_coverage
        self.aspect = aspect

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
        **options: Any,
    ) -> Isolator:
        """An isolator with the maskers `modes` need, their files resolved by `models`.

        clothes_size: PAN's (largest) input side, None: the model's native 512.
        clothes_fit_small: PAN runs small crops at their own side (`ClothesMasker` `fit_small`).
        salient_fit_small: the same for U^2-NetP (`SalientMasker` `fit_small`).
        """
        salient = (
            SalientMasker.from_store(
                models,
                input_size=salient_size,
                batch_size=batch_size,
                threads=threads,
                fit_small=salient_fit_small,
            )
            if {"salient", "garment"} & set(modes)
            else None
        )
        clothes = (
            ClothesMasker.from_store(
                models,
                threads=threads,
                fit_small=clothes_fit_small,
                **({"input_size": clothes_size} if clothes_size else {}),
            )
            if "garment" in modes
            else None
        )
        return cls(salient, clothes, **options)

    # -- modes ----------------------------------------------------------------------------------

    def plain(self, image: Image.Image, box: Box | None) -> Cutout:
        """The box crop (or the whole photo) with full alpha: no mask."""
        region = clip_box(box, image.size) if box is not None else _whole(image)
        x1, y1, x2, y2 = _pixels(region)
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
            else _whole(image)
            for b in boxes
        ]
        crops = [image.crop(_pixels(r)) for r in regions]
        masks = self.salient_masker.masks(crops)
        out = []
        for region, mask in zip(regions, masks, strict=True):
            if float(mask.mean()) < self.min_coverage:
                out.append(self.plain(image, region))
                continue
            out.append(cut_out(image, mask, region, margin=self.margin, aspect=self.aspect))
        return out

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
        region = clip_box(person, image.size) if person is not None else _whole(image)
        crop = image.crop(_pixels(region))
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

    def garment(
        self,
        image: Image.Image,
        person: Box | None,
        garment: Garment = "upper",
        *,
        use_salient: bool | None = None,
    ) -> Cutout:
        """The garment worn by the person in `person` (None = the whole photo), cut out.

        When no clothes are found the person box crop is returned (coverage 0), never an empty view.
        """
        return self._garment_cut(
            image, self.garment_parts(image, person, garment, use_salient=use_salient)
        )

    def worn_garment(
        self, image: Image.Image, person: Box | None, garment: Garment = "upper", *, min_skin: float
    ) -> Cutout | None:
        """`garment`, or None when the box shows less skin and hair than `min_skin` of its area:
        nobody wears it (a garment photographed alone, which the detector calls a person)."""
        parts = self.garment_parts(image, person, garment)
        return self._garment_cut(image, parts) if parts.skin_share >= min_skin else None

    def _garment_cut(self, image: Image.Image, parts: GarmentParts) -> Cutout:
        if float((parts.alpha >= 0.5).mean()) < 0.01:
            fallback = self.plain(image, parts.person)
            return replace(fallback, coverage=0.0)
        return cut_out(image, parts.alpha, parts.person, margin=self.margin, aspect=self.aspect)


def _whole(image: Image.Image) -> Box:
    return Box(0.0, 0.0, float(image.size[0]), float(image.size[1]))


# --- views: what the engine indexes and searches with ----------------------------------------------


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
            "detect": self.detect,
            "isolate": self.isolate,
            "labels": sorted(self.labels) if self.labels is not None else None,
            "garment": self.garment,
            "min_score": self.min_score,
            "min_area": self.min_area,
            "max_objects": self.max_objects,
            "include_whole": self.include_whole,
            "background": list(self.background) if self.background is not None else None,
            "margin": self.margin,
            "aspect": self.aspect,
            "fit_small": self.fit_small,
            "min_skin": self.min_skin,
            "salient_fit_small": self.salient_fit_small,
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
    from lookalike.pipeline.detect import relevance, relevant

    w, h = image_size
    area = float(w * h)
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
        return [_plain_view(image, b) for b in boxes]
    if settings.isolate == "salient":
        cuts: list[Cutout | None] = list(isolator.salient(image, boxes))
    else:
        cuts = [
            isolator.worn_garment(image, b, settings.garment, min_skin=settings.min_skin)
            for b in boxes
        ]
    return [c.flatten(settings.background) if c is not None else None for c in cuts]


def _plain_view(image: Image.Image, box: Box | None) -> Image.Image:
    return image if box is None else image.crop(_pixels(clip_box(box, image.size)))


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
    if not views:
        return [whole]
    return [*views, whole] if settings.include_whole else views


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
) -> list[ObjectView]:
    """The view(s) a query photo searches with, the one to use first.

    box: a region the user chose (clipped to the photo; QueryError when it has no area there):
        isolated like a detected object, labelled `box`; detection is skipped.
    all_objects: every kept object (most relevant first, at most `settings.max_objects`), for
        results per object; else only the most relevant one.
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
    objects = kept_objects(detector.detect(image), image.size, settings)
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


ProgressFn = Callable[[str, int, int], None]
