"""A small real index for end-to-end tests of the server: grocery products, real photos, real model."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SmallGrocery:
    """manifest: the catalogue (JSONL); index: the built index folder; queries: shoppers' photos
    (`val/` split) of the catalogue's products as (image path, item id), one list per item."""

    manifest: Path
    index: Path
    items: tuple[str, ...]
    queries: dict[str, list[str]]


def build_small_grocery(
    data_dir: Path,
    dest: Path,
    *,
    products: int = 12,
    photos: int = 4,
    embedder: str | None = None,
) -> SmallGrocery:
    """Every n-th grocery product (so several categories), its first `photos` catalogue photos,
    a `price` field (the product's class id + 0.99, to show prices and price filters), indexed
    with the default model (or `embedder`). The model comes from the model store (the `lite2_dir`
    or `model_store` fixture)."""
    from lookalike.catalog.sample import prepare_grocery
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    files = prepare_grocery(data_dir / "grocery", dest / "sample")
    rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()]
    chosen = rows[:: max(1, len(rows) // products)][:products]
    for row in chosen:
        row["images"] = row["images"][:photos]
        row["price"] = round(int(row["id"]) + 0.99, 2)
    manifest = dest / "small.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    ids = tuple(str(r["id"]) for r in chosen)
    queries: dict[str, list[str]] = {i: [] for i in ids}
    with open(files.queries) as fh:
        for row in csv.DictReader(fh):
            if row["item_id"] in queries:
                queries[row["item_id"]].append(row["image"])
    index = dest / "index"
    settings = Settings(index=index, **({"embedder": embedder} if embedder else {}))
    with Engine(index, settings=settings) as engine:
        summary = engine.index(manifest)
    if summary.skipped or summary.items != len(chosen):
        raise AssertionError(f"the test catalogue did not index cleanly: {summary}")
    return SmallGrocery(manifest, index, ids, queries)
