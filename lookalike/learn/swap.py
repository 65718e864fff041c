"""Swapping an index to another network's vectors, so that a killed run changes nothing.

A run that changes the network (`tune --train`, `tune --reset`) writes everything aside first:
the network file (content-addressed, `network-<sha12>.onnx`), a new shard with every point
re-embedded (`shard.training/`) and the new manifest (`lookalike.json.next`). Then it commits:
`shard` -> `shard.old`, `shard.training` -> `shard`, `lookalike.json.next` -> `lookalike.json`.
Until the first rename the index answers with its previous network; a kill between the renames is
finished (or undone) by `recover_network_swap` the next time the index is opened.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.engine.lock import folder_write_lock
from lookalike.errors import StoreError
from lookalike.models.catalog import Preprocess
from lookalike.pipeline.embed import l2_normalise, normalise
from lookalike.store.base import PointRecord

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.engine.manifest import IndexManifest
    from lookalike.learn.data import Progress, TrainData

NEW_SHARD = "shard.training"
NEXT_MANIFEST = "lookalike.json.next"
NETWORK_GLOB = "network-*.onnx"
_BATCH = 32


def recover_network_swap(index_dir: Path) -> None:
    """Finish or undo a network swap a killed run left half done (called when an index is opened,
    before its manifest is read). Does nothing while another process holds the write lock."""
    nxt = index_dir / NEXT_MANIFEST
    if not nxt.exists():
        return
    try:
        with folder_write_lock(index_dir, ".lock", ""):
            _recover(index_dir)
    except StoreError:
        return  # a live run is writing: it commits (or its kill is repaired on a later open)


def _recover(index_dir: Path) -> None:
    shard, old, new = index_dir / "shard", index_dir / "shard.old", index_dir / NEW_SHARD
    nxt = index_dir / NEXT_MANIFEST
    if not nxt.exists():
        return
    if new.exists():  # not committed: back to the previous network
        if not shard.exists() and old.exists():
            old.rename(shard)
        shutil.rmtree(new, ignore_errors=True)
        nxt.unlink()
    else:  # both renames done: the new shard is in place, finish with its manifest
        nxt.replace(index_dir / "lookalike.json")
        shutil.rmtree(old, ignore_errors=True)
    remove_unused_networks(index_dir)


def remove_unused_networks(index_dir: Path) -> None:
    """Delete network files the manifest does not name (left by replaced or killed runs)."""
    try:
        record = json.loads((index_dir / "lookalike.json").read_text()).get("network") or {}
    except (OSError, ValueError):
        return
    keep = record.get("file")
    for path in index_dir.glob(NETWORK_GLOB):
        if path.name != keep:
            path.unlink(missing_ok=True)
    for path in index_dir.glob("network*.part"):
        path.unlink(missing_ok=True)


def reembedded_points(
    records: Sequence[PointRecord],
    data: TrainData,
    embed: Callable[[np.ndarray], np.ndarray],
    pp: Preprocess,
    progress: Progress,
    vectors: Mapping[str, np.ndarray] | None = None,
) -> tuple[list[PointRecord], list[str]]:
    """(points, dropped ids): every view with its vector from `embed` ((N, 3, s, s) -> (N, dim)
    normalised) on its collected input, centroids the normalised mean of their item's new view
    vectors (as indexing computes them). Views without collected input are dropped (their photo
    changed or is unreadable now): no point may keep a vector of another network. vectors:
    the views' vectors already computed (point id -> vector), instead of `embed`."""
    pixels = {v.point_id: v.pixels for v in data.views}
    views = [r for r in records if r.payload.get("kind") == "view" and r.id in pixels]
    dropped = [r.id for r in records if r.payload.get("kind") == "view" and r.id not in pixels]
    out: list[PointRecord] = []
    by_item: dict[str, list[tuple[str, np.ndarray]]] = {}
    for start in range(0, len(views), _BATCH):
        chunk = views[start : start + _BATCH]
        if vectors is not None:
            batch = [vectors[r.id] for r in chunk]
        else:
            batch = list(embed(normalise(np.stack([pixels[r.id] for r in chunk]), pp)))
        for rec, vec in zip(chunk, batch, strict=True):
            out.append(PointRecord(rec.id, {"image": vec}, rec.payload))
            by_item.setdefault(str(rec.payload["item_id"]), []).append((rec.id, vec))
        progress("re-embed", min(start + _BATCH, len(views)), len(views))
    for rec in records:
        if rec.payload.get("kind") == "view":
            continue
        item = str(rec.payload.get("item_id"))
        if item not in by_item:
            dropped.append(rec.id)
            continue
        rows = sorted(by_item[item], key=lambda r: r[0])  # indexing's summation order
        mean = np.mean([v for _, v in rows], axis=0)
        out.append(PointRecord(rec.id, {"image": l2_normalise(mean[None])[0]}, rec.payload))
    return out, dropped


def write_aside(
    engine: Engine, points: Sequence[PointRecord], dim: int, progress: Progress
) -> None:
    """The new shard (`shard.training/`) with `points`, the current shard's payload indexes and
    graph settings."""
    from lookalike.store.edge import EdgeStore

    store = engine.store
    if not isinstance(store, EdgeStore):
        raise StoreError(
            "tune --train works on the embedded store: train the index there, then "
            "`lookalike migrate` it to the server"
        )
    schema = store.payload_schema()
    dest = engine.index_dir / NEW_SHARD
    shutil.rmtree(dest, ignore_errors=True)
    new = EdgeStore(dest, {"image": dim}, store.params)
    for start in range(0, len(points), 256):
        new.upsert(list(points[start : start + 256]))
        progress("write", min(start + 256, len(points)), len(points))
    for name, kind in schema.items():
        new.ensure_index(name, kind)  # type: ignore[arg-type]  # payload_schema() gives str; its values are IndexKinds
    new.flush()
    new.settle()
    new.close()


def commit(engine: Engine, manifest: IndexManifest) -> None:
    """Swap the new shard and manifest in (see the module docstring); closes `engine`'s store."""
    index_dir = engine.index_dir
    nxt = index_dir / NEXT_MANIFEST
    nxt.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True))
    with open(nxt, "rb") as fh:
        os.fsync(fh.fileno())
    engine.close()
    shard, old = index_dir / "shard", index_dir / "shard.old"
    shutil.rmtree(old, ignore_errors=True)
    shard.rename(old)
    (index_dir / NEW_SHARD).rename(shard)
    nxt.replace(index_dir / "lookalike.json")
    shutil.rmtree(old, ignore_errors=True)
    remove_unused_networks(index_dir)


def network_record(file: str, sha256: str, base: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's `network` record: the file in the index folder, its sha256, the base model
    it was adapted from, plus what it was trained on and how (`extra`)."""
    return {"file": file, "sha256": sha256, "base": base, **extra}
