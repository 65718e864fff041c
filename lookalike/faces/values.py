"""The values of the face index (`lookalike.faces.index`): faces, matches, query faces, search
results, people and run summaries; the face embedder it expects; and the two tiers of face
matches: "you" (strict) and "maybe you" (looser), and when each applies.

A face search is a list a person looks through: missing one of their photos costs more than
showing a doubtful one, as long as the doubtful ones are shown as such. So matches come in two
tiers, by the distance between the query's descriptor and the photo's face (0..2):

    you        distance <= threshold (strict: a stranger almost never gets this close)
    maybe you  threshold < distance <= maybe_threshold, and only when the "you" tier is not empty

The "maybe you" tier is gated on the "you" tier: a strict match is the evidence that the person is
at the event at all; without it, the nearest faces are the people who look most like them, so a
person who is in none of the photos gets nothing rather than look-alikes. The distances behind
the defaults are in `lookalike.faces.settings` (chosen by `bench/faces_calibrate.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from lookalike.faces.detect import FaceBox
from lookalike.types import F32, Skipped

BoxTuple = tuple[float, float, float, float]
Tier = Literal["you", "maybe"]


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

    tier: "you" (distance <= threshold) or "maybe" (up to maybe_threshold; `split_tiers`).
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


# -- the two tiers -------------------------------------------------------------------------------


def split_tiers(
    distances: Sequence[float] | np.ndarray, threshold: float, maybe_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into `distances` of the "you" and the "maybe you" matches, each nearest first.

    maybe_threshold <= threshold means no "maybe you" tier. Ties keep the given order.
    Example: distances [0.5, 0.3, 0.41], threshold 0.36, maybe 0.45 -> ([1], [2]);
    distances [0.40, 0.41] -> ([], []): nothing is strict, so nothing is shown.
    """
    d = np.asarray(distances, dtype=np.float64)
    order = np.argsort(d, kind="stable")
    you = order[d[order] <= threshold]
    if len(you) == 0 or maybe_threshold <= threshold:
        return you, order[:0]
    maybe = order[(d[order] > threshold) & (d[order] <= maybe_threshold)]
    return you, maybe


def tier_of(distance: float, threshold: float) -> Tier:
    """The tier of a match already known to be returned."""
    return "you" if distance <= threshold else "maybe"
