"""What the two Qdrant backends (`edge.py`: qdrant-edge-py, `qdrant.py`: qdrant-client) share.

The two bindings spell the same concepts with different classes (`qe.FieldCondition` vs
`models.FieldCondition`, `Keyword` vs `KEYWORD`), so the helpers here take the binding-specific
part as an argument and own only the logic: splitting a `Filter` into must / must-not, paging a
scroll, turning returned points into `PointRecord` / `Hit`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from lookalike.errors import StoreError
from lookalike.store.base import Condition, Filter, PointRecord, as_vector
from lookalike.types import F32, Hit, JSONValue

if TYPE_CHECKING:
    import qdrant_edge as qe
    from qdrant_client import models

SCROLL_PAGE = 1024
"""Points per scroll request."""


_EXACT_FLOAT_INT = 2**53
"""Integers up to this size are exact as floats, so an equality on them can be a closed range."""

# The binding's condition, filter, point and scroll offset (a point id or None).
C = TypeVar("C")
F = TypeVar("F")
P = TypeVar("P")
K = TypeVar("K")


@dataclass(frozen=True)
class Spelling(Generic[C]):
    """How one binding spells the few conditions `condition` composes.

    match: (field, str | int | bool) -> an exact-match condition.
    match_any: (field, list of str) -> a condition true when one value matches.
    range: (field, {gt, gte, lt, lte}) -> a numeric range condition.
    any_of: (conditions) -> a condition true when one of them is (a nested `should` filter).
    """

    match: Callable[[str, JSONValue], C]
    match_any: Callable[[str, list[str]], C]
    range: Callable[[str, dict[str, float | None]], C]
    any_of: Callable[[list[C]], C]


def _value_condition(name: str, value: JSONValue, spell: Spelling[C]) -> C:
    """`name` equals `value`, with the reference semantics of `Condition.matches`."""
    if isinstance(value, bool | str):
        return spell.match(name, value)
    if isinstance(value, int) and abs(value) > _EXACT_FLOAT_INT:
        return spell.match(name, value)  # beyond float precision: only the exact integer
    if isinstance(value, int | float):
        # Qdrant's integer match skips payloads written as floats (2.0) and a float match does
        # not exist: a closed range matches 2 and 2.0 alike, as the reference does.
        return spell.range(name, {"gte": float(value), "lte": float(value)})
    return spell.match(name, value)


def condition(c: Condition, spell: Spelling[C]) -> tuple[str, C]:
    """One Condition -> ("must" | "must_not", the binding's condition), same meaning on every
    backend (checked by the contract suite against `Condition.matches`)."""
    kind = "must_not" if c.op in ("ne", "not_in") else "must"
    match c.op:
        case "eq" | "ne":
            return kind, _value_condition(c.field, c.value, spell)
        case "in" | "not_in":
            values = list(c.value)
            if values and all(isinstance(v, str) for v in values):
                return kind, spell.match_any(c.field, values)
            # Qdrant's match-any takes strings or integers only (booleans would be read as 0/1,
            # floats refused): one equality per value, any of them.
            parts = [_value_condition(c.field, v, spell) for v in values]
            return kind, parts[0] if len(parts) == 1 else spell.any_of(parts)
        case "range":
            return kind, spell.range(c.field, {"gt": c.gt, "gte": c.gte, "lt": c.lt, "lte": c.lte})
    raise ValueError(f"unsupported condition {c}")


def build_filter(flt: Filter | None, spell: Spelling[C], filter_cls: Callable[..., F]) -> F | None:
    """The binding's filter for `flt` (all conditions AND-ed), or None for no filter.

    filter_cls: the binding's `Filter` class (keywords `must`, `must_not`). A condition the
    binding cannot express (ValueError) is a StoreError.
    """
    if flt is None or not flt.conditions:
        return None
    must: list[C] = []
    must_not: list[C] = []
    for c in flt.conditions:
        try:
            kind, cond = condition(c, spell)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        (must if kind == "must" else must_not).append(cond)
    return filter_cls(must=must or None, must_not=must_not or None)


def point_structs(points: Sequence[PointRecord], point_cls: Callable[..., P]) -> list[P]:
    """The binding's point objects (`point_cls(id=, vector=, payload=)`), vectors as lists."""
    return [
        point_cls(
            id=p.id,
            vector={k: as_vector(v).tolist() for k, v in p.vectors.items()},
            payload=dict(p.payload),
        )
        for p in points
    ]


def record(r: qe.Record | models.Record, with_vectors: bool) -> PointRecord:
    """A returned record (`.id`, `.vector` dict, `.payload`) as a PointRecord with float32 vectors."""
    vectors: dict[str, F32] = {}
    if with_vectors and isinstance(r.vector, dict):
        vectors = {k: as_vector(v) for k, v in r.vector.items()}
    return PointRecord(str(r.id), vectors, dict(r.payload or {}))


def hit(p: qe.ScoredPoint | models.ScoredPoint) -> Hit:
    """A scored point (`.id`, `.score`, `.payload`) as a Hit."""
    return PointRecord(str(p.id), payload=dict(p.payload or {})).hit(float(p.score))


def paged(
    fetch: Callable[[K], tuple[Sequence[qe.Record | models.Record], K]],
    start: K,
    with_vectors: bool,
) -> Iterator[PointRecord]:
    """Every record of a scroll from `start`: `fetch(offset) -> (records, next offset or None)`."""
    offset = start
    while True:
        records, offset = fetch(offset)
        for r in records:
            yield record(r, with_vectors)
        if offset is None:
            return


def folder_bytes(path: Path) -> int:
    """Bytes the files under `path` take on disk (0 when it does not exist). Allocated blocks,
    not apparent sizes: Qdrant preallocates sparse 32 MB pages and WAL files that hold little."""
    total = 0
    for f in Path(path).rglob("*"):
        if f.is_file() and not f.is_symlink():
            st = f.stat()
            blocks = getattr(st, "st_blocks", None)  # absent on Windows
            total += min(st.st_size, blocks * 512) if blocks is not None else st.st_size
    return total
