"""Searching the face index (`lookalike.faces.index`): photos that contain the person of one or
several portraits, in "you" and "maybe you" tiers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.errors import QueryError
from lookalike.faces.detect import FaceBox, ManyFacesError, NoFaceError, distance_from_similarity
from lookalike.faces.folder import FaceFolder
from lookalike.faces.values import FaceMatch, FaceSearchResult, QueryFace, split_tiers, tier_of
from lookalike.store.base import Hit, where
from lookalike.types import F32, Box


class FaceSearch(FaceFolder):
    """Search, over the folder's store (see `FaceIndex`)."""

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
        return self.search_many([selfie], face, threshold, k, maybe_threshold=maybe_threshold)

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
        ("maybe"; `lookalike.faces.values.split_tiers`). At most k photos."""
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
        limit = self.threshold(threshold)
        outer = self.maybe_threshold(maybe_threshold, threshold)
        self.check_manifest(create=False)
        nearest: dict[str, tuple[float, Hit]] = {}
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
                    box=tuple(p["box"]),
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
        _ = self.store  # no index: say so before any work on the photo
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
            threshold=self.threshold(threshold),
            timings_ms={"faces": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3},
            maybe_threshold=self.maybe_threshold(maybe_threshold, threshold),
            portraits=len(chosen),
        )

    def threshold(self, threshold: float | None) -> float:
        value = self.face_settings.threshold if threshold is None else float(threshold)
        if not value > 0:
            raise QueryError(f"threshold must be > 0, got {value}")
        return value

    def maybe_threshold(self, maybe: float | None, threshold: float | None) -> float:
        """The "maybe you" limit; never below the "you" one (then there is no such tier)."""
        value = self.face_settings.maybe_threshold if maybe is None else float(maybe)
        if not 0 <= value <= 2:
            raise QueryError(f"maybe_threshold must be in 0..2, got {value}")
        return max(value, self.threshold(threshold))


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


def _as_facebox(f: QueryFace) -> FaceBox:
    box = Box(*f.box)
    return FaceBox(box, f.det_score, box)


def _describe(query: object) -> str:
    return str(query) if isinstance(query, str | Path) else "the photo"
