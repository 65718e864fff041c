"""The incremental indexer: photos to the store's points, only what changed.

`IncrementalIndexer` is the one run every kind of index goes through: the catalogue's views here
(`Indexer`), every face of a folder of photos in `lookalike.faces` (`FaceIndexer`). A kind says
what the store holds, how photos become batches of points and how they are written; the run is
the same for both: only photos whose bytes changed are decoded, a photo that cannot be read is
reported and keeps what it had, batches are written in order (a killed run redoes only the photos
it had not written), `sync` removes what the run was not asked for (never what failed to load),
and progress is reported per batch.

Visibility while indexing (readers may search while a run writes): a view is written with
`pending: true`; an item's centroid is written once all its views are; then its views lose the
flag. Centroid searches see an item only through its centroid, view searches skip pending views,
so a query never sees an item with only some of its views, nor before its centroid.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from lookalike.engine.centroids import refresh_centroids
from lookalike.engine.fields import FilterFields
from lookalike.engine.part import EnginePart
from lookalike.engine.photos import LocalRunner
from lookalike.engine.records import (
    INTERNAL_KEYS,
    NO_VIEWS,
    PENDING_VIEWS,
    SEARCH_TEXT,
    EmbeddedBatch,
    IndexRunner,
    Progress,
    Stored,
    Task,
    fields_hash,
    item_payload,
)
from lookalike.engine.textfusion import TextFusion
from lookalike.errors import CatalogueError
from lookalike.store.base import Condition, Filter, Store, where
from lookalike.types import IndexSummary, Item, Skipped

if TYPE_CHECKING:
    from lookalike.engine.core import Engine


T = TypeVar("T")
"""What a run is asked to index, one per photo (a catalogue `Task`, a face index's photo path)."""
E = TypeVar("E")
"""What the store holds already, by photo (content hashes: what need not be decoded again)."""
B = TypeVar("B")
"""One batch of loaded photos, ready to write."""


@dataclass
class RunTally:
    """What one incremental run did (the kinds' summaries are made from it)."""

    seen: int = 0
    written: int = 0
    """Photos whose points were (re)written."""
    unchanged: int = 0
    points: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)


class IncrementalIndexer(Generic[T, E, B]):
    """The incremental run (module docstring); a kind of index fills in its four steps.

    The caller holds the folder's write lock and opens the store."""

    stage = "embed"
    """The progress stage the run reports."""

    def existing(self, store: Store) -> E:
        """What the store holds already, by photo."""
        raise NotImplementedError

    def batches(self, tasks: Sequence[T], existing: E) -> Iterator[B]:
        """The photos read, hashed and (when changed) decoded and turned into points, in order."""
        raise NotImplementedError

    def write(self, store: Store, batch: B, existing: E, tally: RunTally) -> int:
        """Write (or buffer, see `flush`) one batch, count it in `tally`; the photos it held."""
        raise NotImplementedError

    def flush(self, store: Store, tally: RunTally) -> None:
        """Write what `write` buffered (a kind that buffers for larger store writes)."""

    def remove_stale(
        self, store: Store, tasks: Sequence[T], existing: E, *, sync: bool, failed: set[str]
    ) -> int:
        """Remove what the catalogue no longer lists (`sync`: whole entries too), never what is
        in `failed` (photos that did not load this time); the number of entries removed."""
        raise NotImplementedError

    def run(
        self,
        store: Store,
        tasks: Sequence[T],
        *,
        sync: bool = False,
        progress: Progress | None = None,
        skipped: Sequence[Skipped] = (),
    ) -> tuple[RunTally, E]:
        """One run over `tasks`; the tally and what the store held before it."""
        notify = progress or (lambda stage, done, total: None)
        tally = RunTally(seen=len(tasks), skipped=list(skipped))
        existing = self.existing(store)
        notify(self.stage, 0, len(tasks))
        done = 0
        for batch in self.batches(tasks, existing):
            done += self.write(store, batch, existing, tally)
            notify(self.stage, done, len(tasks))
        self.flush(store, tally)
        # A photo that failed to load this time keeps its points: a transient error (network,
        # permissions) must not delete good data.
        failed = {s.source for s in tally.skipped}
        tally.removed = self.remove_stale(store, tasks, existing, sync=sync, failed=failed)
        return tally, existing


Existing = dict[tuple[str, str], Stored]


class Indexer(EnginePart, IncrementalIndexer[Task, Existing, EmbeddedBatch]):
    """Index catalogues into one engine's index folder."""

    def __init__(self, engine: Engine, texts: TextFusion, fields: FilterFields) -> None:
        super().__init__(engine)
        self.texts = texts
        self.fields = fields
        self.runner: IndexRunner = LocalRunner()
        self.items: Sequence[Item] = ()

    def index(
        self,
        catalogue: Path | str | Iterable[Item],
        *,
        sync: bool = False,
        progress: Progress | None = None,
        runner: IndexRunner | None = None,
        repair: bool = False,
    ) -> IndexSummary:
        """Index a catalogue (folder, JSONL or CSV manifest, or Items) incrementally.

        Only images that are new or whose bytes changed are decoded and embedded; views of images
        an item no longer lists are removed; `sync` also removes items absent from the catalogue.
        Safe to kill at any point: a rerun finishes the job and yields the same index.
        runner: where decoding and embedding run (default: here, decoding on threads overlapped
        with inference); this process always writes to the store.
        repair: check everything first (`verify`); a damaged shard is set aside and rebuilt from
        the catalogue (every photo embedded again). Without it a damaged index is an
        IndexDamagedError.
        """
        from lookalike.catalog import load_catalogue

        started = time.perf_counter()
        notify = progress or (lambda stage, done, total: None)
        skipped: list[Skipped] = []
        if isinstance(catalogue, str | Path):
            cat = load_catalogue(Path(catalogue))
            items, skipped = list(cat.items), list(cat.skipped)
            if not items:
                from lookalike.catalog import no_items_message

                raise CatalogueError(no_items_message(Path(catalogue), skipped))
        else:
            items = list(catalogue)
        self.texts.forget()
        with self.engine.write_lock(repair=repair) as repaired:
            self.engine.create_index()
            store = self.engine.store
            # What this run's steps read (`batches`, `remove_stale`).
            self.runner, self.items = runner or LocalRunner(), items
            tasks = [Task(item, image) for item in items for image in dict.fromkeys(item.images)]
            tally, existing = self.run(store, tasks, sync=sync, progress=notify, skipped=skipped)
            self.refresh_fields(store, items, existing)
            notify("centroids", 0, 0)
            refresh_centroids(
                store, self.engine.stored_projection, self.engine.settings.search.text_fields
            )
            # Last: the new views become visible to view searches (see the module docstring).
            store.set_payload(PENDING_VIEWS, {"pending": False})
            self.fields.record_fields(items)
            self.ensure_indexes(store, items)
            store.flush()
            settle = getattr(store, "settle", None)  # the embedded store: build the HNSW graph
            if settle is not None:
                notify("optimize", 0, 0)
                settle()
            from lookalike.engine.calibration import calibrate_index

            calibrate_index(self.engine, progress=notify)
            # Items count once they can be found: an item whose every photo was skipped is not
            # in the index (what `stats` counts), so it is not counted as indexed either.
            held = {
                str(rec.payload.get("item_id"))
                for rec in store.scroll(where("kind", "centroid"), fields=["item_id"])
            }
        return IndexSummary(
            items=len({item.id for item in items} & held),
            images_seen=tally.seen,
            images_embedded=tally.written,
            images_unchanged=tally.unchanged,
            views_written=tally.points,
            items_removed=tally.removed,
            skipped=tuple(tally.skipped),
            seconds=time.perf_counter() - started,
            items_in_catalogue=len(items),
            items_in_index=len(held),
            repaired=repaired,
        )

    # -- the run's steps (`IncrementalIndexer`) --------------------------------------------------

    def existing(self, store: Store) -> Existing:
        return self.existing_views(store)

    def batches(self, tasks: Sequence[Task], existing: Existing) -> Iterator[EmbeddedBatch]:
        return self.runner.embedded(self.engine, tasks, existing)

    def write(self, store: Store, batch: EmbeddedBatch, existing: Existing, tally: RunTally) -> int:
        loaded_photos, vectors, classes = batch
        for loaded in loaded_photos:
            if loaded.skipped:
                tally.skipped.append(loaded.skipped)
            tally.unchanged += loaded.unchanged
            if loaded.words is not None:
                task = loaded.task
                store.set_payload(
                    where("item_id", task.item.id)
                    & where("image", task.image)
                    & where("kind", "view"),
                    {"ocr_words": list(loaded.words)},
                )
        todo = [(b, v) for b in loaded_photos for v in b.views]
        if todo:
            pipeline = self.engine.pipeline
            points = [
                pipeline.view_point(b, view, vec, cls)
                for (b, view), vec, cls in zip(todo, vectors, classes, strict=True)
            ]
            store.upsert(points)
            # Views this photo had before (other objects) that it no longer has.
            new_ids = {p.id for p in points}
            old_ids = [
                pid
                for b in {id(b): b for b, _ in todo}.values()
                for pid in existing.get((b.task.item.id, b.task.image), NO_VIEWS).ids
                if pid not in new_ids
            ]
            store.delete(old_ids)
            tally.written += sum(1 for b in loaded_photos if b.views)
            tally.points += len(points)
        return len(loaded_photos)

    @staticmethod
    def existing_views(store: Store) -> dict[tuple[str, str], Stored]:
        """(item_id, image) -> the views of that photo in the store (ids, content and fields hash)."""
        out: dict[tuple[str, str], Stored] = {}
        for rec in store.scroll(
            where("kind", "view"),
            fields=["item_id", "image", "content_hash", "fields_hash", "ocr_words"],
        ):
            p = rec.payload
            key = (p["item_id"], p["image"])
            prev = out.get(key)
            ids = (*prev.ids, rec.id) if prev else (rec.id,)
            read = "ocr_words" in p or (prev is not None and prev.read)
            out[key] = Stored(ids, p["content_hash"], p.get("fields_hash", ""), read)
        return out

    def refresh_fields(
        self,
        store: Store,
        items: Sequence[Item],
        existing: Mapping[tuple[str, str], Stored],
    ) -> None:
        """Catalogue metadata changed (price, title ...) but not the photos: update payloads only."""
        stored_hash: dict[str, str] = {key[0]: v.fields_hash for key, v in existing.items()}
        for item in items:
            old = stored_hash.get(item.id)
            if old is not None and old != fields_hash(item.fields):
                store.set_payload(where("item_id", item.id), item_payload(item))

    def remove_stale(
        self,
        store: Store,
        tasks: Sequence[Task],
        existing: Existing,
        *,
        sync: bool,
        failed: set[str],
    ) -> int:
        """Views of photos an item no longer lists; with `sync`, items the catalogue no longer
        lists."""
        listed = {item.id: set(item.images) for item in self.items}
        stale = [
            pid
            for (item_id, image), stored in existing.items()
            if item_id in listed and image not in listed[item_id] and image not in failed
            for pid in stored.ids
        ]
        store.delete(stale)
        removed = 0
        if sync:
            gone = sorted({item_id for item_id, _ in existing} - set(listed))
            for start in range(0, len(gone), 256):
                chunk = tuple(gone[start : start + 256])
                store.delete_where(Filter((Condition("item_id", "in", chunk),)))
            removed = len(gone)
        return removed

    @staticmethod
    def ensure_indexes(store: Store, items: Sequence[Item]) -> None:
        for name in ("item_id", "colours", "classes", "labels"):
            store.ensure_index(name, "keyword")
        store.ensure_index(SEARCH_TEXT, "text")
        store.ensure_index("kind", "keyword")
        store.ensure_index("pending", "bool")
        kinds: dict[str, str] = {}
        for item in items[:1000]:  # field types are a catalogue-wide property: a sample suffices
            for k, v in item.fields.items():
                if k in INTERNAL_KEYS or k in kinds:
                    continue
                if isinstance(v, bool):
                    kinds[k] = "bool"
                elif isinstance(v, int | float):
                    kinds[k] = "float"
                elif isinstance(v, str) and len(v) <= 64:
                    kinds[k] = "keyword"
        for k, kind in kinds.items():
            store.ensure_index(k, kind)  # type: ignore[arg-type]  # kind: one of the literals above

    # -- deleting ------------------------------------------------------------------------------

    def delete(self, item_ids: Sequence[str]) -> list[str]:
        """Remove items (all their views and centroids); the ids that were in the index."""
        self.texts.forget()
        removed: list[str] = []
        with self.engine.write_lock():
            for item_id in dict.fromkeys(item_ids):
                if self.engine.store.count(where("item_id", item_id)):
                    removed.append(item_id)
                self.engine.store.delete_where(where("item_id", item_id))
            self.engine.store.flush()
        return removed
