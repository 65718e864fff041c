"""The web page's search by image address, "less like this" and shareable address, in Debian's
Chromium (Playwright) against a real server on a real grocery index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lookalike.api.http import create_app
from lookalike.api.remote_images import FetchPolicy
from lookalike.config import Settings
from lookalike.engine.core import Engine
from tests.e2e.test_web_e2e import CHROMIUM_ARGS, DESKTOP, _chromium
from tests.grocery_index import SmallGrocery, build_small_grocery
from tests.image_origin import ImageOrigin
from tests.live_server import live_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def grocery(
    data_dir: Path, lite2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> SmallGrocery:
    return build_small_grocery(data_dir, tmp_path_factory.mktemp("grocery"))


@pytest.fixture(scope="module")
def shot(grocery: SmallGrocery) -> tuple[str, str]:
    """A shopper's photo (path) and its item id."""
    item = next(i for i in grocery.items if grocery.queries[i])
    return grocery.queries[item][0], item


@pytest.fixture(scope="module")
def origin(shot: tuple[str, str]) -> Iterator[ImageOrigin]:
    o = ImageOrigin(Path(shot[0]).read_bytes())
    yield o
    o.close()


@pytest.fixture(scope="module")
def server(grocery: SmallGrocery, data_dir: Path) -> Iterator[str]:
    with Engine(grocery.index, settings=Settings(index=grocery.index)) as engine:
        # The test's image host is on 127.0.0.1: let it through (only it), as an intranet shop.
        app = create_app(
            engine, catalogue_root=data_dir, image_fetch=FetchPolicy.allowing(["127.0.0.1"])
        )
        with live_server(app) as url:
            yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser: Any, errors: list[str]) -> Any:
    ctx = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    page = ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    return page


def _settled(page: Any) -> None:
    page.wait_for_function("() => !document.getElementById('status').classList.contains('busy')")
    page.wait_for_function("() => document.querySelectorAll('.card').length > 0")


def _ids(page: Any) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.itemId)")


def _hash(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).fragment)


def test_search_by_image_address_and_share_it(
    browser: Any, server: str, origin: ImageOrigin, shot: tuple[str, str]
) -> None:
    errors: list[str] = []
    page = _page(browser, errors)
    page.goto(server + "/")
    image = origin.url + "/photo.jpg"
    page.fill("#url-input", image)
    with page.expect_response("**/api/search") as response:
        page.click("#url-form button")
    assert response.value.ok, response.value.text()
    _settled(page)
    ids = _ids(page)
    assert shot[1] in ids[:3]
    assert _hash(page)["url"] == [image]
    shared = page.url

    # The address opens the same search in a fresh tab.
    again = _page(browser, errors)
    with again.expect_response("**/api/search"):
        again.goto(shared)
    _settled(again)
    assert _ids(again) == ids
    assert not again.locator("#preview").is_hidden()

    # A pasted image address (not into a text box) is searched too.
    with page.expect_response("**/api/search"):
        page.evaluate(
            "url => { const dt = new DataTransfer(); dt.setData('text/plain', url);"
            " document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt,"
            " bubbles: true})); }",
            image,
        )
    _settled(page)
    assert _ids(page) == ids

    # Not a web address: said at once. One the server cannot use as a photo: its reason shows.
    page.fill("#url-input", "ftp://example.invalid/x.jpg")
    page.click("#url-form button")
    assert "http://" in page.locator("#error").inner_text()
    page.fill("#url-input", origin.url + "/text")
    with page.expect_response("**/api/search") as response:
        page.click("#url-form button")
    assert response.value.status == 422
    page.wait_for_function(
        "() => document.getElementById('error').textContent.includes('could not be downloaded')"
    )
    error = page.locator("#error").inner_text()
    assert "could not be downloaded as an image" in error and "secret" not in error
    assert errors == []


def test_less_like_this_and_a_shared_item_query(
    browser: Any, server: str, grocery: SmallGrocery
) -> None:
    errors: list[str] = []
    page = _page(browser, errors)
    pos = grocery.items[0]
    with page.expect_response(f"**/api/similar/{pos}*"):
        page.goto(f"{server}/#similar={pos}")
    _settled(page)
    first = _ids(page)[0]
    assert pos not in _ids(page)
    # The address names the item by id; the page shows its title once the server has told it.
    title = next(
        r["title"] for r in map(json.loads, grocery.manifest.open()) if str(r["id"]) == pos
    )
    page.wait_for_function(
        "t => document.getElementById('context-text').textContent.includes(t)", arg=title
    )

    with page.expect_request("**/api/recommend") as request:
        page.locator(f'.card[data-item-id="{first}"] .less').click()
    assert request.value.post_data_json == {"positive": [pos], "negative": [first], "k": 10}
    _settled(page)
    ids = _ids(page)
    assert pos not in ids and first not in ids and ids
    assert _hash(page) == {"more": [pos], "less": [first]}
    assert "less like" in page.locator("#context-text").inner_text()

    # "More like this" inside it adds a positive example; the address holds all of them.
    second = ids[0]
    with page.expect_request("**/api/recommend") as request:
        page.locator(f'.card[data-item-id="{second}"] .more').click()
    assert request.value.post_data_json["positive"] == [pos, second]
    _settled(page)
    shown = _ids(page)
    shared = page.url

    again = _page(browser, errors)
    with again.expect_request("**/api/recommend") as request:
        again.goto(shared)
    assert request.value.post_data_json["negative"] == [first]
    _settled(again)
    assert _ids(again) == shown
    assert errors == []


def test_words_filters_and_count_restored_from_the_address(
    browser: Any, server: str, grocery: SmallGrocery
) -> None:
    errors: list[str] = []
    page = _page(browser, errors)
    prices = sorted(float(json.loads(line)["price"]) for line in grocery.manifest.open())
    cap = prices[len(prices) // 2]
    filters = json.dumps({"price": {"lte": cap}})
    with page.expect_request("**/api/search/text") as request:
        page.goto(f"{server}/#text=apple&k=5&filters={filters}")
    assert request.value.post_data_json == {
        "text": "apple",
        "k": 5,
        "filters": {"price": {"lte": cap}},
    }
    _settled(page)
    assert 0 < len(_ids(page)) <= 5
    assert page.input_value("#text-query") == "apple"
    assert page.is_checked('input[name="k"][value="5"]')
    # The price filter's boxes show the restored range once the filters are built.
    page.wait_for_function(
        "cap => [...document.querySelectorAll('#filters input[type=number]')]"
        ".some(i => i.value === String(cap))",
        arg=cap,
    )
    assert errors == []
