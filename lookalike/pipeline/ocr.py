"""Read the text printed on a product: PP-OCR (text detection + recognition) through `rapidocr`.

Three parts, usable separately:

- `TextReader.read(image) -> OcrResult`: the full OCR pass (detector, 180-degree classifier,
  recogniser; the ONNX models ship inside the `rapidocr` wheel, nothing is downloaded). It costs
  about 0.3-1 s per photo on 2 CPU cores, mostly in the detector, whose cost grows with its input
  size (`OcrSettings.det_side`).
- `TextReader.detect(image) -> TextGate`: the cheap gate. Only the text *detector* runs, on a small
  copy of the photo, and the photo is worth reading when the detected text boxes cover at least
  `GateSettings.min_area` of it. Fruit and vegetables have no text; cartons do.
- `normalise_tokens(text)`: OCR lines -> match-ready tokens (accents folded, lower case, punctuation
  split off, short and digit-only tokens dropped), and `trigrams` / `token_similarity` for fuzzy
  matching of OCR errors ("yoghurt" vs "yogburt").

`onnxruntime`, `rapidocr` and `cv2` are imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, cast

from lookalike.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image
    from rapidocr import RapidOCR

Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]
"""A text box: four (x, y) corners in pixels of the image given to the reader, clockwise from
top-left of the text line (lines on a tilted carton are rotated quadrilaterals)."""


@dataclass(frozen=True)
class OcrSettings:
    """How hard the full OCR pass works. Defaults measured on the grocery cartons (docs/parts/accuracy.md).

    det_side: the detector sees the photo scaled so that its *shorter* side is this many pixels
        (up or down; rounded to a multiple of 32 by the detector). Small shop photos (348 px) read
        far more words at 736 than at their native size, at ~3x the cost.
    max_side: photos whose longer side is larger are first shrunk to it; the recogniser reads its
        crops from this copy, so it bounds the cost of very large photos.
    text_score: recognised lines with a lower confidence (0-1) are dropped.
    box_thresh: detector box score threshold (0-1); lower finds fainter text, and more noise.
    use_cls: run the 0/180-degree line classifier (upside-down text on cartons held the wrong way).
    threads: ONNX Runtime intra-op threads; 0 = one per core.
    """

    det_side: int = 736
    max_side: int = 1280
    text_score: float = 0.5
    box_thresh: float = 0.5
    use_cls: bool = True
    threads: int = 0

    def key(self) -> str:
        """A short stable name of these settings, for caches of OCR results."""
        return (
            f"d{self.det_side}-m{self.max_side}-t{self.text_score:g}-b{self.box_thresh:g}"
            f"-c{int(self.use_cls)}"
        )


@dataclass(frozen=True)
class GateSettings:
    """The text gate: detector only, on a small copy of the photo.

    side: shorter side of the detector input, in pixels (the cost is roughly proportional to its square).
    min_area: fraction (0-1) of the photo that detected text boxes must cover for a full read.
    min_boxes: and at least this many boxes.
    max_box_area: boxes covering more than this fraction of the photo are ignored: no text line
        fills a photo, but the detector sometimes boxes a whole smooth object (an apple).
    """

    side: int = 224
    min_area: float = 0.004
    min_boxes: int = 1
    max_box_area: float = 0.25


@dataclass(frozen=True)
class OcrResult:
    """What the OCR read in one photo.

    text: the recognised lines, in reading order, joined by newlines (raw, as recognised).
    words: `normalise_tokens(text)`: the tokens text matching uses.
    boxes: one `Quad` per line, in pixels of the image that was passed in.
    ms: wall time of the read, in milliseconds.
    scores: the recogniser's confidence (0-1) per line.
    """

    text: str
    words: tuple[str, ...]
    boxes: tuple[Quad, ...]
    ms: float
    scores: tuple[float, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self.text.split("\n")) if self.text else ()


@dataclass(frozen=True)
class TextGate:
    """The gate's decision for one photo.

    has_text: True when a full OCR read is worth its cost.
    area: fraction (0-1) of the photo covered by detected text boxes (overlaps counted twice).
    boxes: number of text boxes found.
    ms: wall time of the detection, in milliseconds.
    box_areas: every detected box's share (0-1) of the photo, ignored ones included, for tuning.
    """

    has_text: bool
    area: float
    boxes: int
    ms: float
    box_areas: tuple[float, ...] = ()


# ---------------------------------------------------------------------------------------------
# Token normalisation (pure)
# ---------------------------------------------------------------------------------------------

_SPLIT = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower case with accents removed and ligatures expanded ("ÄPPLE" -> "apple", "ß" -> "ss").

    OCR of the same carton returns "ÄPPLE" in one photo and "APPLE" in the next, so accents carry
    no evidence; characters outside Latin letters and digits (the Chinese recogniser sometimes
    hallucinates CJK glyphs on textures) disappear in `normalise_tokens`.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise_tokens(
    text: str | Sequence[str], *, min_len: int = 3, keep_numbers: bool = False
) -> tuple[str, ...]:
    """OCR text (one string or a sequence of lines) -> tokens, in order, duplicates kept.

    Folded to lower-case ASCII letters and digits (`fold`), split on everything else; tokens
    shorter than `min_len` characters are dropped (1-2 letter OCR fragments are mostly noise), and
    so are tokens without a letter unless `keep_numbers` (prices and dates dominate the digits
    in shop photos).
    """
    if not isinstance(text, str):
        text = "\n".join(text)
    return tuple(
        token
        for token in _SPLIT.split(fold(text))
        if len(token) >= min_len and (keep_numbers or any("a" <= ch <= "z" for ch in token))
    )


def trigrams(token: str) -> frozenset[str]:
    """Character trigrams of `token` padded with one `#` each side ("milk" -> #mi mil ilk lk#)."""
    padded = f"#{token}#"
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def token_similarity(a: str, b: str) -> float:
    """Dice overlap (0-1) of the two tokens' padded trigrams; 1.0 for equal tokens.

    Tolerates one or two OCR substitutions in a long word ("yoghurt"/"yogburt" -> 0.56),
    not in a short one ("milk"/"mjlk" -> 0.4).
    """
    if a == b:
        return 1.0
    ta, tb = trigrams(a), trigrams(b)
    return 2.0 * len(ta & tb) / (len(ta) + len(tb)) if ta and tb else 0.0


def _line_height(quad: Quad) -> float:
    # The shorter side of the (rotated) box: the height of the letters, whatever the tilt.
    (x0, y0), (x1, y1), (x2, y2), _ = quad
    return min(math.hypot(x1 - x0, y1 - y0), math.hypot(x2 - x1, y2 - y1))


def token_weights(
    lines: Sequence[str], boxes: Sequence[Quad], power: float = 1.0
) -> dict[str, float]:
    """Each normalised token -> (height of its tallest line / tallest line in the photo) ** power.

    In a shop photo the product held up to the camera has the largest letters and the shelf
    around it (labels, neighbouring products) the smallest, so size says which words belong to
    the product. `power` 0 weighs every token 1.0. `lines` and `boxes` are aligned (as in
    `OcrResult.lines` and `OcrResult.boxes`); tokens come from `normalise_tokens` of each line.
    """
    heights = [_line_height(b) for b in boxes]
    tallest = max(heights, default=0.0)
    weights: dict[str, float] = {}
    for line, height in zip(lines, heights, strict=True):
        w = 1.0 if power == 0 or tallest <= 0 else (height / tallest) ** power
        for token in normalise_tokens(line):
            weights[token] = max(w, weights.get(token, 0.0))
    return weights


# ---------------------------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------------------------


def _silence_rapidocr() -> None:
    import logging

    # rapidocr installs its own INFO handler on the "RapidOCR" logger at import time.
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)


def _engine(det_side: int, settings: OcrSettings) -> RapidOCR:
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise ModelError("OCR needs the `rapidocr` package (pip install rapidocr)") from exc
    _silence_rapidocr()
    threads = settings.threads if settings.threads > 0 else -1
    params = {
        "Global.log_level": "error",
        "Global.text_score": settings.text_score,
        "Global.use_cls": settings.use_cls,
        "Global.max_side_len": max(settings.max_side, det_side),
        "Det.limit_type": "min",
        "Det.limit_side_len": det_side,
        "Det.box_thresh": settings.box_thresh,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }
    try:
        engine = RapidOCR(params=params)
    except Exception as exc:  # rapidocr raises its own untyped errors
        raise ModelError(f"cannot start the OCR engine: {exc}") from exc
    _silence_rapidocr()
    return engine


def _shrink(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """`image` (RGB) with its longer side at most `max_side`, and the factor applied to it."""
    from PIL import Image as PILImage

    image = image.convert("RGB") if image.mode != "RGB" else image
    longest = max(image.size)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, PILImage.Resampling.BILINEAR), scale


def _quads(boxes: np.ndarray | None, scale: float) -> tuple[Quad, ...]:
    if boxes is None:
        return ()
    # cast: the OCR model's boxes are untyped arrays of four (x, y) points
    return tuple(
        cast(Quad, tuple((float(x) / scale, float(y) / scale) for x, y in box)) for box in boxes
    )


def _polygon_area(quad: Quad) -> float:
    # Shoelace formula: detector boxes are rotated rectangles, not axis-aligned.
    pairs = zip(quad, quad[1:] + quad[:1], strict=True)
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairs)) / 2.0


class TextReader:
    """PP-OCR on photos: `read` (full OCR), `detect` (the gate), `read_if_text` (both).

    One instance holds two rapidocr engines (the gate's detector at `GateSettings.side` and the
    full pipeline at `OcrSettings.det_side`), created on first use. Calls are serialised by a lock:
    rapidocr keeps per-call state on the engine, and the ONNX sessions already use every core.
    """

    def __init__(self, settings: OcrSettings | None = None, gate: GateSettings | None = None):
        self.settings = settings or OcrSettings()
        self.gate = gate or GateSettings()
        self._lock = threading.Lock()

    @cached_property
    def _full_engine(self) -> RapidOCR:
        return _engine(self.settings.det_side, self.settings)

    @cached_property
    def _det_engine(self) -> RapidOCR:
        return _engine(self.gate.side, self.settings)

    def read(self, image: Image.Image) -> OcrResult:
        """Full OCR of one RGB photo (any size; see `OcrSettings`). Never raises on a photo without
        text: that is an empty result. Raises ModelError when the OCR engine cannot start."""
        start = time.perf_counter()
        small, scale = _shrink(image, self.settings.max_side)
        with self._lock:
            out = self._full_engine(
                small, use_det=True, use_cls=self.settings.use_cls, use_rec=True
            )
        texts = tuple(getattr(out, "txts", None) or ())
        scores = tuple(float(s) for s in (getattr(out, "scores", None) or ()))
        boxes = _quads(getattr(out, "boxes", None) if texts else None, scale)
        text = "\n".join(t.strip() for t in texts)
        ms = (time.perf_counter() - start) * 1000.0
        return OcrResult(text=text, words=normalise_tokens(text), boxes=boxes, ms=ms, scores=scores)

    def detect(self, image: Image.Image) -> TextGate:
        """The gate: text detector only, at `GateSettings.side`; no recognition."""
        start = time.perf_counter()
        # Shrink so the shorter side is `side`: the detector only upscales on its own.
        shorter = min(image.size) or 1
        small, _ = _shrink(image, max(32, round(max(image.size) * self.gate.side / shorter)))
        with self._lock:
            out = self._det_engine(small, use_det=True, use_cls=False, use_rec=False)
        total = float(small.width * small.height) or 1.0
        shares = tuple(_polygon_area(q) / total for q in _quads(getattr(out, "boxes", None), 1.0))
        kept = [a for a in shares if a <= self.gate.max_box_area]
        area = sum(kept)
        ms = (time.perf_counter() - start) * 1000.0
        has_text = len(kept) >= self.gate.min_boxes and area >= self.gate.min_area
        return TextGate(has_text, area, len(kept), ms, shares)

    def read_if_text(self, image: Image.Image) -> tuple[TextGate, OcrResult | None]:
        """The gate, then a full read only when it says the photo carries text."""
        gate = self.detect(image)
        return gate, (self.read(image) if gate.has_text else None)
