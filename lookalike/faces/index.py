"""FaceIndex: every face of every photo, in its own Qdrant Edge collection inside an index folder
(or the store `store_spec` names).

Index folder layout (beside the core index's files, which it never touches):
    faces/              Qdrant Edge shard, named vector `face` (128-d, cosine); the default
                        store: `store_spec` (`--store`) puts the points elsewhere (folder.py)
    faces.json          what built the face vectors (model sha256s, chip geometry), and the
                        store when it is not edge
    faces-people.json   the people of the last listing (`clusters()` or `people.list_people`):
                        person id -> face point ids (what `forget_person` removes)
    faces-book.json     people as the user shaped them: names, merges, splits, hidden (people.py)
    faces-options.json  kept across runs: min_face_size
    .faces.lock         held while a process writes

Points:
    kind=face   one per detected face; vector `face`; payload photo, box (x1, y1, x2, y2 in pixels
                of the photo as stored, EXIF-rotated), det_score, face_size (longest box side, px),
                content_hash (sha256 of the file), face_no, image_size
    kind=photo  one per photo seen, no vector: photo, content_hash, faces (count), forgotten.
                Written after the photo's faces, so a killed run redoes exactly the photos it had
                not finished, and an unchanged photo is never decoded again.

Privacy: face vectors live only in `faces/`. `forget_photo` and `forget_person` delete the points,
then rewrite the shard from the points that remain (`_compact`), so the deleted vectors are gone
from every file of the folder, write-ahead log included (Qdrant's own optimiser would leave them in
the WAL). On another store (`store_spec`, `--store`: memory, a qdrant collection
`<collection>-faces`, qdrant+local) the face vectors live there instead of in `faces/`, and the
guarantee is the store's delete: there are no shard files to rewrite, `_compact` only flushes. A forgotten photo keeps a vector-less tombstone (path + content hash) so that indexing
the folder again does not bring its faces back; a changed file is indexed anew.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lookalike.engine.indexer import IncrementalIndexer, RunTally
from lookalike.engine.lock import write_json
from lookalike.engine.manifest import now
from lookalike.engine.records import Progress
from lookalike.errors import QueryError
from lookalike.faces.detect import DIM
from lookalike.faces.folder import PEOPLE, SHARD
from lookalike.faces.ingest import (
    Loaded,
    big_enough,
    load_photos,
    normalise,
    photo_marker,
    scan_photos,
    with_faces,
    write_faces,
)
from lookalike.faces.people import cluster_faces, save_listing
from lookalike.faces.search import FaceSearch
from lookalike.faces.values import Face, FaceIndexSummary, ForgetSummary, Person, without_vector
from lookalike.store.base import Condition, Filter, Store, where

# -- the index ------------------------------------------------------------------------------------


class FaceIndex(FaceSearch):
    """Index, search, cluster and forget the faces of photos, in `index_dir`.

    settings: the core settings (decode limits, ...); face_settings: detector, sizes, threshold.
    detector / embedder: injected for tests; by default dlib's, built on first use.
    Not thread-safe; one writer per folder at a time (a second gets StoreError).
    """

    # -- indexing --------------------------------------------------------------------------------

    def index(
        self,
        photos: Path | str | Iterable[Path | str],
        progress: Progress | None = None,
        *,
        sync: bool = False,
    ) -> FaceIndexSummary:
        """Index every face of the photos: a folder (searched recursively), one file, or paths.

        Incremental: a photo whose bytes are unchanged since it was indexed (or forgotten) is
        not decoded again; a changed photo's old faces are replaced. Safe to kill at any point:
        a rerun finishes the job. A photo that cannot be read is recorded in `skipped` and keeps
        what it had in the index. `sync` also removes photos that are no longer listed.
        """
        started = time.perf_counter()
        listed, skipped = scan_photos(photos)
        with self.write_lock():
            self.check_manifest(create=True)
            store = self.store
            store.ensure_index("kind", "keyword")
            store.ensure_index("photo", "keyword")
            min_size = self.min_face_size()
            # Another minimum: every photo is looked at again (faces below it are dropped,
            # faces above it come back), except forgotten ones, which stay forgotten.
            again = min_size != self.options().get("min_face_size", 0)
            if again:
                self.save_options({"min_face_size": min_size})
            run = FaceIndexer(self, min_size, again=again)
            tally, _ = run.run(store, listed, sync=sync, progress=progress, skipped=skipped)
            self.store.flush()  # the store again: removing photos compacts it into a new one
        return FaceIndexSummary(
            photos_seen=tally.seen,
            photos_indexed=tally.written,
            photos_unchanged=tally.unchanged,
            photos_without_faces=run.empty,
            faces_written=tally.points,
            photos_removed=tally.removed,
            skipped=tuple(tally.skipped),
            seconds=time.perf_counter() - started,
            detect_seconds=run.clock["detect"],
            embed_seconds=run.clock["embed"],
        )

    # -- people ----------------------------------------------------------------------------------

    def clusters(self, threshold: float | None = None) -> list[Person]:
        """Group the indexed faces into people (Chinese whispers, faces linked when closer than
        `threshold`, default `cluster_threshold` or `threshold`). Largest group first; ids 1..n.

        The grouping is saved (faces-people.json) so `forget_person(id)` removes what was shown.
        """
        limit = self.threshold(
            threshold if threshold is not None else self.face_settings.cluster_threshold
        )
        faces = self.faces(with_vectors=True)  # every face carries its descriptor
        labels = cluster_faces(faces, limit)
        grouped: dict[int, list[Face]] = {}
        for f, label in zip(faces, labels, strict=True):
            grouped.setdefault(label, []).append(without_vector(f))
        people = [Person(pid, tuple(grouped[pid])) for pid in sorted(grouped)]
        with self.write_lock():
            listing = {str(p.person_id): [f.face_id for f in p.faces] for p in people}
            save_listing(self.index_dir, listing, limit)
        return people

    def _saved_people(self) -> dict[str, Any]:
        path = self.index_dir / PEOPLE
        if not path.exists():
            raise QueryError(
                f"no people listed yet in {self.index_dir}: run `lookalike faces clusters` first"
            )
        return json.loads(path.read_text())

    # -- forgetting ------------------------------------------------------------------------------

    def forget_photo(self, photo: str | Path) -> ForgetSummary:
        """Delete every face of `photo` and compact the shard so no file keeps them.

        The photo keeps a tombstone (path + content hash, no vector), so indexing its folder
        again does not bring its faces back unless the file changes. QueryError if not indexed.
        """
        key = normalise(str(photo))
        with self.write_lock():
            store = self.store
            found = list(store.scroll(where("photo", key), fields=["kind", "content_hash"]))
            if not found:
                raise QueryError(f"{key} is not in the face index at {self.index_dir}")
            faces = [r for r in found if r.payload.get("kind") == "face"]
            marker = next((r for r in found if r.payload.get("kind") == "photo"), None)
            self._delete_photos(store, [key])
            if marker is not None:
                hash_ = marker.payload.get("content_hash", "")
                store.upsert([photo_marker(key, hash_, 0, forgotten=True)])
            self._drop_from_people({f.id for f in faces}, [])
            self._compact()
            return ForgetSummary(len(faces), (key,), self.store.disk_bytes())

    def forget_person(self, person_id: int | str) -> ForgetSummary:
        """Delete every face of a person from the last `clusters()` and compact the shard.

        The photos stay indexed with their other faces (and are not re-added on the next index
        run unless they change). QueryError for an unknown person or when no clusters were made.
        """
        with self.write_lock():
            saved = self._saved_people()
            ids = saved["people"].get(str(person_id))
            if not ids:
                known = ", ".join(sorted(saved["people"], key=int)[:20])
                raise QueryError(f"no person {person_id} in the last clusters (known: {known})")
            store = self.store
            records = store.retrieve(ids)
            photos = sorted({str(r.payload.get("photo")) for r in records})
            store.delete([r.id for r in records])
            self._recount(store, photos)
            self._drop_from_people(set(ids), [])
            self._compact()
            return ForgetSummary(len(records), tuple(photos), self.store.disk_bytes())

    def drop_photos(self, store: Store, photos: Sequence[str]) -> None:
        """Remove `photos` whole (their faces, markers and people entries) and compact the shard
        so no file keeps their vectors: the indexer's stale removal."""
        self._drop_from_people(None, photos)
        self._delete_photos(store, photos)
        self._compact()

    @staticmethod
    def _delete_photos(store: Store, photos: Sequence[str]) -> None:
        for start in range(0, len(photos), 256):
            store.delete_where(
                Filter((Condition("photo", "in", tuple(photos[start : start + 256])),))
            )

    @staticmethod
    def _recount(store: Store, photos: Sequence[str]) -> None:
        for photo in photos:
            n = store.count(where("photo", photo) & where("kind", "face"))
            store.set_payload(where("photo", photo) & where("kind", "photo"), {"faces": n})

    def _drop_from_people(self, face_ids: set[str] | None, photos: Sequence[str]) -> None:
        """Keep faces-people.json free of deleted faces (and of people left without faces)."""
        path = self.index_dir / PEOPLE
        if not path.exists():
            return
        saved = json.loads(path.read_text())
        drop = set(face_ids or ())
        if photos:
            gone = set(photos)
            drop |= {
                r.id
                for r in self.store.scroll(where("kind", "face"), fields=["photo"])
                if r.payload.get("photo") in gone
            }
        people = {pid: [f for f in ids if f not in drop] for pid, ids in saved["people"].items()}
        saved["people"] = {pid: ids for pid, ids in people.items() if ids}
        write_json(path, saved)

    # -- compaction ------------------------------------------------------------------------------

    def _compact(self) -> int:
        """Rewrite the shard from the points it holds now, under the caller's write lock; return
        its size in bytes after. On a store other than edge: flush it (nothing to rewrite); return
        its size. `forget_*` and `index(sync=True)` call it.

        Deleted points are only marked as such by Qdrant, and its write-ahead log keeps the
        upserts that created them; copying the live points into a fresh shard and removing the
        old folder leaves no file with a deleted vector. Crash-safe: the copy is built beside the
        shard and swapped in by renames; `_recover_compaction` finishes or discards a half-done one.
        """
        from lookalike.store.migrate import migrate
        from lookalike.store.registry import open_store

        old_store = self.store
        if self.store_record()["kind"] != "edge":
            # No shard files here: the points were deleted through the store (a server's own
            # segments and log are its business), which is the guarantee on these stores.
            old_store.flush()
            return old_store.disk_bytes()
        new_dir = self.index_dir / (SHARD + ".compact")
        if new_dir.exists():
            shutil.rmtree(new_dir)
        fresh = open_store("edge", self.index_dir, {"face": DIM}, shard=new_dir.name)
        try:
            migrate(old_store, fresh, batch_size=512)  # points, payload indexes, flushed
        finally:
            fresh.close()
        (new_dir / "COMPLETE").write_text(now())
        self.close()
        shard, trash = self.index_dir / SHARD, self.index_dir / (SHARD + ".old")
        shard.rename(trash)
        new_dir.rename(shard)
        (shard / "COMPLETE").unlink()
        shutil.rmtree(trash)
        _fsync_dir(self.index_dir)
        return self.store.disk_bytes()


class FaceIndexer(IncrementalIndexer[str, dict[str, str], Loaded]):
    """The face index's kind of incremental run (`lookalike.engine.indexer.IncrementalIndexer`,
    the catalogue's `Indexer` is the other): a photo's points are its faces, then a vector-less
    marker with its content hash (what `existing` reads), so a killed run redoes exactly the
    photos it had not finished and an unchanged photo is never decoded again."""

    stage = "faces"

    def __init__(self, index: FaceIndex, min_size: float, *, again: bool) -> None:
        """again: the minimum face size changed, so every photo is looked at again (but
        forgotten ones stay forgotten)."""
        self.index, self.min_size, self.again = index, min_size, again
        self.clock = {"detect": 0.0, "embed": 0.0}
        self.empty = 0
        self.pending: list[Loaded] = []

    def existing(self, store: Store) -> dict[str, str]:
        markers = store.scroll(
            where("kind", "photo"), fields=["photo", "content_hash", "forgotten"]
        )
        return {
            str(r.payload["photo"]): str(r.payload.get("content_hash", ""))
            for r in markers
            if not self.again or r.payload.get("forgotten")
        }

    def batches(self, tasks: Sequence[str], existing: dict[str, str]) -> Iterator[Loaded]:
        """One photo at a time (its faces found and described), for per-photo progress; `write`
        gathers them into store writes of `batch_size` photos."""
        index = self.index
        for loaded in load_photos(tasks, existing, index.decode_limits()):
            if loaded.image is None:
                yield loaded  # skipped or unchanged
                continue
            t0 = time.perf_counter()
            boxes = big_enough(index.detect(loaded.image), loaded, self.min_size)
            t1 = time.perf_counter()
            vectors = index.embedder.embed(loaded.image, [b for _, b in boxes])
            self.clock["detect"] += t1 - t0
            self.clock["embed"] += time.perf_counter() - t1
            yield with_faces(loaded, boxes, vectors)

    def write(self, store: Store, batch: Loaded, existing: dict[str, str], tally: RunTally) -> int:
        if batch.skipped is not None:
            tally.skipped.append(batch.skipped)
        elif batch.unchanged:
            tally.unchanged += 1
        else:
            self.pending.append(batch)
            tally.written += 1
            tally.points += len(batch.faces)
            self.empty += not batch.faces
            if len(self.pending) >= self.index.face_settings.batch_size:
                self.flush(store, tally)
        return 1

    def flush(self, store: Store, tally: RunTally) -> None:
        write_faces(store, self.pending)
        self.pending = []

    def remove_stale(
        self,
        store: Store,
        tasks: Sequence[str],
        existing: dict[str, str],
        *,
        sync: bool,
        failed: set[str],
    ) -> int:
        """With `sync`, the photos no longer listed (their faces, markers and people entries);
        the shard is compacted so no file keeps their vectors."""
        gone = sorted(set(existing) - set(tasks) - failed) if sync else []
        if gone:
            self.index.drop_photos(store, gone)
        return len(gone)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
