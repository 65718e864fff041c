"""The values of the face index (`lookalike.faces.index`): faces, matches, query faces, search
results, people and run summaries; and the face embedder it expects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from lookalike.faces.detect import FaceBox
from lookalike.faces.tiers import Tier
from lookalike.types import F32, Skipped

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


def without_vector(face: Face) -> Face:
    """The face without its descriptor (what listings carry)."""
    return Face(face.face_id, face.photo, face.box, face.det_score, face.face_size, face.face_no)
