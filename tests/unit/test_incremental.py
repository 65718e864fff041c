"""The one incremental run both index kinds use (`lookalike.engine.indexer.IncrementalIndexer`),
checked with a fake kind over the memory store: what it writes, counts, reports and removes.
The catalogue's and the face index's own behaviour is in test_engine.py and test_faces*.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lookalike.engine.indexer import IncrementalIndexer, RunTally
from lookalike.store.base import PointRecord, Store, point_id, where
from lookalike.store.memory import MemoryStore
from lookalike.types import Skipped

# A "photo" is its name and its bytes; "bad" photos fail to load.
Photo = tuple[str, str]


class FakeKind(IncrementalIndexer[Photo, dict[str, str], list[Photo | Skipped | str]]):
    """One point per photo, payload photo + content; photos arrive two per batch."""

    stage = "fake"

    def __init__(self, bad: frozenset[str] = frozenset()) -> None:
        self.bad = bad
        self.flushed = 0

    def existing(self, store: Store) -> dict[str, str]:
        return {
            str(r.payload["photo"]): str(r.payload["content"])
            for r in store.scroll(where("kind", "photo"), fields=["photo", "content"])
        }

    def batches(
        self, tasks: Sequence[Photo], existing: dict[str, str]
    ) -> Iterator[list[Photo | Skipped | str]]:
        out: list[Photo | Skipped | str] = []
        for name, content in tasks:
            if name in self.bad:
                out.append(Skipped(name, "cannot read"))
            elif existing.get(name) == content:
                out.append(name)  # unchanged
            else:
                out.append((name, content))
            if len(out) == 2:
                yield out
                out = []
        if out:
            yield out

    def write(
        self,
        store: Store,
        batch: list[Photo | Skipped | str],
        existing: dict[str, str],
        tally: RunTally,
    ) -> int:
        points = []
        for entry in batch:
            if isinstance(entry, Skipped):
                tally.skipped.append(entry)
            elif isinstance(entry, str):
                tally.unchanged += 1
            else:
                name, content = entry
                points.append(
                    PointRecord(
                        point_id("photo", name),
                        {},
                        {"kind": "photo", "photo": name, "content": content},
                    )
                )
        store.upsert(points)
        tally.written += len(points)
        tally.points += len(points)
        return len(batch)

    def flush(self, store: Store, tally: RunTally) -> None:
        self.flushed += 1

    def remove_stale(
        self,
        store: Store,
        tasks: Sequence[Photo],
        existing: dict[str, str],
        *,
        sync: bool,
        failed: set[str],
    ) -> int:
        listed = {name for name, _ in tasks}
        gone = sorted(set(existing) - listed - failed) if sync else []
        store.delete([point_id("photo", name) for name in gone])
        return len(gone)


def _photos(store: Store) -> dict[str, str]:
    return FakeKind().existing(store)


def test_a_run_writes_changed_photos_only_and_reports_progress_per_batch() -> None:
    store = MemoryStore()
    seen: list[tuple[str, int, int]] = []
    tally, before = FakeKind().run(
        store, [("a", "1"), ("b", "1"), ("c", "1")], progress=lambda *a: seen.append(a)
    )
    assert before == {} and _photos(store) == {"a": "1", "b": "1", "c": "1"}
    assert (tally.seen, tally.written, tally.unchanged, tally.removed) == (3, 3, 0, 0)
    assert seen == [("fake", 0, 3), ("fake", 2, 3), ("fake", 3, 3)]

    kind = FakeKind()
    tally, before = kind.run(store, [("a", "1"), ("b", "2"), ("c", "1")])
    assert before == {"a": "1", "b": "1", "c": "1"}
    assert (tally.written, tally.unchanged) == (1, 2) and _photos(store)["b"] == "2"
    assert kind.flushed == 1


def test_sync_removes_unlisted_photos_but_never_one_that_failed_to_load() -> None:
    store = MemoryStore()
    FakeKind().run(store, [("a", "1"), ("b", "1"), ("c", "1")])
    earlier = [Skipped("listing", "not a photo")]
    tally, _ = FakeKind(bad=frozenset({"b"})).run(store, [("b", "1")], sync=True, skipped=earlier)
    # a and c are gone; b failed this time and keeps what it had.
    assert _photos(store) == {"b": "1"}
    assert tally.removed == 2
    assert [s.source for s in tally.skipped] == ["listing", "b"]


def test_without_sync_nothing_is_removed() -> None:
    store = MemoryStore()
    FakeKind().run(store, [("a", "1"), ("b", "1")])
    tally, _ = FakeKind().run(store, [("a", "1")])
    assert tally.removed == 0 and set(_photos(store)) == {"a", "b"}
