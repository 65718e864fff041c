"""The seam between the engine and a vector database.

A `Store` holds points: one id, named vectors (`image`, later `text` ...) and a JSON payload.
Every backend passes the same contract suite (`tests/contract/test_store_contract.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from lookalike.types import F32, Hit, JSONValue

IndexKind = Literal["keyword", "integer", "float", "text", "bool"]


@dataclass(frozen=True)
class PointRecord:
    """A point as written to or read from a store. Vectors are 1-D float32, L2-normalised."""

    id: str
    vectors: Mapping[str, F32] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)

    def hit(self, score: float) -> Hit:
        """This point found with `score`, as a Hit."""
        return Hit(self.id, score, str(self.payload.get("item_id", "")), dict(self.payload))


@dataclass(frozen=True)
class Condition:
    """One test on a payload field.

    op: `eq` / `ne` (value: str | int | float | bool), `in` / `not_in` (value: tuple of str or int),
    `range` (any of gt, gte, lt, lte).
    """

    field: str
    op: Literal["eq", "ne", "in", "not_in", "range"]
    value: JSONValue = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Reference semantics, used by the exact in-memory store and to check the others.

        A list matches by any of its values; null and a missing field match no value (so every
        `ne` / `not_in`); a dotted field (`specs.colour`) reads inside nested objects; numbers
        compare as numbers (2 == 2.0) but a boolean is never a number (True != 1).
        """
        values = field_values(payload, self.field)
        if not values:
            return self.op in ("ne", "not_in")
        if self.op == "range":
            return any(self._in_range(v) for v in values)
        wanted = (self.value,) if self.op in ("eq", "ne") else self.value
        found = any(_same(v, c) for v in values for c in wanted)
        return found if self.op in ("eq", "in") else not found

    def _in_range(self, v: JSONValue) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        return (
            (self.gt is None or v > self.gt)
            and (self.gte is None or v >= self.gte)
            and (self.lt is None or v < self.lt)
            and (self.lte is None or v <= self.lte)
        )


def field_values(payload: Mapping[str, Any], path: str) -> list[JSONValue]:
    """The values of a (dotted) payload field, lists flattened, nulls dropped: what filters test."""
    current: list[JSONValue] = [payload]
    for part in path.split("."):
        current = [o[part] for o in flatten(current) if isinstance(o, Mapping) and part in o]
    return [v for v in flatten(current) if v is not None]


def flatten(values: list[JSONValue]) -> list[JSONValue]:
    """`values` with each list replaced by its items (one level)."""
    return [x for v in values for x in (v if isinstance(v, list) else [v])]


def _same(a: JSONValue, b: JSONValue) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


@dataclass(frozen=True)
class Filter:
    """All conditions must hold (AND). Evaluated inside the vector search, not after it."""

    conditions: tuple[Condition, ...] = ()

    def __and__(self, other: Filter | None) -> Filter:
        if other is None:
            return self
        return Filter(self.conditions + other.conditions)

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return all(c.matches(payload) for c in self.conditions)


def where(field_name: str, value: JSONValue) -> Filter:
    """Shorthand for a one-condition equality filter."""
    return Filter((Condition(field_name, "eq", value),))


class Store(Protocol):
    """A vector database holding one collection of points."""

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Insert or replace points by id. Durable when it returns (crash-safe)."""

    def delete(self, ids: Sequence[str]) -> None: ...

    def delete_where(self, flt: Filter) -> None: ...

    def search(
        self, vector: F32, *, using: str = "image", limit: int = 10, flt: Filter | None = None
    ) -> list[Hit]:
        """Nearest points by cosine similarity, best first."""
        return self._nearest(vector, using, limit, flt, None)

    def _nearest(
        self, vector: F32, using: str, limit: int, flt: Filter | None, fields: list[str] | None
    ) -> list[Hit]:
        """`search`, with only `fields` of the payloads when given (a backend may return more)."""

    def search_groups(
        self,
        vector: F32,
        *,
        using: str = "image",
        groups: int = 10,
        group_by: str = "item_id",
        flt: Filter | None = None,
    ) -> list[Hit]:
        """The best point of each of the `groups` best groups (one per distinct `group_by` value).

        This default over-fetches `_nearest` and groups here, widening until it has enough groups.
        It groups on the key alone, then fetches the winners' payloads: moving whole payloads of the
        over-fetched points costs more than the vector search itself.
        """
        limit = max(groups * 4, 32)
        while True:
            hits = self._nearest(vector, using, limit, flt, [group_by])
            best: dict[JSONValue, Hit] = {}
            for h in hits:
                key = h.payload.get(group_by)
                if key is not None and key not in best:
                    best[key] = h
                    if len(best) == groups:
                        break
            if len(best) == groups or len(hits) < limit:
                break
            limit *= 4
        records = {r.id: r for r in self.retrieve([h.point_id for h in best.values()])}
        return [records[h.point_id].hit(h.score) for h in best.values()]

    def text_search(
        self, field_name: str, query: str, *, limit: int = 10, flt: Filter | None = None
    ) -> list[Hit]:
        """BM25 over the words of payload field `field_name` (a `text` index), best first.

        Words are lower-cased and stemmed (English); points without any query word are not returned.
        """

    def count(self, flt: Filter | None = None) -> int: ...

    def scroll(
        self,
        flt: Filter | None = None,
        *,
        fields: Sequence[str] | None = None,
        with_vectors: bool = False,
    ) -> Iterator[PointRecord]:
        """Every point matching `flt`; only `fields` of the payload when given."""
        return self._scroll(flt, fields, with_vectors)

    def _scroll(
        self, flt: Filter | None, fields: Sequence[str] | None, with_vectors: bool
    ) -> Iterator[PointRecord]: ...

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[PointRecord]: ...

    def set_payload(self, flt: Filter, payload: Mapping[str, Any]) -> None:
        """Merge `payload` into every point matching `flt`."""

    def ensure_index(self, field_name: str, kind: IndexKind) -> None:
        """Create a payload index so filters on `field_name` stay fast."""

    def facet(
        self, field_name: str, flt: Filter | None = None, limit: int = 20
    ) -> dict[JSONValue, int]:
        """Value -> number of points, for a keyword field."""
        return self._facet(field_name, flt, limit)

    def _facet(self, field_name: str, flt: Filter | None, limit: int) -> dict[JSONValue, int]: ...

    def payload_schema(self) -> dict[str, str]:
        """Indexed payload fields: name -> kind (keyword, integer, float, text, bool)."""

    def disk_bytes(self) -> int:
        return 0

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def as_vector(x: object) -> F32:
    """`x` (an array, a list of floats, a binding's vector) as a 1-D float32 array."""
    return np.asarray(x, dtype=np.float32).reshape(-1)


_NAMESPACE = uuid.UUID("5b0d6b0c-6d1e-4c38-9b8f-6c0a1e3f7a11")


def point_id(*parts: str) -> str:
    """Deterministic UUID from a point's parts (item, image, region): re-indexing is idempotent."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))
