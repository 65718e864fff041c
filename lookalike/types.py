"""Values that flow between the stages. All frozen: a stage never mutates what it was given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
"""A float32 array. Embeddings are (N, D) and L2-normalised by `lookalike.pipeline.embed.l2_normalise`."""

JSONValue = Any  # Any: JSON is untyped by nature
"""One value decoded from JSON (a payload field, a filter operand): str, int, float, bool, None, or
a list/dict of those."""

RESERVED_PAYLOAD_KEYS = frozenset(
    [
        "item_id",
        "image",
        "box",
        "label",
        "det_score",
        "kind",
        "content_hash",
        "view_key",
        "views",
        "fields_hash",
        "search_text",
        "colours",
        "classes",
        "labels",
        "pending",
    ]
)
"""Payload keys the engine owns. Catalogue loaders rename fields that collide with them."""

Aggregation = Literal["views", "centroid"]
"""How views become one answer per item: the best view (`views`) or the mean of the views (`centroid`)."""


@dataclass(frozen=True)
class Item:
    """One product of a catalogue.

    `images` are absolute local paths or http(s) URLs, already resolved against the manifest's folder.
    `fields` are the catalogue's own metadata (title, price, category ...), stored as payload.
    """

    id: str
    images: tuple[str, ...]
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Box:
    """An axis-aligned region in pixel coordinates of the decoded (EXIF-rotated) image."""

    x1: float
    y1: float
    x2: float
    y2: float

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True)
class Skipped:
    """A file or line that was not indexed, and why. Never aborts a run."""

    source: str
    reason: str


@dataclass(frozen=True)
class Hit:
    """One view (point) found by the vector store. `score` is cosine similarity in [-1, 1]."""

    point_id: str
    score: float
    item_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class ProductHit:
    """One item in a result list: its best matching view and the item's metadata."""

    item_id: str
    score: float
    image: str
    fields: Mapping[str, Any]
    box: tuple[float, float, float, float] | None = None
    match: str | None = None
    """"same product", "similar" or "no close match", by the index's calibrated levels
    (`lookalike.engine.levels`); None where the score is no image similarity or the index has none."""

    @property
    def similarity_percent(self) -> float:
        """Cosine similarity mapped to 0-100 for people: 0 % at orthogonal, 100 % at identical."""
        return round(max(0.0, self.score) * 100.0, 1)


@dataclass(frozen=True)
class IndexSummary:
    """What one `Engine.index` run did.

    items: items of the catalogue that are in the index now (searchable: at least one photo
    indexed); items_in_catalogue: items the catalogue lists; items_in_index: every item of the
    index, this catalogue's or not (what `stats` counts).
    """

    items: int
    images_seen: int
    images_embedded: int
    images_unchanged: int
    views_written: int
    items_removed: int
    skipped: tuple[Skipped, ...]
    seconds: float
    items_in_catalogue: int = 0
    items_in_index: int = 0
    repaired: tuple[str, ...] = ()
    """What `repair` found damaged and rebuilt (empty when nothing was)."""
