"""The JavaScript shop through Debian's Chromium: infinite scroll, IntersectionObserver photos,
`--render auto` choosing the browser only when needed, and no network access of its own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from PIL import Image

from lookalike.catalog.crawl.browser import BrowserFetcher, BrowserOptions, find_chromium
from lookalike.catalog.crawl.client import PoliteClient
from lookalike.catalog.crawl.crawler import crawl
from lookalike.catalog.crawl.politeness import Politeness
from lookalike.catalog.crawl.safety import SafetyLimits
from lookalike.errors import UnsafeURLError
from tests.fixtures.shop.server import JS_PRODUCTS, ShopServer, quick_options

pytestmark = pytest.mark.slow  # Chromium / subprocesses: several seconds each


@pytest.fixture
def shop() -> ShopServer:
    with ShopServer() as server:
        yield server


def test_chromium_is_the_systems() -> None:
    assert find_chromium() == "/usr/bin/chromium"


def test_javascript_shop_with_auto_render(shop: ShopServer, tmp_path: Path) -> None:
    out = tmp_path / "shop"
    summary = crawl([f"{shop.url}/js/"], out, quick_options(render="auto"))
    assert not summary.failures, summary.failures
    items = [json.loads(line) for line in (out / "catalogue.jsonl").read_text().splitlines()]
    # Page 2 of the listing exists only after scrolling (IntersectionObserver on a sentinel).
    assert [i["title"] for i in items] == [p["name"] for p in JS_PRODUCTS]
    for item, product in zip(items, JS_PRODUCTS, strict=True):
        assert item["price"] == float(product["price"]) and item["currency"] == "EUR"
        assert item["colour"] == product["colour"]
        assert item["id"].startswith(f"product-{product['id']}-")
        # Photos 2 and 3 get their URL only when their slot scrolls into view.
        assert len(item["images"]) == 3
        got = [(out / p).read_bytes() for p in item["images"]]
        assert got == [shop.image_bytes(product["id"], n) for n in (1, 2, 3)]
        with Image.open(out / item["images"][0]) as im:
            assert max(im.size) == 640
    assert summary.pages_rendered == 5  # the listing and 4 products: static HTML had nothing

    paths = [h.path for h in shop.hits()]
    # The browser re-used what the static fetch already had, and loaded each photo once: the
    # image downloads after rendering came from that same transfer.
    assert paths.count("/js/") == 1 and paths.count("/js/app.js") == 1
    images = [p for p in paths if p.startswith("/img/")]
    assert sorted(images) == sorted(set(images)) and len(images) == 12


def test_static_render_does_not_see_the_javascript_shop(shop: ShopServer, tmp_path: Path) -> None:
    summary = crawl([f"{shop.url}/js/"], tmp_path / "out", quick_options(render="static"))
    assert summary.items == 0 and summary.pages_rendered == 0
    assert summary.failures[0].reason == "no product and no product links found (static HTML)"


def test_auto_render_leaves_static_pages_to_the_static_fetcher(
    shop: ShopServer, tmp_path: Path
) -> None:
    summary = crawl([f"{shop.url}/product/linen-shirt.html"], tmp_path / "out", quick_options())
    assert summary.items == 1 and summary.pages_rendered == 0


def test_max_products_stops_the_infinite_scroll(shop: ShopServer, tmp_path: Path) -> None:
    summary = crawl([f"{shop.url}/js/"], tmp_path / "out", quick_options(max_products=2))
    assert summary.items == 2 and summary.limit_reached
    assert "/js/api/products?page=2" not in [h.path for h in shop.hits()]


def test_browser_makes_no_request_the_client_refuses(shop: ShopServer) -> None:
    """Chromium resolves nothing itself: a page on a refused (loopback) address is refused for it
    too, and the shop never hears from it."""

    async def go() -> None:
        async with PoliteClient(Politeness(rate=100, timeout_s=2), SafetyLimits()) as client:
            browser = BrowserFetcher(client, BrowserOptions(settle_ms=100))
            try:
                await browser.fetch(f"{shop.url}/js/")
            finally:
                await browser.aclose()

    with pytest.raises(UnsafeURLError, match="non-public address"):
        asyncio.run(go())
    assert shop.hits() == []


def test_rerun_goes_straight_to_the_browser_and_reuses_images(
    shop: ShopServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = crawl([f"{shop.url}/js/"], out, quick_options(max_products=2))
    shop.clear_log()
    second = crawl([f"{shop.url}/js/"], out, quick_options(max_products=2))
    assert (first.items, second.items, second.generation) == (2, 2, 2)
    assert (second.products_unchanged, second.images_downloaded, second.images_reused) == (2, 0, 6)
    paths = [h.path for h in shop.hits()]
    # Known to need the browser: no static attempt first (one request for each page).
    assert paths.count("/js/product.html?id=js-1") == 1
    assert not any(p.startswith("/img/") for p in paths)
