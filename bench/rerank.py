"""Research, not product: re-rank the top image candidates with evidence the global vector misses.

Measured and not wired into the engine (docs/quality.md): both lower val Recall@1 on their own.
Test-time augmentation, which is used, lives in `lookalike/pipeline/embed.py`.

- Geometric verification (`GeometricReranker`): local keypoints (OpenCV ORB or SIFT) of the query
  are matched against those of a few photos of each of the top-K candidate items (Lowe's ratio
  test), and a RANSAC homography counts the matches that agree on one planar transform. A carton
  seen from another angle keeps hundreds of such inliers; a sibling product with the same logo but
  another flavour keeps a few. Fused as `score = cosine + weight * min(inliers, cap) / cap`, only
  when `inliers >= min_inliers`. Catalogue-side features are computed once at indexing time and
  read through a `FeatureSource` (`FeatureCache` stores them in one `.npz` per catalogue).
- Query expansion (`expand_query`): alpha-QE, the query averaged with its top neighbours weighted
  by similarity ** alpha.

Every step is optional and every parameter a setting; docs/parts/accuracy.md has what each one
measured on the grocery photos, and which are on by default. `cv2` is imported lazily.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from lookalike.types import F32

if TYPE_CHECKING:
    from PIL import Image

FeatureMethod = Literal["orb", "sift"]

# ---------------------------------------------------------------------------------------------
# Local features
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFeatureSettings:
    """How keypoints are found.

    method: "orb" (binary 32-byte descriptors, Hamming distance, fast) or "sift" (128 floats,
        stored as uint8, L2 distance, more distinctive and ~3x slower).
    max_side: the photo is shrunk so its longer side is at most this (pixels) before detection.
    n_features: keep at most this many keypoints (the strongest).
    """

    method: FeatureMethod = "orb"
    max_side: int = 512
    n_features: int = 500

    def key(self) -> str:
        return f"{self.method}-s{self.max_side}-n{self.n_features}"


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one photo.

    points: (N, 2) float32 x, y in pixels of the shrunk photo (only ratios between photos matter).
    descriptors: (N, 32) uint8 for ORB, (N, 128) uint8 for SIFT; N may be 0.
    method: the `FeatureMethod` that made them (photos of different methods never match).
    """

    points: F32
    descriptors: NDArray[np.uint8]
    method: str

    def __len__(self) -> int:
        return int(self.points.shape[0])


_DETECTORS = threading.local()


def _detector(settings: LocalFeatureSettings) -> Any:
    # OpenCV detectors are not thread-safe; one per thread and settings.
    import cv2

    cache = getattr(_DETECTORS, "cache", None)
    if cache is None:
        cache = _DETECTORS.cache = {}
    det = cache.get(settings)
    if det is None:
        match settings.method:
            case "orb":
                det = cv2.ORB_create(nfeatures=settings.n_features)
            case "sift":
                det = cv2.SIFT_create(nfeatures=settings.n_features)
            case other:
                raise ValueError(f"unknown local feature method {other!r}; use 'orb' or 'sift'")
        cache[settings] = det
    return det


def extract_features(
    image: Image.Image, settings: LocalFeatureSettings | None = None
) -> LocalFeatures:
    """Keypoints and descriptors of one photo (any mode; converted to grey)."""
    from PIL import Image as PILImage

    settings = settings or LocalFeatureSettings()
    grey = image.convert("L")
    longest = max(grey.size)
    if longest > settings.max_side:
        scale = settings.max_side / longest
        grey = grey.resize(
            (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
            PILImage.Resampling.BILINEAR,
        )
    keypoints, descriptors = _detector(settings).detectAndCompute(np.asarray(grey), None)
    width = 32 if settings.method == "orb" else 128
    if descriptors is None or not keypoints:
        return LocalFeatures(
            np.zeros((0, 2), np.float32), np.zeros((0, width), np.uint8), settings.method
        )
    if len(keypoints) > settings.n_features:  # SIFT keeps ties at the cut-off
        keep = np.argsort([-kp.response for kp in keypoints], kind="stable")[: settings.n_features]
        keypoints = [keypoints[i] for i in keep]
        descriptors = descriptors[keep]
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    if settings.method == "sift":
        # SIFT values are non-negative and clipped at 0.2 * 512 by OpenCV: uint8 loses nothing
        # the matcher uses, and stores 4x smaller.
        descriptors = np.clip(np.rint(descriptors), 0, 255).astype(np.uint8)
    return LocalFeatures(points, descriptors.astype(np.uint8, copy=False), settings.method)


@dataclass(frozen=True)
class GeometrySettings:
    """How two photos' keypoints are matched and verified.

    ratio: Lowe's ratio test: keep a match when its distance < ratio * second best.
    ransac_px: RANSAC reprojection threshold of the homography, in pixels.
    """

    ratio: float = 0.8
    ransac_px: float = 5.0


def count_inliers(
    query: LocalFeatures, other: LocalFeatures, settings: GeometrySettings | None = None
) -> int:
    """Number of ratio-test matches from `query` to `other` consistent with one RANSAC homography.

    0 when either side has fewer than 4 keypoints or fewer than 4 matches survive, or when the
    two were made by different methods.
    """
    import cv2

    settings = settings or GeometrySettings()
    if query.method != other.method or len(query) < 4 or len(other) < 4:
        return 0
    if query.method == "orb":
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        qd, od = query.descriptors, other.descriptors
    else:
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        qd, od = query.descriptors.astype(np.float32), other.descriptors.astype(np.float32)
    pairs = matcher.knnMatch(qd, od, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < settings.ratio * p[1].distance]
    if len(good) < 4:
        return 0
    src = query.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    dst = other.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, settings.ransac_px)
    return 0 if mask is None else int(mask.sum())


class FeatureSource(Protocol):
    """Catalogue photo (path or URL, as stored in the view's payload) -> its local features,
    or None when they are not available (the photo then simply adds no evidence)."""

    def __call__(self, image: str) -> LocalFeatures | None: ...


class FeatureCache:
    """Local features of catalogue photos, kept in memory and saved to one `.npz` file.

    `get(image)` returns the cached features; with a `loader` (path -> PIL image), missing ones are
    computed and remembered (`save()` writes them). Thread-safe.
    """

    def __init__(
        self,
        path: Path | None,
        settings: LocalFeatureSettings | None = None,
        loader: Callable[[str], Image.Image] | None = None,
    ) -> None:
        self.path = Path(path) if path else None
        self.settings = settings or LocalFeatureSettings()
        self.loader = loader
        self._features: dict[str, LocalFeatures] = {}
        self._lock = threading.Lock()
        if self.path and self.path.exists():
            self._read(self.path)

    def _read(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            if str(data["method"]) != self.settings.key():
                return  # features of other settings: recomputed, never mixed
            images = data["images"]
            offsets = data["offsets"]
            points, descriptors = data["points"], data["descriptors"]
        for n, image in enumerate(images):
            lo, hi = offsets[n], offsets[n + 1]
            self._features[str(image)] = LocalFeatures(
                points[lo:hi], descriptors[lo:hi], self.settings.method
            )

    def __len__(self) -> int:
        return len(self._features)

    def __contains__(self, image: str) -> bool:
        return image in self._features

    def put(self, image: str, features: LocalFeatures) -> None:
        with self._lock:
            self._features[image] = features

    def get(self, image: str) -> LocalFeatures | None:
        found = self._features.get(image)
        if found is None and self.loader is not None:
            found = extract_features(self.loader(image), self.settings)
            self.put(image, found)
        return found

    __call__ = get

    def save(self) -> None:
        """Write every cached photo's features to `path` (atomically)."""
        if self.path is None:
            raise ValueError("this FeatureCache has no path")
        with self._lock:
            images = list(self._features)
            feats = [self._features[i] for i in images]
        width = 32 if self.settings.method == "orb" else 128
        offsets = np.cumsum([0] + [len(f) for f in feats]).astype(np.int64)
        points = (
            np.concatenate([f.points for f in feats]) if feats else np.zeros((0, 2), np.float32)
        )
        descriptors = (
            np.concatenate([f.descriptors for f in feats])
            if feats
            else np.zeros((0, width), np.uint8)
        )
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(
            tmp,
            method=np.array(self.settings.key()),
            images=np.array(images, dtype=str),
            offsets=offsets,
            points=points,
            descriptors=descriptors,
        )
        tmp.replace(self.path)


# ---------------------------------------------------------------------------------------------
# The geometric re-ranker
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RerankSettings:
    """Which candidates are verified and how inliers become score. Defaults: the best on a
    held-out part of the grocery catalogue photos; on photos from other shop visits (val) they
    cost Recall@1 (docs/parts/accuracy.md), so the engine should keep this stage off by default.

    top_k: candidate items verified (the rest keep their order, below them).
    photos_per_item: verify against this many of each item's photos (its best-matching views).
    min_inliers: fewer inliers than this add nothing (random matches give ~4-8).
    cap: inliers beyond this add nothing more.
    weight: score added at `cap` inliers: `cosine + weight * min(inliers, cap) / cap`.
    """

    top_k: int = 5
    photos_per_item: int = 3
    min_inliers: int = 8
    cap: int = 30
    weight: float = 0.1
    features: LocalFeatureSettings = LocalFeatureSettings()
    geometry: GeometrySettings = GeometrySettings()


@dataclass(frozen=True)
class Candidate:
    """One image candidate: its item, its image score (cosine), and its views as
    `(image path or URL, cosine to the query)`, best first (the re-ranker uses the first few)."""

    item_id: str
    score: float
    views: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Reranked:
    """One re-ranked item: fused score, the inliers found, and the view that gave them (or None)."""

    item_id: str
    score: float
    inliers: int = 0
    image: str | None = None


class GeometricReranker:
    """`rerank(query, candidates)`: geometric verification of the top-K candidates.

    `features` gives catalogue photos' local features (e.g. a `FeatureCache`).
    """

    def __init__(self, features: FeatureSource, settings: RerankSettings | None = None):
        self.features = features
        self.settings = settings or RerankSettings()
        self.last_ms = 0.0

    def query_features(self, query: Image.Image) -> LocalFeatures:
        return extract_features(query, self.settings.features)

    def rerank(
        self, query: Image.Image | LocalFeatures, candidates: Sequence[Candidate]
    ) -> list[Reranked]:
        """Candidates, best first by image score -> all of them, the first `top_k` re-scored and
        re-sorted (stable), the rest unchanged after them. `last_ms` records the time it took,
        query feature extraction included."""
        start = time.perf_counter()
        q = query if isinstance(query, LocalFeatures) else self.query_features(query)

        def inliers(image: str) -> int:
            other = self.features(image)
            return 0 if other is None else count_inliers(q, other, self.settings.geometry)

        out = self.rerank_with(inliers, candidates)
        self.last_ms = (time.perf_counter() - start) * 1000.0
        return out

    def rerank_with(
        self, inliers: Callable[[str], int], candidates: Sequence[Candidate]
    ) -> list[Reranked]:
        """`rerank` with the inlier count of each catalogue photo given by `inliers(image)`
        (e.g. counts computed earlier); the fusion rule is the same."""
        s = self.settings
        head = []
        for cand in candidates[: s.top_k]:
            best, best_image = 0, None
            for image, _ in cand.views[: s.photos_per_item]:
                n = inliers(image)
                if n > best:
                    best, best_image = n, image
            bonus = s.weight * min(best, s.cap) / s.cap if best >= s.min_inliers else 0.0
            head.append(Reranked(cand.item_id, cand.score + bonus, best, best_image))
        head.sort(key=lambda r: -r.score)
        tail = [Reranked(c.item_id, c.score) for c in candidates[s.top_k :]]
        return head + tail


def candidates_from_views(
    item_ids: Sequence[str],
    item_scores: Sequence[float],
    views: Mapping[str, Sequence[tuple[str, float]]],
) -> list[Candidate]:
    """Build `Candidate`s from item-level scores and, per item, its views `(image, cosine)` in any
    order (sorted best first here)."""
    return [
        Candidate(i, float(s), tuple(sorted(views.get(i, ()), key=lambda v: -v[1])))
        for i, s in zip(item_ids, item_scores, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# Query expansion
# ---------------------------------------------------------------------------------------------


def expand_query(
    query: F32, neighbours: F32, similarities: Sequence[float], alpha: float = 3.0
) -> F32:
    """alpha-QE: `normalise(query + sum_i max(sim_i, 0) ** alpha * neighbour_i)`.

    query: (D,) or (1, D); neighbours: (n, D) (e.g. the top-n item centroids or views);
    similarities: their cosine to the query. Returns the same shape as `query`, L2-normalised.
    """
    from lookalike.pipeline.embed import l2_normalise

    q = np.asarray(query, dtype=np.float32)
    weights = np.maximum(np.asarray(similarities, dtype=np.float32), 0.0) ** alpha
    expanded = q.reshape(-1) + (weights[:, None] * np.asarray(neighbours, np.float32)).sum(axis=0)
    return l2_normalise(expanded.reshape(q.shape))
