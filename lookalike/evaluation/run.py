"""Run an evaluation with an engine: index the catalogue (reusing what is indexed), search with every
query in both aggregation modes, score with the pure metrics of `lookalike.evaluation.metrics`, write the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from lookalike.engine import wiring
from lookalike.engine.core import Engine
from lookalike.errors import LookalikeError
from lookalike.evaluation.metrics import QueryResult, evaluate, load_queries, write_report
from lookalike.pipeline.decode import load_image
from lookalike.store.base import where
from lookalike.types import F32, Aggregation

MODES: tuple[Aggregation, ...] = ("views", "centroid")
RANK_DEPTH = 100
"""Ranked list length per query: deep enough that mAP is exact for catalogues of <= 100 items."""


@dataclass(frozen=True)
class EvalOutcome:
    metrics: dict[str, dict[str, float]]
    queries: int
    items: int
    skipped: tuple[str, ...]
    report: Path | None
    results: tuple[QueryResult, ...]
    projection: dict[str, Any] | None = None
    """`ProjectionStatus.to_dict()`: whether / which learned projection the searches used."""
    settings: dict[str, Any] | None = None
    """The query-side settings used: tta, text fusion (and how many query photos were read)."""


def run_evaluation(
    engine: Engine,
    catalogue: Path,
    queries: Path,
    *,
    report_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    modes: Sequence[Aggregation] = MODES,
    route: str | None = None,
) -> EvalOutcome:
    notify = progress or (lambda stage, done, total: None)
    summary = engine.index(catalogue, progress=progress)
    query_list = load_queries(queries)
    decoded, skipped = _decode_queries(engine, [q.image for q in query_list])
    usable = [q for q in query_list if q.image in decoded]
    vectors: list[F32] = []
    batch = max(1, engine.settings.models.batch_size)
    # An index built with detection / isolation is searched as `Engine.search` does: with the
    # query's most relevant object, isolated the same way as the catalogue's views.
    views = engine.views.detect or engine.views.isolate != "none"
    for start in range(0, len(usable), batch):
        images = [decoded[q.image] for q in usable[start : start + batch]]
        if views:
            images = [engine.query_views(im)[0].image.convert("RGB") for im in images]
        vectors.extend(engine.embed_queries(images))
        notify("queries", min(start + batch, len(usable)), len(usable))
    status = engine.projection_status()
    fusing = engine.settings.search.text_fusion and engine.text_index() is not None
    read = 0
    metrics: dict[str, dict[str, float]] = {}
    results: list[QueryResult] = []
    for mode in modes:
        ranked_ids: list[list[str]] = []
        for q, vec in zip(usable, vectors, strict=True):
            hits = engine.search_vector(vec, k=RANK_DEPTH, mode=mode, route=route)
            if fusing:
                hits, was_read = engine.fuse_text(decoded[q.image], hits)
                read += was_read
            ranked_ids.append([h.item_id for h in hits])
            results.append(
                QueryResult(q, mode, tuple((h.item_id, h.score, h.image) for h in hits[:10]))
            )
        metrics[mode] = evaluate(ranked_ids, [q.item_id for q in usable])
    report = None
    if report_dir is not None:
        # Each item's representative image (its centroid point's) and title.
        fields = ["item_id", "image", "title"]
        recs = [r.payload for r in engine.store.scroll(where("kind", "centroid"), fields=fields)]
        item_images = {p["item_id"]: p.get("image", "") for p in recs}
        item_titles = {p["item_id"]: str(p["title"]) for p in recs if p.get("title")}
        title = (
            f"lookalike eval: {catalogue.name} / {queries.name} ({status.describe()}; "
            f"query TTA {engine.settings.search.tta}; text fusion {'on' if fusing else 'off'})"
        )
        report = write_report(
            report_dir, results, metrics, title, item_images, item_titles=item_titles
        )
    return EvalOutcome(
        metrics,
        len(usable),
        summary.items,
        tuple(skipped),
        report,
        tuple(results),
        status.to_dict(),
        {
            "tta": engine.settings.search.tta,
            "text_fusion": fusing,
            "text_weight": engine.settings.search.text_weight if fusing else None,
            "queries_read": read // max(1, len(modes)),
        },
    )


def _decode_queries(
    engine: Engine, sources: Sequence[str]
) -> tuple[dict[str, Image.Image], list[str]]:
    limits = wiring.limits(engine.settings)

    def load(src: str) -> Image.Image | str:
        """The decoded photo, or why it was skipped."""
        try:
            return load_image(src, limits).image
        except (LookalikeError, OSError) as exc:
            return f"{src}: {exc}"

    unique = list(dict.fromkeys(sources))
    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded = dict(zip(unique, pool.map(load, unique), strict=True))
    decoded = {src: got for src, got in loaded.items() if not isinstance(got, str)}
    return decoded, [got for got in loaded.values() if isinstance(got, str)]
