"""The face index's folder (`lookalike.faces.index`): its components (detector, embedder), its
files (faces.json, faces-options.json, the lock), its store, and the faces of one image.

The store: what `store_spec` (`--store`) names when the index is created, through the registry
(`lookalike.store.registry.open_store`) like the product index's: edge (the default) in
`<index>/faces`, a qdrant collection `<collection>-faces` beside the product one, or memory.
faces.json records it unless it is edge (indexes from before the setting are edge); an existing
index reopens the store it records, and another `store_spec` for it is an IndexMismatchError.
`Settings.store` ($LOOKALIKE_STORE) is not followed: faces stay in the embedded shard unless asked.
Its file names (layout: `lookalike.faces.index`) and how its JSON files are written are here too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from PIL import Image

from lookalike.config import Settings
from lookalike.engine.lock import ClosesStore, folder_write_lock, write_json
from lookalike.engine.manifest import FaceManifest, chosen_store
from lookalike.errors import StoreError
from lookalike.faces.detect import (
    DIM,
    DlibFaceEmbedder,
    EmbedderRecord,
    FaceBox,
    FaceDetector,
    find_faces,
    make_detector,
)
from lookalike.faces.ingest import normalise
from lookalike.faces.settings import FaceSettings
from lookalike.faces.values import BoxTuple, Face, FaceEmbedder, QueryFace
from lookalike.pipeline.decode import DecodeLimits, decode_query
from lookalike.store.base import PointRecord, Store, where
from lookalike.types import Box

SHARD = "faces"
"""The Qdrant Edge shard's folder in the index folder (the default store)."""
SUFFIX = "-faces"
"""Added to a qdrant collection name: `--store qdrant://host/shop` keeps faces in `shop-faces`."""
PEOPLE = "faces-people.json"
OPTIONS = "faces-options.json"
LOCK = ".faces.lock"
FORMAT = 1


class FaceFolder(ClosesStore):
    """The parts of a `FaceIndex` every operation shares: settings, detector and embedder, the
    folder's files, its store (opened on first use), decoding, and reading what is indexed."""

    def __init__(
        self,
        index_dir: Path | str | None = None,
        settings: Settings | None = None,
        face_settings: FaceSettings | None = None,
        *,
        detector: FaceDetector | None = None,
        embedder: FaceEmbedder | None = None,
        store_spec: str | None = None,
    ) -> None:
        """store_spec: where the face vectors live (`--store`: edge, memory, qdrant://host/name,
        qdrant+local://PATH#name); None: what the index records, else edge."""
        self.settings = settings or Settings()
        self.face_settings = face_settings or FaceSettings()
        self.index_dir = Path(index_dir) if index_dir is not None else self.settings.index
        self._detector = detector
        self._embedder = embedder
        self._store_spec = store_spec
        self._store = None
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
            self._embedder = DlibFaceEmbedder()
        return self._embedder

    def wanted_manifest(self) -> FaceManifest:
        """The record of the face models used now (`faces.json` must match it)."""
        if self._embedder is not None and self._embedder.name != DlibFaceEmbedder.name:
            # An injected embedder (tests, other models): its name is its identity.
            return FaceManifest({"name": self._embedder.name}, DIM)
        return FaceManifest(asdict(EmbedderRecord.current()), DIM)

    def check_manifest(self, create: bool) -> None:
        """faces.json must name the models used now; written when the index is created."""
        if self._checked:
            return
        have = FaceManifest.load(self.index_dir)
        wanted = self.wanted_manifest()
        if have is not None:
            have.check_compatible(wanted, self.index_dir)
            self.store_record()  # another store than the recorded one: IndexMismatchError
        elif create:
            replace(wanted, store=self.store_record()).save(self.index_dir)
        else:
            raise StoreError(
                f"no face index at {self.index_dir}: run `lookalike faces index PHOTOS "
                f"--index {self.index_dir}` first"
            )
        self._checked = True

    @property
    def store(self) -> Store:
        if self._store is None:
            if not (self.index_dir / FaceManifest.FILENAME).exists():
                raise StoreError(
                    f"no face index at {self.index_dir}: run `lookalike faces index PHOTOS "
                    f"--index {self.index_dir}` first"
                )
            self._store = self._open_store()
        return self._store

    def store_record(self) -> dict[str, Any]:
        """Where the face vectors live (`registry.store_record`): as faces.json records (edge
        when it records none), else as asked, else edge. IndexMismatchError if asked != recorded."""
        from lookalike.store.registry import store_record

        have = FaceManifest.load(self.index_dir)
        recorded = None if have is None else have.store or store_record("edge", self.index_dir)
        return chosen_store(
            recorded,
            self.index_dir,
            self._store_spec,
            default="edge",
            suffix=SUFFIX,
            what="face index",
            held="faces",
            otherwise="index into a new folder",
        )

    def _open_store(self) -> Store:
        from lookalike.store.registry import open_store

        record = self.store_record()
        if record["kind"] == "edge":
            self._recover_compaction()
        secret = self.settings.vectors.qdrant_api_key
        key = secret.get_secret_value() if secret else None
        # The recorded spec names the collection with its suffix already: opened without one.
        return open_store(record["spec"], self.index_dir, {"face": DIM}, api_key=key, shard=SHARD)

    def write_lock(self) -> AbstractContextManager[None]:
        """Held while writing the face index or its files (one writer per folder; a second
        gets StoreError at once). Not reentrant: do not call writing methods inside it."""
        return folder_write_lock(self.index_dir, LOCK, "faces ")

    def options(self) -> dict[str, Any]:
        """What this index keeps across runs (faces-options.json): the minimum face size."""
        path = self.index_dir / OPTIONS
        return json.loads(path.read_text()) if path.exists() else {}

    def save_options(self, changes: Mapping[str, Any]) -> None:
        write_json(self.index_dir / OPTIONS, {**self.options(), **changes})

    def min_face_size(self) -> int:
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
        picture = decode_query(image, self.decode_limits(draft=False))
        boxes = self.detect(picture)
        vectors = self.embedder.embed(picture, boxes)
        return [
            QueryFace(i, _box_tuple(b.box), round(b.score, 4), round(b.size, 1), vectors[i])
            for i, b in enumerate(boxes)
        ]

    def decode_limits(self, draft: bool = True) -> DecodeLimits:
        from lookalike.engine import wiring

        return wiring.limits(
            self.settings, draft_size=self.face_settings.decode_size if draft else None
        )

    # -- reading ---------------------------------------------------------------------------------

    def faces(self, photo: str | None = None, *, with_vectors: bool = False) -> list[Face]:
        """Indexed faces (of one photo when given), ordered by photo then face number."""
        flt = where("kind", "face")
        if photo is not None:
            flt = flt & where("photo", normalise(photo))
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


def _face(r: PointRecord) -> Face:
    p = r.payload
    return Face(
        face_id=r.id,
        photo=str(p["photo"]),
        box=tuple(p["box"]),
        det_score=float(p.get("det_score", 0.0)),
        face_size=float(p.get("face_size", 0.0)),
        face_no=int(p.get("face_no", 0)),
        vector=r.vectors.get("face"),
    )


def _box_tuple(b: Box) -> BoxTuple:
    return (round(b.x1, 1), round(b.y1, 1), round(b.x2, 1), round(b.y2, 1))
