"""Index jobs of a running server and the local secret, with a fake embedder: who may start a
job, what a job reports, what others may see of it; the `<index>/server.json` file."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api.http import create_app
from lookalike.api.server_file import (
    FILE_NAME,
    local_url,
    process_alive,
    read_record,
    remove_record,
    write_record,
)
from lookalike.config import Settings
from lookalike.engine.core import Engine
from tests.fakes import TinyEmbedder, photo, small_catalogue

SECRET = "local-secret-of-the-test"
KEY = "api-key-of-the-test"


def _engine(root: Path) -> Engine:
    settings = Settings(index=root / "index", cache_dir=root / "cache", batch_size=2, tta="none")
    return Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    engine = _engine(tmp_path)
    engine.index(small_catalogue(tmp_path, n_items=3, views=2))
    yield tmp_path, engine
    engine.close()


def _more(root: Path, name: str = "more.jsonl") -> Path:
    """A catalogue of one new item, `new1`, of 3 photos."""
    images = [str(photo(root / "more" / f"n{j}.jpg", seed=9000 + j)) for j in range(3)]
    path = root / name
    path.write_text(json.dumps({"id": "new1", "images": images, "title": "new"}) + "\n")
    return path


def _wait(c: TestClient, job_id: str, key: str | None = SECRET) -> dict:
    headers = {"X-API-Key": key} if key else {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = c.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_a_job_with_the_local_secret_indexes_and_the_item_is_searchable(
    served: tuple[Path, Engine],
) -> None:
    root, engine = served
    app = create_app(engine, local_secret=SECRET)
    more = _more(root)
    with TestClient(app) as c:
        assert c.get("/api/items/new1").status_code == 404
        r = c.post("/api/jobs/index", json={"catalogue": str(more)}, headers={"X-API-Key": SECRET})
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["id"])
        assert job["state"] == "done", job
        assert job["catalogue"] == str(more)  # the local caller sees server paths
        assert job["summary"]["items"] == 1 and job["summary"]["images_embedded"] == 3
        assert job["stages"]["embed"] == {"done": 3, "total": 3}
        assert c.get("/api/items/new1").status_code == 200
        query = root / "more" / "n1.jpg"
        hits = c.post("/api/search", files={"photo": ("q.jpg", query.read_bytes())}).json()
        assert hits["results"][0]["item_id"] == "new1"
        # Anyone may follow a job, but sees no server path.
        public = c.get(f"/api/jobs/{job['id']}").json()
        assert public["catalogue"] == "more.jsonl" and public["state"] == "done"
        assert [j["id"] for j in c.get("/api/jobs").json()] == [job["id"]]
        assert c.get("/api/jobs/nope").status_code == 404


def test_jobs_and_writes_without_the_secret_are_refused(served: tuple[Path, Engine]) -> None:
    root, engine = served
    more = _more(root)
    app = create_app(engine, local_secret=SECRET)
    with TestClient(app) as c:
        for headers in ({}, {"X-API-Key": "guess"}):
            r = c.post("/api/jobs/index", json={"catalogue": str(more)}, headers=headers)
            # Refused (401 or 403: writes are off for others), saying how to turn them on.
            assert r.status_code in (401, 403) and "X-API-Key" in r.json()["detail"], r.text
            assert c.delete("/api/items/p0", headers=headers).status_code in (401, 403)
            assert c.get("/api/server", headers=headers).status_code == 403
            assert c.get("/api/server/stats", headers=headers).status_code == 403
        assert c.get("/api/jobs").json() == []
        assert c.delete("/api/items/p0", headers={"X-API-Key": SECRET}).status_code == 200
        me = c.get("/api/server", headers={"X-API-Key": SECRET}).json()
        assert me == {"index": str(engine.index_dir.resolve()), "pid": os.getpid()}
        stats = c.get("/api/server/stats", headers={"X-API-Key": SECRET}).json()
        assert list(stats) == list(engine.stats()) and stats["items"] == 2  # p0 was deleted


def test_the_api_key_starts_jobs_only_inside_the_catalogue_root(
    served: tuple[Path, Engine], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root, engine = served
    outside = _more(tmp_path_factory.mktemp("elsewhere"))
    inside = _more(root, "inside.jsonl").name
    app = create_app(engine, api_key=KEY, local_secret=SECRET, catalogue_root=root)
    with TestClient(app) as c:
        key = {"X-API-Key": KEY}
        r = c.post("/api/jobs/index", json={"catalogue": str(outside)}, headers=key)
        assert r.status_code == 403 and "catalogue-root" in r.json()["detail"]
        assert c.post("/api/jobs/index", json={"catalogue": str(outside)}).status_code == 401
        r = c.post("/api/jobs/index", json={"catalogue": inside}, headers=key)
        assert r.status_code == 202, r.text
        assert _wait(c, r.json()["id"], KEY)["state"] == "done"
        # The local secret works beside the API key, for any path of the machine.
        r = c.post(
            "/api/jobs/index", json={"catalogue": str(outside)}, headers={"X-API-Key": SECRET}
        )
        assert r.status_code == 202 and _wait(c, r.json()["id"])["state"] == "done"


def test_a_failed_job_says_why_and_the_next_one_runs(served: tuple[Path, Engine]) -> None:
    root, engine = served
    bad = root / "catalogue.txt"  # not a kind of catalogue: the run fails when it starts
    bad.write_text("p0\n")
    app = create_app(engine, local_secret=SECRET)
    with TestClient(app) as c:
        secret = {"X-API-Key": SECRET}
        missing = c.post("/api/jobs/index", json={"catalogue": str(root / "nope")}, headers=secret)
        assert missing.status_code == 422 and "no catalogue" in missing.json()["detail"]
        r = c.post("/api/jobs/index", json={"catalogue": str(bad)}, headers=secret)
        job = _wait(c, r.json()["id"])
        assert job["state"] == "failed" and job["error"]["error"] == "CatalogueError", job
        assert "detail" in c.get(f"/api/jobs/{job['id']}").json()["error"]
        r = c.post("/api/jobs/index", json={"catalogue": str(_more(root))}, headers=secret)
        assert _wait(c, r.json()["id"])["state"] == "done"


def test_server_file_is_private_and_removed_only_by_its_writer(tmp_path: Path) -> None:
    record = write_record(tmp_path, "http://127.0.0.1:9/", "s1")
    path = tmp_path / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_record(tmp_path) == record and record.url == "http://127.0.0.1:9"
    assert record.pid == os.getpid() and process_alive(record.pid)
    newer = write_record(tmp_path, "http://127.0.0.1:10", "s2")
    remove_record(tmp_path, record)  # an older server stopping must not remove a newer's file
    assert read_record(tmp_path) == newer
    remove_record(tmp_path, newer)
    assert not path.exists() and read_record(tmp_path) is None
    path.write_text("{half a fi")
    assert read_record(tmp_path) is None
    assert local_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert local_url("::", 8000) == "http://[::1]:8000"


def test_a_jobs_summary_reads_back_as_the_engines(served: tuple[Path, Engine]) -> None:
    from dataclasses import asdict, replace

    from lookalike.api.remote import summary_from
    from lookalike.types import Skipped

    root, engine = served
    summary = engine.index(_more(root))
    assert summary.items_in_index == 4 and summary.skipped == ()
    assert summary_from(asdict(summary)) == summary
    assert summary_from(json.loads(json.dumps(asdict(summary)))) == summary
    odd = replace(summary, skipped=(Skipped("a.jpg", "not an image"),), repaired=("shard",))
    assert summary_from(json.loads(json.dumps(asdict(odd)))) == odd


def test_searches_go_on_while_a_job_runs(tmp_path: Path) -> None:
    settings = Settings(
        index=tmp_path / "index", cache_dir=tmp_path / "c", batch_size=1, tta="none"
    )
    embedder = TinyEmbedder()
    engine = Engine(settings.index, settings=settings, image_embedder=embedder)
    engine.index(small_catalogue(tmp_path, n_items=2, views=1))
    more = _more(tmp_path)
    query = (tmp_path / "img" / "p0_0.jpg").read_bytes()
    with TestClient(create_app(engine, local_secret=SECRET)) as c:
        embedder.delay = 0.5  # each batch (one photo) of the job, and each search, takes 0.5 s
        r = c.post("/api/jobs/index", json={"catalogue": str(more)}, headers={"X-API-Key": SECRET})
        during = []
        while c.get(f"/api/jobs/{r.json()['id']}").json()["state"] != "done":
            hits = c.post("/api/search", files={"photo": ("q.jpg", query)})
            job = c.get(f"/api/jobs/{r.json()['id']}").json()
            during.append((hits.status_code, hits.json()["results"][0]["item_id"], job["state"]))
        assert (200, "p0", "running") in during, during
        assert c.get("/api/items/new1").status_code == 200
    engine.close()
