"""Copy an index's points from one store to another: embedded shard -> Qdrant cluster, and back.

`migrate(source, dest)` scrolls every point of `source` (vectors and payload) and upserts it into
`dest` in batches, then recreates the source's payload indexes on `dest`. Point ids are kept, so
running it again (after a crash, or to pick up points added since) converges to the same
destination without duplicates. Nothing is deleted from either store: points that exist only in
`dest` stay (use `delete_extra=True` to make `dest` an exact copy).

This is the library half of `lookalike export/import`; the CLI adds the progress bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from lookalike.store.base import PointRecord, Store

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MigrationSummary:
    """points: copied; deleted: removed from dest (delete_extra); indexes: payload fields indexed."""

    points: int
    deleted: int
    indexes: tuple[str, ...]


def _batches(records: Iterable[PointRecord], size: int) -> Iterator[list[PointRecord]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def migrate(
    source: Store,
    dest: Store,
    *,
    batch_size: int = 256,
    delete_extra: bool = False,
    progress: Progress | None = None,
) -> MigrationSummary:
    """Copy every point of `source` into `dest` (same ids, vectors and payload).

    batch_size: points per upsert (256 x 1280-d float32 is ~1.3 MB of vectors per request).
    delete_extra: afterwards delete the points of `dest` whose ids `source` does not have.
    progress: progress("copy", done, total) after each batch, then ("indexes", i, n).
    Returns what was done. Stores' own errors (StoreError) propagate; a rerun resumes safely.
    """
    notify = progress or (lambda stage, done, total: None)
    total = source.count()
    done = 0
    seen: set[str] = set()
    notify("copy", 0, total)
    for batch in _batches(source.scroll(with_vectors=True), max(1, batch_size)):
        dest.upsert(batch)
        done += len(batch)
        if delete_extra:
            seen.update(p.id for p in batch)
        notify("copy", done, total)
    schema = source.payload_schema()
    for i, (name, kind) in enumerate(sorted(schema.items()), start=1):
        dest.ensure_index(name, kind)  # type: ignore[arg-type]  # schema values are IndexKind names, typed str
        notify("indexes", i, len(schema))
    deleted = 0
    if delete_extra:
        extra = [r.id for r in dest.scroll(fields=[]) if r.id not in seen]
        for chunk in _batches((PointRecord(i) for i in extra), max(1, batch_size)):
            dest.delete([p.id for p in chunk])
        deleted = len(extra)
    dest.flush()
    return MigrationSummary(done, deleted, tuple(sorted(schema)))
