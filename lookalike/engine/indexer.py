"""The incremental indexer: a catalogue's photos to the store's points, only what changed.

Visibility while indexing (readers may search while a run writes): a view is written with
`pending: true`; an item's centroid is written once all its views are; then its views lose the
flag. Centroid searches see an item only through its centroid, view searches skip pending views,
so a query never sees an item with only some of its views, nor before its centroid.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.engine.centroids import refresh_centroids
from lookalike.engine.fields import FilterFields
from lookalike.engine.part import EnginePart
from lookalike.engine.photos import LocalRunner
from lookalike.engine.records import (
    INTERNAL_KEYS,
    NO_VIEWS,
    PENDING_VIEWS,
    SEARCH_TEXT,
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


class Indexer(EnginePart):
    """Index catalogues into one engine's index folder."""

    def __init__(self, engine: Engine, texts: TextFusion, fields: FilterFields) -> None:
        super().__init__(engine)
        self.texts = texts
        self.fields = fields

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
            pipeline = self.engine.pipeline
            existing = self.existing_views(store)
            tasks = [Task(item, image) for item in items for image in dict.fromkeys(item.images)]
            embedded = unchanged = written = 0
            done = 0
            notify("embed", 0, len(tasks))
            batches = (runner or LocalRunner()).embedded(self.engine, tasks, existing)
            for batch, vectors, classes in batches:
                for loaded in batch:
                    if loaded.skipped:
                        skipped.append(loaded.skipped)
                    unchanged += loaded.unchanged
                    if loaded.words is not None:
                        task = loaded.task
                        store.set_payload(
                            where("item_id", task.item.id)
                            & where("image", task.image)
                            & where("kind", "view"),
                            {"ocr_words": list(loaded.words)},
                        )
                todo = [(b, v) for b in batch for v in b.views]
                if todo:
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
                    embedded += sum(1 for b in batch if b.views)
                    written += len(points)
                done += len(batch)
                notify("embed", done, len(tasks))
            self.refresh_fields(store, items, existing)
            removed = self.remove_stale(store, items, existing, sync=sync, skipped=skipped)
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
            images_seen=len(tasks),
            images_embedded=embedded,
            images_unchanged=unchanged,
            views_written=written,
            items_removed=removed,
            skipped=tuple(skipped),
            seconds=time.perf_counter() - started,
            items_in_catalogue=len(items),
            items_in_index=len(held),
            repaired=repaired,
        )

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
        items: Sequence[Item],
        existing: Mapping[tuple[str, str], Stored],
        *,
        sync: bool,
        skipped: Sequence[Skipped],
    ) -> int:
        listed = {item.id: set(item.images) for item in items}
        # An image that failed to load this time keeps its old views: a transient error
        # (network, permissions) must not delete good data.
        failed = {s.source for s in skipped}
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
