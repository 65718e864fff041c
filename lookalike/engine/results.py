"""What a search answers: its hits, where the time went, and the part of the query photo used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from lookalike.types import Aggregation, ProductHit

if TYPE_CHECKING:
    from lookalike.pipeline.views import ObjectView, ViewSettings


@dataclass(frozen=True)
class SearchResult:
    """Results (one per item, best first) and where the time went, in milliseconds."""

    hits: tuple[ProductHit, ...]
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    mode: Aggregation = "centroid"
    score: str = "cosine"
    """What `ProductHit.score` is: `cosine` similarity, `bm25` text score, or `rrf` fused rank score."""
    query_object: QueryObject | None = None
    """The region of the query photo searched with (None for text and item queries)."""
    objects: tuple[QueryObject, ...] = ()
    """Every relevant object detected in the query photo, most relevant first (pickable in the UI)."""

    @property
    def match(self) -> str | None:
        """The best hit's "same product", "similar" or "no close match" (None: not judged)."""
        return self.hits[0].match if self.hits else None


@dataclass(frozen=True)
class QueryObject:
    """What part of a query photo a search used: a detected object, the user's box, or the whole."""

    label: str
    box: tuple[float, float, float, float]
    score: float


def query_object(view: ObjectView, photo: Image.Image, views: ViewSettings) -> QueryObject:
    from lookalike.pipeline.views import shown_label

    box = view.box.as_list() if view.box is not None else [0.0, 0.0, *map(float, photo.size)]
    return QueryObject(shown_label(view.label, views), tuple(box), float(view.score))  # type: ignore[arg-type]  # box: 4 corners
