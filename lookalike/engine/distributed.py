"""Distributed indexing with Ray Data (the optional `ray` extra): `lookalike index CAT --ray ADDRESS`.

`RayRunner` is an `engine.IndexRunner`: the photos to index go into a Ray Dataset, and a pool of
actors (`map_batches` with a callable class) reads, hashes, decodes, makes the views (detection
and isolation when the index uses them) and embeds them, each actor holding its own engine and
ONNX Runtime session. The driver (the process that runs `Engine.index`) receives vectors and view
metadata as they stream back and writes them to the store in batches, exactly as a local run
does: the same incremental rules (unchanged photos are skipped by content hash, old views of a
photo are replaced), bad photos recorded with their reason, centroids computed at the end.

Workers need the model files: they resolve them through their own model store from the settings
the driver sends (cache folder, mirror), so on a cluster put the models in a folder every node can
read (or let each node export them once). Every actor checks that its embedder is the one that
built the index (same model sha256, preprocessing and view settings) before it embeds anything.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.errors import IndexMismatchError, LookalikeError

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.engine.records import EmbeddedBatch, Stored, Task

LOCAL = "local"
"""The address that starts a Ray instance inside this process instead of joining a cluster."""


@dataclass(frozen=True)
class RayRunner:
    """Decode and embed on Ray workers; the engine writes what they return.

    address: a Ray cluster address (`ray://head:10001`, `auto`, `host:6379`), or `local` to start
        a local instance (stopped again when indexing ends).
    workers: number of actors; 0 = as many as the cluster's CPUs allow at `cpus_per_worker` each.
    cpus_per_worker: CPUs reserved by each actor; its ONNX Runtime session uses as many threads
        (unless `Settings.threads` is set).
    init_options: extra `ray.init` keyword arguments (e.g. `num_cpus` for a local instance).
    """

    address: str = LOCAL
    workers: int = 0
    cpus_per_worker: float = 1.0
    init_options: Mapping[str, Any] = field(default_factory=dict)

    def embedded(
        self,
        engine: Engine,
        tasks: Sequence[Task],
        existing: Mapping[tuple[str, str], Stored],
    ) -> Iterator[EmbeddedBatch]:
        ray = _import_ray()
        started = self._connect(ray)
        try:
            yield from self._run(ray, engine, tasks, existing)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: ModuleType) -> bool:
        """Join (or start) Ray; True when this call started it (and must stop it)."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if self.address == LOCAL:
            # Nothing listens beyond this machine; no usage statistics leave it.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            options["_node_ip_address"] = "127.0.0.1"
        else:
            options["address"] = self.address
        try:
            ray.init(**{**options, **self.init_options})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise LookalikeError(f"cannot start or join Ray at {self.address!r}: {exc}") from exc
        return True

    def _run(
        self,
        ray: ModuleType,
        engine: Engine,
        tasks: Sequence[Task],
        existing: Mapping[tuple[str, str], Stored],
    ) -> Iterator[EmbeddedBatch]:
        if not tasks:
            return
        assert engine.manifest is not None  # Engine.index creates the index before running us
        rows = [
            {
                "pos": pos,
                "item_id": t.item.id,
                "image": t.image,
                "known": getattr(existing.get((t.item.id, t.image)), "content_hash", ""),
                "read": bool(getattr(existing.get((t.item.id, t.image)), "read", False)),
            }
            for pos, t in enumerate(tasks)
        ]
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        workers = self.workers or max(1, int(cpus // self.cpus_per_worker))
        # workers embed only: no index folder, no secrets (JSON would mask them anyway)
        settings = engine.settings.model_dump(
            mode="json", exclude={"index": True, "serve": True, "vectors": {"qdrant_api_key"}}
        )
        if not settings["models"]["threads"]:
            settings["models"]["threads"] = max(1, int(self.cpus_per_worker))
        batch_size = max(1, engine.settings.models.batch_size)
        # The engine reports progress itself; Ray's own bars would interleave with it.
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // batch_size))
        embedded = dataset.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={
                "settings": settings,
                "embedder": engine.embedder_name,
                "views": engine.views.to_dict(),
                "identity": json.dumps(engine.manifest.identity(), sort_keys=True, default=str),
                "network": _network_for_workers(engine),
            },
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=workers,
            num_cpus=self.cpus_per_worker,
        )
        try:
            yield from _regroup(
                embedded.iter_batches(batch_size=batch_size, batch_format="numpy"), tasks
            )
        except ray.exceptions.RayError as exc:
            # A worker failed (its model differs, it could not load one ...): Ray wraps the cause.
            raise LookalikeError(f"distributed indexing failed on a Ray worker: {exc}") from exc


def _network_for_workers(engine: Engine) -> dict[str, Any] | None:
    """The index's adapted network record (`tune --train`) with the file's absolute path: the
    workers embed with it (and check its sha256), as this process would."""
    if not engine.network:
        return None
    from lookalike.learn.adapted import network_path

    return {**engine.network, "path": str(network_path(engine.index_dir, engine.network).resolve())}


def _import_ray() -> ModuleType:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise LookalikeError(
            "distributed indexing needs Ray: pip install 'lookalike[ray]'"
        ) from exc
    return ray


class _EmbedActor:
    """One Ray actor: an engine (models loaded once) that turns rows of photos into view rows.

    In: {pos, item_id, image, known (content hash already indexed, or "")}.
    Out: one row per view, or one row with `n_views` 0 for a photo with none (unchanged, skipped,
    no object kept): {pos, n_views, meta (JSON: sha256, skipped, unchanged, view fields,
    classes), vector (dim float32; zeros without a view)}.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        embedder: str,
        views: dict[str, Any],
        identity: str,
        network: dict[str, Any] | None = None,
    ) -> None:
        from lookalike.config import Settings
        from lookalike.engine.core import Engine
        from lookalike.engine.wiring import views_from_dict

        self._tmp = tempfile.TemporaryDirectory(prefix="lookalike-ray-")
        self.engine = Engine(
            self._tmp.name,
            settings=Settings(index=Path(self._tmp.name), **settings),
            embedder=embedder,
            views=views_from_dict(views),
        )
        self.engine.network = network  # the index's adapted network, if it has one
        mine = json.dumps(self.engine.wanted_manifest().identity(), sort_keys=True, default=str)
        if mine != identity:
            raise IndexMismatchError(
                f"a Ray worker's {embedder} differs from the one that built the index "
                f"(worker: {mine}; index: {identity}): give every node the same model files"
            )
        self.limits = self.engine.decode_limits()
        self.pipeline = self.engine.pipeline

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from lookalike.engine.records import Stored, Task
        from lookalike.types import Item

        tasks, existing = [], {}
        for item_id, image, known, read in zip(
            batch["item_id"], batch["image"], batch["known"], batch["read"], strict=True
        ):
            task = Task(Item(str(item_id), (str(image),)), str(image))
            tasks.append(task)
            if known:
                existing[(task.item.id, task.image)] = Stored((), str(known), "", bool(read))
        entries, vectors, classes = self.pipeline.embed_batch(tasks, existing, self.limits)
        loaded = [(int(pos), entry) for pos, entry in zip(batch["pos"], entries, strict=True)]
        dim = self.engine.embedder.dim
        out_pos, out_n, out_meta, out_vec = [], [], [], []
        k = 0
        for pos, entry in loaded:
            head: dict[str, Any] = {
                "sha256": entry.sha256,
                "skipped": entry.skipped.reason if entry.skipped else None,
                "unchanged": entry.unchanged,
                # OCR words (settings.ocr): of an unchanged photo read for the first time
                "words": list(entry.words) if entry.words is not None else None,
            }
            for view in entry.views or (None,):
                meta = dict(head)
                if view is not None:
                    meta.update(
                        key=view.key,
                        box=list(view.box),
                        label=view.label,
                        score=view.score,
                        colours=list(view.colours),
                        words=list(view.words) if view.words is not None else None,
                        classes=list(classes[k]),
                    )
                    out_vec.append(vectors[k])
                    k += 1
                else:
                    out_vec.append(np.zeros(dim, np.float32))
                out_pos.append(pos)
                out_n.append(len(entry.views))
                out_meta.append(json.dumps(meta))
        return {
            "pos": np.asarray(out_pos, np.int64),
            "n_views": np.asarray(out_n, np.int64),
            "meta": np.asarray(out_meta, dtype=object),
            "vector": np.stack(out_vec).astype(np.float32, copy=False),
        }


def _regroup(
    batches: Iterator[dict[str, np.ndarray]], tasks: Sequence[Task]
) -> Iterator[EmbeddedBatch]:
    """View rows back into (photos, vectors, classes) batches, each photo whole (its views may
    arrive split across two Ray batches)."""
    from lookalike.engine.records import Loaded, View
    from lookalike.types import Skipped

    pending: dict[int, list[tuple[dict[str, Any], np.ndarray]]] = {}
    for batch in batches:
        done: list[int] = []
        for pos, n_views, meta, vector in zip(
            batch["pos"], batch["n_views"], batch["meta"], batch["vector"], strict=True
        ):
            rows = pending.setdefault(int(pos), [])
            rows.append((json.loads(str(meta)), np.asarray(vector, np.float32)))
            if len(rows) >= max(1, int(n_views)):
                done.append(int(pos))
        loaded: list[Loaded] = []
        vectors: list[np.ndarray] = []
        classes: list[list[str]] = []
        for pos in done:
            rows = pending.pop(pos)
            task, head = tasks[pos], rows[0][0]
            views = tuple(
                View(
                    m["key"],
                    tuple(m["box"]),
                    m["label"],
                    float(m["score"]),
                    None,
                    tuple(m["colours"]),
                    words=_words(m),
                )
                for m, _ in rows
                if "key" in m
            )
            skipped = Skipped(task.image, head["skipped"]) if head["skipped"] else None
            loaded.append(
                Loaded(
                    task,
                    head["sha256"],
                    skipped=skipped,
                    unchanged=head["unchanged"],
                    views=views,
                    words=_words(head),
                )
            )
            vectors.extend(v for m, v in rows if "key" in m)
            classes.extend(m["classes"] for m, _ in rows if "key" in m)
        if loaded:
            dim = batch["vector"].shape[1] if batch["vector"].ndim == 2 else 0
            matrix = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
            yield loaded, matrix, classes
    if pending:
        raise LookalikeError(f"Ray returned incomplete views for {len(pending)} photo(s)")


def _words(meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    """OCR words carried through a batch's JSON metadata (None: OCR did not run)."""
    words = meta.get("words")
    return tuple(words) if words is not None else None
