"""What `lookalike stats` reports of an index: items, views, models, size, tuning and levels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lookalike.store.base import where

if TYPE_CHECKING:
    from lookalike.engine.core import Engine


def index_stats(engine: Engine) -> dict[str, Any]:
    """Items, views, models and size of the index."""
    from lookalike.engine.calibration import calibration_levels
    from lookalike.engine.calibration import describe as describe_levels

    store = engine.store
    manifest = engine.manifest
    return {
        "index": str(engine.index_dir),
        "items": store.count(where("kind", "centroid")),
        "views": store.count(where("kind", "view")),
        "embedder": manifest.embedder.name if manifest else None,
        "embedder_sha256": manifest.embedder.sha256 if manifest else None,
        "dim": manifest.dim if manifest else None,
        "created": manifest.created if manifest else None,
        "disk_bytes": store.disk_bytes(),
        "projection": engine.projection_status(exact=False).describe(),
        "match_levels": describe_levels(
            calibration_levels(engine), "tuned" if engine.projection is not None else "image"
        ),
        "network": engine.network_status(exact=False).describe(),
        "fields": engine.fields(),
    }
