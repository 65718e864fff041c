"""The plain shop (12 products of the shapes real shops have, four of them readable only in a
browser and without structured data) end to end: `lookalike crawl` then `lookalike index`, the
sitemap, `--explain`, and "load more" within `--max-pages`. Real Chromium (Debian's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lookalike.catalog.crawl.crawler import crawl
from tests.fixtures.plainshop.server import PRODUCTS, PlainShop
from tests.fixtures.shop.cli import lookalike
from tests.fixtures.shop.server import quick_options

pytestmark = pytest.mark.slow  # Chromium and subprocesses

FLAGS = ("--allow-private", "--rate", "50", "--timeout", "2", "--json")


@pytest.fixture
def shop() -> PlainShop:
    with PlainShop() as server:
        yield server


def _catalogue(out: Path) -> dict[str, dict]:
    lines = (out / "catalogue.jsonl").read_text().splitlines()
    return {item["url"].rsplit("/", 1)[-1]: item for item in map(json.loads, lines)}


def _check_products(shop: PlainShop, out: Path) -> None:
    """All 12 products complete: title, price, currency, 3 photos each at their largest."""
    items = _catalogue(out)
    assert sorted(items) == sorted(PRODUCTS)
    for slug, (title, price, currency, _shape) in PRODUCTS.items():
        item = items[slug]
        assert (item["title"], item["price"], item["currency"]) == (title, price, currency), slug
        expected = [shop.photo(slug, n) for n in (1, 2, 3)] + (
            [shop.photo(slug, 4)] if slug == "ld-coat" else []
        )
        got = [(out / p).read_bytes() for p in item["images"]]
        assert got == expected, (slug, item["images"])  # page order, largest rendition only


def test_crawl_then_index_the_plain_shop(shop: PlainShop, tmp_path: Path, lite2_dir: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{shop.url}/shop/\n")
    out = tmp_path / "shop"
    run = lookalike("crawl", str(urls), "-o", str(out), *FLAGS)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    _check_products(shop, out)
    failures = {f["url"].removeprefix(shop.url): f["reason"] for f in summary["failures"]}
    assert set(failures) == {"/img/ld-coat-9-large.jpg", "/product/secret-dress"}
    assert "robots.txt disallows it" in failures["/product/secret-dress"]
    assert "/product/secret-dress" not in shop.paths  # robots.txt respected
    # Listing page 1, page 2, and the 3 products page 2's "Load more" button adds (one click).
    assert summary["listing_pages"] == 3 and shop.paths.count("/shop/more.json") == 1
    # The browser only where needed: page 2 (its button) and the four pages without data.
    assert summary["pages_rendered"] == 5

    index = tmp_path / "index"
    run = lookalike("index", str(out / "catalogue.jsonl"), "--index", str(index), timeout=900)
    assert run.returncode == 0, run.stderr
    stats = lookalike("stats", "--index", str(index), "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["items"] == 12


def test_sitemap_from_robots_txt(shop: PlainShop, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{shop.url}/\n")
    out = tmp_path / "shop"
    run = lookalike("crawl", str(urls), "-o", str(out), "--sitemap", *FLAGS)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    _check_products(shop, out)
    failures = {f["url"].removeprefix(shop.url): f["reason"] for f in summary["failures"]}
    # The home page is no product; the disallowed product in the sitemap stays unfetched.
    assert set(failures) == {"/", "/img/ld-coat-9-large.jpg", "/product/secret-dress"}
    assert "/product/secret-dress" not in shop.paths
    assert "/sitemap-pages.xml" not in shop.paths  # the index names a product sitemap
    assert summary["listing_pages"] == 0


def test_explain_says_where_each_field_came_from(shop: PlainShop) -> None:
    run = lookalike("crawl", "--explain", f"{shop.url}/product/js-bowl", "--allow-private")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].endswith("(rendered in Chromium): product")
    field = {line.split()[0]: line for line in lines[1:] if "<-" in line}
    assert "'Ceramic bowl'" in field["title"] and "<- generic: <h1>" in field["title"]
    assert "13.5" in field["price"] and "'EUR 13.50' near the title" in field["price"]
    assert "made from the URL" in field["id"]
    text = run.stdout
    assert "3 kept of 9 candidates" in text
    for n in (1, 2, 3):
        assert f"kept    {shop.url}/img/js-bowl-{n}-large.jpg" in text
    assert "in the page's <header>" in text and "in the page's <footer>" in text
    assert text.count("in a recommendations section ('You may also like')") == 3
    assert not (Path.cwd() / "catalogue.jsonl").exists()


def test_selectors_fix_what_the_generic_reader_took(shop: PlainShop, tmp_path: Path) -> None:
    """The selectors example of docs/crawler.md, on the page it describes."""
    selectors = tmp_path / "bowl-shop.json"
    selectors.write_text(
        '{"title": "#app h1", "price": "#app h1 + p", "images": ["#app .big img"]}'
    )
    url = f"{shop.url}/product/js-bowl"
    run = lookalike(
        "crawl", "--explain", url, "--allow-private", "--selectors", str(selectors), "--json"
    )
    assert run.returncode == 0, run.stderr
    explained = json.loads(run.stdout)
    fields = explained["fields"]
    assert fields["title"] == {"value": "Ceramic bowl", "source": "selectors"}
    assert fields["price"] == {"value": 13.5, "source": "selectors"}
    assert [i["url"] for i in explained["images"]] == [
        f"{shop.url}/img/js-bowl-{n}-large.jpg" for n in (1, 2, 3)
    ]
    assert {i["reason"] for i in explained["images"]} == {"from selectors"}


def test_load_more_counts_against_max_pages(shop: PlainShop, tmp_path: Path) -> None:
    summary = crawl(
        [f"{shop.url}/shop/"], tmp_path / "out", quick_options(max_pages=2, max_products=50)
    )
    assert summary.listing_pages == 2 and summary.limit_reached
    assert "/shop/more.json" not in shop.paths  # no page left to click "Load more" for
    assert summary.items == 9  # 5 on page 1, 4 on page 2 (and the disallowed one)


def test_a_gzipped_sitemap_in_the_url_list(shop: PlainShop, tmp_path: Path) -> None:
    """Static only (no browser): the 8 products with data; the 4 that need one are skipped."""
    out = tmp_path / "out"
    summary = crawl([f"{shop.url}/sitemap-products.xml.gz"], out, quick_options(render="static"))
    assert summary.items == 8 and summary.pages_rendered == 0
    reasons = {f.source.removeprefix(shop.url): f.reason for f in summary.failures}
    for slug in ("js-bowl", "js-lamp", "css-print", "script-vase"):
        assert reasons[f"/product/{slug}"].startswith("no product"), reasons
    assert "robots.txt disallows it" in reasons["/product/secret-dress"]
