"""The whole static crawl of the fixture shop: listings, pagination, products, images, limits,
incremental reruns, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lookalike.catalog import load_catalogue
from lookalike.catalog.crawl.crawler import crawl
from lookalike.catalog.crawl.state import CrawlState
from lookalike.errors import CrawlError
from tests.fixtures.shop.server import ShopServer, quick_options

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_IDS = [
    "LS-100",
    "4006381333931",
    "CB-7",
    "LB-42",
    "DL-1",
    "SH-9",
    "../../../../tmp/lookalike-owned",
]


@pytest.fixture
def shop() -> ShopServer:
    with ShopServer(slow_s=2.0) as server:
        yield server


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "catalogue.jsonl").read_text().splitlines()]


def test_full_static_crawl_of_the_shop(shop: ShopServer, tmp_path: Path) -> None:
    out = tmp_path / "shop"
    summary = crawl([f"{shop.url}/shop/"], out, quick_options(render="static"))

    items = _lines(out)
    assert [i["id"] for i in items] == EXPECTED_IDS  # discovery order: page 1, 2, 3
    assert summary.items == 7 and summary.listing_pages == 3 and not summary.resumed
    assert summary.products_new == 7 and summary.pages_rendered == 0

    shirt = items[0]
    assert set(shirt) == {
        "id",
        "images",
        "title",
        "price",
        "currency",
        "colour",
        "category",
        "description",
        "url",
        "brand",
    }
    assert (shirt["title"], shirt["price"], shirt["currency"], shirt["colour"]) == (
        "Linen shirt",
        49.9,
        "EUR",
        "white",
    )
    assert shirt["url"] == f"{shop.url}/product/linen-shirt.html"
    for item in items:
        for rel in item["images"]:
            with Image.open(out / rel) as im:  # the largest rendition, never the thumbnail
                assert max(im.size) == 640, (item["id"], rel, im.size)
    assert [len(i["images"]) for i in items] == [2, 2, 2, 2, 1, 1, 2]
    # Downloaded bytes are the shop's bytes.
    assert (out / shirt["images"][1]).read_bytes() == shop.image_bytes("linen-shirt", 2)

    reasons = {f.source.removeprefix(shop.url): f.reason for f in summary.failures}
    assert reasons["/private/secret-dress.html"].startswith("robots.txt disallows it")
    assert reasons["/product/slow-scarf.html"] == "timed out after 1 s"
    assert reasons["/img/broken-gallery-9-large.jpg"].endswith("HTTP 404")
    assert "truncated" in reasons["/broken/truncated.jpg"]
    assert "not a picture" in reasons["/broken/not-an-image.jpg"]
    assert "too small" in reasons["/broken/icon.png"]
    assert "image/svg+xml" in reasons["/broken/vector.svg"]
    assert len(reasons) == 7

    paths = [h.path for h in shop.hits()]
    assert not any(p.startswith("/private/") for p in paths)
    assert paths.count("/robots.txt") == 1
    images = [p for p in paths if p.startswith("/img/")]
    assert len(images) == len(set(images))  # each image fetched once
    assert not any("-small" in p or "-medium" in p for p in images)
    assert paths.count("/shop/?page=4") == 1  # `?page=N+1` tried once after the last page

    # What the crawler wrote is a catalogue the indexer reads as it is.
    catalogue = load_catalogue(out / "catalogue.jsonl")
    assert len(catalogue.items) == 7 and not catalogue.skipped
    assert all(Path(p).is_file() for item in catalogue.items for p in item.images)
    assert catalogue.items[0].fields["price"] == 49.9


def test_max_pages_and_max_products(shop: ShopServer, tmp_path: Path) -> None:
    summary = crawl([f"{shop.url}/shop/"], tmp_path / "a", quick_options(max_pages=1))
    assert [i["id"] for i in _lines(tmp_path / "a")] == EXPECTED_IDS[:4]
    assert summary.limit_reached and summary.listing_pages == 1
    assert not any(h.path.startswith("/shop/?page=") for h in shop.hits())

    summary = crawl([f"{shop.url}/shop/"], tmp_path / "b", quick_options(max_products=2))
    assert [i["id"] for i in _lines(tmp_path / "b")] == EXPECTED_IDS[:2]
    assert summary.limit_reached


def test_rerun_updates_changed_items_and_fetches_nothing_twice(
    shop: ShopServer, tmp_path: Path
) -> None:
    out = tmp_path / "shop"
    seeds = [f"{shop.url}/shop/?page=1"]
    quick = {"politeness": {"timeout_s": 0.5}}  # the slow page fails fast in each of 3 crawls
    first = crawl(seeds, out, quick_options(**quick))
    before = _lines(out)

    # Unchanged shop: every known page answers 304, no image is fetched again.
    shop.clear_log()
    second = crawl(seeds, out, quick_options(**quick))
    assert second.generation == 2 and not second.resumed
    assert (second.products_unchanged, second.products_new, second.products_updated) == (7, 0, 0)
    assert second.images_downloaded == 0
    assert not any(h.path.startswith("/img/") for h in shop.hits())
    assert all("if-none-match" in h.headers for h in shop.hits("/product/") if "slow" not in h.path)
    assert _lines(out) == before

    # The shirt's price changes and it gains a photo; the coat leaves the shop.
    page = (Path(__file__).parents[1] / "fixtures/shop/site/product/linen-shirt.html").read_text()
    page = page.replace('"price": "49.90"', '"price": "39.90"').replace(
        '"image": ["/img/linen-shirt-1-medium.jpg"',
        '"image": ["/img/busy-hat-1-large.jpg", "/img/linen-shirt-1-medium.jpg"',
    )
    shop.overrides["/product/linen-shirt.html"] = page
    shop.gone.add("/product/wool-coat.html")
    shop.clear_log()
    third = crawl(seeds, out, quick_options(**quick))
    assert (third.products_updated, third.products_gone) == (1, 1)
    items = {i["id"]: i for i in _lines(out)}
    assert "4006381333931" not in items
    shirt = items["LS-100"]
    assert shirt["price"] == 39.9 and len(shirt["images"]) == 3
    # The hat photo was already in SHOP/ (the hat's item): not one image was downloaded.
    assert not any(h.path.startswith("/img/") for h in shop.hits())
    assert third.images_downloaded == 0 and third.images_reused == 3
    assert first.images_downloaded == 15  # 13 files: 3 hostile URLs share their bytes


def test_url_list_with_a_product_page_and_bad_lines(shop: ShopServer, tmp_path: Path) -> None:
    summary = crawl(
        [f"{shop.url}/product/canvas-bag.html", "ftp://example.com/x", "not a url"],
        tmp_path / "out",
        quick_options(),
    )
    assert [i["id"] for i in _lines(tmp_path / "out")] == ["CB-7"]
    assert {f.source for f in summary.failures} == {"ftp://example.com/x", "not a url"}


def test_a_second_crawl_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    with CrawlState.open(tmp_path), pytest.raises(CrawlError, match="another crawl"):
        CrawlState.open(tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # Mounted exactly as the main CLI mounts it: `app.command()(crawl)`.
    code = (
        "import typer; from lookalike.api.cli_catalogue import crawl; "
        "app = typer.Typer(); app.callback()(lambda: None); app.command()(crawl); app()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def test_command_line(shop: ShopServer, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(
        f"# the shop\n\n{shop.url}/product/leather-boot.html\n{shop.url}/product/canvas-bag.html\n"
    )
    out = tmp_path / "out"
    args = ["crawl", str(urls), "-o", str(out), "--allow-private", "--rate", "50", "--json"]
    run = _cli(*args)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["items"] == 2 and summary["failures"] == [] and summary["generation"] == 1
    assert summary["catalogue"] == str(out / "catalogue.jsonl")

    refused = _cli("crawl", str(urls), "-o", str(tmp_path / "refused"))  # no --allow-private
    assert refused.returncode == 8 and "non-public address" in refused.stderr

    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    run = _cli("crawl", str(empty), "-o", str(tmp_path / "x"))
    assert run.returncode == 8 and "holds no URL" in run.stderr
    run = _cli("crawl", str(urls), "-o", str(tmp_path / "x"), "--render", "sometimes")
    assert run.returncode == 2


def test_importing_the_command_stays_light() -> None:
    code = (
        "import sys; import lookalike.api.cli_catalogue; "
        "heavy = {'httpx', 'selectolax', 'playwright', 'numpy', 'PIL'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
