"""Shared fixtures. Real data and models are found through settings, and their absence FAILS tests:
a missing data set or model must be loud in CI, never a silent skip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lookalike.config import Settings
    from lookalike.models.store import ModelStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The labelled photos (`LOOKALIKE_DATA_DIR`, default: the shared folder beside the checkout)."""
    path = Path(os.environ.get("LOOKALIKE_DATA_DIR") or ROOT.parent / "shared" / "data")
    if not (path / "grocery" / "classes.csv").exists():
        pytest.fail(
            f"test data not found at {path}: set LOOKALIKE_DATA_DIR to the shared data folder"
        )
    return path


@pytest.fixture(scope="session")
def model_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the real models: the user's cache (LOOKALIKE_CACHE_DIR) and mirror."""
    from lookalike.config import Settings

    return Settings(index=tmp_path_factory.mktemp("unused-index"))


@pytest.fixture(scope="session")
def model_store(model_settings: Settings) -> ModelStore:
    """A `ModelStore` on the user's cache and mirror (as the engine opens one)."""
    from lookalike.engine import wiring

    return wiring.model_store(model_settings)


@pytest.fixture(scope="session")
def lite2_dir(model_store: ModelStore) -> Path:
    """The exported EfficientNet-Lite2 ONNX (exported on first use; needs the export extra)."""
    return model_store.path("efficientnet-lite2")


@pytest.fixture(scope="session")
def deepface(data_dir: Path) -> Path:
    """The labelled face photos (deepface's test set: identities.csv and the photos)."""
    root = data_dir / "faces" / "deepface"
    if not (root / "identities.csv").exists():
        pytest.fail(f"face photos not found at {root}")
    return root
