"""Searching many photos at once, by image URL, and "more like this, less like that": the real
CLI (subprocesses), the HTTP API and the engine, on a small real grocery index."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.api.http import create_app
from lookalike.api.remote_images import FetchPolicy
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.errors import QueryError
from tests.grocery_index import SmallGrocery, build_small_grocery
from tests.image_origin import ImageOrigin

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grocery(
    data_dir: Path, lite2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> SmallGrocery:
    return build_small_grocery(data_dir, tmp_path_factory.mktemp("grocery"), products=8, photos=3)


@pytest.fixture(scope="module")
def engine(grocery: SmallGrocery) -> Iterator[Engine]:
    with Engine(grocery.index, settings=Settings(index=grocery.index)) as engine:
        yield engine


def _cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.api.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)},
        timeout=600,
    )


def _shots(grocery: SmallGrocery) -> list[tuple[str, str]]:
    """Two shoppers' photos (path, item id) of two different products."""
    return [(photos[0], item) for item, photos in grocery.queries.items() if photos][:2]


# -- several photos in one command ------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(grocery: SmallGrocery, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real photos (one in a sub-folder) and one file that is not an image."""
    root = tmp_path_factory.mktemp("shots")
    (a, _), (b, _) = _shots(grocery)
    (root / "a.jpg").write_bytes(Path(a).read_bytes())
    (root / "sub").mkdir()
    (root / "sub" / "b.jpg").write_bytes(Path(b).read_bytes())
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    (root / "notes.txt").write_text("ignored: not an image name")
    return root


def test_search_folder_json_lines_one_object_per_photo(grocery: SmallGrocery, folder: Path) -> None:
    out = _cli("search", str(folder), "--index", str(grocery.index), "-k", "3", "--format", "json")
    assert out.returncode == 3, out.stderr  # a photo failed: DecodeError's code, after the output
    assert "1 of 3 photos could not be searched" in out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [Path(r["photo"]).name for r in rows] == ["a.jpg", "broken.jpg", "b.jpg"]
    broken = rows[1]
    assert broken["error"] and "broken.jpg" in broken["error"] and "results" not in broken
    (_, item_a), (_, item_b) = _shots(grocery)
    for row, item in ((rows[0], item_a), (rows[2], item_b)):
        assert row["error"] is None and len(row["results"]) == 3
        assert item in [r["item_id"] for r in row["results"]]


def test_search_folder_csv_and_paths(grocery: SmallGrocery, folder: Path) -> None:
    out = _cli("search", str(folder), "--index", str(grocery.index), "-k", "2", "--format", "csv")
    assert out.returncode == 3, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == ["photo", "rank", "item_id", "similarity", "match", "title", "error"]
    assert [(Path(r["photo"]).name, r["rank"]) for r in rows] == [
        ("a.jpg", "1"),
        ("a.jpg", "2"),
        ("broken.jpg", ""),
        ("b.jpg", "1"),
        ("b.jpg", "2"),
    ]
    assert rows[2]["error"] and not rows[0]["error"]
    assert 0 < float(rows[0]["similarity"]) <= 100 and rows[0]["item_id"] in grocery.items

    paths = _cli("search", str(folder), "--index", str(grocery.index), "--format", "paths")
    assert paths.returncode == 3
    lines = paths.stdout.splitlines()
    assert len(lines) == 2 and all(Path(p).is_file() for p in lines)  # nothing else on stdout
    assert "broken.jpg" in paths.stderr


def test_search_several_photos_table_and_single_photo_json_unchanged(
    grocery: SmallGrocery,
) -> None:
    (a, item_a), (b, _) = _shots(grocery)
    out = _cli("search", a, b, "--index", str(grocery.index), "-k", "2", columns=250)
    assert out.returncode == 0, out.stderr
    assert Path(a).name in out.stdout and Path(b).name in out.stdout and item_a in out.stdout

    one = _cli("search", a, "--index", str(grocery.index), "-k", "2", "--json")
    assert one.returncode == 0, one.stderr
    result = json.loads(one.stdout)  # one indented object, as before: no photo/error keys
    assert "photo" not in result and len(result["results"]) == 2


def test_search_missing_photo_among_others_is_reported(grocery: SmallGrocery) -> None:
    (a, _), _ = _shots(grocery)
    out = _cli("search", a, "/no/such/photo.jpg", "--index", str(grocery.index), "--format", "json")
    assert out.returncode == 3
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[0]["error"] is None and rows[1]["error"]


# -- more like this, less like that -----------------------------------------------------------


def test_similar_not_through_the_cli(grocery: SmallGrocery) -> None:
    # Before the tests that open the index in this process (the embedded store admits one).
    pos, neg = grocery.items[0], grocery.items[1]
    out = _cli("similar", pos, "--not", neg, "--index", str(grocery.index), "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    ids = [r["item_id"] for r in json.loads(out.stdout)["results"]]
    assert len(ids) == 3 and pos not in ids and neg not in ids
    bad = _cli("similar", pos, "--not", "nope", "--index", str(grocery.index))
    assert bad.returncode != 0 and "nope" in bad.stderr


def _mean_cosine(engine: Engine, item_ids: list[str], to: str) -> float:
    ref = engine.item_vector(to)
    return float(np.mean([float(engine.item_vector(i) @ ref) for i in item_ids]))


def test_recommend_moves_away_from_negative_examples(engine: Engine, grocery: SmallGrocery) -> None:
    pos = grocery.items[0]
    near = engine.similar(pos, k=len(grocery.items) - 1)
    neg = near.hits[0].item_id  # the item most like the positive one: push away from it
    plain = [h.item_id for h in near.hits if h.item_id != neg][:3]
    rec = engine.recommend([pos], [neg], k=3)
    got = [h.item_id for h in rec.hits]
    assert pos not in got and neg not in got and len(got) == 3
    assert _mean_cosine(engine, got, neg) <= _mean_cosine(engine, plain, neg)
    # Without negatives it is "more like these": the positives' own neighbours.
    both = engine.recommend([pos], k=2)
    assert [h.item_id for h in both.hits] == [h.item_id for h in engine.similar(pos, k=2).hits]


def test_recommend_errors(engine: Engine, grocery: SmallGrocery) -> None:
    with pytest.raises(QueryError, match="no item"):
        engine.recommend(["no-such-item"], [grocery.items[0]])
    with pytest.raises(QueryError, match="positive"):
        engine.recommend([], [grocery.items[0]])


# -- HTTP: recommend and search by image URL ----------------------------------------------------


@pytest.fixture(scope="module")
def origin(grocery: SmallGrocery) -> Iterator[ImageOrigin]:
    (a, _), _ = _shots(grocery)
    o = ImageOrigin(Path(a).read_bytes())
    yield o
    o.close()


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[TestClient]:
    app = create_app(engine, image_fetch=FetchPolicy.allowing(["127.0.0.1"], deadline_s=10))
    with TestClient(app) as c:
        yield c


def test_http_search_by_url_matches_upload(
    client: TestClient, origin: ImageOrigin, grocery: SmallGrocery
) -> None:
    (a, item), _ = _shots(grocery)
    by_url = client.post("/api/search", data={"url": origin.url + "/photo.jpg", "k": "3"})
    assert by_url.status_code == 200, by_url.text
    upload = client.post(
        "/api/search", files={"photo": ("a.jpg", Path(a).read_bytes())}, data={"k": "3"}
    )
    ids = [r["item_id"] for r in by_url.json()["results"]]
    assert ids == [r["item_id"] for r in upload.json()["results"]] and item in ids


def test_http_search_url_guard(client: TestClient, origin: ImageOrigin, engine: Engine) -> None:
    for url, words in (
        (origin.url + "/text", "could not be downloaded as an image"),
        (origin.url + "/hop", "non-public address"),  # the redirect is checked too
        ("file:///etc/passwd", "not an http(s) URL"),
    ):
        r = client.post("/api/search", data={"url": url})
        assert r.status_code == 422, r.text
        assert words in r.json()["detail"] and "secret" not in r.text
    neither = client.post("/api/search", data={"k": "3"})
    assert neither.status_code == 422 and "photo" in neither.json()["detail"]
    # The default policy: the server's own loopback is not public, so it is refused.
    with TestClient(create_app(engine)) as strict:
        r = strict.post("/api/search", data={"url": origin.url + "/photo.jpg"})
        assert r.status_code == 422 and "non-public address" in r.json()["detail"]


def test_http_recommend(client: TestClient, engine: Engine, grocery: SmallGrocery) -> None:
    pos, neg = grocery.items[0], grocery.items[1]
    r = client.post("/api/recommend", json={"positive": [pos], "negative": [neg], "k": 3})
    assert r.status_code == 200, r.text
    ids = [h["item_id"] for h in r.json()["results"]]
    assert ids == [h.item_id for h in engine.recommend([pos], [neg], k=3).hits]
    assert pos not in ids and neg not in ids
    missing = client.post("/api/recommend", json={"positive": [pos], "negative": ["nope"]})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    empty = client.post("/api/recommend", json={"positive": []})
    assert empty.status_code == 422


def test_recommend_through_a_running_server(
    client: TestClient, engine: Engine, grocery: SmallGrocery
) -> None:
    """What the CLI does while `lookalike serve` has the index open (`ServedIndex`)."""
    from lookalike.api.remote import ServedIndex
    from lookalike.api.server_file import ServerRecord

    served = ServedIndex(
        grocery.index, ServerRecord("http://testserver", "", 0, str(grocery.index)), client
    )
    pos, neg = grocery.items[0], grocery.items[1]
    got = served.recommend([pos], [neg], k=3)
    assert [h.item_id for h in got.hits] == [
        h.item_id for h in engine.recommend([pos], [neg], k=3).hits
    ]
    with pytest.raises(QueryError, match="nope"):
        served.recommend([pos], ["nope"])
