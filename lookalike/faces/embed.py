"""Face descriptors: 5-point alignment, then dlib's ResNet (LFW 99.38 %) on a 150x150 chip.

Vectors are L2-normalised (in `lookalike.pipeline.embed.l2_normalise`, the one place that does
it), so the store's cosine similarity s and the distance people reason about agree:
distance = |a - b| = sqrt(2 - 2 s), in [0, 2]. dlib's own "0.6" rule is for raw descriptors;
our calibrated threshold (`FaceSettings.threshold`) is on this normalised scale.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from lookalike.faces.detect import FaceBox
from lookalike.faces.models import DESCRIPTOR, DIM, SHAPE_PREDICTOR, model_file, require_dlib
from lookalike.pipeline.embed import l2_normalise
from lookalike.types import F32


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
        dlib: Any = require_dlib()
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
