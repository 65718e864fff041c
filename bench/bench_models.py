"""The model store and the EfficientNet-Lite2 embedder, opened the way indexing opens them, for
benchmarks that time stages side by side (import from a script run as `python bench/NAME.py`)."""

from __future__ import annotations

from typing import Any


def store_and_lite2() -> tuple[Any, Any]:
    """(ModelStore, Lite2 embedder) from the settings; the embedder without busy-waiting threads
    when `Settings.ort_spinning` says so (the indexing default)."""
    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.pipeline.clip import load_embedder

    s = Settings()
    models = wiring.model_store(s)
    spec = models.spec("efficientnet-lite2")
    return models, load_embedder(spec, models.path(spec.name), spinning=s.models.ort_spinning)
