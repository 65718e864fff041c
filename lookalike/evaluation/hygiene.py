"""Catalogue hygiene: near-identical photos filed under different items, and photos least like the
rest of their item (often mislabelled).

Both work on the view vectors already in the index: nothing is re-embedded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.evaluation.report import Thumbs, escape, figure, write_page
from lookalike.store.base import Store, where

DUPLICATE_THRESHOLD = 0.88
"""Default cosine similarity above which two views count as the same photo. Calibrated by
`bench/calibrate_duplicates.py` on catalogue photos and their edited copies (docs/quality.md)."""


@dataclass(frozen=True)
class Photo:
    item_id: str
    image: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos that are near-identical (connected by similarity >= threshold), from >= 2 items."""

    photos: tuple[Photo, ...]
    min_similarity: float
    max_similarity: float

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(sorted({p.item_id for p in self.photos}))


@dataclass(frozen=True)
class Outlier:
    """A view and its cosine similarity to the mean of its item's other views (lower = odder)."""

    photo: Photo
    similarity: float
    item_views: int


def _views(store: Store) -> tuple[list[str], list[Photo], np.ndarray]:
    ids, photos, vectors = [], [], []
    for rec in store.scroll(where("kind", "view"), fields=["item_id", "image"], with_vectors=True):
        ids.append(rec.id)
        photos.append(Photo(str(rec.payload["item_id"]), str(rec.payload["image"])))
        vectors.append(rec.vectors["image"])
    dim = len(vectors[0]) if vectors else 0
    return ids, photos, np.asarray(vectors, dtype=np.float32).reshape(-1, dim)


def near_duplicates(
    store: Store,
    *,
    threshold: float = DUPLICATE_THRESHOLD,
    neighbours: int = 10,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[DuplicateGroup]:
    """Groups of near-identical photos spanning different items, most similar groups first.

    Each view's `neighbours` nearest views come from the store's vector search (so this scales
    with the index, not with the square of the catalogue); pairs above `threshold` from different
    items are joined into groups (union-find).
    """
    notify = progress or (lambda stage, done, total: None)
    ids, photos, vectors = _views(store)
    index = {pid: i for i, pid in enumerate(ids)}
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pair_scores: dict[tuple[int, int], float] = {}
    view_filter = where("kind", "view")
    for n, (i, vector) in enumerate(zip(range(len(ids)), vectors, strict=True)):
        for hit in store.search(vector, limit=neighbours + 1, flt=view_filter):
            j = index.get(hit.point_id)
            if j is None or j == i or hit.score < threshold:
                continue
            if photos[i].item_id == photos[j].item_id:
                continue  # several photos of one item are expected to look alike
            pair_scores[(min(i, j), max(i, j))] = hit.score
            parent[find(i)] = find(j)
        if n % 256 == 0:
            notify("duplicates", n, len(ids))
    notify("duplicates", len(ids), len(ids))
    members: dict[int, set[int]] = {}
    scores: dict[int, list[float]] = {}
    for (i, j), score in pair_scores.items():
        root = find(i)
        members.setdefault(root, set()).update((i, j))
        scores.setdefault(root, []).append(score)
    groups = [
        DuplicateGroup(
            tuple(sorted((photos[m] for m in ms), key=lambda p: (p.item_id, p.image))),
            min(scores[root]),
            max(scores[root]),
        )
        for root, ms in members.items()
    ]
    return sorted(groups, key=lambda g: -g.max_similarity)


def outliers(store: Store, *, top: int = 20, min_views: int = 3) -> list[Outlier]:
    """The `top` views least like the mean of their item's other views (leave-one-out)."""
    _, photos, vectors = _views(store)
    by_item: dict[str, list[int]] = {}
    for i, p in enumerate(photos):
        by_item.setdefault(p.item_id, []).append(i)
    found: list[Outlier] = []
    for members in by_item.values():
        if len(members) < min_views:
            continue
        vecs = vectors[members]
        total = vecs.sum(axis=0)
        for row, i in enumerate(members):
            others = total - vecs[row]
            sim = float(vecs[row] @ others / max(float(np.linalg.norm(others)), 1e-12))
            found.append(Outlier(photos[i], sim, len(members)))
    return sorted(found, key=lambda o: o.similarity)[:top]


def why_no_outliers(store: Store, *, min_views: int = 3) -> str | None:
    """Why `outliers` finds nothing to compare (a sentence for people), or None when some item
    has `min_views` photos: a photo is judged against its item's other photos only."""
    views = store.scroll(where("kind", "view"), fields=["item_id"])
    per_item = Counter(str(rec.payload["item_id"]) for rec in views)
    if any(n >= min_views for n in per_item.values()):
        return None
    most = max(per_item.values(), default=0)
    return (
        f"no item of this index has {min_views} photos or more ({len(per_item)} items, at most "
        f"{most} photo{'' if most == 1 else 's'} each): outliers compares each photo with the "
        f"other photos of its item; use `lookalike duplicates` to check one-photo catalogues"
    )


def write_duplicates_page(dest: Path, groups: Sequence[DuplicateGroup], threshold: float) -> Path:
    thumbs = Thumbs(dest.parent)
    rows = []
    for g in groups:
        cards = "".join(
            figure(thumbs(p.image), p.image, f"{escape(p.item_id)}<br>{escape(Path(p.image).name)}")
            for p in g.photos
        )
        rows.append(
            f"<tr><td>{escape(', '.join(g.items))}<br><span class='muted'>similarity "
            f"{g.min_similarity:.3f}-{g.max_similarity:.3f}</span></td>"
            f"<td><div class='cards'>{cards}</div></td></tr>"
        )
    body = (
        f"<p>{len(groups)} groups of near-identical photos filed under different items "
        f"(cosine similarity >= {threshold:.3f}).</p>"
        "<table><thead><tr><th>items</th><th>photos</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return write_page(dest, "Near-duplicate photos across items", body)


def write_outliers_page(
    dest: Path, found: Sequence[Outlier], store: Store, *, note: str | None = None
) -> Path:
    """Each outlier next to a typical photo of its item, so a person can judge the label.
    note: why the list is empty (`why_no_outliers`), shown instead of an empty table."""
    thumbs = Thumbs(dest.parent)
    rows = []
    for o in found:
        others = [
            str(r.payload["image"])
            for r in store.scroll(
                where("item_id", o.photo.item_id) & where("kind", "view"),
                fields=["image"],
            )
            if r.payload["image"] != o.photo.image
        ][:3]
        typical = "".join(figure(thumbs(img), img, escape(Path(img).name)) for img in others)
        rows.append(
            f"<tr><td>{figure(thumbs(o.photo.image), o.photo.image, escape(Path(o.photo.image).name), 'wrong')}"
            f"</td><td>{escape(o.photo.item_id)}<br><span class='muted'>similarity to the item's "
            f"other {o.item_views - 1} photos: {o.similarity:.3f}</span></td>"
            f"<td><div class='cards'>{typical}</div></td></tr>"
        )
    body = (
        "<p>Photos least like the rest of their item, oddest first: check their labels.</p>"
        "<table><thead><tr><th>photo</th><th>item</th><th>other photos of the item</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        if found
        else f"<p>No outliers to show: {escape(note or 'no photo to compare')}.</p>"
    )
    return write_page(dest, "Outlier photos per item", body)
