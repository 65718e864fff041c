"""Faces in a photo: boxes in the photo's pixel coordinates, with the detector's score.

Detection runs on a copy of the photo resized so its longest side is `FaceSettings.detect_size`
(a 12 Mpx photo is searched at ~1.3 Mpx: ~10x less work; small photos are enlarged up to
`max_upscale` so small faces reach the detector's ~80 px window), with a border of `pad` x the
longest side so that faces cut by the frame still fit the window. The border mirrors the photo by
default: half a face cut by the frame becomes a whole, symmetric face that the HOG detector finds
(a grey border does not complete it). Mirroring can also complete a face out of a strip of hair at
the edge, so a box must have `min_inside` of its area inside the photo to count. Boxes are mapped
back to the photo, duplicates (one box mostly inside a better one) are dropped, and faces are
returned largest first: `face=N` in a query refers to this order. A query photo with no face or
with several and none chosen raises `NoFaceError` / `ManyFacesError`, both `QueryError`s: exit code
2 on the CLI, 4xx over HTTP.

Face descriptors: 5-point alignment, then dlib's ResNet (LFW 99.38 %) on a 150x150 chip.

Vectors are L2-normalised (in `lookalike.pipeline.embed.l2_normalise`, the one place that does
it), so the store's cosine similarity s and the distance people reason about agree:
distance = |a - b| = sqrt(2 - 2 s), in [0, 2]. dlib's own "0.6" rule is for raw descriptors;
our calibrated threshold (`FaceSettings.threshold`) is on this normalised scale.

The dlib model files, found inside the `face_recognition_models` package without importing it.

Its `__init__` imports `pkg_resources` (removed from recent setuptools), so the package is located
through its import spec instead; only the `.dat` files under `models/` are read.

Files (CC0, Davis King / dlib):
    shape_predictor_5_face_landmarks.dat       5-point landmarks (eye corners, nose) for alignment
    dlib_face_recognition_resnet_model_v1.dat  ResNet-29 face descriptor, 150x150 chip -> 128-d
    mmod_human_face_detector.dat               MMOD CNN face detector (optional second detector)
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from lookalike.errors import ModelError, QueryError
from lookalike.pipeline.embed import l2_normalise
from lookalike.types import F32, Box

if TYPE_CHECKING:
    from lookalike.faces.settings import FaceSettings

# --- the dlib model files -------------------------------------------------------------------------

PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"

DIM = 128
"""Length of a face descriptor."""


def models_dir() -> Path:
    """The package's `models/` folder. ModelError (with the install command) when it is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    raise ModelError(
        f"the face models are not installed ({PACKAGE} not found): "
        "pip install 'lookalike[faces]' (dlib-bin and face_recognition_models)"
    )


def model_file(name: str) -> Path:
    """The path of one `.dat` file; ModelError when the package lacks it."""
    path = models_dir() / name
    if not path.is_file():
        raise ModelError(f"face model file {path} is missing: reinstall {PACKAGE}")
    return path


@dataclass(frozen=True)
class EmbedderRecord:
    """What makes face vectors comparable: the aligner and descriptor files, and the chip geometry."""

    shape_predictor_sha256: str
    descriptor_sha256: str
    dim: int = DIM
    chip_size: int = 150
    padding: float = 0.25

    @staticmethod
    def current() -> EmbedderRecord:
        from lookalike.models.store import sha256_file  # memoised per (path, size, mtime)

        return EmbedderRecord(
            shape_predictor_sha256=sha256_file(model_file(SHAPE_PREDICTOR)),
            descriptor_sha256=sha256_file(model_file(DESCRIPTOR)),
        )


def require_dlib() -> ModuleType:
    """The `dlib` module; ModelError naming the install command when it is missing."""
    try:
        import dlib
    except ImportError as exc:
        raise ModelError(
            f"dlib is not installed ({exc}): pip install 'lookalike[faces]' (dlib-bin)"
        ) from exc
    return dlib


# --- detection ------------------------------------------------------------------------------------

Rect = tuple[float, float, float, float, float]
"""x1, y1, x2, y2, score in the pixels of the array given to a detector."""

OVERLAP = 0.5
"""A box whose intersection with a better box covers more than this share of the smaller one
is the same face seen twice (HOG's sub-detectors fire on one face at two scales)."""


@dataclass(frozen=True)
class FaceBox:
    """One detected face.

    box: the face clipped to the photo (pixels of the photo it was found in), what people see.
    score: the detector's confidence (HOG: SVM margin, 0 is dlib's default cut; CNN: ~1).
    detector_box: the box as found, possibly reaching past the frame; alignment starts from it.
    """

    box: Box
    score: float
    detector_box: Box

    @property
    def size(self) -> float:
        """Longest side of the box, in pixels."""
        return max(self.box.x2 - self.box.x1, self.box.y2 - self.box.y1)

    def scaled(self, sx: float, sy: float) -> FaceBox:
        """The same face in an image scaled by (sx, sy)."""

        def s(b: Box) -> Box:
            return Box(b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy)

        return FaceBox(s(self.box), self.score, s(self.detector_box))


class NoFaceError(QueryError):
    """The query photo shows no face the detector can find."""


class ManyFacesError(QueryError):
    """The query photo shows several faces and none was chosen.

    `faces` lists them in the order `face=N` refers to (largest first), so a caller can offer the
    choice (draw the boxes, let the user click one) and ask again with `face=N`.
    """

    def __init__(self, message: str, faces: Sequence[FaceBox]) -> None:
        super().__init__(message)
        self.faces = tuple(faces)


class FaceDetector(Protocol):
    """RGB uint8 array (H, W, 3) -> face rectangles in its pixels, any order."""

    name: str

    def detect(self, rgb: np.ndarray) -> list[Rect]: ...


class HogDetector:
    """dlib's frontal face detector (HOG + linear SVM, 5 sub-detectors for pose)."""

    name = "hog"

    def __init__(self, threshold: float = 0.0) -> None:
        dlib = require_dlib()
        self._detector = dlib.get_frontal_face_detector()
        self.threshold = threshold

    def detect(self, rgb: np.ndarray) -> list[Rect]:
        rects, scores, _ = self._detector.run(rgb, 0, self.threshold)
        return [
            (r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s))
            for r, s in zip(rects, scores, strict=True)
        ]


class CnnDetector:
    """dlib's MMOD CNN detector: finds more turned and blurred faces, ~50x slower on a CPU."""

    name = "cnn"

    def __init__(self) -> None:
        dlib = require_dlib()
        self._detector = dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR)))

    def detect(self, rgb: np.ndarray) -> list[Rect]:
        found = self._detector(rgb, 0)
        return [
            (d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, d.confidence)
            for d in found
        ]


def make_detector(settings: FaceSettings) -> FaceDetector:
    """The detector `settings.detector` names."""
    match settings.detector:
        case "hog":
            return HogDetector(settings.det_threshold)
        case "cnn":
            return CnnDetector()
    raise QueryError(f"unknown face detector {settings.detector!r}; use one of: hog, cnn")


def detection_scale(width: int, height: int, settings: FaceSettings) -> float:
    """Factor from the photo to the copy detection runs on (< 1 shrinks, > 1 enlarges)."""
    return min(settings.detect_size / max(width, height), settings.max_upscale)


def find_faces(image: Image.Image, detector: FaceDetector, settings: FaceSettings) -> list[FaceBox]:
    """Every face in `image` (RGB), largest first, boxes in `image`'s pixels."""
    width, height = image.size
    scale = detection_scale(width, height, settings)
    small = image
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    pad = round(settings.pad * max(small.size))
    pixels = with_border(np.asarray(small, dtype=np.uint8), pad, settings.border)
    rects = detector.detect(pixels)
    sx, sy = width / small.width, height / small.height
    # Reflections go before duplicates are suppressed: a face's mirror image next to it may score
    # higher and would otherwise push the real face out.
    photo = Box(pad, pad, pad + small.width, pad + small.height)
    inside = [r for r in rects if _inside_fraction(r, photo) >= settings.min_inside]
    faces = []
    for x1, y1, x2, y2, score in suppress_duplicates(inside):
        found = Box((x1 - pad) * sx, (y1 - pad) * sy, (x2 - pad) * sx, (y2 - pad) * sy)
        clipped = Box(
            max(0.0, found.x1), max(0.0, found.y1), min(width, found.x2), min(height, found.y2)
        )
        if clipped.x2 - clipped.x1 < 2 or clipped.y2 - clipped.y1 < 2:
            continue  # found in the border only
        faces.append(FaceBox(clipped, score, found))
    faces.sort(key=lambda f: (-f.size, f.box.x1, f.box.y1))
    return faces


def with_border(rgb: np.ndarray, pad: int, border: str) -> np.ndarray:
    """`rgb` (H, W, 3) uint8 with `pad` pixels added on each side: mirrored or mid-grey."""
    if pad <= 0:
        return rgb
    widths = ((pad, pad), (pad, pad), (0, 0))
    if border == "grey":
        return np.pad(rgb, widths, constant_values=128)
    # "symmetric" repeats the edge pixel (unlike "reflect") and so works on 1-pixel-wide photos.
    return np.ascontiguousarray(np.pad(rgb, widths, mode="symmetric"))


def _inside_fraction(rect: Rect, photo: Box) -> float:
    """Fraction of `rect`'s area inside `photo` (0 for an empty rectangle)."""
    area = max(0.0, rect[2] - rect[0]) * max(0.0, rect[3] - rect[1])
    iw = min(rect[2], photo.x2) - max(rect[0], photo.x1)
    ih = min(rect[3], photo.y2) - max(rect[1], photo.y1)
    return max(0.0, iw) * max(0.0, ih) / area if area > 0 else 0.0


def suppress_duplicates(rects: Sequence[Rect], overlap: float = OVERLAP) -> list[Rect]:
    """Best-scoring first; a rectangle overlapping a kept one by more than `overlap` of the
    smaller one's area is dropped."""
    kept: list[Rect] = []
    for r in sorted(rects, key=lambda r: -r[4]):
        if all(_overlap(r, k) <= overlap for k in kept):
            kept.append(r)
    return kept


def _overlap(a: Rect, b: Rect) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


# --- descriptors ----------------------------------------------------------------------------------


def distance_from_similarity(similarity: float) -> float:
    """Euclidean distance between two unit vectors whose cosine similarity is `similarity`."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


class DlibFaceEmbedder:
    """Faces of one image -> (N, 128) float32 unit vectors.

    padding: context around the aligned face in the chip (dlib's default, which the network was
    trained with). jitters: > 0 averages that many randomly jittered chips (slower, a little better).
    """

    name = "dlib-resnet-v1"
    dim = DIM

    def __init__(self, *, padding: float = 0.25, jitters: int = 0) -> None:
        dlib = require_dlib()
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(model_file(SHAPE_PREDICTOR)))
        self._net = dlib.face_recognition_model_v1(str(model_file(DESCRIPTOR)))
        self.padding = padding
        self.jitters = jitters
        self._lock = threading.Lock()  # the dlib net keeps scratch buffers: one call at a time

    def embed(self, image: Image.Image | np.ndarray, faces: Sequence[FaceBox]) -> F32:
        """Descriptors of `faces` (boxes in `image`'s pixels), in their order. Shape (N, 128)."""
        if not faces:
            return np.zeros((0, DIM), dtype=np.float32)
        rgb = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        dlib = self._dlib
        shapes = dlib.full_object_detections()
        for face in faces:
            b = face.detector_box
            rect = dlib.rectangle(round(b.x1), round(b.y1), round(b.x2) - 1, round(b.y2) - 1)
            shapes.append(self._shape(rgb, rect))
        with self._lock:
            vectors = self._net.compute_face_descriptor(rgb, shapes, self.jitters, self.padding)
        return l2_normalise(np.array([list(v) for v in vectors], dtype=np.float32))
