"""`lookalike tune --train` and `--reset` on an index: plan, read, train, export, re-embed, swap.

Nothing in the index changes until the final swap (`lookalike.learn.swap`): a run refused (too
little data or memory), failed or killed leaves it answering with its previous network.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from lookalike.errors import CatalogueError, ModelError, StoreError, TrainingError
from lookalike.learn.data import Progress, TrainData, holdout_split
from lookalike.learn.heldout import centroid_recall
from lookalike.learn.settings import ProgressFn, TrainProgress, TrainReport, TrainSettings
from lookalike.pipeline.embed import normalise
from lookalike.store.base import where
from lookalike.types import Skipped

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet

    from lookalike.engine.core import Engine
    from lookalike.learn.net import Footprint
    from lookalike.models.catalog import ModelSpec, Preprocess
    from lookalike.models.store import ModelStore
    from lookalike.pipeline.embed import OnnxImageEmbedder


@dataclass(frozen=True)
class TrainOutcome:
    """What `train_index` did: the training report, whether the new network was applied (it beat
    the base network on the held-out draws, or `force`), photos skipped, views dropped."""

    report: TrainReport
    applied: bool
    skipped: tuple[Skipped, ...]
    dropped: int
    sha256: str | None
    seconds: float


def _base(engine: Engine) -> tuple[ModelSpec, ModelStore]:
    """(spec, model store) of the index's base embedder; StoreError for stores we cannot swap."""
    from lookalike.engine import wiring
    from lookalike.models.catalog import get_spec

    if engine.manifest is None:
        raise StoreError(f"no index at {engine.index_dir}: run `lookalike index` first")
    if engine.store_record()["kind"] != "edge":
        raise StoreError(
            "tune --train works on the embedded store: train the index there, then "
            "`lookalike migrate` it to the server"
        )
    return get_spec(engine.embedder_name), wiring.model_store(engine.settings)


def plan(
    engine: Engine, settings: TrainSettings, pairs: int, spec: ModelSpec, fp: Footprint
) -> None:
    """Refuse, before reading any photo, a run that cannot fit: too few items or views, or more
    memory than `settings.max_memory_gb` (or than the machine has free)."""
    from lookalike.learn.losses import LOSSES
    from lookalike.learn.precision import check

    check(settings.precision)
    if settings.loss not in LOSSES:
        raise TrainingError(f"unknown training loss {settings.loss!r}; use one of {list(LOSSES)}")
    store = engine.store
    items = store.count(where("kind", "centroid"))
    views = store.count(where("kind", "view"))
    if items < 2 or views < 2:
        raise TrainingError(
            f"training needs at least 2 items with photos; the index holds {items} item(s), "
            f"{views} view(s)"
        )
    size = spec.image_preprocess.size
    # A batch holds two views of each of up to batch_size / 2 items (`PairBatches`).
    batch = min(settings.batch_size, 2 * items)
    need = estimate_bytes(views + pairs, size, fp, settings.augmentations, batch)
    limit = int(settings.max_memory_gb * 2**30)
    free = available_bytes()
    if need > limit or (free is not None and need > free):
        have = f"{limit / 2**30:.1f} GB allowed" + (
            f", {free / 2**30:.1f} GB free" if free is not None else ""
        )
        raise TrainingError(
            f"training {views} views and {pairs} pair photos with {settings.augmentations} "
            f"augmented views each, {batch} a batch, needs about {need / 2**30:.1f} GB ({have}): "
            "lower --augmentations or --batch-size, or raise --max-memory"
        )


BASE_BYTES = 800 * 2**20
"""What a run holds besides its data and its batch: the libraries, the networks and the optimiser
(garments, ensemble: 4.0 GB peak for 0.46 GB of data and a 3.1 GB batch estimate)."""


def estimate_bytes(views: int, size: int, fp: Footprint, augmentations: int, batch: int) -> int:
    """Memory a run holds at its peak, training: each view's 8-bit input and its cached float16
    activations (clean + augmented), what a batch keeps for its backward pass, and `BASE_BYTES`.
    The ONNX Runtime sessions (front passes, re-embedding) come and go outside training, with
    less than a batch's worth of buffers (`net.RUN_BATCH`)."""
    per_view = size * size * 3 + (augmentations + 1) * fp.act_elems * 2
    return views * per_view + batch * fp.saved_bytes + BASE_BYTES


def available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def train_index(
    engine: Engine,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    settings: TrainSettings = TrainSettings(),
    force: bool = False,
    progress: ProgressFn | None = None,
) -> TrainOutcome:
    """Fine-tune the index's network on its own views (and `pairs`: photo in the wild, item id),
    and when it beats the base network on held-out draws (or `force`), export it into the index
    folder, re-embed every point with it and swap it in. `engine` is reloaded afterwards."""
    from lookalike.learn import net as nets
    from lookalike.learn.data import check_data, collect
    from lookalike.learn.train import Trainer
    from lookalike.models.catalog import weights_role

    started = time.perf_counter()
    notify = progress or (lambda p: None)

    def stage(name: str, done: int, total: int) -> None:
        notify(TrainProgress(name, done, total))

    spec, models = _base(engine)
    with engine.write_lock():
        try:
            variants = nets.members(spec.name)
        except ModelError as exc:
            raise TrainingError(str(exc)) from None
        nets.require_torch()
        # An ensemble: its first network trains, the others stay frozen beside it.
        net, *frozen = [
            nets.load_network(v, models.export_input(spec.name, weights_role(v, variants)))
            for v in variants
        ]
        cut = nets.split_at(net, variants[0], settings.tail_blocks)
        pp = spec.image_preprocess
        plan(engine, settings, len(pairs), spec, nets.footprint(net, cut, pp.size))
        data = collect(engine, pp, pairs=pairs, progress=stage)
        check_data(data, len(pairs))
        background = _cutout_background(engine)
        trainer = Trainer(
            net, cut, pp, settings, notify, started=started, background=background, frozen=frozen
        )
        report = trainer.run(data)
        applied = report.improves or force
        sha = None
        dropped = 0
        if applied:
            sha, dropped = _apply(engine, [net, *frozen], spec, data, settings, report, stage)
        engine.reload()  # inside the lock: what runs when it is released sees the new index
    return TrainOutcome(report, applied, data.skipped, dropped, sha, time.perf_counter() - started)


def _cutout_background(engine: Engine) -> tuple[int, int, int] | None:
    bg = getattr(engine.views, "background", None)
    if engine.views.isolate == "none" or not bg or len(bg) != 3:
        return None
    try:
        return (int(bg[0]), int(bg[1]), int(bg[2]))
    except (TypeError, ValueError):
        return None


def _apply(
    engine: Engine,
    networks: Sequence[EfficientNet],
    spec: ModelSpec,
    data: TrainData,
    settings: TrainSettings,
    report: TrainReport,
    stage: Progress,
) -> tuple[str, int]:
    from lookalike.engine.calibration import views_signature
    from lookalike.learn import net as nets
    from lookalike.learn.adapted import open_adapted
    from lookalike.learn.swap import network_record
    from lookalike.models.store import sha256_file

    index_dir = engine.index_dir
    stage("export", 0, 1)
    part = index_dir / "network.onnx.part"
    nets.export_onnx(networks, spec.image_preprocess.size, part)
    sha = sha256_file(part)
    name = f"network-{sha[:12]}.onnx"
    part.replace(index_dir / name)
    stage("export", 1, 1)
    signature, count = views_signature(engine.store)
    record = network_record(
        name,
        sha,
        spec.name,
        {
            "trained": datetime.now(UTC).isoformat(timespec="seconds"),
            "views": signature,
            "view_count": count,
            "settings": settings.record(),
            "report": {k: v for k, v in dataclasses.asdict(report).items() if k not in ("history",)}
            # JSON has no NaN: an epoch whose held-out check was skipped reads null
            | {"history": [[e, loss, None if r != r else r] for e, loss, r in report.history]},
        },
    )
    embedder = open_adapted(index_dir, record, spec, engine.settings)
    vectors = None
    if settings.int8:
        record, vectors = _int8(engine, record, embedder, spec, data, settings, stage)
        sha = record["sha256"]
    dropped = _swap(
        engine, data, lambda x: embedder.embed_prepared(x)[0], spec, record, stage, vectors
    )
    return sha, dropped


# --- int8 for an adapted network (`tune --train --int8`): the static QDQ recipe of the base models
# (`lookalike.models.quantize.quantize_static_int8`), calibrated on the index's own photos, kept
# only when it stays within `TOLERANCE` Recall@1 of the float network on the run's held-out draws.
# Both networks embed every view once here; the chosen one's vectors are the ones the index gets
# (no third pass).

TOLERANCE = 0.01
"""int8 is used when its held-out Recall@1 is at least the float network's minus this."""
CALIBRATION_PHOTOS = 128
_BATCH = 32


def embed_all(
    data: TrainData,
    embed: Callable[[np.ndarray], np.ndarray],
    pp: Preprocess,
    stage: Progress,
    name: str,
) -> dict[str, np.ndarray]:
    """point id -> vector of every collected view, and `wild:<i>` -> vector of each pair photo."""
    rows: list[tuple[str, np.ndarray]] = [(str(v.point_id), v.pixels) for v in data.views]
    rows += [(f"wild:{i}", w.pixels) for i, w in enumerate(data.wild)]
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(rows), _BATCH):
        chunk = rows[start : start + _BATCH]
        vectors = embed(normalise(np.stack([p for _, p in chunk]), pp))
        out.update(zip((k for k, _ in chunk), vectors, strict=True))
        stage(name, min(start + _BATCH, len(rows)), len(rows))
    return out


def held_out_recall(
    data: TrainData, vectors: Mapping[str, np.ndarray], holdout: float, seed: int
) -> float:
    """Centroid Recall@1 of the run's held-out queries (`holdout_split`, same draw as training)
    against the training views; instance draws use the clean views themselves (no augmentation
    here: this compares two encodings of one network, not the network)."""
    split = holdout_split(data, holdout, seed)
    views = data.views
    gallery = [(views[i].item_id, vectors[str(views[i].point_id)]) for i in split.train]
    queries = [(views[i].item_id, vectors[str(views[i].point_id)]) for i in split.queries]
    queries += [(data.wild[i].item_id, vectors[f"wild:{i}"]) for i in split.query_wild]
    g = np.stack([v for _, v in gallery])
    q = np.stack([v for _, v in queries])
    return centroid_recall(g, [i for i, _ in gallery], q, [i for i, _ in queries])[0]


def quantize_for_index(
    index_dir: Path, float_file: str, data: TrainData, pp: Preprocess, seed: int, stage: Progress
) -> Path:
    """The int8 file (`network-int8.onnx.part` in the index folder), calibrated on up to
    `CALIBRATION_PHOTOS` of the index's photos (a seeded draw)."""
    from lookalike.models.quantize import quantize_static_int8

    photos = sorted({v.photo for v in data.views})
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(photos)[:CALIBRATION_PHOTOS].tolist())
    dest = index_dir / "network-int8.onnx.part"
    quantize_static_int8(index_dir / float_file, dest, chosen, pp, progress=stage)
    return dest


def _int8(
    engine: Engine,
    record: dict[str, Any],
    embedder: OnnxImageEmbedder,
    spec: ModelSpec,
    data: TrainData,
    settings: TrainSettings,
    stage: Progress,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(record, vectors) of the int8 network when it stays within `TOLERANCE` held-out Recall@1
    of the float one, else of the float one; the record says what was measured."""
    from lookalike.learn.adapted import open_adapted
    from lookalike.models.store import sha256_file

    index_dir, pp = engine.index_dir, spec.image_preprocess
    floats = embed_all(data, lambda x: embedder.embed_prepared(x)[0], pp, stage, "embed float")
    part = quantize_for_index(index_dir, record["file"], data, pp, settings.seed, stage)
    sha = sha256_file(part)
    name = f"network-{sha[:12]}.onnx"
    part.replace(index_dir / name)
    int8_record = {**record, "file": name, "sha256": sha}
    int8 = open_adapted(index_dir, int8_record, spec, engine.settings)
    ints = embed_all(data, lambda x: int8.embed_prepared(x)[0], pp, stage, "embed int8")
    r_float = held_out_recall(data, floats, settings.holdout, settings.seed)
    r_int8 = held_out_recall(data, ints, settings.holdout, settings.seed)
    used = r_int8 >= r_float - TOLERANCE
    info = {
        "used": used,
        "float_recall": r_float,
        "int8_recall": r_int8,
        "float_sha256": record["sha256"],
    }
    if used:
        return {**int8_record, "int8": info}, ints
    return {**record, "int8": info}, floats


def _swap(
    engine: Engine,
    data: TrainData,
    embed: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
    record: dict[str, Any] | None,
    stage: Progress,
    vectors: dict[str, np.ndarray] | None = None,
) -> int:
    """Re-embed every point with `embed`, write it aside and commit with `record` as the
    manifest's network (None: the base network) and no projection (it was fitted on the old
    vectors)."""
    from lookalike.learn.swap import commit, reembedded_points, write_aside

    records = list(engine.store.scroll(with_vectors=False))
    points, dropped = reembedded_points(records, data, embed, spec.image_preprocess, stage, vectors)
    assert engine.manifest is not None
    write_aside(engine, points, engine.manifest.dim, stage)
    manifest = dataclasses.replace(engine.manifest, network=record, projection=None)
    commit(engine, manifest)
    return len(dropped)


def reset_index(
    engine: Engine, *, progress: ProgressFn | None = None
) -> tuple[int, tuple[Skipped, ...]]:
    """Back to the base network: re-embed every point with it and drop the adapted network (and
    the projection fitted on its vectors). Returns (views dropped, photos skipped)."""
    from lookalike.learn.data import collect
    from lookalike.pipeline.clip import load_embedder

    notify = progress or (lambda p: None)

    def stage(name: str, done: int, total: int) -> None:
        notify(TrainProgress(name, done, total))

    spec, models = _base(engine)
    if not (engine.manifest and engine.manifest.network):
        raise CatalogueError(f"the index at {engine.index_dir} already uses the base network")
    with engine.write_lock():
        data = collect(engine, spec.image_preprocess, progress=stage)
        s = engine.settings
        # A trainable network's spec is an `image-embedder`: load_embedder builds an
        # OnnxImageEmbedder, the one with `embed_prepared`.
        base = cast(
            "OnnxImageEmbedder",
            load_embedder(
                spec,
                models.path(spec.name),
                threads=s.models.threads,
                optimization=s.models.ort_optimization,
                spinning=s.models.ort_spinning,
            ),
        )
        dropped = _swap(engine, data, lambda x: base.embed_prepared(x)[0], spec, None, stage)
        engine.reload()  # inside the lock: what runs when it is released sees the new index
    return dropped, data.skipped
