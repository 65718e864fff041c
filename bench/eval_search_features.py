"""Text search and category routing on the grocery sample.

    .venv/bin/python bench/eval_search_features.py --data ../shared/data/grocery --index grocery-index

1. Text search: each product's name is the query, the product the one right answer; Recall@1/3
   over products and mAP, for several choices of the words an item is found by:
   all text fields + automatic attributes (the default), without the title (description,
   category, attributes), and automatic attributes only (named colours, ImageNet classes).
   Each variant is a separate small Qdrant Edge shard of the 81 items' texts, same BM25 index.
2. Category routing: photo queries (val) with and without `route="category"`, both aggregations.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from lookalike.catalog.sample import prepare_grocery
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.engine.records import SEARCH_TEXT
from lookalike.evaluation.metrics import evaluate
from lookalike.evaluation.run import run_evaluation
from lookalike.store.base import PointRecord, point_id, where
from lookalike.store.edge import EdgeStore

VARIANTS = {
    "title + description + category + attributes (default)": (
        "title", "description", "category", "colours", "classes"),
    "description + category + attributes (no title)": (
        "description", "category", "colours", "classes"),
    "attributes only (colours + ImageNet classes)": ("colours", "classes"),
}  # fmt: skip


def _words(payload: dict, fields: tuple[str, ...]) -> str:
    parts = []
    for f in fields:
        v = payload.get(f)
        parts.extend(map(str, v) if isinstance(v, list) else [str(v)] if v else [])
    return " ".join(parts)


def text_search_table(engine: Engine) -> dict[str, dict[str, float]]:
    items = {
        r.payload["item_id"]: r.payload for r in engine.store.scroll(where("kind", "centroid"))
    }
    out: dict[str, dict[str, float]] = {}
    for name, fields in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            store = EdgeStore(Path(tmp) / "shard", {"image": 1})
            store.upsert(
                [
                    PointRecord(point_id(i), {"image": np.ones(1, np.float32)},
                                {"item_id": i, SEARCH_TEXT: _words(p, fields)})
                    for i, p in items.items()
                ]
            )  # fmt: skip
            store.ensure_index(SEARCH_TEXT, "text")
            ranked = [
                [h.item_id for h in store.text_search(SEARCH_TEXT, p["title"], limit=100)]
                for p in items.values()
            ]
            store.close()
        out[name] = evaluate(ranked, list(items))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--index", type=Path, default=Path("grocery-index"))
    parser.add_argument("--out", type=Path, default=Path("search-features.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lookalike-features-"))
    files = prepare_grocery(args.data, work)
    settings = Settings(index=args.index)
    result: dict[str, object] = {}
    with Engine(settings.index, settings=settings) as engine:
        plain = run_evaluation(engine, files.catalogue, files.queries)
        routed = run_evaluation(engine, files.catalogue, files.queries, route="category")
        result["routing"] = {"no routing": plain.metrics, "route=category": routed.metrics}
        result["text"] = text_search_table(engine)
        examples = {}
        for q in ("red apple", "green apple", "carton milk", "yoghurt", "orange juice", "banana"):
            hits = engine.search_text(q, k=3).hits
            examples[q] = [str(h.fields.get("title")) for h in hits]
        result["examples"] = examples
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
