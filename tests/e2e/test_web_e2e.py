"""The web page in Debian's Chromium (Playwright), against a real server on a real grocery index.

Screenshots land in `artifacts/` (git-ignored) for people to look at.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from lookalike.api.http import create_app
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.engine.records import QueryObject, SearchResult
from tests.grocery_index import SmallGrocery, build_small_grocery
from tests.live_server import live_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _chromium() -> str:
    path = os.environ.get("LOOKALIKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def grocery(
    data_dir: Path, lite2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> SmallGrocery:
    return build_small_grocery(data_dir, tmp_path_factory.mktemp("grocery"))


class _EngineWithHalves(Engine):
    """The real engine; while `halves` is on, a whole-photo search also reports the photo's left
    and right halves as detected objects, as the detector to come will report real objects."""

    halves = False

    def search(self, query: Any, **kw: Any) -> SearchResult:
        result = super().search(query, **kw)
        if not self.halves or kw.get("box") is not None:
            return result
        w, h = query.size  # the server passes the decoded photo
        objects = (
            QueryObject("left product", (0, 0, w / 2, h), 0.9),
            QueryObject("right product", (w / 2, 0, w, h), 0.8),
        )
        return replace(result, objects=objects)


@pytest.fixture(scope="module")
def engine(grocery: SmallGrocery) -> Iterator[_EngineWithHalves]:
    with _EngineWithHalves(grocery.index, settings=Settings(index=grocery.index)) as engine:
        yield engine


@pytest.fixture(scope="module")
def server(engine: _EngineWithHalves, data_dir: Path) -> Iterator[str]:
    with live_server(create_app(engine, catalogue_root=data_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_errors() -> list[str]:
    return []


def _open(browser: Any, url: str, errors: list[str], **context: Any) -> Any:
    # Reduced motion: the page then skips its card animation, so screenshots show final frames.
    ctx = browser.new_context(**{"viewport": DESKTOP, "reduced_motion": "reduce", **context})
    page = ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(url + "/")
    page.wait_for_function("() => document.getElementById('index-info').textContent.includes('12')")
    return page


def _settled(page: Any) -> None:
    page.wait_for_function("() => !document.getElementById('status').classList.contains('busy')")


def _cards(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        ".card",
        """cards => cards.map(c => ({
            id: c.dataset.itemId,
            title: c.querySelector('.card-title').innerText,
            shown_id: c.querySelector('.item-id').textContent,
            price: (c.querySelector('.price') || {}).textContent || '',
            badge: c.querySelector('.badge').textContent,
        }))""",
    )


def _thumbnails_loaded(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )


def _two_products(grocery: SmallGrocery, tmp: Path) -> tuple[Path, str, str]:
    """A shopper's photo of one product beside a photo of another (left, right item ids)."""
    with_queries = [i for i in grocery.items if grocery.queries[i]]
    left, right = with_queries[0], with_queries[3]
    a = Image.open(grocery.queries[left][0]).convert("RGB")
    b = Image.open(grocery.queries[right][0]).convert("RGB").resize(a.size)
    canvas = Image.new("RGB", (2 * a.width, a.height))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    path = tmp / "two-products.jpg"
    canvas.save(path, quality=92)
    return path, left, right


def _drag(page: Any, x1: float, y1: float, x2: float, y2: float) -> None:
    """Draw a region on the preview, from and to fractions of the photo."""
    box = page.locator("#preview-img").bounding_box()
    page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + x2 * box["width"], box["y"] + y2 * box["height"], steps=8)
    page.mouse.up()


def _searched_box(response: Any) -> list[float] | None:
    """The region the server searched, as fractions of the photo (None: the whole photo).

    Read from the server's answer: Chromium does not expose multipart bodies holding a file."""
    query = response.json()["query"]
    if query["box"] is None:
        return None
    w, h = query["width"], query["height"]
    x1, y1, x2, y2 = query["box"]
    return [x1 / w, y1 / h, x2 / w, y2 / h]


def test_upload_draw_a_region_and_more_like_this(
    browser: Any, server: str, grocery: SmallGrocery, tmp_path: Path, page_errors: list[str]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = _open(browser, server, page_errors)
    item = next(i for i in grocery.items if grocery.queries[i])
    with page.expect_response("**/api/search") as response:
        page.set_input_files("#file-input", grocery.queries[item][0])
    assert response.value.ok
    _settled(page)
    cards = _cards(page)
    assert len(cards) == 10 and len({c["id"] for c in cards}) == 10
    title = response.value.json()["results"][0]["title"]
    assert cards[0]["id"] == item and cards[0]["title"] == title
    assert cards[0]["shown_id"] == f"#{item}" and cards[0]["price"] == f"{int(item) + 0.99:.2f}"
    assert re.fullmatch(r"Same product|Similar · \d{1,3}%", cards[0]["badge"])
    # shoppers filter by the catalogue's own fields (and colours), not by ImageNet classes
    assert page.locator('.filter[data-field="category"]').count() == 1
    assert page.locator('.filter[data-field="classes"]').count() == 0
    _thumbnails_loaded(page)
    page.screenshot(path=ARTIFACTS / "web-desktop-results.png", full_page=True)

    # Two products in one photo: the region decides which one is searched.
    photo, left, right = _two_products(grocery, tmp_path)
    with page.expect_response("**/api/search"):
        page.set_input_files("#file-input", str(photo))
    _settled(page)
    with page.expect_response("**/api/search") as response:
        _drag(page, 0.53, 0.05, 0.97, 0.95)
    assert _searched_box(response.value) == pytest.approx([0.53, 0.05, 0.97, 0.95], abs=0.01)
    _settled(page)
    assert _cards(page)[0]["id"] == right
    assert "for the region" in page.text_content("#status")
    assert page.is_visible(".region") and page.is_enabled("#clear-region")
    _thumbnails_loaded(page)
    page.screenshot(path=ARTIFACTS / "web-desktop-region.png")
    with page.expect_response("**/api/search"):
        _drag(page, 0.03, 0.05, 0.47, 0.95)
    _settled(page)
    assert _cards(page)[0]["id"] == left

    # More like this, then a filter on top of it.
    first = _cards(page)[0]
    with page.expect_response(f"**/api/similar/{first['id']}?*"):
        page.locator(".card").first.get_by_role("button", name="More like this").click()
    _settled(page)
    assert page.is_visible("#context") and first["title"] in page.text_content("#context")
    ids = [c["id"] for c in _cards(page)]
    assert len(ids) == 10 and first["id"] not in ids
    with page.expect_response("**/api/similar/*") as response:
        page.locator('.filter[data-field="category"] .chip', has_text="Juice").click()
    _settled(page)
    query = parse_qs(urlsplit(response.value.url).query)
    assert query["filters"] == ['{"category":["Juice"]}']
    results = response.value.json()["results"]
    assert results and all(r["fields"]["category"] == "Juice" for r in results)
    assert [c["id"] for c in _cards(page)] == [r["item_id"] for r in results]
    page.screenshot(path=ARTIFACTS / "web-desktop-similar-filtered.png")
    assert page_errors == []


def test_detected_objects_are_drawn_as_selectable_boxes(
    browser: Any,
    server: str,
    engine: _EngineWithHalves,
    grocery: SmallGrocery,
    tmp_path: Path,
    page_errors: list[str],
) -> None:
    """The server's `objects` (here: the photo's halves, see `_EngineWithHalves`) become boxes
    on the preview; picking one searches that region."""
    page = _open(browser, server, page_errors)
    engine.halves = True
    try:
        photo, _, right = _two_products(grocery, tmp_path)
        with page.expect_response("**/api/search"):
            page.set_input_files("#file-input", str(photo))
        _settled(page)
        boxes = page.locator(".objbox")
        assert boxes.count() == 2
        assert [t.strip() for t in boxes.all_text_contents()] == ["left product", "right product"]
        page.screenshot(path=ARTIFACTS / "web-desktop-objects.png")
        with page.expect_response("**/api/search") as response:
            boxes.nth(1).click()
        assert _searched_box(response.value) == pytest.approx([0.5, 0.0, 1.0, 1.0], abs=1e-3)
        _settled(page)
        assert _cards(page)[0]["id"] == right
        assert "selected" in (boxes.nth(1).get_attribute("class") or "")
    finally:
        engine.halves = False
    assert page_errors == []


def test_paste_and_drop_start_a_search(
    browser: Any, server: str, grocery: SmallGrocery, page_errors: list[str]
) -> None:
    page = _open(browser, server, page_errors)
    item = next(i for i in grocery.items if grocery.queries[i])
    data = base64.b64encode(Path(grocery.queries[item][1]).read_bytes()).decode()
    make_file = (
        "b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));"
        " const dt = new DataTransfer();"
        " dt.items.add(new File([bytes], 'shot.jpg', {type: 'image/jpeg'})); return dt; }"
    )
    with page.expect_response("**/api/search"):
        page.evaluate(
            f"b64 => document.dispatchEvent(new ClipboardEvent('paste',"
            f" {{clipboardData: ({make_file})(b64), bubbles: true}}))",
            data,
        )
    _settled(page)
    assert _cards(page)[0]["id"] == item
    other = next(i for i in grocery.items if grocery.queries[i] and i != item)
    data = base64.b64encode(Path(grocery.queries[other][0]).read_bytes()).decode()
    with page.expect_response("**/api/search"):
        page.evaluate(
            f"b64 => window.dispatchEvent(new DragEvent('drop',"
            f" {{dataTransfer: ({make_file})(b64), bubbles: true, cancelable: true}}))",
            data,
        )
    _settled(page)
    assert _cards(page)[0]["id"] == other
    assert page_errors == []


def test_search_by_words(browser: Any, server: str, page_errors: list[str]) -> None:
    page = _open(browser, server, page_errors)
    page.fill("#text-query", "apple juice")
    with page.expect_response("**/api/search/text") as response:
        page.press("#text-query", "Enter")
    _settled(page)
    body = response.value.json()
    assert body["score_kind"] == "bm25" and body["results"]
    cards = _cards(page)
    assert [c["id"] for c in cards] == [r["item_id"] for r in body["results"]]
    assert all(c["badge"] == "word match" for c in cards)  # no % for a text score
    assert "apple juice" in page.text_content("#context")
    page.screenshot(path=ARTIFACTS / "web-desktop-words.png")
    assert page_errors == []


def test_a_file_that_is_not_a_photo_shows_the_reason(
    browser: Any, server: str, grocery: SmallGrocery, tmp_path: Path, page_errors: list[str]
) -> None:
    page = _open(browser, server, page_errors)
    assert page.is_hidden(".modes")  # no face index: "Find people" is not offered
    item = next(i for i in grocery.items if grocery.queries[i])
    with page.expect_response("**/api/search"):
        page.set_input_files("#file-input", grocery.queries[item][0])
    _settled(page)
    assert _cards(page)
    fake = tmp_path / "notes.jpg"
    fake.write_text("shopping list: milk, eggs")
    with page.expect_response("**/api/search") as response:
        page.set_input_files("#file-input", str(fake))
    assert response.value.status == 415
    page.wait_for_selector("#error:not([hidden])")
    assert "not a photo" in page.text_content("#error")
    # the earlier results answered another photo: gone; no broken image of the text file
    assert _cards(page) == [] and page.is_hidden("#preview") and page.is_visible("#dropzone")
    page.screenshot(path=ARTIFACTS / "web-desktop-not-a-photo.png")
    # the browser logs the failed request itself; nothing else may go wrong
    assert all("415" in e for e in page_errors), page_errors


def test_phone_sized_screen(
    browser: Any, server: str, grocery: SmallGrocery, page_errors: list[str]
) -> None:
    page = _open(
        browser,
        server,
        page_errors,
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    assert page.get_attribute("#camera-input", "capture") == "environment"
    assert page.is_visible("text=Take photo") and page.is_visible("text=Choose photo")
    page.screenshot(path=ARTIFACTS / "web-phone-start.png")
    item = next(i for i in grocery.items if grocery.queries[i])
    with page.expect_response("**/api/search"):
        page.set_input_files("#camera-input", grocery.queries[item][0])
    _settled(page)
    assert _cards(page)[0]["id"] == item
    # the results are below the photo: the page brings them into view
    page.wait_for_function(
        "() => document.querySelector('.results-head').getBoundingClientRect().top"
        " < window.innerHeight / 2"
    )
    assert page.evaluate("() => window.scrollY") > 0
    _thumbnails_loaded(page)
    page.screenshot(path=ARTIFACTS / "web-phone-revealed.png")
    page.evaluate("() => window.scrollTo(0, 0)")  # back up to the photo to draw a region
    assert not page.eval_on_selector("#filters-box", "d => d.open")  # folded on a phone
    tops = page.eval_on_selector_all(
        ".card", "cs => cs.slice(0, 3).map(c => Math.round(c.getBoundingClientRect().top))"
    )
    assert tops[0] == tops[1] < tops[2], tops  # two cards per row
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths  # nothing sticks out sideways
    with page.expect_response("**/api/search") as response:
        _drag(page, 0.2, 0.2, 0.8, 0.8)
    assert _searched_box(response.value) == pytest.approx([0.2, 0.2, 0.8, 0.8], abs=0.02)
    _settled(page)
    _thumbnails_loaded(page)
    page.screenshot(path=ARTIFACTS / "web-phone-region.png")
    page.evaluate("() => document.querySelector('.results-head').scrollIntoView()")
    page.screenshot(path=ARTIFACTS / "web-phone-results.png")
    png = page.screenshot(full_page=True)
    Image.open(io.BytesIO(png)).save(ARTIFACTS / "web-phone-full.png")
    assert page_errors == []


# -- find people ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people_server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A face index (dlib, real) of person01's and person02's photos and couple.jpg; img1.jpg
    (person01) is left out to be the selfie. The product index is empty (a fake embedder)."""
    import csv

    from lookalike.faces.index import FaceIndex
    from tests.fakes import TinyEmbedder

    deepface = data_dir / "faces" / "deepface"
    root = tmp_path_factory.mktemp("people-web")
    album = root / "album"
    album.mkdir()
    with open(deepface / "identities.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["identity"] in ("person01", "person02") and r["file"] != "img1.jpg":
                shutil.copy(deepface / r["file"], album / f"{r['identity']}-{r['file']}")
    shutil.copy(deepface / "couple.jpg", album / "couple.jpg")
    settings = Settings(index=root / "index", cache_dir=root / "cache")
    with FaceIndex(settings.index, settings) as faces:
        assert faces.index(album).skipped == ()
    with (
        Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine,
        live_server(create_app(engine, catalogue_root=root, api_key=PEOPLE_KEY)) as url,
    ):
        yield url


PEOPLE_KEY = "the-photographers-key"
"""Naming a person is a write: the people server has an API key, which the page asks for once."""


def test_find_people_mode(
    browser: Any, people_server: str, data_dir: Path, page_errors: list[str]
) -> None:
    deepface = data_dir / "faces" / "deepface"
    ctx = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    page = ctx.new_page()
    page.on("pageerror", lambda exc: page_errors.append(f"page error: {exc}"))
    page.goto(people_server + "/")
    # No product index in this server, only faces: the page opens in "Find people" by itself.
    page.wait_for_function(
        """() => document.querySelector('input[name="mode"][value="people"]').checked"""
    )
    page.wait_for_function(
        "() => document.getElementById('index-info').textContent.includes('in 14 photos')"
    )
    assert page.is_hidden("#text-form") and page.is_hidden(".controls")
    assert page.is_hidden("#error")  # the products' error belongs to the other mode
    assert page.text_content("#dz-title") == "Find a person by selfie"

    # One face: the photos of that person, each with its face framed inside the photo.
    page.set_input_files("#file-input", str(deepface / "img1.jpg"))
    page.wait_for_selector(".person-card")
    _settled(page)
    names = page.eval_on_selector_all(".person-card", "cs => cs.map(c => c.dataset.photo)")
    assert names and all(n.startswith("person01-") or n == "couple.jpg" for n in names), names
    assert len([n for n in names if n.startswith("person01-")]) >= 6
    assert "couple.jpg" in names
    page.wait_for_function(
        "() => [...document.querySelectorAll('.person-card img')].slice(0, 8)"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=60_000,
    )
    # The face frame lies inside the photo's frame, on the picture (not the padding).
    geometry = page.eval_on_selector_all(
        ".person-card",
        """cs => cs.map(c => {
            const f = c.querySelector('.pframe').getBoundingClientRect();
            const b = c.querySelector('.pface').getBoundingClientRect();
            const img = c.querySelector('img');
            return {inside: b.left >= f.left - 1 && b.right <= f.right + 1 &&
                            b.top >= f.top - 1 && b.bottom <= f.bottom + 1,
                    area: (b.width * b.height) / (f.width * f.height),
                    loaded: img.complete && img.naturalWidth > 0};
        })""",
    )
    bad = [(i, g) for i, g in enumerate(geometry) if not (g["inside"] and 0 < g["area"] < 0.6)]
    assert bad == [], bad
    assert all(g["loaded"] for g in geometry[:8]), geometry  # later ones load lazily
    badge = page.text_content(".person-card .badge")
    assert badge is not None and re.fullmatch(r"you · 0\.\d\d", badge)
    tiers = page.eval_on_selector_all(".person-card", "cs => cs.map(c => c.dataset.tier)")
    assert tiers[0] == "you" and set(tiers) <= {"you", "maybe"}
    # a "maybe you" card says so on its badge
    maybes = page.eval_on_selector_all(
        ".person-card.maybe .badge", "bs => bs.map(b => b.textContent)"
    )
    assert all(t.startswith("maybe you · ") for t in maybes)
    assert page.locator("#overlay .faces-box.selected").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "web-people-results.png", full_page=True)

    # Two faces: the page asks which one, then searches the face picked.
    page.set_input_files("#file-input", str(deepface / "couple.jpg"))
    page.wait_for_function("() => document.getElementById('status').textContent === 'Pick a face'")
    assert page.locator("#overlay .faces-box").count() == 2
    assert page.locator(".person-card").count() == 0
    page.screenshot(path=ARTIFACTS / "web-people-pick-a-face.png")
    picked: dict[str, list[str]] = {}
    for number in ("0", "1"):
        page.click(f'#overlay .faces-box[data-face="{number}"]')
        page.wait_for_selector(f'#overlay .faces-box.selected[data-face="{number}"]')
        _settled(page)
        picked[number] = page.eval_on_selector_all(
            ".person-card", "cs => cs.map(c => c.dataset.photo)"
        )
    # Each face finds couple.jpg itself; exactly one of the two is person01 (img1's person).
    assert all("couple.jpg" in names for names in picked.values()), picked
    person01 = [n for n, names in picked.items() if any(x.startswith("person01-") for x in names)]
    assert len(person01) == 1, picked
    page.screenshot(path=ARTIFACTS / "web-people-picked.png", full_page=True)

    # A photo without a face says so.
    shelf = sorted((data_dir / "grocery").rglob("*.jpg"))[0]
    page.set_input_files("#file-input", str(shelf))
    page.wait_for_selector("#error:not([hidden])")
    assert "no face found" in page.text_content("#error")
    assert page.locator(".person-card").count() == 0
    assert page_errors == []
    ctx.close()


def test_a_catalogue_update_shows_on_the_page(
    browser: Any,
    engine: _EngineWithHalves,
    grocery: SmallGrocery,
    data_dir: Path,
    tmp_path: Path,
    page_errors: list[str],
) -> None:
    """`lookalike index` while the server runs is a job of the server: the page says so, and
    its product count follows without a reload."""
    import json

    import httpx

    rows = (grocery.manifest.parent / "sample" / "catalogue.jsonl").read_text().splitlines()
    new = next(r for r in map(json.loads, rows) if str(r["id"]) not in grocery.items)
    new["images"] = new["images"][:2]
    manifest = tmp_path / "new.jsonl"
    manifest.write_text(json.dumps(new) + "\n")
    secret = "secret-of-the-page-test"
    app = create_app(engine, catalogue_root=data_dir, local_secret=secret)
    try:
        with live_server(app) as url:
            page = _open(browser, url, page_errors)
            with page.expect_response("**/api/jobs"):
                pass  # the page has seen the jobs before this one: the next one is news
            job = {"catalogue": str(manifest)}
            r = httpx.post(f"{url}/api/jobs/index", json=job, headers={"X-API-Key": secret})
            assert r.status_code == 202, r.text
            page.wait_for_function(
                "() => document.getElementById('job-info').textContent.includes('updated: 2 new')",
                timeout=60_000,
            )
            page.wait_for_function(  # the count is asked for again once the job is done
                "() => document.getElementById('index-info').textContent.includes('13 products')"
            )
            page.screenshot(path=ARTIFACTS / "web-desktop-catalogue-updated.png")
            page.set_viewport_size(PHONE)
            box = page.locator("#job-info").bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"]
            page.screenshot(path=ARTIFACTS / "web-phone-catalogue-updated.png")
    finally:
        engine.delete([str(new["id"])])
    assert page_errors == []


def test_people_view(browser: Any, people_server: str, page_errors: list[str]) -> None:
    """People: faces grouped (person01 and person02 have 7 and 6 photos here, plus the couple),
    a face picture and counts per person, a click shows their photos, a name sticks."""
    ctx = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    page = ctx.new_page()
    page.on("pageerror", lambda exc: page_errors.append(f"page error: {exc}"))
    page.goto(people_server + "/")
    page.check('input[name="mode"][value="people"]', force=True)
    page.click("#people-browse")
    page.wait_for_selector(".people-card")
    _settled(page)
    assert page.text_content("#results-title") == "People"
    cards = page.eval_on_selector_all(
        ".people-card",
        """cs => cs.map(c => ({id: c.dataset.person,
                               title: c.querySelector('.card-title').textContent,
                               meta: c.querySelector('.meta').textContent}))""",
    )
    # the two people with most photos come first: 7 or 8 photos each (their portraits + couple)
    counts = [int(c["meta"].split()[0]) for c in cards]
    assert counts == sorted(counts, reverse=True) and counts[0] >= 6 and counts[1] >= 5, cards
    assert cards[0]["title"].startswith("Person ")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.people-card img')].slice(0, 2)"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=60_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "web-people-view.png", full_page=True)

    page.click(f'.people-card[data-person="{cards[0]["id"]}"] .people-open')
    page.wait_for_selector(".person-photo")
    _settled(page)
    photos = page.eval_on_selector_all(".person-photo", "cs => cs.map(c => c.dataset.photo)")
    assert len(photos) == counts[0]
    prefix = {p.split("-")[0] for p in photos if p.startswith("person")}
    assert len(prefix) == 1, photos  # one person's photos only
    answers = iter(["Ann", PEOPLE_KEY])  # the name, then the key the 401 asks for
    page.on("dialog", lambda d: d.accept(next(answers)))
    page.click("#people-rename")
    page.wait_for_function("() => document.getElementById('results-title').textContent === 'Ann'")
    page.click("#people-back")
    page.wait_for_selector(f'.people-card[data-person="{cards[0]["id"]}"]')
    _settled(page)
    title = page.text_content(f'.people-card[data-person="{cards[0]["id"]}"] .card-title')
    assert title == "Ann"
    assert next(answers, None) is None  # the key was asked for: naming is a write
    page.screenshot(path=ARTIFACTS / "web-people-named.png", full_page=True)
    assert page_errors == []
    ctx.close()
