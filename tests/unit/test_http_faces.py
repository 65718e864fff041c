"""Find people over HTTP: `/api/faces/search`, `/api/faces/photos`, `/api/faces/stats`.

The fast tests use the fake detector and embedder of test_faces.py on generated photos; the e2e
tests run dlib's real models on the labelled deepface photos (missing data or models FAIL).
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api.http import create_app
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.faces.index import FaceIndex
from tests.fakes import TinyEmbedder
from tests.unit.test_faces import make_index, photo


def _png(people: dict[str, tuple[int, int, int]], tmp: Path, name: str) -> bytes:
    return photo(tmp / "queries" / name, people).read_bytes()


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """An empty core index and a face index of generated photos (fake detector and embedder)."""
    album = tmp_path / "album"
    photo(album / "a.png", {"ann": (20, 20, 60)})
    photo(album / "b.png", {"ann": (200, 100, 80), "bob": (40, 40, 50)})
    photo(album / "c.png", {"bob": (100, 100, 70)})
    faces = make_index(tmp_path)
    faces.index(album)
    settings = Settings(index=tmp_path / "idx", cache_dir=tmp_path / "cache")
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    app = create_app(engine, catalogue_root=tmp_path, faces=faces, api_key="k")
    # Naming, merging ... people are writes: the client carries the key (reads need none).
    with TestClient(app, headers={"X-API-Key": "k"}) as client:
        yield client, tmp_path
    faces.close()
    engine.close()


def test_selfie_finds_the_photos_of_that_person(fake_server: tuple[TestClient, Path]) -> None:
    client, tmp = fake_server
    selfie = _png({"ann": (100, 50, 120)}, tmp, "ann.png")
    r = client.post("/api/faces/search", files={"photo": ("ann.png", selfie, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [m["name"] for m in body["matches"]] == ["a.png", "b.png"] or [
        m["name"] for m in body["matches"]
    ] == ["b.png", "a.png"]
    assert body["threshold"] == 0.3
    assert body["query"]["face"]["number"] == 0
    x1, y1, x2, y2 = body["query"]["face"]["box"]
    assert abs(x1 - 100) < 8 and abs(y1 - 50) < 8 and abs(x2 - 220) < 8 and abs(y2 - 170) < 8
    by_name = {m["name"]: m for m in body["matches"]}
    # b.png: ann's face is the square at (200, 100) of side 80, in the photo's pixels.
    bx1, by1, bx2, by2 = by_name["b.png"]["box"]
    assert abs(bx1 - 200) < 8 and abs(by1 - 100) < 8 and abs(bx2 - 280) < 8 and abs(by2 - 180) < 8
    assert by_name["b.png"]["image_size"] == [400, 300]
    assert all(0 <= m["distance"] <= 0.3 for m in body["matches"])
    # The photo is served, and so is its thumbnail; the URL is relative to the catalogue root.
    url = by_name["a.png"]["image_url"]
    assert url == "/api/faces/photos/album/a.png"
    got = client.get(url)
    assert got.status_code == 200 and got.content == (tmp / "album" / "a.png").read_bytes()
    thumb = client.get(by_name["a.png"]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_face_photos_serves_only_indexed_photos(fake_server: tuple[TestClient, Path]) -> None:
    client, tmp = fake_server
    (tmp / "album" / "secret.txt").write_text("not yours")
    photo(tmp / "album" / "not-indexed.png", {"ann": (20, 20, 60)})
    for path in (
        "album/secret.txt",
        "album/not-indexed.png",
        "album/../album/secret.txt",
        "etc/passwd",
        "album/a.png.bak",
    ):
        r = client.get(f"/api/faces/photos/{path}")
        assert r.status_code == 404, path
        assert r.json()["error"] == "not_found"
    # `..` that resolves to an indexed photo is the same file, served.
    assert client.get("/api/faces/photos/album/x/../a.png").status_code == 200


def test_several_faces_answer_409_with_the_boxes_then_face_n_searches(
    fake_server: tuple[TestClient, Path],
) -> None:
    client, tmp = fake_server
    group = _png({"ann": (20, 20, 100), "bob": (250, 150, 60)}, tmp, "group.png")
    r = client.post("/api/faces/search", files={"photo": ("g.png", group, "image/png")})
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "ManyFacesError" and "face=N" in body["detail"]
    assert [f["number"] for f in body["faces"]] == [0, 1]
    assert body["faces"][0]["face_size"] > body["faces"][1]["face_size"]  # largest first
    assert body["query"] == {"width": 400, "height": 300}
    r = client.post(
        "/api/faces/search", files={"photo": ("g.png", group, "image/png")}, data={"face": "1"}
    )
    assert r.status_code == 200
    assert sorted(m["name"] for m in r.json()["matches"]) == ["b.png", "c.png"]  # bob's photos
    r = client.post(
        "/api/faces/search", files={"photo": ("g.png", group, "image/png")}, data={"face": "5"}
    )
    assert r.status_code == 422 and "face 5 does not exist" in r.json()["detail"]


def test_no_face_is_a_clear_422_and_bad_input_is_refused(
    fake_server: tuple[TestClient, Path],
) -> None:
    client, tmp = fake_server
    nobody = _png({}, tmp, "nobody.png")
    r = client.post("/api/faces/search", files={"photo": ("n.png", nobody, "image/png")})
    assert r.status_code == 422
    assert r.json()["error"] == "NoFaceError" and "no face found" in r.json()["detail"]
    r = client.post("/api/faces/search", files={"photo": ("x.png", b"hello", "image/png")})
    assert r.status_code == 415
    ann = _png({"ann": (100, 50, 120)}, tmp, "ann.png")
    bads = ({"threshold": "0"}, {"threshold": "3"}, {"maybe_threshold": "3"}, {"k": "0"})
    for bad in (*bads, {"face": "-1"}):
        r = client.post("/api/faces/search", files={"photo": ("a.png", ann, "image/png")}, data=bad)
        assert r.status_code == 422 and r.json()["error"] == "validation", bad


def test_threshold_and_k_are_applied(fake_server: tuple[TestClient, Path]) -> None:
    client, tmp = fake_server
    ann = _png({"ann": (100, 50, 120)}, tmp, "ann.png")
    files = {"photo": ("a.png", ann, "image/png")}
    r = client.post("/api/faces/search", files=files, data={"k": "1"})
    assert len(r.json()["matches"]) == 1
    r = client.post("/api/faces/search", files=files, data={"threshold": "0.0001"})
    assert r.json()["matches"] == [] and r.json()["threshold"] == 0.0001


def test_matches_carry_their_tier(fake_server: tuple[TestClient, Path]) -> None:
    client, tmp = fake_server
    files = {"photo": ("a.png", _png({"ann": (20, 20, 60)}, tmp, "ann.png"), "image/png")}
    # The same square at the same place as a.png: distance 0 ("you"); ann in b.png ~0.07 away.
    r = client.post("/api/faces/search", files=files, data={"threshold": "0.01"})
    body = r.json()
    assert [(m["name"], m["tier"]) for m in body["matches"]] == [
        ("a.png", "you"),
        ("b.png", "maybe"),
    ]
    assert body["threshold"] == 0.01 and body["maybe_threshold"] == 0.42
    r = client.post(
        "/api/faces/search", files=files, data={"threshold": "0.01", "maybe_threshold": "0"}
    )
    assert [m["tier"] for m in r.json()["matches"]] == ["you"]


def test_face_stats(fake_server: tuple[TestClient, Path]) -> None:
    client, _ = fake_server
    stats = client.get("/api/faces/stats").json()
    assert stats["photos"] == 3 and stats["faces"] == 4
    assert "index" not in stats and stats["threshold"] == 0.3
    assert stats["maybe_threshold"] == 0.42


def test_without_a_face_index_the_answer_is_503(tmp_path: Path) -> None:
    settings = Settings(index=tmp_path / "idx", cache_dir=tmp_path / "cache")
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    with engine, TestClient(create_app(engine)) as client:
        r = client.get("/api/faces/stats")
        assert r.status_code == 503 and "no face index" in r.json()["detail"]
        img = io.BytesIO()
        Image.new("RGB", (64, 64)).save(img, format="PNG")
        r = client.post(
            "/api/faces/search", files={"photo": ("a.png", img.getvalue(), "image/png")}
        )
        assert r.status_code == 503
        assert client.get("/api/faces/photos/anything.jpg").status_code == 404


# -- real models, real photos ---------------------------------------------------------------------

PEOPLE = ("person01", "person02")


@pytest.fixture(scope="module")
def real_server(deepface: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """person01's and person02's photos, except img1.jpg (the selfie), in a real face index."""
    root = tmp_path_factory.mktemp("people")
    with open(deepface / "identities.csv", newline="") as fh:
        rows = [
            r for r in csv.DictReader(fh) if r["identity"] in PEOPLE and r["file"] != "img1.jpg"
        ]
    (root / "album").mkdir()
    for r in rows:
        shutil.copy(deepface / r["file"], root / "album" / f"{r['identity']}-{r['file']}")
    settings = Settings(index=root / "index", cache_dir=root / "cache")
    with FaceIndex(settings.index, settings) as faces:  # closed: the server opens the shard
        faces.index(root / "album")
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    with TestClient(create_app(engine, catalogue_root=root)) as client:  # faces opened lazily
        yield client
    engine.close()


@pytest.mark.e2e
def test_real_selfie_finds_the_other_photos_of_that_person(
    real_server: TestClient, deepface: Path
) -> None:
    selfie = (deepface / "img1.jpg").read_bytes()
    r = real_server.post("/api/faces/search", files={"photo": ("img1.jpg", selfie, "image/jpeg")})
    assert r.status_code == 200, r.text
    names = [m["name"] for m in r.json()["matches"]]
    mine = [n for n in names if n.startswith("person01-")]
    assert [n for n in names if not n.startswith("person01-")] == []  # nobody else
    assert len(mine) >= 6  # person01 has 7 other photos; one may be missed
    first = r.json()["matches"][0]
    assert real_server.get(first["thumbnail_url"]).status_code == 200
    w, h = first["image_size"]
    x1, y1, x2, y2 = first["box"]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


@pytest.mark.e2e
def test_real_photo_without_a_face_is_a_clear_422(real_server: TestClient, data_dir: Path) -> None:
    shelf = sorted((data_dir / "grocery").rglob("*.jpg"))[0]  # a product photo: nobody in it
    r = real_server.post(
        "/api/faces/search", files={"photo": (shelf.name, shelf.read_bytes(), "image/jpeg")}
    )
    assert r.status_code == 422
    assert r.json()["error"] == "NoFaceError" and "no face found" in r.json()["detail"]


@pytest.mark.e2e
def test_real_group_photo_lists_its_faces(real_server: TestClient, deepface: Path) -> None:
    couple = (deepface / "couple.jpg").read_bytes()
    r = real_server.post("/api/faces/search", files={"photo": ("c.jpg", couple, "image/jpeg")})
    assert r.status_code == 409
    assert len(r.json()["faces"]) == 2


# -- people ----------------------------------------------------------------------------------------


def test_people_list_photos_face_picture(fake_server: tuple[TestClient, Path]) -> None:
    client, _ = fake_server
    r = client.get("/api/faces/people")
    assert r.status_code == 200, r.text
    people = r.json()["people"]
    assert sorted((p["faces"], p["photos"]) for p in people) == [(2, 2), (2, 2)]
    ann = next(p for p in people if p["cover"]["name"] in ("a.png", "b.png"))
    photos = client.get(f"/api/faces/people/{ann['person']}/photos").json()["photos"]
    assert {x["name"] for x in photos} <= {"a.png", "b.png", "c.png"} and len(photos) == 2
    assert all(x["image_url"].startswith("/api/faces/photos/") for x in photos)
    pic = client.get(ann["cover"]["face_url"] + "?size=64")
    assert pic.status_code == 200 and pic.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(pic.content)).size == (64, 64)
    assert client.get("/api/faces/face/not-an-id.jpg").status_code == 404
    assert client.get("/api/faces/face/00000000-0000-0000-0000-000000000000.jpg").status_code == 404
    assert client.get("/api/faces/people/99/photos").status_code == 404


def test_people_name_merge_split_hide(fake_server: tuple[TestClient, Path]) -> None:
    client, _ = fake_server
    first, second = client.get("/api/faces/people").json()["people"]
    r = client.post(f"/api/faces/people/{first['person']}/name", json={"name": "Ann"})
    assert r.status_code == 200 and r.json()["name"] == "Ann"
    r = client.post(
        "/api/faces/people/merge", json={"into": first["person"], "others": [second["person"]]}
    )
    assert r.status_code == 200, r.text
    (everyone,) = client.get("/api/faces/people").json()["people"]
    assert everyone["name"] == "Ann" and everyone["faces"] == 4
    face_ids = [
        x["face_id"]
        for x in client.get(f"/api/faces/people/{first['person']}/photos").json()["photos"]
    ]
    r = client.post("/api/faces/people/split", json={"face_ids": face_ids[:1], "name": "X"})
    assert r.status_code == 200, r.text
    new = r.json()["person"]
    assert client.post(f"/api/faces/people/{new}/hide", json={"hidden": True}).status_code == 200
    assert [p["name"] for p in client.get("/api/faces/people").json()["people"]] == ["Ann"]
    assert len(client.get("/api/faces/people?all=true").json()["people"]) == 2
    r = client.post("/api/faces/people/42/name", json={"name": "Nobody"})
    assert r.status_code in (404, 422) and "no person 42" in r.json()["detail"]
    r = client.post("/api/faces/people/merge", json={"into": "1", "others": []})
    assert r.status_code == 422


def test_people_changes_need_the_api_key(tmp_path: Path) -> None:
    album = tmp_path / "album"
    photo(album / "a.png", {"ann": (20, 20, 60)})
    faces = make_index(tmp_path)
    faces.index(album)
    settings = Settings(index=tmp_path / "idx", cache_dir=tmp_path / "cache")
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    app = create_app(engine, catalogue_root=tmp_path, faces=faces, api_key="k")
    with TestClient(app) as client:
        (p,) = client.get("/api/faces/people").json()["people"]  # reading needs no key
        url = f"/api/faces/people/{p['person']}/name"
        assert client.post(url, json={"name": "Ann"}).status_code == 401
        r = client.post(url, json={"name": "Ann"}, headers={"X-API-Key": "k"})
        assert r.status_code == 200
    # No key configured: people changes are off like every other write (403 says how to turn on).
    with TestClient(create_app(engine, catalogue_root=tmp_path, faces=faces)) as client:
        r = client.post(url, json={"name": "Bob"})
        assert r.status_code == 403 and "--api-key" in r.json()["detail"]
    faces.close()
    engine.close()
