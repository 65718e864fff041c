"""FaceIndex: every face of every photo, in its own Qdrant Edge collection inside an index folder.

Index folder layout (beside the core index's files, which it never touches):
    faces/              Qdrant Edge shard, named vector `face` (128-d, cosine)
    faces.json          what built the face vectors (model sha256s, chip geometry)
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
then rewrite the shard from the points that remain (`compact`), so the deleted vectors are gone
from every file of the folder, write-ahead log included (Qdrant's own optimiser would leave them in
the WAL). A forgotten photo keeps a vector-less tombstone (path + content hash) so that indexing
the folder again does not bring its faces back; a changed file is indexed anew.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from lookalike.config import Settings
from lookalike.engine.lock import ClosesStore, folder_write_lock
from lookalike.errors import DecodeError, IndexMismatchError, QueryError, StoreError
from lookalike.faces.detect import FaceBox, FaceDetector, find_faces, make_detector
from lookalike.faces.embed import distance_from_similarity
from lookalike.faces.errors import ManyFacesError, NoFaceError
from lookalike.faces.models import DIM, EmbedderRecord
from lookalike.faces.settings import FaceSettings
from lookalike.faces.tiers import Tier, split_tiers, tier_of
from lookalike.pipeline.decode import DecodeLimits, content_hash, decode_image, is_url, read_source
from lookalike.store.base import Condition, Filter, PointRecord, Store, point_id, where
from lookalike.types import F32, Box, Skipped

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances."""

SHARD = "faces"
MANIFEST = "faces.json"
PEOPLE = "faces-people.json"
OPTIONS = "faces-options.json"
LOCK = ".faces.lock"
FORMAT = 1
_LOOKAHEAD = 8
_COPY_PAGE = 512

BoxTuple = tuple[float, float, float, float]


class FaceEmbedder(Protocol):
    """Faces of one image -> (N, 128) unit vectors (see `DlibFaceEmbedder`)."""

    name: str
    dim: int

    def embed(self, image: Image.Image | np.ndarray, faces: Sequence[FaceBox]) -> F32: ...


# -- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """One indexed face. `box` is in pixels of the photo as stored (EXIF-rotated)."""

    face_id: str
    photo: str
    box: BoxTuple
    det_score: float
    face_size: float
    face_no: int
    vector: F32 | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class FaceMatch:
    """A photo that contains the person: its best matching face.

    tier: "you" (distance <= threshold) or "maybe" (up to maybe_threshold; `faces.tiers`).
    distance: Euclidean distance between unit descriptors, 0 (identical) .. 2; the match holds
    when distance <= the threshold. similarity: the cosine similarity, 1 - distance^2 / 2.
    """

    photo: str
    box: BoxTuple
    distance: float
    similarity: float
    face_id: str
    det_score: float
    face_size: float
    tier: Tier = "you"


@dataclass(frozen=True)
class QueryFace:
    """A face found in a query photo; `number` is what `face=` selects (0 = largest)."""

    number: int
    box: BoxTuple
    det_score: float
    face_size: float
    vector: F32 = field(repr=False, compare=False)


@dataclass(frozen=True)
class FaceSearchResult:
    """Photos containing the query face, best first: the "you" tier (within `threshold`), then
    the "maybe you" tier (within `maybe_threshold`)."""

    matches: tuple[FaceMatch, ...]
    query_face: QueryFace
    query_faces: tuple[QueryFace, ...]
    threshold: float
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    maybe_threshold: float = 0.0
    portraits: int = 1

    @property
    def you(self) -> tuple[FaceMatch, ...]:
        return tuple(m for m in self.matches if m.tier == "you")

    @property
    def maybe(self) -> tuple[FaceMatch, ...]:
        return tuple(m for m in self.matches if m.tier == "maybe")


@dataclass(frozen=True)
class Person:
    """One cluster of faces believed to be one person. `person_id` 1 has the most faces."""

    person_id: int
    faces: tuple[Face, ...]

    @property
    def photos(self) -> tuple[str, ...]:
        return tuple(sorted({f.photo for f in self.faces}))


@dataclass(frozen=True)
class FaceIndexSummary:
    """What one `FaceIndex.index` run did. Times are seconds of the main thread's work."""

    photos_seen: int
    photos_indexed: int
    photos_unchanged: int
    photos_without_faces: int
    faces_written: int
    photos_removed: int
    skipped: tuple[Skipped, ...]
    seconds: float
    detect_seconds: float
    embed_seconds: float


@dataclass(frozen=True)
class ForgetSummary:
    """What a forget did: faces deleted, the photos they came from, the shard's bytes after."""

    faces_deleted: int
    photos: tuple[str, ...]
    disk_bytes: int


@dataclass(frozen=True)
class _Loaded:
    photo: str
    sha256: str | None = None
    image: Image.Image | None = None
    original_size: tuple[int, int] | None = None
    decoded_size: tuple[int, int] | None = None
    skipped: Skipped | None = None
    unchanged: bool = False


# -- the index ------------------------------------------------------------------------------------


class FaceIndex(ClosesStore):
    """Index, search, cluster and forget the faces of photos, in `index_dir`.

    settings: the core settings (decode limits, ...); face_settings: detector, sizes, threshold.
    detector / embedder: injected for tests; by default dlib's, built on first use.
    Not thread-safe; one writer per folder at a time (a second gets StoreError).
    """

    def __init__(
        self,
        index_dir: Path | str | None = None,
        settings: Settings | None = None,
        face_settings: FaceSettings | None = None,
        *,
        detector: FaceDetector | None = None,
        embedder: FaceEmbedder | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.face_settings = face_settings or FaceSettings()
        self.index_dir = Path(index_dir) if index_dir is not None else self.settings.index
        self._detector = detector
        self._embedder = embedder
        self._store: Any = None
        self._checked = False

    # -- components ------------------------------------------------------------------------------

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = make_detector(self.face_settings)
        return self._detector

    @property
    def embedder(self) -> FaceEmbedder:
        if self._embedder is None:
            from lookalike.faces.embed import DlibFaceEmbedder

            self._embedder = DlibFaceEmbedder()
        return self._embedder

    def _identity(self) -> dict[str, Any]:
        from lookalike.faces.embed import DlibFaceEmbedder

        if self._embedder is not None and self._embedder.name != DlibFaceEmbedder.name:
            # An injected embedder (tests, other models): its name is its identity.
            return {"format": FORMAT, "embedder": {"name": self._embedder.name}, "dim": DIM}
        return {"format": FORMAT, "embedder": asdict(EmbedderRecord.current()), "dim": DIM}

    def _check_manifest(self, create: bool) -> None:
        """faces.json must name the models used now; written when the index is created."""
        if self._checked:
            return
        path = self.index_dir / MANIFEST
        wanted = self._identity()
        if path.exists():
            have = json.loads(path.read_text())
            have.pop("created", None)
            if have != wanted:
                raise IndexMismatchError(
                    f"the face index at {self.index_dir} was built with other face models "
                    f"({have.get('embedder')}); index into a new folder"
                )
        elif create:
            _write_json(path, {**wanted, "created": _now()})
        else:
            raise StoreError(
                f"no face index at {self.index_dir}: run `lookalike faces index PHOTOS "
                f"--index {self.index_dir}` first"
            )
        self._checked = True

    @property
    def store(self) -> Store:
        if self._store is None:
            if not (self.index_dir / MANIFEST).exists():
                raise StoreError(
                    f"no face index at {self.index_dir}: run `lookalike faces index PHOTOS "
                    f"--index {self.index_dir}` first"
                )
            self._store = self._open_store()
        return self._store

    def _open_store(self) -> Any:
        from lookalike.store.edge import EdgeStore

        self._recover_compaction()
        return EdgeStore(self.index_dir / SHARD, {"face": DIM})

    def _write_lock(self) -> AbstractContextManager[None]:
        return folder_write_lock(self.index_dir, LOCK, "faces ")

    def write_lock(self) -> AbstractContextManager[None]:
        """Held while writing the face index or its files (one writer per folder; a second
        gets StoreError at once). Not reentrant: do not call writing methods inside it."""
        return self._write_lock()

    def options(self) -> dict[str, Any]:
        """What this index keeps across runs (faces-options.json): the minimum face size."""
        path = self.index_dir / OPTIONS
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_options(self, changes: Mapping[str, Any]) -> None:
        _write_json(self.index_dir / OPTIONS, {**self.options(), **changes})

    def _min_face_size(self) -> int:
        """The setting when given, else what the index was last built with, else 0."""
        given = self.face_settings.min_face_size
        return int(given) if given is not None else int(self.options().get("min_face_size", 0))

    # -- faces of one image ----------------------------------------------------------------------

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in `image` (RGB), largest first, boxes in its pixels."""
        return find_faces(image, self.detector, self.face_settings)

    def faces_in(self, image: Path | str | bytes | Image.Image) -> list[QueryFace]:
        """Every face of a photo with its descriptor, largest first (what `face=N` numbers).

        Boxes are in pixels of the photo as stored (EXIF-rotated, full size), for drawing on it.
        """
        picture = self._decode_query(image)
        boxes = self.detect(picture)
        vectors = self.embedder.embed(picture, boxes)
        return [
            QueryFace(i, _box_tuple(b.box), round(b.score, 4), round(b.size, 1), vectors[i])
            for i, b in enumerate(boxes)
        ]

    def _decode_query(self, query: Path | str | bytes | Image.Image) -> Image.Image:
        if isinstance(query, Image.Image):
            return query.convert("RGB")
        limits = self._limits(draft=False)
        if isinstance(query, bytes):
            return decode_image(query, "query", limits)
        source = str(query)
        try:
            return decode_image(read_source(source, limits), source, limits)
        except DecodeError as exc:
            raise DecodeError(f"query photo {source}: {exc}") from exc

    def _limits(self, draft: bool = True) -> DecodeLimits:
        return DecodeLimits(
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
            draft_size=self.face_settings.decode_size if draft else None,
        )

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
        notify = progress or (lambda stage, done, total: None)
        listed, skipped = scan_photos(photos)
        with self._write_lock():
            self._check_manifest(create=True)
            store = self.store
            store.ensure_index("kind", "keyword")
            store.ensure_index("photo", "keyword")
            markers = list(
                store.scroll(where("kind", "photo"), fields=["photo", "content_hash", "forgotten"])
            )
            existing = {
                str(r.payload["photo"]): str(r.payload.get("content_hash", "")) for r in markers
            }
            min_size = self._min_face_size()
            if min_size != self.options().get("min_face_size", 0):
                # Another minimum: every photo is looked at again (faces below it are dropped,
                # faces above it come back), except forgotten ones, which stay forgotten.
                existing = {
                    str(r.payload["photo"]): str(r.payload.get("content_hash", ""))
                    for r in markers
                    if r.payload.get("forgotten")
                }
                self._save_options({"min_face_size": min_size})
            counts = {"indexed": 0, "unchanged": 0, "empty": 0, "faces": 0}
            clock = {"detect": 0.0, "embed": 0.0}
            pending: list[tuple[_Loaded, list[tuple[int, FaceBox]], F32]] = []
            notify("faces", 0, len(listed))
            for done, loaded in enumerate(self._load_all(listed, existing), start=1):
                if loaded.skipped is not None:
                    skipped.append(loaded.skipped)
                elif loaded.unchanged:
                    counts["unchanged"] += 1
                else:
                    assert loaded.image is not None
                    t0 = time.perf_counter()
                    found = self.detect(loaded.image)
                    boxes = big_enough(found, loaded, min_size)
                    t1 = time.perf_counter()
                    vectors = self.embedder.embed(loaded.image, [b for _, b in boxes])
                    clock["detect"] += t1 - t0
                    clock["embed"] += time.perf_counter() - t1
                    pending.append((_strip_image(loaded), boxes, vectors))
                    counts["indexed"] += 1
                    counts["faces"] += len(boxes)
                    counts["empty"] += not boxes
                    if len(pending) >= self.face_settings.batch_size:
                        self._write(store, pending)
                        pending = []
                notify("faces", done, len(listed))
            self._write(store, pending)
            removed = 0
            if sync:
                failed = {s.source for s in skipped}
                gone = sorted(set(existing) - set(listed) - failed)
                if gone:
                    removed = len(gone)
                    self._drop_from_people(None, gone)
                    self._delete_photos(store, gone)
                    self._compact()
                    store = self.store
            store.flush()
        return FaceIndexSummary(
            photos_seen=len(listed),
            photos_indexed=counts["indexed"],
            photos_unchanged=counts["unchanged"],
            photos_without_faces=counts["empty"],
            faces_written=counts["faces"],
            photos_removed=removed,
            skipped=tuple(skipped),
            seconds=time.perf_counter() - started,
            detect_seconds=clock["detect"],
            embed_seconds=clock["embed"],
        )

    def _load_all(self, photos: Sequence[str], existing: Mapping[str, str]) -> Iterator[_Loaded]:
        """Read, hash and decode on two worker threads, in order, a bounded number ahead."""
        limits = self._limits()

        def load(photo: str) -> _Loaded:
            try:
                data = read_source(photo, limits)
                sha = content_hash(data)
                if existing.get(photo) == sha:
                    return _Loaded(photo, sha, unchanged=True)
                image, original = _decode_with_size(data, photo, limits)
                return _Loaded(photo, sha, image=image, original_size=original)
            except DecodeError as exc:
                return _Loaded(photo, skipped=Skipped(photo, str(exc)))
            except OSError as exc:
                return _Loaded(photo, skipped=Skipped(photo, f"cannot read: {exc}"))

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="faces-decode") as pool:
            queue: list[Future[_Loaded]] = []
            for photo in photos:
                queue.append(pool.submit(load, photo))
                if len(queue) >= _LOOKAHEAD:
                    yield queue.pop(0).result()
            for fut in queue:
                yield fut.result()

    def _write(
        self, store: Store, batch: Sequence[tuple[_Loaded, list[tuple[int, FaceBox]], F32]]
    ) -> None:
        """Replace the faces of these photos, then record the photos as done (in that order)."""
        if not batch:
            return
        photos = tuple(loaded.photo for loaded, _, _ in batch)
        # A changed photo may have fewer faces than before: its old points must not linger.
        store.delete_where(
            Filter((Condition("photo", "in", photos), Condition("kind", "eq", "face")))
        )
        points: list[PointRecord] = []
        markers: list[PointRecord] = []
        for loaded, boxes, vectors in batch:
            assert loaded.original_size is not None and loaded.sha256 is not None
            points.extend(_face_points(loaded, boxes, vectors))
            markers.append(
                PointRecord(
                    point_id("photo", loaded.photo),
                    {},
                    {
                        "kind": "photo",
                        "photo": loaded.photo,
                        "content_hash": loaded.sha256,
                        "faces": len(boxes),
                        "image_size": list(loaded.original_size),
                        "forgotten": False,
                    },
                )
            )
        store.upsert(points)
        store.upsert(markers)

    # -- searching -------------------------------------------------------------------------------

    def search(
        self,
        selfie: Path | str | bytes | Image.Image,
        face: int | None = None,
        threshold: float | None = None,
        k: int = 50,
        *,
        maybe_threshold: float | None = None,
    ) -> FaceSearchResult:
        """Photos that contain the person of `selfie`, best first, each with its matching face.

        face: which face of the selfie (0 = largest, see `faces_in`); needed when it has several.
        threshold: "same person" distance, the "you" tier [default: FaceSettings.threshold];
        maybe_threshold: outer distance of the "maybe you" tier [default: FaceSettings.
        maybe_threshold]; k: most photos (both tiers).
        Raises NoFaceError (no face found), ManyFacesError (several, none chosen; `.faces`
        lists them), QueryError (bad face number or k), DecodeError (unreadable photo).
        """
        _ = self.store  # no index: say so before any work on the photo
        t0 = time.perf_counter()
        faces = self.faces_in(selfie)
        t1 = time.perf_counter()
        chosen = choose_face(faces, face, _describe(selfie))
        matches = self.search_vector(
            chosen.vector, threshold=threshold, k=k, maybe_threshold=maybe_threshold
        )
        t2 = time.perf_counter()
        return FaceSearchResult(
            matches=tuple(matches),
            query_face=chosen,
            query_faces=tuple(faces),
            threshold=self._threshold(threshold),
            timings_ms={"faces": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3},
            maybe_threshold=self._maybe_threshold(maybe_threshold, threshold),
        )

    def search_vector(
        self,
        vector: F32,
        *,
        threshold: float | None = None,
        k: int = 50,
        maybe_threshold: float | None = None,
    ) -> list[FaceMatch]:
        """Photos whose best face is near `vector` (unit, 128-d), best first: those within
        `threshold` ("you"), then, when there is at least one, those within `maybe_threshold`
        ("maybe"; `lookalike.faces.tiers`). At most k photos."""
        return self.search_vectors(
            [vector], threshold=threshold, k=k, maybe_threshold=maybe_threshold
        )

    def search_vectors(
        self,
        vectors: Sequence[F32],
        *,
        threshold: float | None = None,
        k: int = 50,
        maybe_threshold: float | None = None,
        combine: str = "best",
    ) -> list[FaceMatch]:
        """Like `search_vector` for several portraits of one person.

        combine: "best" (default): a photo's distance is that of its face nearest to any
        portrait; "mean": the portraits' mean descriptor is searched. The mean lies nearer to
        everybody, look-alikes included, so the calibrated distances hold less well: in
        `bench/faces_multi.py` it found more of a person's photos in sunglasses (mAP 0.985 vs
        0.970 from two portraits) but returned a photo to 5.1 % of absent-person queries on the
        clean event (best-of: none anywhere).
        """
        if k < 1:
            raise QueryError("k must be at least 1")
        if not len(vectors):
            raise QueryError("no query face given")
        if combine not in ("best", "mean"):
            raise QueryError(f"combine must be 'best' or 'mean', got {combine!r}")
        if combine == "mean" and len(vectors) > 1:
            from lookalike.pipeline.embed import l2_normalise

            vectors = [l2_normalise(np.mean(np.stack(vectors), axis=0, keepdims=True))[0]]
        limit = self._threshold(threshold)
        outer = self._maybe_threshold(maybe_threshold, threshold)
        self._check_manifest(create=False)
        nearest: dict[str, tuple[float, Any]] = {}
        for vector in vectors:
            hits = self.store.search_groups(
                vector, using="face", groups=k, group_by="photo", flt=where("kind", "face")
            )
            for h in hits:
                d = distance_from_similarity(h.score)
                key = str(h.payload["photo"])
                if key not in nearest or d < nearest[key][0]:
                    nearest[key] = (d, h)
        found = sorted(nearest.values(), key=lambda dh: (dh[0], str(dh[1].payload["photo"])))
        you, maybe = split_tiers([d for d, _ in found], limit, outer)
        out = []
        for i in [*you.tolist(), *maybe.tolist()][:k]:
            distance, h = found[i]
            p = h.payload
            out.append(
                FaceMatch(
                    photo=str(p["photo"]),
                    box=tuple(p["box"]),  # type: ignore[arg-type]
                    distance=round(distance, 4),
                    similarity=round(h.score, 4),
                    face_id=h.point_id,
                    det_score=float(p.get("det_score", 0.0)),
                    face_size=float(p.get("face_size", 0.0)),
                    tier=tier_of(distance, limit),
                )
            )
        return out

    def search_many(
        self,
        selfies: Sequence[Path | str | bytes | Image.Image],
        face: int | None = None,
        threshold: float | None = None,
        k: int = 50,
        *,
        maybe_threshold: float | None = None,
        combine: str = "best",
    ) -> FaceSearchResult:
        """`search` with several portraits of one person (`combine`: see `search_vectors`).

        face: applies to every portrait (each needs one face, or face N). `query_face` and
        `query_faces` describe the first portrait; `portraits` counts them.
        """
        if not selfies:
            raise QueryError("no portrait given")
        _ = self.store
        t0 = time.perf_counter()
        chosen = []
        first: list[QueryFace] = []
        for n, selfie in enumerate(selfies):
            faces = self.faces_in(selfie)
            chosen.append(choose_face(faces, face, _describe(selfie)))
            if n == 0:
                first = faces
        t1 = time.perf_counter()
        matches = self.search_vectors(
            [c.vector for c in chosen],
            threshold=threshold,
            k=k,
            maybe_threshold=maybe_threshold,
            combine=combine,
        )
        t2 = time.perf_counter()
        return FaceSearchResult(
            matches=tuple(matches),
            query_face=chosen[0],
            query_faces=tuple(first),
            threshold=self._threshold(threshold),
            timings_ms={"faces": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3},
            maybe_threshold=self._maybe_threshold(maybe_threshold, threshold),
            portraits=len(chosen),
        )

    def _threshold(self, threshold: float | None) -> float:
        value = self.face_settings.threshold if threshold is None else float(threshold)
        if not value > 0:
            raise QueryError(f"threshold must be > 0, got {value}")
        return value

    def _maybe_threshold(self, maybe: float | None, threshold: float | None) -> float:
        """The "maybe you" limit; never below the "you" one (then there is no such tier)."""
        value = self.face_settings.maybe_threshold if maybe is None else float(maybe)
        if not 0 <= value <= 2:
            raise QueryError(f"maybe_threshold must be in 0..2, got {value}")
        return max(value, self._threshold(threshold))

    # -- reading ---------------------------------------------------------------------------------

    def faces(self, photo: str | None = None, *, with_vectors: bool = False) -> list[Face]:
        """Indexed faces (of one photo when given), ordered by photo then face number."""
        flt = where("kind", "face")
        if photo is not None:
            flt = flt & where("photo", _normalise(photo))
        faces = [_face(r) for r in self.store.scroll(flt, with_vectors=with_vectors)]
        faces.sort(key=lambda f: (f.photo, f.face_no, f.face_id))
        return faces

    def photos(self) -> dict[str, int]:
        """Indexed photo -> number of faces it has in the index (forgotten photos left out)."""
        out = {}
        for r in self.store.scroll(where("kind", "photo"), fields=["photo", "faces", "forgotten"]):
            if not r.payload.get("forgotten"):
                out[str(r.payload["photo"])] = int(r.payload.get("faces", 0))
        return dict(sorted(out.items()))

    def stats(self) -> dict[str, Any]:
        store = self.store
        return {
            "index": str(self.index_dir),
            "photos": len(self.photos()),
            "faces": store.count(where("kind", "face")),
            "threshold": self.face_settings.threshold,
            "disk_bytes": store.disk_bytes(),
        }

    # -- people ----------------------------------------------------------------------------------

    def clusters(self, threshold: float | None = None) -> list[Person]:
        """Group the indexed faces into people (Chinese whispers, faces linked when closer than
        `threshold`, default `cluster_threshold` or `threshold`). Largest group first; ids 1..n.

        The grouping is saved (faces-people.json) so `forget_person(id)` removes what was shown.
        """
        from lookalike.faces.cluster import cluster_faces

        limit = self._threshold(
            threshold if threshold is not None else self.face_settings.cluster_threshold
        )
        faces = self.faces(with_vectors=True)
        labels = cluster_faces(
            np.stack([f.vector for f in faces]) if faces else np.zeros((0, DIM)), limit
        )
        grouped: dict[int, list[Face]] = {}
        for f, label in zip(faces, labels, strict=True):
            grouped.setdefault(label, []).append(_without_vector(f))
        people = [Person(pid, tuple(grouped[pid])) for pid in sorted(grouped)]
        with self._write_lock():
            _write_json(
                self.index_dir / PEOPLE,
                {
                    "threshold": limit,
                    "created": _now(),
                    "people": {str(p.person_id): [f.face_id for f in p.faces] for p in people},
                },
            )
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
        key = _normalise(str(photo))
        with self._write_lock():
            store = self.store
            found = list(store.scroll(where("photo", key), fields=["kind", "content_hash"]))
            if not found:
                raise QueryError(f"{key} is not in the face index at {self.index_dir}")
            faces = [r for r in found if r.payload.get("kind") == "face"]
            marker = next((r for r in found if r.payload.get("kind") == "photo"), None)
            self._delete_photos(store, [key])
            if marker is not None:
                store.upsert(
                    [
                        PointRecord(
                            marker.id,
                            {},
                            {
                                "kind": "photo",
                                "photo": key,
                                "content_hash": marker.payload.get("content_hash", ""),
                                "faces": 0,
                                "forgotten": True,
                            },
                        )
                    ]
                )
            self._drop_from_people({f.id for f in faces}, [])
            self._compact()
            return ForgetSummary(len(faces), (key,), self.store.disk_bytes())

    def forget_person(self, person_id: int | str) -> ForgetSummary:
        """Delete every face of a person from the last `clusters()` and compact the shard.

        The photos stay indexed with their other faces (and are not re-added on the next index
        run unless they change). QueryError for an unknown person or when no clusters were made.
        """
        with self._write_lock():
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
        _write_json(path, saved)

    # -- compaction ------------------------------------------------------------------------------

    def compact(self) -> int:
        """Rewrite the shard from the points it holds now; return its size in bytes after.

        `forget_*` and `index(sync=True)` do this themselves; see `_compact`.
        """
        with self._write_lock():
            return self._compact()

    def _compact(self) -> int:
        """The rewrite, under the caller's write lock.

        Deleted points are only marked as such by Qdrant, and its write-ahead log keeps the
        upserts that created them; copying the live points into a fresh shard and removing the
        old folder leaves no file with a deleted vector. Crash-safe: the copy is built beside the
        shard and swapped in by renames; `_recover_compaction` finishes or discards a half-done one.
        """
        from lookalike.store.edge import EdgeStore

        old_store = self.store
        new_dir = self.index_dir / (SHARD + ".compact")
        if new_dir.exists():
            shutil.rmtree(new_dir)
        fresh = EdgeStore(new_dir, {"face": DIM})
        try:
            page: list[PointRecord] = []
            for rec in old_store.scroll(with_vectors=True):
                page.append(rec)
                if len(page) >= _COPY_PAGE:
                    fresh.upsert(page)
                    page = []
            fresh.upsert(page)
            for name, kind in old_store.payload_schema().items():
                fresh.ensure_index(name, kind)  # type: ignore[arg-type]
            fresh.flush()
        finally:
            fresh.close()
        (new_dir / "COMPLETE").write_text(_now())
        self.close()
        shard, trash = self.index_dir / SHARD, self.index_dir / (SHARD + ".old")
        shard.rename(trash)
        new_dir.rename(shard)
        (shard / "COMPLETE").unlink()
        shutil.rmtree(trash)
        _fsync_dir(self.index_dir)
        return self.store.disk_bytes()

    def _recover_compaction(self) -> None:
        shard = self.index_dir / SHARD
        new_dir = self.index_dir / (SHARD + ".compact")
        trash = self.index_dir / (SHARD + ".old")
        if new_dir.exists():
            if (new_dir / "COMPLETE").exists() and not shard.exists():
                new_dir.rename(shard)  # killed between the two renames: finish the swap
                (shard / "COMPLETE").unlink()
            else:
                shutil.rmtree(new_dir)  # killed while copying: the old shard is intact
        if trash.exists() and shard.exists():
            shutil.rmtree(trash)
        if (shard / "COMPLETE").exists():
            (shard / "COMPLETE").unlink()


# -- helpers --------------------------------------------------------------------------------------


def choose_face(
    faces: Sequence[QueryFace], face: int | None, source: str = "the photo"
) -> QueryFace:
    """The query face: the only one, or number `face`. Typed errors for none / ambiguous / bad N."""
    if not faces:
        raise NoFaceError(
            f"no face found in {source}: use a photo where the face is frontal, unhidden and "
            "not tiny"
        )
    if face is None:
        if len(faces) == 1:
            return faces[0]
        listing = "; ".join(
            f"{f.number}: box {[round(v) for v in f.box]} ({f.face_size:.0f} px)" for f in faces
        )
        raise ManyFacesError(
            f"{len(faces)} faces in {source}; choose one with face=N (--face N), largest first: "
            f"{listing}",
            [_as_facebox(f) for f in faces],
        )
    if not 0 <= face < len(faces):
        raise QueryError(f"face {face} does not exist: {source} has faces 0..{len(faces) - 1}")
    return faces[face]


def scan_photos(photos: Path | str | Iterable[Path | str]) -> tuple[list[str], list[Skipped]]:
    """Absolute paths (or URLs) of the photos to index, sorted and unique, and what was skipped.

    A folder is searched recursively (hidden files and folders ignored, folder symlinks not
    followed); a file is one photo. Raises CatalogueError when a folder cannot be listed.
    """
    from lookalike.catalog.folder import is_image_name
    from lookalike.errors import CatalogueError

    items = [photos] if isinstance(photos, str | Path) else list(photos)
    found: list[str] = []
    skipped: list[Skipped] = []
    for item in items:
        text = str(item)
        if is_url(text):
            found.append(text)
            continue
        path = Path(os.path.abspath(text))
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise CatalogueError(f"cannot list photo folder {path}")
            for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for n in filenames:
                    if is_image_name(n):
                        found.append(os.path.join(dirpath, n))
                    elif (why := unsupported_photo(n)) is not None:
                        skipped.append(Skipped(os.path.join(dirpath, n), why))
        elif path.is_file():
            found.append(str(path))
        else:
            skipped.append(Skipped(str(path), "file not found"))
    return sorted(dict.fromkeys(found)), skipped


RAW_SUFFIXES = frozenset(
    [
        ".3fr",
        ".arw",
        ".cr2",
        ".cr3",
        ".crw",
        ".dcr",
        ".dng",
        ".erf",
        ".kdc",
        ".mef",
        ".mos",
        ".mrw",
        ".nef",
        ".nrw",
        ".orf",
        ".pef",
        ".raf",
        ".raw",
        ".rw2",
        ".rwl",
        ".sr2",
        ".srf",
        ".srw",
        ".x3f",
    ]
)
"""Camera RAW files: photos, but no decoder here reads them."""


def unsupported_photo(name: str) -> str | None:
    """Why a file that looks like a photo (a camera RAW or another image suffix Pillow knows)
    is not indexed, or None for other files (sidecars, videos, notes: not photos at all).

    Such files are reported as skipped rather than passed over in silence, so a photographer
    learns that those photos were not searched.
    """
    from PIL import Image as PILImage

    if name.startswith("."):
        return None
    suffix = os.path.splitext(name)[1].lower()
    if suffix in RAW_SUFFIXES:
        return f"camera RAW ({suffix}) is not read: export the photos as JPEG or TIFF"
    if suffix in PILImage.registered_extensions() and suffix not in (".pdf", ".ps", ".eps"):
        return f"{suffix} images are not read (formats read: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF, PGM/PPM)"
    return None


def _decode_with_size(
    data: bytes, source: str, limits: DecodeLimits
) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded photo (maybe draft-reduced) and its full (width, height) after EXIF rotation."""
    from lookalike.pipeline.decode import load_image

    if limits.draft_size is None or is_url(source):
        # Full size: the original size is the decoded one (and a URL is not fetched twice).
        image = decode_image(data, source, replace(limits, draft_size=None))
        return image, image.size
    # load_image reports the original size next to the draft-reduced image; it reads the file
    # again (from the page cache), which costs far less than decoding it.
    decoded = load_image(source, limits)
    return decoded.image, decoded.original_size


def _face_points(
    loaded: _Loaded, boxes: Sequence[tuple[int, FaceBox]], vectors: F32
) -> list[PointRecord]:
    """Points of the faces kept, each numbered as found (before the size filter), so a face
    keeps its id whatever the minimum size."""
    assert loaded.decoded_size is not None and loaded.original_size is not None
    sx = loaded.original_size[0] / loaded.decoded_size[0]
    sy = loaded.original_size[1] / loaded.decoded_size[1]
    points = []
    for (n, b), v in zip(boxes, vectors, strict=True):
        face = b.scaled(sx, sy)
        points.append(
            PointRecord(
                point_id("face", loaded.photo, str(loaded.sha256), str(n)),
                {"face": v},
                {
                    "kind": "face",
                    "photo": loaded.photo,
                    "box": [round(x, 1) for x in face.box.as_list()],
                    "det_score": round(face.score, 4),
                    "face_size": round(face.size, 1),
                    "face_no": n,
                    "content_hash": loaded.sha256,
                    "image_size": list(loaded.original_size),
                },
            )
        )
    return points


def big_enough(
    faces: Sequence[FaceBox], loaded: _Loaded, min_size: float
) -> list[tuple[int, FaceBox]]:
    """(number, face) of the faces whose longest side, in pixels of the photo as stored, is at
    least `min_size`; numbers count every face found, so ids do not move with the minimum."""
    assert loaded.image is not None and loaded.original_size is not None
    scale = loaded.original_size[0] / loaded.image.size[0]
    return [(n, f) for n, f in enumerate(faces) if f.size * scale >= min_size]


def _strip_image(loaded: _Loaded) -> _Loaded:
    """What the write needs: the pixels are dropped once the faces are found."""
    assert loaded.image is not None
    return replace(loaded, image=None, decoded_size=loaded.image.size)


def _face(r: PointRecord) -> Face:
    p = r.payload
    return Face(
        face_id=r.id,
        photo=str(p["photo"]),
        box=tuple(p["box"]),  # type: ignore[arg-type]
        det_score=float(p.get("det_score", 0.0)),
        face_size=float(p.get("face_size", 0.0)),
        face_no=int(p.get("face_no", 0)),
        vector=r.vectors.get("face"),
    )


def _without_vector(f: Face) -> Face:
    return Face(f.face_id, f.photo, f.box, f.det_score, f.face_size, f.face_no)


def _as_facebox(f: QueryFace) -> FaceBox:
    box = Box(*f.box)
    return FaceBox(box, f.det_score, box)


def _box_tuple(b: Box) -> BoxTuple:
    return (round(b.x1, 1), round(b.y1, 1), round(b.x2, 1), round(b.y2, 1))


def _normalise(photo: str) -> str:
    return photo if is_url(photo) else os.path.abspath(photo)


def _describe(query: object) -> str:
    if isinstance(query, str | Path):
        return str(query)
    return "the photo"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (temporary file, fsync, rename): a reader never sees half of it."""
    _write_json(path, data)


def without_vector(face: Face) -> Face:
    """The face without its descriptor (what listings carry)."""
    return _without_vector(face)
