"""End to end: crawl the fixture shop stocked with real grocery photos (static and JavaScript
variants), index the crawled catalogue with the real default model, search with a product photo."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from lookalike.catalog.crawl.crawler import crawl
from tests.fixtures.shop.server import IMAGE_SLOTS, ShopServer, quick_options

pytestmark = pytest.mark.e2e


def _grocery_photos(data_dir: Path) -> dict[str, list[Path]]:
    """Each shop product -> store photos of its own grocery class (one class per coarse class,
    so two products never share a kind of fruit or package)."""
    by_class: dict[int, list[Path]] = {}
    coarse_of: dict[int, int] = {}
    with open(data_dir / "grocery" / "train.txt") as fh:
        for row in csv.reader(fh):
            path, class_id, coarse_id = row[0].strip(), int(row[1]), int(row[2])
            by_class.setdefault(class_id, []).append(data_dir / "grocery" / path)
            coarse_of[class_id] = coarse_id
    chosen: list[int] = []
    for class_id in sorted(by_class):
        if coarse_of[class_id] not in {coarse_of[c] for c in chosen}:
            chosen.append(class_id)
    assert len(chosen) >= len(IMAGE_SLOTS), "not enough distinct grocery classes"
    return {
        product: sorted(by_class[c])[:4] for product, c in zip(IMAGE_SLOTS, chosen, strict=False)
    }


def test_crawled_catalogue_is_indexed_and_searched(
    tmp_path: Path, data_dir: Path, lite2_dir: Path
) -> None:
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    photos = _grocery_photos(data_dir)
    out = tmp_path / "shop"
    with ShopServer(
        photos=lambda product, n: Image.open(photos[product][n - 1]), slow_s=1.0
    ) as shop:
        started = time.monotonic()
        summary = crawl(
            [f"{shop.url}/shop/", f"{shop.url}/js/"],
            out,
            quick_options(politeness={"timeout_s": 0.5}),
        )
        crawl_s = time.monotonic() - started
    assert summary.items == 11, summary.failures  # 7 static + 4 JavaScript products
    items = [json.loads(line) for line in (out / "catalogue.jsonl").read_text().splitlines()]
    by_title = {i["title"]: i["id"] for i in items}

    settings = Settings(index=tmp_path / "index")
    with Engine(settings.index, settings=settings) as engine:
        indexed = engine.index(out / "catalogue.jsonl")
        assert indexed.items == 11 and not indexed.skipped
        assert indexed.images_embedded == sum(len(i["images"]) for i in items)
        # Query with the shop's original photo (the crawled copy is a 640 px rendition of it).
        for product, title in (
            ("wool-coat", "Wool coat"),
            ("js-3", "Wool blanket"),
            ("leather-boot", "Leather boot"),
        ):
            result = engine.search(photos[product][1], k=3)
            assert result.hits[0].item_id == by_title[title], (product, result.hits)
            assert result.hits[0].fields["title"] == title
        price_filtered = engine.search(photos["canvas-bag"][0], k=3, where="price < 40")
        assert price_filtered.hits[0].fields["title"] == "Canvas tote bag"
        assert all(h.fields["price"] < 40 for h in price_filtered.hits)
    print(f"\ncrawl of the fixture shop (static + JS, real photos): {crawl_s:.1f} s")
