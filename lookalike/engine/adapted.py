"""`lookalike tune`: fit the learned projection (`lookalike.learn.projection`) on an index's own views, store it
with the index and apply it; and say whether an index's projection is still current.

Storage (inside the index folder):
    projection.npz / projection.json   the matrix and mean (`Projection.save`), sha256 checked on load
    lookalike.json                     `projection`: the record (version, sha256, dims, params) plus
                                       the signature of the views it was fitted on
    shard/                             every point keeps its raw vector `image` and gains `tuned`
                                       (views projected; centroids = normalised mean of the
                                       projected views, i.e. recomputed in the projected space)

Re-tuning never needs re-embedding (the raw vectors stay). A Qdrant Edge shard fixes its named
vectors when created, so applying a projection rebuilds the shard into `shard.tuning/` and swaps it
in; an interrupted swap is repaired when the index is next opened (`recover_shard`).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.engine.calibration import stale_note, views_signature, views_stale
from lookalike.errors import CatalogueError, IndexMismatchError, StoreError
from lookalike.pipeline.embed import l2_normalise
from lookalike.store.base import PointRecord

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.learn.projection import Projection, TuneResult

Progress = Callable[[str, int, int], None]

PROJECTION_FILE = "projection"
"""Stem of the projection files in the index folder (`projection.npz`, `projection.json`)."""
TUNED = "tuned"
"""Named vector holding the projected vectors."""
_BATCH = 256


@dataclass(frozen=True)
class ProjectionStatus:
    """Whether searches of an index use a learned projection, and whether it is current.

    applied: the index has a projection and searches use it (setting `tuned` on).
    stale: views were added, changed or removed since it was fitted (it still applies consistently
    to every vector, but was not fitted on them: run `lookalike tune` again).
    """

    present: bool
    applied: bool
    stale: bool = False
    sha256: str | None = None
    dim_in: int | None = None
    dim_out: int | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fitted_views: int = 0
    current_views: int = 0
    choice: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        """One line for CLI output."""
        if not self.present:
            return "projection: none (run `lookalike tune` to fit one)"
        state = "applied" if self.applied else "present but off (LOOKALIKE_TUNED=false)"
        line = (
            f"projection: {state}, {self.params.get('method', '?')} {self.dim_in}->{self.dim_out} "
            f"(lam {self.params.get('lam')}), sha256 {str(self.sha256)[:12]}"
        )
        if self.stale:
            line += stale_note("fitted", self.fitted_views, self.current_views, "lookalike tune")
        return line

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TuneOutcome:
    """What `tune_index` did: the fit (grid, held-out choice and baseline) and whether it applied."""

    result: TuneResult
    applied: bool
    views: int
    items: int
    seconds: float


def load_projection(index_dir: Path, record: Mapping[str, Any], dim: int) -> Projection:
    """The projection the manifest records, checked against it (sha256 and input dimension)."""
    from lookalike.learn.projection import Projection

    projection = Projection.load(index_dir / PROJECTION_FILE)
    if projection.sha256 != record.get("sha256"):
        raise IndexMismatchError(
            f"the projection in {index_dir} is not the one its manifest records "
            f"({projection.sha256[:12]} != {str(record.get('sha256'))[:12]}): run `lookalike tune`"
        )
    if projection.d_in != dim:
        raise IndexMismatchError(
            f"the projection in {index_dir} takes {projection.d_in}-d vectors, the index holds "
            f"{dim}-d ones: run `lookalike tune`"
        )
    return projection


def recover_shard(index_dir: Path) -> None:
    """Finish or undo a shard swap a killed `tune` left half done (called when opening)."""
    shard, old, new = index_dir / "shard", index_dir / "shard.old", index_dir / "shard.tuning"
    if not shard.exists() and old.exists():
        old.rename(shard)  # killed between the two renames: the old shard is complete
    if shard.exists():
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(new, ignore_errors=True)


def projected_points(records: list[PointRecord], projection: Projection) -> list[PointRecord]:
    """Every point with its `tuned` vector: views projected, centroids the normalised mean of
    their item's projected views (an item's centroid without views keeps its projected raw mean)."""
    views = [r for r in records if r.payload.get("kind") == "view"]
    out: list[PointRecord] = []
    sums: dict[str, np.ndarray] = {}
    if views:
        tuned = projection.apply(np.stack([np.asarray(r.vectors["image"]) for r in views]))
        for rec, vec in zip(views, tuned, strict=True):
            item = str(rec.payload["item_id"])
            sums[item] = sums.get(item, 0.0) + vec.astype(np.float64)
            out.append(PointRecord(rec.id, {**rec.vectors, TUNED: vec}, rec.payload))
    for rec in records:
        if rec.payload.get("kind") == "view":
            continue
        item = str(rec.payload.get("item_id"))
        if item in sums:
            vec = l2_normalise(sums[item].astype(np.float32))
        else:
            vec = projection.apply(np.asarray(rec.vectors["image"]))
        out.append(PointRecord(rec.id, {**rec.vectors, TUNED: vec}, rec.payload))
    return out


def tune_index(
    engine: Engine,
    *,
    holdout: float = 0.2,
    seed: int = 0,
    force: bool = False,
    dims: tuple[int, ...] | None = None,
    lambdas: tuple[float, ...] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    progress: Progress | None = None,
) -> TuneOutcome:
    """Fit a projection on the index's views grouped by item and, when it beats no projection on
    the held-out views (or `force`), store it with the index and apply it to every point.

    Parameters (`dim`, `lam`) are chosen on a held-out part of the views (`lookalike.learn.projection.
    fit_projection`: `holdout` of each item's photos, seeded); the projection is then refitted on
    all views. Raises CatalogueError when too few items have several photos.

    pairs: (photo in the wild, item id) rows, e.g. worn photos of a fashion catalogue's garments.
    Then the cross-domain projection is fitted instead (`lookalike.learn.projection.fit_cross_domain`): each
    wild photo (embedded like a query) is paired with every indexed view of its item, and the
    parameters are chosen on held-out *items* (their wild photos search their own views).
    Unknown item ids and unreadable photos raise CatalogueError.
    """
    import time

    from lookalike.learn.projection import DEFAULT_DIMS, DEFAULT_LAMBDAS
    from lookalike.learn.tuning import fit_cross_domain, fit_projection

    notify = progress or (lambda stage, done, total: None)
    started = time.perf_counter()
    with engine.write_lock():
        store = engine.store
        notify("read", 0, 0)
        records = list(store.scroll(with_vectors=True))
        views = [r for r in records if r.payload.get("kind") == "view"]
        if len(views) < 3:
            from lookalike.learn.projection import PAIRS_HINT

            raise CatalogueError(
                f"tuning needs an index with several photos per item; with one photo per item, "
                f"{PAIRS_HINT}"
            )
        vectors = np.stack([np.asarray(r.vectors["image"], dtype=np.float32) for r in views])
        items = [str(r.payload["item_id"]) for r in views]
        if pairs:
            wild, product, groups = _pair_vectors(engine, pairs, vectors, items, notify)
            result = fit_cross_domain(
                wild,
                product,
                groups=groups,
                holdout=holdout,
                seed=seed,
                dims=dims or DEFAULT_DIMS,
                lambdas=lambdas or DEFAULT_LAMBDAS,
                progress=notify,
            )
        else:
            result = fit_projection(
                vectors,
                items,
                holdout=holdout,
                seed=seed,
                dims=dims or DEFAULT_DIMS,
                lambdas=lambdas or DEFAULT_LAMBDAS,
                progress=notify,
            )
        applied = result.improves or force
        if applied:
            from lookalike.engine.calibration import calibrate_index

            _apply(engine, records, result, notify)
            calibrate_index(engine, progress=notify)  # the tuned space has its own scale
    return TuneOutcome(result, applied, len(views), len(set(items)), time.perf_counter() - started)


def _pair_vectors(
    engine: Engine,
    pairs: Sequence[tuple[str, str]],
    vectors: np.ndarray,
    items: Sequence[str],
    notify: Progress,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(wild, product, groups): each wild photo's query vector repeated against every view of its
    item, row by row, and the item id of each row."""
    from lookalike.errors import LookalikeError

    by_item: dict[str, list[int]] = {}
    for row, item in enumerate(items):
        by_item.setdefault(item, []).append(row)
    unknown = sorted({item for _, item in pairs if item not in by_item})
    if unknown:
        raise CatalogueError(f"pairs name items the index does not hold: {unknown[:5]}")
    wild_rows: list[np.ndarray] = []
    product_rows: list[int] = []
    groups: list[str] = []
    for done, (photo, item) in enumerate(pairs, start=1):
        try:
            image = engine.decode_query(photo)
        except LookalikeError as exc:
            raise CatalogueError(f"pair photo {photo}: {exc}") from exc
        view = engine.query_views(image)[0]
        vector = engine.embed_queries([view.image])[0]
        for row in by_item[item]:
            wild_rows.append(vector)
            product_rows.append(row)
            groups.append(item)
        notify("pairs", done, len(pairs))
    return np.stack(wild_rows), vectors[product_rows], groups


def _apply(
    engine: Engine, records: list[PointRecord], result: TuneResult, notify: Progress
) -> None:
    from lookalike.store.edge import EdgeStore
    from lookalike.store.memory import MemoryStore

    projection = result.projection
    index_dir = engine.index_dir
    points = projected_points(records, projection)
    store = engine.store
    if isinstance(store, EdgeStore):
        # Named vectors are fixed when a shard is created: build a new shard and swap it in.
        schema = store.payload_schema()
        new_path = index_dir / "shard.tuning"
        shutil.rmtree(new_path, ignore_errors=True)
        assert engine.manifest is not None
        new = EdgeStore(
            new_path, {"image": engine.manifest.dim, TUNED: projection.d_out}, store.params
        )
        for start in range(0, len(points), _BATCH):
            new.upsert(points[start : start + _BATCH])
            notify("apply", min(start + _BATCH, len(points)), len(points))
        for name, kind in schema.items():
            new.ensure_index(name, kind)  # type: ignore[arg-type]  # kind: from payload_schema, a valid one
        new.flush()
        new.settle()  # the graph, as after indexing (docs/benchmarks.md)
        new.close()
        engine.close()
        shard, old = index_dir / "shard", index_dir / "shard.old"
        shard.rename(old)
        new_path.rename(shard)
        shutil.rmtree(old, ignore_errors=True)
    elif not isinstance(store, MemoryStore):
        # A Qdrant collection's named vectors are fixed when it is created, and rebuilding a
        # shared server collection behind other clients' backs is not this command's call.
        raise StoreError(
            "lookalike tune works on the embedded store (and in-memory ones): tune the index "
            "there, then `lookalike migrate` it to the server"
        )
    else:  # stores that take any named vector (in-memory, tests)
        for start in range(0, len(points), _BATCH):
            store.upsert(points[start : start + _BATCH])
            notify("apply", min(start + _BATCH, len(points)), len(points))
        store.flush()
    projection.save(index_dir / PROJECTION_FILE)
    signature, count = views_signature(engine.store)
    record = {
        **projection.record(),
        "views": signature,
        "view_count": count,
        "items": len({str(r.payload.get("item_id")) for r in records}),
        "choice": {
            "dim": result.chosen.dim,
            "lam": result.chosen.lam,
            "held_out": {k: dict(v) for k, v in result.chosen.metrics.items()},
            "held_out_without": {k: dict(v) for k, v in result.baseline.metrics.items()},
            "split": dict(result.split),
        },
    }
    assert engine.manifest is not None
    manifest = dataclasses.replace(engine.manifest, projection=record)
    manifest.save(index_dir)
    engine.manifest = manifest
    engine.use_projection(projection)


def projection_status(engine: Engine, *, exact: bool = True) -> ProjectionStatus:
    """Whether `engine`'s index has a projection, whether searches use it, whether it is stale.

    exact: compare the signature of every view (reads every view's id and content hash: changed
    photos are caught too); otherwise only the number of views (one count, for `stats`).
    """
    manifest = engine.manifest
    record = manifest.projection if manifest is not None else None
    if not record:
        return ProjectionStatus(present=False, applied=False)
    stale, count = views_stale(engine.store, record, exact)
    return ProjectionStatus(
        present=True,
        applied=engine.projection is not None,
        stale=stale,
        sha256=record.get("sha256"),
        dim_in=record.get("d_in"),
        dim_out=record.get("d_out"),
        params=dict(record.get("params") or {}),
        fitted_views=int(record.get("view_count") or 0),
        current_views=count,
        choice=dict(record.get("choice") or {}),
    )
