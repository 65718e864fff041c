"""The HTTP API with a fake embedder on generated photos: every endpoint, limit and error path."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api.http import FORM_OVERHEAD, create_app
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.errors import QueryError
from lookalike.store.filters import structured_filter
from lookalike.types import F32
from tests.fakes import TinyEmbedder, photo, small_catalogue
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
KEY = "s3cret-key"
LIMIT = 2_000_000


def _engine(root: Path, embedder: TinyEmbedder | None = None) -> Engine:
    settings = Settings(index=root / "index", cache_dir=root / "cache", batch_size=4, tta="none")
    return Engine(settings.index, settings=settings, image_embedder=embedder or TinyEmbedder())


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Engine]]:
    """A read-only index of 6 items x 3 views, shared by the tests that only search."""
    root = tmp_path_factory.mktemp("shop")
    engine = _engine(root)
    engine.index(small_catalogue(root))
    yield root, engine
    engine.close()


@pytest.fixture(scope="module")
def client(shop: tuple[Path, Engine]) -> Iterator[TestClient]:
    root, engine = shop
    app = create_app(engine, api_key=KEY, max_upload_bytes=LIMIT, catalogue_root=root)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def writable(tmp_path: Path) -> Iterator[tuple[Path, Engine, TestClient]]:
    """A fresh index per test, for the tests that add and delete items."""
    engine = _engine(tmp_path)
    engine.index(small_catalogue(tmp_path, n_items=4, views=2))
    app = create_app(engine, api_key=KEY, max_upload_bytes=LIMIT, catalogue_root=tmp_path)
    with TestClient(app) as c:
        yield tmp_path, engine, c
    engine.close()


def _jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _search(c: TestClient, data: bytes, **form: object) -> httpx.Response:
    fields = {k: str(v) for k, v in form.items()}
    return c.post("/api/search", files={"photo": ("q.jpg", data, "image/jpeg")}, data=fields)


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["item_id"] for r in response.json()["results"]]


def _side_by_side(left: Path, right: Path, scale: int = 1) -> Image.Image:
    a, b = Image.open(left).convert("RGB"), Image.open(right).convert("RGB")
    w, h = a.size
    canvas = Image.new("RGB", (2 * w, h))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (w, 0))
    return canvas.resize((2 * w * scale, h * scale), Image.Resampling.NEAREST)


# -- search ----------------------------------------------------------------------------------------


def test_photo_search_returns_cards_with_servable_images(
    client: TestClient, shop: tuple[Path, Engine]
) -> None:
    root, _ = shop
    r = _search(client, (root / "img/p3_1.jpg").read_bytes(), k=4, mode="views")
    body = r.json()
    assert _ids(r)[0] == "p3" and len(set(_ids(r))) == 4
    top = body["results"][0]
    assert top["title"] == "product 3" and top["price"] == 30.0
    assert top["score"] == pytest.approx(1.0, abs=1e-3) and top["similarity"] == pytest.approx(100)
    assert top["fields"]["category"] == "Milk"
    assert body["query"] == {"width": 64, "height": 48, "box": None}
    assert body["objects"] == [] and body["mode"] == "views"
    assert {"decode", "embed", "search", "total"} <= set(body["timings_ms"])
    image = client.get(top["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert top["image"] == "img/p3_1.jpg"  # relative to the catalogue root: no server path shown
    assert image.content == (root / top["image"]).read_bytes()
    thumb = client.get(top["thumbnail_url"].replace("size=320", "size=64"))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 64


def test_box_searches_a_region_in_fractions_or_pixels(
    client: TestClient, shop: tuple[Path, Engine]
) -> None:
    root, _ = shop
    both = _jpeg(_side_by_side(root / "img/p1_0.jpg", root / "img/p4_0.jpg"))
    assert _ids(
        _search(client, both, k=1, mode="views", box="0,0,0.5,1", box_units="fraction")
    ) == ["p1"]
    r = _search(client, both, k=1, mode="views", box="0.5,0,1,1", box_units="fraction")
    assert _ids(r) == ["p4"] and r.json()["query"]["box"] == [64.0, 0.0, 128.0, 48.0]
    # A large JPEG is decoded at a reduced size for search, but a box in pixels refers to the
    # photo as uploaded: the right half in full-size pixels must still be the right half.
    big = _jpeg(_side_by_side(root / "img/p1_0.jpg", root / "img/p4_0.jpg", scale=48))
    assert Image.open(io.BytesIO(big)).size == (6144, 2304)
    assert _ids(_search(client, big, k=1, mode="views", box="3072,0,6144,2304")) == ["p4"]
    assert _ids(_search(client, big, k=1, mode="views", box="0,0,3072,2304")) == ["p1"]


@pytest.mark.parametrize(
    ("box", "units", "message"),
    [
        ("1,2,3", "px", "four numbers"),
        ("a,b,c,d", "px", "four numbers"),
        ("0,0,2,1", "fraction", "from 0 to 1"),
        ("500,500,900,900", "px", "no area"),
    ],
)
def test_bad_boxes_are_422_with_the_reason(
    client: TestClient, shop: tuple[Path, Engine], box: str, units: str, message: str
) -> None:
    root, _ = shop
    r = _search(client, (root / "img/p1_0.jpg").read_bytes(), box=box, box_units=units)
    assert r.status_code == 422 and message in r.json()["detail"]


def test_filters_as_expression_json_or_both(client: TestClient, shop: tuple[Path, Engine]) -> None:
    root, _ = shop
    query = (root / "img/p3_1.jpg").read_bytes()
    milk = _ids(_search(client, query, k=6, where="category = 'Juice'"))
    assert sorted(milk) == ["p0", "p2", "p4"]
    assert sorted(_ids(_search(client, query, k=6, filters='{"category": ["Juice"]}'))) == sorted(
        milk
    )
    cheap = _ids(_search(client, query, k=6, filters='{"price": {"gte": 10, "lt": 40}}'))
    assert sorted(cheap) == ["p1", "p2", "p3"]
    both = _ids(
        _search(client, query, k=6, where="category = 'Milk'", filters='{"price": {"lt": 40}}')
    )
    assert sorted(both) == ["p1", "p3"]
    assert _ids(_search(client, query, k=6, filters='{"price": 20.0}')) == ["p2"]
    for bad, reason in [
        ('{"price": {"below": 3}}', "a range takes"),
        ("[1, 2]", "JSON object"),
        ("{not json", "JSON object"),
        ('{"category": [1.5]}', "strings or integers"),
    ]:
        r = _search(client, query, filters=bad)
        assert r.status_code == 422 and reason in r.json()["detail"], (bad, r.text)
    r = _search(client, query, where="price <")
    assert r.status_code == 422 and r.json()["error"] == "QueryError"


def test_structured_filter_contract() -> None:
    flt = structured_filter({"a": "x", "b": [1, 2], "c": {"gte": 1, "lt": 2}, "d": [], "e": {}})
    assert flt is not None
    assert [(c.field, c.op) for c in flt.conditions] == [("a", "eq"), ("b", "in"), ("c", "range")]
    assert structured_filter(None) is None and structured_filter({}) is None
    with pytest.raises(QueryError, match="not a field name"):
        structured_filter({"a b": 1})
    with pytest.raises(QueryError, match="must be a number"):
        structured_filter({"p": {"lt": "3"}})


def test_similar_excludes_the_item_and_404s_unknown(client: TestClient) -> None:
    for method in ("get", "post"):
        r = getattr(client, method)("/api/similar/p2", params={"k": 5})
        ids = _ids(r)
        assert len(ids) == 5 and "p2" not in ids
    r = client.get("/api/similar/p2", params={"k": 5, "filters": '{"category": "Milk"}'})
    assert sorted(_ids(r)) == ["p1", "p3", "p5"]
    r = client.get("/api/similar/nope")
    assert r.status_code == 404 and r.json() == {
        "detail": "no item 'nope' in this index",
        "error": "not_found",
    }


def test_item_lookup(client: TestClient) -> None:
    r = client.get("/api/items/p4")
    assert r.status_code == 200
    body = r.json()
    assert body["title"] == "product 4" and body["price"] == 40.0 and len(body["images"]) == 3
    assert all(client.get(u).status_code == 200 for u in body["image_urls"])
    assert client.get("/api/items/p404").status_code == 404


def test_text_search_matches_catalogue_words(client: TestClient, shop: tuple[Path, Engine]) -> None:
    r = client.post("/api/search/text", json={"text": "milk", "k": 10})
    body = r.json()
    assert sorted(_ids(r)) == ["p1", "p3", "p5"]  # only items with the word, however many asked
    assert body["score_kind"] == "bm25" and all(h["similarity"] is None for h in body["results"])
    r = client.post("/api/search/text", json={"text": "milk", "filters": {"price": {"lt": 20}}})
    assert _ids(r) == ["p1"]
    assert client.post("/api/search/text", json={"text": ""}).status_code == 422
    assert client.post("/api/search/text", json={"text": "x", "mode": "views"}).status_code == 422
    root, _ = shop
    # words with a photo: the two rankings are fused
    r = _search(client, (root / "img/p2_0.jpg").read_bytes(), k=3, text="milk")
    assert r.json()["score_kind"] == "rrf" and r.json()["results"][0]["similarity"] is None


class _TextEmbedder(TinyEmbedder):
    """A fake CLIP: a text names a catalogue photo, and its vector is that photo's vector."""

    def __init__(self, photos: dict[str, Path]) -> None:
        super().__init__()
        self.photos = photos

    def embed_texts(self, texts: Sequence[str]) -> F32:
        return self.embed_images([Image.open(self.photos[t]) for t in texts])


def test_text_search_uses_a_text_tower_when_there_is_one(tmp_path: Path) -> None:
    engine = _engine(tmp_path, _TextEmbedder({"the fifth": tmp_path / "img/p5_1.jpg"}))
    engine.index(small_catalogue(tmp_path))
    with TestClient(create_app(engine)) as c:
        assert c.get("/api/stats").json()["text_tower"] is True
        r = c.post("/api/search/text", json={"text": "the fifth", "k": 2})
        assert _ids(r)[0] == "p5" and r.json()["score_kind"] == "rrf"
        r = c.post("/api/search/text", json={"text": "the fifth", "where": "category = 'Juice'"})
        assert "p5" not in _ids(r) and len(_ids(r)) == 3
    engine.close()


# -- bad uploads: clear 4xx, and the server keeps serving ------------------------------------------


def _bomb_png() -> bytes:
    """A 9000 x 9000 one-bit PNG: 81 megapixels (over the 64 MP limit) in a few kilobytes."""
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_bad_photos_get_clear_errors_and_the_server_keeps_serving(
    client: TestClient, shop: tuple[Path, Engine]
) -> None:
    root, _ = shop
    good = (root / "img/p2_0.jpg").read_bytes()
    bomb = _bomb_png()
    assert len(bomb) < 100_000
    cases = [
        (b"just some text, not a photo", 415, "not an image"),
        (b"%PDF-1.4 fake", 415, "PDF"),
        (bomb, 422, "decompression bomb"),
        (good[: len(good) // 2], 422, "truncated"),
        (b"", 422, "empty"),
        (b"\0" * (LIMIT + 10), 413, "too large"),
    ]
    for data, status, reason in cases:
        r = _search(client, data)
        assert r.status_code == status, (reason, r.text)
        assert reason.lower() in r.json()["detail"].lower(), (reason, r.text)
        assert _ids(_search(client, good, k=1)) == ["p2"]


def test_body_over_the_limit_is_413_before_it_is_read(
    client: TestClient, shop: tuple[Path, Engine]
) -> None:
    r = client.post(
        "/api/search",
        content=b"x" * (LIMIT + FORM_OVERHEAD + 1),
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    root, _ = shop
    assert _ids(_search(client, (root / "img/p2_0.jpg").read_bytes(), k=1)) == ["p2"]


def test_malformed_requests_are_422(client: TestClient, shop: tuple[Path, Engine]) -> None:
    root, _ = shop
    good = (root / "img/p2_0.jpg").read_bytes()
    assert client.post("/api/search", data={"k": "3"}).status_code == 422  # no photo
    r = _search(client, good, k=0)
    assert r.status_code == 422 and "k" in r.json()["detail"]
    assert _search(client, good, k="many").status_code == 422
    assert _search(client, good, mode="best").status_code == 422
    assert (
        client.post(
            "/api/search", content=b"{}", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.post("/api/search/text", content=b"not json").status_code == 422
    assert client.get("/api/facets").status_code == 422
    assert client.get("/api/no-such-endpoint").status_code == 404


# -- catalogue images: only files the index records ------------------------------------------------


def test_images_outside_the_index_are_never_served(
    client: TestClient, shop: tuple[Path, Engine]
) -> None:
    root, _ = shop
    photo(root / "img/not_indexed.jpg", seed=5)  # beside indexed photos, but not in the index
    (root / "img" / "p1_0.jpg.txt").write_text("secret")
    for path in [
        "img/not_indexed.jpg",
        "catalogue.jsonl",
        "img/p1_0.jpg.txt",
        "img/../catalogue.jsonl",
        "img/%2e%2e/catalogue.jsonl",
        "img/..%2fcatalogue.jsonl",
        "..%2f..%2f..%2fetc%2fpasswd",
        "%2fetc%2fpasswd",
        "etc/passwd",
        str(root / "catalogue.jsonl").lstrip("/"),
        str(root / "img" / "not_indexed.jpg").lstrip("/"),
    ]:
        r = client.get(f"/api/images/{path}")
        assert r.status_code == 404, (path, r.status_code)
        assert r.headers["content-type"] == "application/json"
    # the same file is reachable through an equivalent path that normalises to an indexed one
    assert client.get("/api/images/img/./sub/../p1_0.jpg").status_code == 200
    assert client.get("/api/images/img/p1_0.jpg?size=10").status_code == 422


def test_image_urls_without_a_catalogue_root_hide_the_servers_folders(
    shop: tuple[Path, Engine],
) -> None:
    root, engine = shop
    with TestClient(create_app(engine)) as c:
        item = c.get("/api/items/p1").json()
        url, shown = item["image_urls"][0], item["images"][0]
        assert str(root) not in url and str(root) not in shown
        assert re.fullmatch(r"/api/images/~[0-9a-f]{12}/p1_0\.jpg", url) and shown == url[12:]
        assert c.get(url).content == (root / "img/p1_0.jpg").read_bytes()
        # the absolute path is no way in, nor a digest of a file the index does not list
        assert c.get("/api/images" + str(root / "img/p1_0.jpg")).status_code == 404
        assert c.get("/api/images/~" + "0" * 12 + "/p1_0.jpg").status_code == 404
        hits = _search(c, (root / "img/p1_0.jpg").read_bytes(), k=2).json()["results"]
        assert all(str(root) not in json.dumps(h) for h in hits)


@pytest.mark.parametrize("root_given", [True, False])
def test_a_link_retargeted_after_indexing_is_not_followed(tmp_path: Path, root_given: bool) -> None:
    shop, outside = tmp_path / "shop", tmp_path / "outside"
    photo(shop / "img" / "real.jpg", seed=1)
    secret = photo(outside / "secret.jpg", seed=2)  # an image, so only the folder rule stops it
    link = shop / "img" / "link.jpg"
    link.symlink_to("real.jpg")  # a link inside its own folder: served
    manifest = shop / "catalogue.jsonl"
    manifest.write_text(json.dumps({"id": "a", "images": [str(link)]}) + "\n")
    engine = _engine(tmp_path)
    engine.index(manifest)
    with TestClient(create_app(engine, catalogue_root=shop if root_given else None)) as c:
        url = c.get("/api/items/a").json()["image_urls"][0]
        assert c.get(url).content == (shop / "img/real.jpg").read_bytes()
        for target in (secret, Path("/etc/passwd")):
            link.unlink()
            link.symlink_to(target)
            assert c.get(url).status_code == 404, target
            assert c.get(url + "?size=64").status_code == 404, target
    engine.close()


def test_catalogue_root_paths_are_checked_with_links_resolved(
    writable: tuple[Path, Engine, TestClient],
) -> None:
    root, _, c = writable
    photo(root.parent / f"{root.name}-outside" / "x.jpg", seed=9)
    (root / "img" / "escape.jpg").symlink_to(root.parent / f"{root.name}-outside" / "x.jpg")
    r = c.post(
        "/api/items", json={"id": "e", "images": ["img/escape.jpg"]}, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 422 and "outside the catalogue root" in r.json()["detail"]
    assert c.get("/api/items/e").status_code == 404


def test_deeply_nested_json_is_a_422(client: TestClient, shop: tuple[Path, Engine]) -> None:
    root, _ = shop
    deep = "[" * 3000 + "]" * 3000
    nested = '{"category": ' + deep + "}"
    shallow_enough_to_parse = '{"category": ' + "[" * 200 + "]" * 200 + "}"
    query = (root / "img/p1_0.jpg").read_bytes()
    for filters in (deep, nested, shallow_enough_to_parse):
        answers = [
            _search(client, query, filters=filters),
            client.get("/api/similar/p1", params={"filters": filters}),
            client.get("/api/facets", params={"field": "category", "filters": filters}),
        ]
        for r in answers:
            assert r.status_code == 422, r.text
            assert "nested too deeply" in r.json()["detail"]
    body = '{"text": "milk", "filters": ' + nested + "}"
    r = client.post("/api/search/text", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"], r.text
    body = '{"text": "milk", "filters": ' + shallow_enough_to_parse + "}"
    r = client.post("/api/search/text", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"], r.text
    item = '{"id": "x", "images": ["img/p1_0.jpg"], "tags": ' + deep + "}"
    auth = {"X-API-Key": KEY}
    r = client.post(
        "/api/items", content=item, headers={**auth, "content-type": "application/json"}
    )
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"], r.text
    r = client.post(
        "/api/items", data={"item": item}, files=[("photos", ("p.jpg", query))], headers=auth
    )
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"], r.text
    assert client.get("/api/items/x").status_code == 404
    assert _ids(_search(client, query, k=1)) == ["p1"]


# -- adding and deleting items ---------------------------------------------------------------------


def test_writes_need_the_api_key(writable: tuple[Path, Engine, TestClient]) -> None:
    _, _, c = writable
    item = {"id": "new", "images": ["img/p0_0.jpg"]}
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = c.post("/api/items", json=item, headers=headers)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        assert c.delete("/api/items/p1", headers=headers).status_code == 401
    assert c.get("/api/items/new").status_code == 404
    assert c.get("/api/items/p1").status_code == 200


@pytest.mark.parametrize("options", [{}, {"api_key": ""}, {"api_key": KEY, "read_only": True}])
def test_without_a_key_writes_are_off(tmp_path: Path, options: dict[str, object]) -> None:
    engine = _engine(tmp_path)
    engine.index(small_catalogue(tmp_path, n_items=2, views=1))
    with TestClient(create_app(engine, catalogue_root=tmp_path, **options)) as c:  # type: ignore[arg-type]
        item = {"id": "new", "images": ["img/p0_0.jpg"]}
        for headers in ({}, {"X-API-Key": KEY}, {"X-API-Key": ""}):
            r = c.post("/api/items", json=item, headers=headers)
            assert r.status_code == 403, r.text
            assert "--api-key" in r.json()["detail"] or "read-only" in r.json()["detail"]
            assert c.delete("/api/items/p1", headers=headers).status_code == 403
        # the cross-site form of issue 14: multipart, no custom header (a form cannot set one)
        r = c.post(
            "/api/items",
            data={"item": json.dumps({"id": "new"})},
            files=[("photos", ("p.jpg", (tmp_path / "img/p0_0.jpg").read_bytes(), "image/jpeg"))],
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403
        assert c.get("/api/items/new").status_code == 404
        assert c.get("/api/items/p1").status_code == 200
        assert c.get("/api/stats").json()["writable"] is False
        assert not (engine.index_dir / "uploads").exists()
    engine.close()


def test_a_cross_site_form_cannot_write_with_a_key_set(
    writable: tuple[Path, Engine, TestClient],
) -> None:
    root, _, c = writable
    r = c.post(
        "/api/items",
        data={"item": json.dumps({"id": "new"})},
        files=[("photos", ("p.jpg", (root / "img/p0_0.jpg").read_bytes(), "image/jpeg"))],
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 401 and c.get("/api/items/new").status_code == 404
    assert "access-control-allow-origin" not in r.headers  # no CORS: no header from elsewhere
    pre = c.options(
        "/api/items",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert "access-control-allow-origin" not in pre.headers
    assert c.get("/api/stats").json()["writable"] is True


def test_add_by_path_replace_and_delete(writable: tuple[Path, Engine, TestClient]) -> None:
    root, _, c = writable
    auth = {"X-API-Key": KEY}
    photo(root / "more" / "x.jpg", seed=4242)
    r = c.post(
        "/api/items",
        json={"id": "x1", "images": ["more/x.jpg"], "title": "Extra", "price": 7, "Colour": "red"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] and body["images_embedded"] == 1 and body["skipped"] == []
    fields = body["item"]["fields"]
    assert {k: fields.get(k) for k in ("title", "price", "Colour")} == {
        "title": "Extra",
        "price": 7,
        "Colour": "red",
    }
    assert _ids(_search(c, (root / "more/x.jpg").read_bytes(), k=1, mode="views")) == ["x1"]
    assert c.get(body["item"]["image_urls"][0]).status_code == 200  # servable at once
    r = c.post("/api/items", json={"id": "x1", "images": ["more/x.jpg"], "price": 8}, headers=auth)
    assert r.status_code == 200 and not r.json()["created"] and r.json()["item"]["price"] == 8
    assert c.get("/api/stats").json()["items"] == 5
    assert c.delete("/api/items/x1", headers=auth).json() == {"deleted": "x1"}
    assert c.get("/api/items/x1").status_code == 404
    assert c.delete("/api/items/x1", headers=auth).status_code == 404
    assert "x1" not in _ids(_search(c, (root / "more/x.jpg").read_bytes(), k=4))
    assert c.get("/api/stats").json()["items"] == 4


def test_add_by_upload_keeps_the_photo_under_the_index(
    writable: tuple[Path, Engine, TestClient],
) -> None:
    root, engine, c = writable
    data = photo(root / "elsewhere.jpg", seed=777).read_bytes()
    r = c.post(
        "/api/items",
        data={"item": json.dumps({"id": 99, "title": "Uploaded"})},
        files=[("photos", ("mine.jpg", data, "image/jpeg"))],
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 201, r.text
    item = r.json()["item"]
    assert item["item_id"] == "99"
    shown = item["images"][0]
    assert shown == "index/uploads/" + shown.split("uploads/")[1]  # relative to the catalogue root
    assert str(root) not in r.text
    stored = root / shown
    assert stored.parent.parent == engine.index_dir / "uploads" and stored.read_bytes() == data
    assert _ids(_search(c, data, k=1, mode="views")) == ["99"]
    assert c.get(item["image_urls"][0]).content == data


def test_bad_item_requests_write_nothing(writable: tuple[Path, Engine, TestClient]) -> None:
    _, engine, c = writable
    auth = {"X-API-Key": KEY}
    r = c.post(
        "/api/items",
        data={"item": json.dumps({"id": "bad"})},
        files=[("photos", ("notes.jpg", b"plain text, not a photo", "image/jpeg"))],
        headers=auth,
    )
    assert r.status_code == 415 and "not an image" in r.json()["detail"]
    assert not (engine.index_dir / "uploads").exists()
    cases = [
        ({"id": "o", "images": ["../outside.jpg"]}, "outside the catalogue root"),
        ({"id": "o", "images": ["file:///etc/passwd"]}, "only http(s) URLs"),
        ({"id": "o"}, "has no images"),
        ({"images": ["img/p0_0.jpg"]}, "id"),
        ({"id": True, "images": ["img/p0_0.jpg"]}, "id"),
        ({"id": "o", "images": ["img/missing.jpg"]}, "not added"),
    ]
    for item, reason in cases:
        r = c.post("/api/items", json=item, headers=auth)
        assert r.status_code == 422 and reason in r.json()["detail"], (item, r.text)
    r = c.post("/api/items", content=b"[1]", headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422
    r = c.post("/api/items", content=b"id=1", headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 415
    assert c.get("/api/stats").json()["items"] == 4


def test_local_paths_need_a_catalogue_root(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.index(small_catalogue(tmp_path, n_items=2, views=1))
    with TestClient(create_app(engine, api_key=KEY)) as c:
        r = c.post(
            "/api/items",
            json={"id": "a", "images": [str(tmp_path / "img/p0_0.jpg")]},
            headers={"X-API-Key": KEY},
        )
        assert r.status_code == 422 and "catalogue root" in r.json()["detail"]
    engine.close()


# -- information -----------------------------------------------------------------------------------


def test_stats_facets_health_page_and_docs(client: TestClient) -> None:
    stats = client.get("/api/stats").json()
    assert (stats["items"], stats["views"], stats["dim"]) == (6, 18, 48)
    assert stats["fields"]["category"] == "keyword" and stats["fields"]["price"] == "float"
    assert stats["auth_required"] is True and stats["text_tower"] is False
    assert "index" not in stats  # the server's folders stay private
    facets = client.get("/api/facets", params={"field": "category"}).json()
    assert facets == {
        "field": "category",
        "values": [{"value": "Juice", "count": 3}, {"value": "Milk", "count": 3}],
    }
    narrowed = client.get("/api/facets", params={"field": "category", "where": "price > 35"})
    assert {v["value"]: v["count"] for v in narrowed.json()["values"]} == {"Juice": 1, "Milk": 1}
    r = client.get("/api/facets", params={"field": "price"})
    assert r.status_code == 422 and "keyword" in r.json()["detail"]
    r = client.get("/api/facets", params={"field": "nope"})
    assert r.status_code == 422 and "category" in r.json()["detail"]
    assert client.get("/healthz").json() == {"status": "ok", "ready": True}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'capture="environment"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/api/search", "/api/search/text", "/api/similar/{item_id}", "/api/items"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_no_index_is_503_and_health_still_answers(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "empty")
    with TestClient(create_app(engine)) as c:
        assert c.get("/healthz").json() == {"status": "ok", "ready": False}
        r = _search(c, photo(tmp_path / "q.jpg", seed=1).read_bytes())
        assert r.status_code == 503 and "no index" in r.json()["detail"]
        assert str(tmp_path) not in r.text  # the server's folders stay private
        stats = c.get("/api/stats")
        assert stats.status_code == 503 and str(tmp_path) not in stats.text


# -- concurrency: a real server ------------------------------------------------------------------


def test_slow_searches_do_not_block_the_event_loop(tmp_path: Path) -> None:
    engine = _engine(tmp_path, TinyEmbedder())
    engine.index(small_catalogue(tmp_path, n_items=3, views=1))
    slow = TinyEmbedder(delay=1.5)
    engine._embedder = slow  # same vectors, 1.5 s per inference call, from now on
    query = (tmp_path / "img/p1_0.jpg").read_bytes()
    app = create_app(engine, api_key=KEY, catalogue_root=tmp_path)
    with live_server(app) as url:
        results: list[int] = []

        def search() -> None:
            r = httpx.post(f"{url}/api/search", files={"photo": ("q.jpg", query)}, timeout=30)
            results.append(r.status_code)

        threads = [threading.Thread(target=search) for _ in range(2)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(0.3)  # both searches are now inside the slow model
        health = httpx.get(f"{url}/healthz", timeout=5)
        health_s = time.perf_counter() - started - 0.3
        for t in threads:
            t.join()
        assert health.status_code == 200 and health_s < 0.5, health_s
        assert results == [200, 200] and slow.calls == 2
        # two 1.5 s inferences ran side by side, not one after the other
        assert time.perf_counter() - started < 2.9


def test_concurrent_writes_and_reads_all_succeed(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.index(small_catalogue(tmp_path, n_items=2, views=1))
    for i in range(6):
        photo(tmp_path / "new" / f"n{i}.jpg", seed=5000 + i)
    query = (tmp_path / "img/p0_0.jpg").read_bytes()
    with live_server(create_app(engine, api_key=KEY, catalogue_root=tmp_path)) as url:
        statuses: list[int] = []

        def add(i: int) -> None:
            item = {"id": f"n{i}", "images": [f"new/n{i}.jpg"]}
            r = httpx.post(f"{url}/api/items", json=item, headers={"X-API-Key": KEY}, timeout=60)
            statuses.append(r.status_code)

        def read() -> None:
            r = httpx.post(f"{url}/api/search", files={"photo": ("q.jpg", query)}, timeout=60)
            statuses.append(r.status_code)

        threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
        threads += [threading.Thread(target=read) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [201] * 6 + [200] * 6 or sorted(statuses) == [200] * 6 + [201] * 6
        assert httpx.get(f"{url}/api/stats").json()["items"] == 8
    engine.close()


# -- packaging -------------------------------------------------------------------------------------


def test_importing_the_server_modules_imports_nothing_heavy() -> None:
    code = (
        "import sys; import lookalike.api.http, lookalike.api.cli_serve; "
        "heavy = {'numpy', 'onnxruntime', 'qdrant_edge', 'PIL', 'torch'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_refuses_a_missing_index(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from lookalike.api.cli_serve import serve

    app = typer.Typer()
    app.command()(serve)
    result = CliRunner().invoke(app, ["--index", str(tmp_path / "nothing"), "--port", "1"])
    assert result.exit_code == 7, result.output
    assert "no index" in result.output


def test_serve_refuses_every_interface_without_a_key(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from lookalike.api.cli_serve import serve

    app = typer.Typer()
    app.command()(serve)
    args = ["--index", str(tmp_path / "nothing"), "--port", "1", "--host", "0.0.0.0"]
    result = CliRunner().invoke(app, args, env={"LOOKALIKE_API_KEY": ""})
    assert result.exit_code == 2, result.output
    assert "--api-key" in result.output and "--read-only" in result.output
    # with --read-only (or a key) it goes on, here to the missing index
    result = CliRunner().invoke(app, [*args, "--read-only"], env={"LOOKALIKE_API_KEY": ""})
    assert result.exit_code == 7 and "no index" in result.output, result.output
    result = CliRunner().invoke(app, [*args, "--api-key", KEY])
    assert result.exit_code == 7 and "no index" in result.output, result.output


def test_random_bytes_never_crash_the_server(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    for n in (1, 16, 700, 5000):
        r = _search(client, rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        assert r.status_code in (415, 422), r.text
    assert client.get("/healthz").status_code == 200
