"""Does an int8 model keep retrieval quality? (research helpers for `bench_throughput.py`,
`bench_scale.py`, `bench_edge_hnsw.py`)

`check_quantized` embeds the grocery catalogue and its queries with the float model and with the
quantised one (same decode and preprocessing, `lookalike.models.quantize.tensor_batches`), and
measures Recall@1 of the product centroids for both. The quantised model is kept only when its
Recall@1 is within `tolerance` (0.01) of the float model's: `QuantCheck.keep`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.models.catalog import Preprocess
from lookalike.models.quantize import tensor_batches
from lookalike.pipeline.embed import OnnxImageEmbedder, l2_normalise
from lookalike.types import F32

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class QuantCheck:
    """Recall@1 (product centroids, grocery protocol) of a float model and its int8 version.

    ms_per_image: model-only milliseconds per image (median of timed batches) for each model.
    keep: int8 Recall@1 >= float Recall@1 - tolerance.
    """

    recipe: str
    float_recall_at_1: float
    int8_recall_at_1: float
    tolerance: float
    float_ms_per_image: float
    int8_ms_per_image: float
    float_bytes: int
    int8_bytes: int
    queries: int
    catalogue_images: int

    @property
    def delta(self) -> float:
        return self.int8_recall_at_1 - self.float_recall_at_1

    @property
    def keep(self) -> bool:
        return self.int8_recall_at_1 >= self.float_recall_at_1 - self.tolerance


def embed_files(
    model_path: Path,
    preprocess: Preprocess,
    files: Sequence[str],
    *,
    output: str = "gem",
    batch: int = 8,
    threads: int = 0,
    progress: Progress | None = None,
) -> tuple[F32, float]:
    """Decode `files` as indexing does (`decode_image`, default limits) and embed them.

    Returns ((N, dim) L2-normalised float32 vectors in the order of `files`, median model-only
    milliseconds per image over the batches). A file that cannot be decoded raises DecodeError:
    an evaluation protocol must not silently drop photos.
    """

    embedder = OnnxImageEmbedder("eval", model_path, preprocess, output=output, threads=threads)
    notify = progress or (lambda stage, done, total: None)
    out = []
    per_image: list[float] = []
    done = 0
    for tensor in tensor_batches(files, preprocess, batch):
        started = time.perf_counter()
        (features,) = embedder.session.run([output], {embedder.input_name: tensor})
        per_image.append((time.perf_counter() - started) * 1e3 / len(tensor))
        out.append(features)
        done += len(tensor)
        notify("embed", done, len(files))
    vectors = l2_normalise(np.concatenate(out)) if out else np.zeros((0, embedder.dim), np.float32)
    return vectors, float(np.median(per_image)) if per_image else 0.0


def centroid_recall_at_1(
    cat_vectors: F32, cat_items: Sequence[str], query_vectors: F32, query_items: Sequence[str]
) -> float:
    """Recall@1 of the grocery protocol's default mode: each product is the L2-normalised mean of
    its catalogue vectors; a query is right when its most similar centroid is its product."""

    items = sorted(set(cat_items))
    index = {item: i for i, item in enumerate(items)}
    sums = np.zeros((len(items), cat_vectors.shape[1]), dtype=np.float64)
    for vec, item in zip(cat_vectors, cat_items, strict=True):
        sums[index[item]] += vec
    centroids = l2_normalise(sums)
    best = np.argmax(query_vectors @ centroids.T, axis=1)
    hits = sum(items[b] == q for b, q in zip(best, query_items, strict=True))
    return hits / max(1, len(query_items))


def grocery_recall(
    model: Path,
    preprocess: Preprocess,
    catalogue: Sequence[tuple[str, str]],
    queries: Sequence[tuple[str, str]],
    *,
    output: str = "gem",
    batch: int = 8,
    threads: int = 0,
    progress: Progress | None = None,
) -> tuple[float, float]:
    """(centroid Recall@1, median model-only ms/image) of `model` on (image, item id) pairs."""
    embed = functools.partial(
        embed_files, model, preprocess, output=output, batch=batch, threads=threads
    )
    cat_vec, ms = embed([p for p, _ in catalogue], progress=progress)
    q_vec, _ = embed([p for p, _ in queries])
    recall = centroid_recall_at_1(
        cat_vec, [i for _, i in catalogue], q_vec, [i for _, i in queries]
    )
    return recall, ms


def check_quantized(
    float_model: Path,
    int8_model: Path,
    preprocess: Preprocess,
    catalogue: Sequence[tuple[str, str]],
    queries: Sequence[tuple[str, str]],
    *,
    recipe: str = "",
    tolerance: float = 0.01,
    output: str = "gem",
    batch: int = 8,
    threads: int = 0,
    float_result: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> QuantCheck:
    """Embed (image path, item id) `catalogue` and `queries` with both models; compare Recall@1.

    float_result: (Recall@1, ms/image) of the float model from an earlier `grocery_recall`, to
    check several int8 models against one float run.
    """
    notify = progress or (lambda stage, done, total: None)

    def recall(label: str, model: Path) -> tuple[float, float]:
        def step(stage: str, done: int, total: int) -> None:
            notify(f"{label} {stage}", done, total)

        return grocery_recall(
            model,
            preprocess,
            catalogue,
            queries,
            output=output,
            batch=batch,
            threads=threads,
            progress=step,
        )

    floats = float_result if float_result is not None else recall("float", float_model)
    int8 = recall("int8", int8_model)
    return QuantCheck(
        recipe=recipe,
        float_recall_at_1=floats[0],
        int8_recall_at_1=int8[0],
        tolerance=tolerance,
        float_ms_per_image=floats[1],
        int8_ms_per_image=int8[1],
        float_bytes=Path(float_model).stat().st_size,
        int8_bytes=Path(int8_model).stat().st_size,
        queries=len(queries),
        catalogue_images=len(catalogue),
    )
