"""What indexing passes around: the photos to index, what decoding made of them, what the store
already holds of them, and the payload helpers every writer shares; and what a search answers
(`SearchResult`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from lookalike.store.base import Condition, Filter
from lookalike.types import F32, RESERVED_PAYLOAD_KEYS, Aggregation, Item, ProductHit, Skipped

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.pipeline.views import ObjectView, ViewSettings

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances; total may be 0 when unknown."""

# Engine-owned keys hidden from results; the automatic attributes stay visible (and facetable).
INTERNAL_KEYS = RESERVED_PAYLOAD_KEYS - {"colours", "classes", "labels"}


@dataclass(frozen=True)
class Task:
    item: Item
    image: str


@dataclass(frozen=True)
class Loaded:
    task: Task
    sha256: str | None = None
    image: Image.Image | None = None
    skipped: Skipped | None = None
    unchanged: bool = False
    views: tuple[View, ...] = ()
    words: tuple[str, ...] | None = None
    """OCR words of an unchanged photo read for the first time (only its payload changes)."""


@dataclass(frozen=True)
class View:
    """One view of a decoded catalogue photo, ready to embed."""

    key: str
    box: tuple[float, float, float, float]
    label: str
    score: float
    image: Image.Image | None = field(compare=False, repr=False)
    colours: tuple[str, ...] = ()
    tensor: F32 | None = field(default=None, compare=False, repr=False)
    """The embedder's input, made on the decode threads when the embedder can `prepare` one."""
    words: tuple[str, ...] | None = None
    """Words OCR read on the photo (`settings.ocr`); None when OCR did not run on it."""


EmbeddedBatch = tuple[list[Loaded], F32, list[list[str]]]
"""Loaded photos, the vectors of their views in order (N, dim), and each view's class names."""


class IndexRunner(Protocol):
    """Where decoding and embedding run (this process by default; `lookalike.engine.distributed` spreads
    them over a Ray cluster). The engine writes what it yields to the store, in order."""

    def embedded(
        self,
        engine: Engine,
        tasks: Sequence[Task],
        existing: Mapping[tuple[str, str], Stored],
    ) -> Iterator[EmbeddedBatch]: ...


@dataclass(frozen=True)
class Stored:
    ids: tuple[str, ...]
    content_hash: str
    fields_hash: str
    read: bool = False
    """OCR ran on the photo (its views carry `ocr_words`)."""


NO_VIEWS = Stored((), "", "")

NOT_DETECTED = (None, "image", "box")
"""View labels that did not come from the detector: the whole photo, a user's box."""
SEARCH_TEXT = "search_text"
"""Centroid payload field holding an item's words, BM25-indexed for text queries."""
VISIBLE_VIEWS = Filter((Condition("kind", "eq", "view"), Condition("pending", "ne", True)))
"""Views a search may return: not those of an item still being written (no `pending` = visible,
so indexes from before the flag existed read as before)."""
PENDING_VIEWS = Filter((Condition("kind", "eq", "view"), Condition("pending", "eq", True)))
ALL_VIEWS = Filter((Condition("kind", "eq", "view"),))
"""What view searches see on an index whose `pending` flags are not reliable (manifest
`visibility` 0): every view, as such indexes were always read."""


def view_key(view: ObjectView, image: Image.Image) -> tuple[list[float], str]:
    """(box, key) of a catalogue photo's view: the key names the view within its photo."""
    box = view.box.as_list() if view.box is not None else [0.0, 0.0, *map(float, image.size)]
    key = "full" if view.box is None else f"{view.label}@" + ",".join(f"{c:.0f}" for c in box)
    return box, key


def fields_hash(fields: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(fields), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def item_payload(item: Item) -> dict[str, Any]:
    fields = {k: v for k, v in item.fields.items() if k not in INTERNAL_KEYS}
    return {**fields, "item_id": item.id, "fields_hash": fields_hash(item.fields)}


def product_hit(item_id: str, score: float, payload: Mapping[str, Any]) -> ProductHit:
    fields = {k: v for k, v in payload.items() if k not in INTERNAL_KEYS}
    box = payload.get("box")
    return ProductHit(
        item_id=item_id,
        score=score,
        image=str(payload.get("image", "")),
        fields=fields,
        box=tuple(box) if box and payload.get("kind") == "view" else None,
    )


# -- what a search answers: its hits, where the time went, and the part of the query photo used


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
