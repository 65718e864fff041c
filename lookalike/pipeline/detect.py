"""Object detection: photo -> boxes with COCO labels and scores, and which of them a catalogue sells.

The seam is the `Detector` Protocol; `YoloxDetector` runs YOLOX-Nano (ONNX, 80 COCO classes) on the
CPU. Pre- and post-processing are plain functions over numpy arrays (`letterbox`, `decode_outputs`,
`nms`) so they can be tested without the model:

- input: the photo letterboxed into `size` x `size` (416, or a smaller photo's own longer side
  rounded up to 32 with `fit_small`; scaled to fit, placed top-left as the YOLOX
  reference code does, padded with grey 114), BGR, raw 0-255 floats, shape (1, 3, size, size);
- output: (1, A, 85) rows, one per anchor point of the strides 8/16/32 grids (A = 3549 at 416 px):
  x/y offsets in grid cells, log w/h in grid cells, objectness, 80 class probabilities (already
  sigmoid-ed by the export); decoded as (offset + cell) * stride and exp(log wh) * stride;
- score = objectness x class probability; per-class NMS; boxes divided by the letterbox scale and
  clipped to the photo, so they are in the photo's pixel coordinates (`lookalike.types.Box`).

`relevant` keeps the labels a catalogue cares about (`LABEL_PRESETS`), and `most_relevant` picks the
object a query photo is most likely about (see `relevance`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict, Unpack, runtime_checkable

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError
from lookalike.types import Box

if TYPE_CHECKING:
    import onnxruntime as ort

    from lookalike.models.store import ModelStore

COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
"""The 80 COCO detection classes in the order of the model's class outputs."""


def _labels(text: str) -> frozenset[str]:
    """The labels of comma-separated `text`."""
    return frozenset(label.strip() for label in text.split(","))


LABEL_PRESETS: dict[str, frozenset[str]] = {
    # Garments are found through the person wearing them (the garment isolation cuts them out of
    # the person box); the accessories COCO knows are objects of their own.
    "fashion": _labels("person, handbag, tie, backpack, suitcase, umbrella"),
    "homeware": _labels(
        "chair, couch, potted plant, bed, dining table, vase, clock, bowl, cup, "
        "wine glass, bottle, book, teddy bear, toaster, microwave, oven, refrigerator, "
        "sink, fork, knife, spoon, scissors"
    ),
    # Produce COCO has a class for, plus what packaged food and drink is taken for: cartons and
    # cans come out as `bottle`, `cup`, `book` or `cell phone` on shelf photos; `bowl` covers tubs.
    # Chosen on the Grocery Store Dataset (docs/parts/isolation.md); `person` (the hand holding the
    # product) is left out on purpose.
    "grocery": _labels(
        "apple, orange, banana, broccoli, carrot, bottle, cup, bowl, wine glass, sandwich, "
        "hot dog, pizza, donut, cake"
    ),
    "electronics": _labels(
        "tv, laptop, mouse, remote, keyboard, cell phone, microwave, oven, toaster, "
        "refrigerator, hair drier, clock"
    ),
    "sports": _labels(
        "bicycle, frisbee, skis, snowboard, sports ball, kite, baseball bat, "
        "baseball glove, skateboard, surfboard, tennis racket, backpack"
    ),
}
"""Per-catalogue kind, the COCO labels whose objects become views. `all` (every label) is `None`."""

_PRESET_NAMES = ", ".join(["all", *sorted(LABEL_PRESETS)])


def preset_labels(name: str) -> frozenset[str] | None:
    """The labels of preset `name`; None for `all` (keep every label).

    Raises LookalikeError listing the valid names for an unknown one.
    """
    if name != "all" and name not in LABEL_PRESETS:
        raise LookalikeError(f"unknown label preset {name!r}; valid presets: {_PRESET_NAMES}")
    return LABEL_PRESETS.get(name)


def parse_labels(text: str) -> frozenset[str] | None:
    """`--labels` text -> labels: a preset name (`fashion`, `all` ...), one COCO label, or
    comma-separated COCO labels. None means every label. LookalikeError for unknown names."""
    text = text.strip()
    if not text or text in ("all", *LABEL_PRESETS):
        return preset_labels(text or "all")
    names = frozenset(x.strip() for x in text.split(",") if x.strip())
    unknown = sorted(names - set(COCO_LABELS))
    if unknown:
        raise LookalikeError(
            f"unknown label(s) {', '.join(map(repr, unknown))}: give COCO labels "
            f"(e.g. person, cup, handbag) or a preset ({_PRESET_NAMES})"
        )
    return names


@dataclass(frozen=True)
class Detection:
    """One detected object: its box in the photo's pixel coordinates, COCO label, score in [0, 1]."""

    box: Box
    label: str
    score: float


@runtime_checkable
class Detector(Protocol):
    """Photo -> detected objects, best score first; boxes in the photo's pixel coordinates."""

    name: str

    def detect(self, image: Image.Image) -> list[Detection]: ...


# --- pre- and post-processing (pure numpy) -------------------------------------------------------


def letterbox(image: Image.Image, size: int, pad_value: int = 114) -> tuple[np.ndarray, float]:
    """The model input for `image` and the scale applied to it.

    Returns a (1, 3, size, size) float32 BGR array with raw 0-255 values: the photo scaled by
    `scale = min(size / w, size / h)` (bilinear), placed at the top-left corner, the rest filled with
    `pad_value`. A box in input pixels maps back to the photo by dividing by `scale`.
    """
    rgb = image.convert("RGB")
    w, h = rgb.size
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.full((size, size, 3), pad_value, dtype=np.float32)
    resized = np.asarray(rgb.resize((nw, nh), Image.Resampling.BILINEAR), dtype=np.float32)
    canvas[:nh, :nw] = resized[:, :, ::-1]  # RGB -> BGR
    return canvas.transpose(2, 0, 1)[None].copy(), scale


def _grid(size: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell coordinates (A, 2) and the stride of each cell (A, 1), in the model's anchor order."""
    cells, steps = [], []
    for stride in strides:
        n = size // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full((n * n, 1), stride))
    return (
        np.concatenate(cells).astype(np.float32),
        np.concatenate(steps).astype(np.float32),
    )


def decode_outputs(
    raw: np.ndarray, size: int, strides: Sequence[int] = (8, 16, 32)
) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX rows (A, 5 + C) -> boxes (A, 4) as x1, y1, x2, y2 in input pixels, scores (A, C).

    score = objectness x class probability. Raises ValueError when A does not match the grids.
    """
    cells, steps = _grid(size, strides)
    if raw.shape[0] != cells.shape[0]:
        raise ValueError(
            f"{raw.shape[0]} anchor rows, expected {cells.shape[0]} for {size} px and strides "
            f"{tuple(strides)}"
        )
    xy = (raw[:, :2] + cells) * steps
    # Clamp before exp: a wild regression output must not overflow to inf.
    wh = np.exp(np.minimum(raw[:, 2:4], 10.0)) * steps
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    scores = raw[:, 4:5] * raw[:, 5:]
    return boxes.astype(np.float32), scores.astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (4,) or (N, 4) `a` with (M, 4) `b` -> (M,) or (N, M)."""
    a2 = np.atleast_2d(a)[:, None, :]
    b2 = np.atleast_2d(b)[None, :, :]
    iw = np.clip(np.minimum(a2[..., 2], b2[..., 2]) - np.maximum(a2[..., 0], b2[..., 0]), 0, None)
    ih = np.clip(np.minimum(a2[..., 3], b2[..., 3]) - np.maximum(a2[..., 1], b2[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a2[..., 2] - a2[..., 0]) * (a2[..., 3] - a2[..., 1])
    area_b = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    out = inter / np.maximum(area_a + area_b - inter, 1e-9)
    return out[0] if np.ndim(a) == 1 else out


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, classes: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    A box is dropped when it overlaps a better box by more than `iou_threshold`; with `classes`,
    only boxes of the same class suppress each other (class-wise NMS).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if classes is not None:
        # Shift each class into its own region of the plane: one pass, no cross-class overlap.
        offset = float(boxes.max()) + 1.0
        boxes = boxes + (classes.astype(np.float32) * offset)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        overlap = iou(boxes[best], boxes[order[1:]])
        order = order[1:][overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


# --- YOLOX-Nano ----------------------------------------------------------------------------------


def fit_side(image_size: tuple[int, int], max_side: int, step: int = 32) -> int:
    """The square network side for a photo of `image_size` = (w, h): its longer side rounded up to
    a multiple of `step` (the largest stride), at least 2 x `step`, at most `max_side`."""
    side = -(-max(image_size) // step) * step
    return int(min(max_side, max(side, 2 * step)))


class DetectorOptions(TypedDict, total=False):
    """`YoloxDetector`'s keyword settings, as `YoloxDetector.from_store` takes them."""

    input_size: int
    pad_value: int
    strides: Sequence[int]
    labels: Sequence[str]
    score_threshold: float
    iou_threshold: float
    max_detections: int
    threads: int
    fit_small: bool


class YoloxDetector:
    """YOLOX (Nano by default) on ONNX Runtime, CPU.

    score_threshold: detections below it are dropped (obj x cls, in [0, 1]).
    iou_threshold: class-wise NMS overlap above which the weaker box is dropped.
    max_detections: at most this many per photo, best first.
    fit_small: a photo whose longer side is below `input_size` runs at that side rounded up to a
        multiple of the largest stride instead of being upscaled into `input_size` (needs the
        `onnx` package to make the graph's input size symbolic; without it every photo runs at
        `input_size`). Upscaling adds no detail, and the network's cost grows with the square of
        its side: a 192x256 fashion photo costs 0.38x at 256 px what it costs at 416 px, with the
        person boxes unchanged (docs/parts/isolation.md, "Speed").
    """

    def __init__(
        self,
        model_path: Path,
        *,
        name: str = "yolox-nano",
        input_size: int = 416,
        pad_value: int = 114,
        strides: Sequence[int] = (8, 16, 32),
        labels: Sequence[str] = COCO_LABELS,
        score_threshold: float = 0.3,
        iou_threshold: float = 0.45,
        max_detections: int = 20,
        threads: int = 0,
        fit_small: bool = True,
    ) -> None:
        from lookalike.models.runtime import dynamic_model_bytes, open_session

        self.name = name
        self.input_size = int(input_size)
        self.pad_value = int(pad_value)
        self.strides = tuple(int(s) for s in strides)
        self.labels = tuple(labels)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        dynamic = dynamic_model_bytes(Path(model_path)) if fit_small else None
        self.fit_small = dynamic is not None
        self._session: ort.InferenceSession = open_session(
            model_path if dynamic is None else dynamic, threads=threads, spinning=dynamic is None
        )
        self._input = self._session.get_inputs()[0].name

    def size_for(self, image_size: tuple[int, int]) -> int:
        """The network side (px) a photo of `image_size` = (w, h) runs at (see `fit_small`)."""
        if not self.fit_small:
            return self.input_size
        return fit_side(image_size, self.input_size, max(self.strides))

    @classmethod
    def from_store(
        cls, models: ModelStore, name: str = "yolox-nano", **options: Unpack[DetectorOptions]
    ) -> YoloxDetector:
        """The detector `name` of the model catalogue, its file resolved (and verified) by `models`.

        Input size, pad value and strides come from the spec's `extra`; `options` override them and
        set thresholds and threads.
        """
        spec = models.spec(name)
        extra = {
            key: spec.extra[key]
            for key in ("input_size", "pad_value", "strides")
            if key in spec.extra and key not in options
        }
        return cls(models.path(name) / spec.files[0].filename, name=name, **extra, **options)

    def detect(self, image: Image.Image) -> list[Detection]:
        """The objects in `image`, best score first (at most `max_detections`)."""
        size = self.size_for(image.size)
        tensor, scale = letterbox(image, size, self.pad_value)
        (raw,) = self._session.run(None, {self._input: tensor})
        boxes, scores = decode_outputs(raw[0], size, self.strides)
        classes = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), classes]
        candidates = np.nonzero(best >= self.score_threshold)[0]
        boxes, best, classes = boxes[candidates], best[candidates], classes[candidates]
        keep = nms(boxes, best, self.iou_threshold, classes)[: self.max_detections]
        w, h = image.size
        out = []
        for i in keep:
            x1, y1, x2, y2 = (boxes[i] / scale).tolist()
            x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
            y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue  # a box that lay in the padding: nothing of the photo is in it
            out.append(Detection(Box(x1, y1, x2, y2), self.labels[int(classes[i])], float(best[i])))
        return out


# --- which objects matter ------------------------------------------------------------------------


def relevant(
    detections: Sequence[Detection],
    labels: Collection[str] | None,
    *,
    min_score: float = 0.0,
) -> list[Detection]:
    """The detections whose label is in `labels` (None keeps every label) and score >= min_score.

    Order is kept.
    """
    return [d for d in detections if (labels is None or d.label in labels) and d.score >= min_score]


def relevance(detection: Detection, image_size: tuple[int, int]) -> float:
    """How likely a query photo is *about* this object, >= 0 (a ranking score, not a probability).

    score x sqrt(area share) x centrality: people frame what they want to find large and near the
    centre; the square root keeps a large faint box from beating a clear mid-sized one.
    Centrality falls linearly from 1 (box centre on the photo centre) to 0.5 (in a corner).
    """
    w, h = image_size
    b = detection.box
    area = max(0.0, b.x2 - b.x1) * max(0.0, b.y2 - b.y1)
    share = area / max(1.0, float(w * h))
    cx, cy = (b.x1 + b.x2) / 2 - w / 2, (b.y1 + b.y2) / 2 - h / 2
    off = math.hypot(cx, cy) / max(1e-9, math.hypot(w / 2, h / 2))
    return detection.score * math.sqrt(share) * (1.0 - 0.5 * min(1.0, off))


def most_relevant(
    detections: Sequence[Detection],
    image_size: tuple[int, int],
    labels: Collection[str] | None = None,
) -> Detection | None:
    """The relevant detection with the highest `relevance`; None when there is none."""
    return max(relevant(detections, labels), key=lambda d: relevance(d, image_size), default=None)
