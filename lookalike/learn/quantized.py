"""int8 for an adapted network (`tune --train --int8`): the static QDQ recipe of the base models
(`lookalike.models.quantize.quantize_static_int8`), calibrated on the index's own photos, kept only
when it stays within `TOLERANCE` Recall@1 of the float network on the run's held-out draws.

Both networks embed every view once here; the chosen one's vectors are the ones the index gets
(no third pass).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from lookalike.learn.data import Progress, TrainData, holdout_split
from lookalike.models.catalog import Preprocess
from lookalike.pipeline.embed import normalise

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
    names = sorted({item for item, _ in gallery})
    pos = {n: i for i, n in enumerate(names)}
    cent = np.zeros((len(names), len(gallery[0][1])), np.float64)
    for item, vec in gallery:
        cent[pos[item]] += vec
    cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    q = np.stack([v for _, v in queries])
    best = (q @ cent.T).argmax(axis=1)
    return float(np.mean([names[b] == item for b, (item, _) in zip(best, queries, strict=True)]))


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
