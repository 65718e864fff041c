"""The CLI while `lookalike serve` has the index open: real CLI and server processes on 127.0.0.1,
real grocery photos, the real default model. The embedded store admits one process, so every
command here that succeeds while the server runs went through it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import httpx
import pytest

from lookalike.types import IndexSummary

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.api.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@dataclass(frozen=True)
class Shop:
    index: Path
    more: Path
    """A catalogue of one item the index does not have yet."""
    new_id: str
    new_photo: Path
    query: str
    """A shopper's photo of an indexed item, `query_item`."""
    query_item: str


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, lite2_dir: Path) -> Shop:
    """Three grocery products of two photos, indexed by the CLI; a fourth one kept for later."""
    import csv

    from lookalike.catalog.sample import prepare_grocery

    dest = tmp_path_factory.mktemp("served")
    files = prepare_grocery(data_dir / "grocery", dest / "sample")
    rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()]
    chosen = rows[::20][:4]
    for row in chosen:
        row["images"] = row["images"][:2]
    small, more = dest / "small.jsonl", dest / "more.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in chosen[:3]))
    more.write_text(json.dumps(chosen[3]) + "\n")
    with open(files.queries) as fh:
        query = next(r for r in csv.DictReader(fh) if r["item_id"] == chosen[0]["id"])
    index = dest / "index"
    out = _cli("index", str(small), "--index", str(index), "--json")
    assert out.returncode == 0, out.stderr
    return Shop(
        index, more, chosen[3]["id"], Path(chosen[3]["images"][1]), query["image"], query["item_id"]
    )


def _big_catalogue(shop: Shop, dest: Path, products: int = 8, photos: int = 6) -> Path:
    """Products the shop does not have, with many photos: an index job that takes a while."""
    rows = (shop.index.parent / "sample" / "catalogue.jsonl").read_text().splitlines()
    chosen = [json.loads(r) for r in rows[1::10]][:products]
    for row in chosen:
        row["images"] = row["images"][:photos]
    path = dest / "big.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    return path


@dataclass
class Server:
    process: subprocess.Popen[str]
    record: dict
    log: Path

    @property
    def url(self) -> str:
        return str(self.record["url"])


def _start(index: Path, log: Path, *args: str) -> Server:
    """`lookalike serve` on a free port; returns once it has left `<index>/server.json`."""
    record = index / "server.json"
    record.unlink(missing_ok=True)
    fh = open(log, "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.api.cli", "serve", "--index", str(index), "--port", "0",
         "--log-level", "warning", *args],
        stdout=fh, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not record.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the server did not start: {log.read_text()}")
        time.sleep(0.1)
    return Server(process, json.loads(record.read_text()), log)


def _stop(server: Server, sig: int = signal.SIGINT) -> None:
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def served(shop: Shop, tmp_path: Path) -> Iterator[Server]:
    """A server without --api-key on the shop's index, stopped (cleanly) after the test."""
    server = _start(shop.index, tmp_path / "serve.log")
    yield server
    _stop(server)


def _search_over_http(url: str, photo: Path) -> list[str]:
    r = httpx.post(f"{url}/api/search", files={"photo": ("q.jpg", photo.read_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    return [h["item_id"] for h in r.json()["results"]]


def test_the_cli_goes_through_the_running_server(shop: Shop, served: Server) -> None:
    index = str(shop.index)
    info = shop.index / "server.json"
    assert stat.S_IMODE(info.stat().st_mode) == 0o600
    assert served.record["pid"] == served.process.pid

    out = _cli("stats", "--index", index, "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["items"] == 3 and stats["views"] == 6 and stats["index"] == index

    out = _cli("search", shop.query, "--index", index, "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    through = json.loads(out.stdout)
    assert through["results"][0]["item_id"] == shop.query_item

    out = _cli("similar", shop.query_item, "--index", index, "-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert shop.query_item not in [r["item_id"] for r in json.loads(out.stdout)["results"]]
    out = _cli("facets", "category", "--index", index, "--json")
    assert out.returncode == 0, out.stderr
    assert sum(v["count"] for v in json.loads(out.stdout)["category"]) == 3

    # A new item, indexed through the server, is found over HTTP without a restart.
    assert httpx.get(f"{served.url}/api/items/{shop.new_id}").status_code == 404
    out = _cli("index", str(shop.more), "--index", index)
    assert out.returncode == 0, out.stderr
    assert "indexed 1 items: 2 images embedded" in out.stderr
    assert served.url in out.stderr  # says it went through the server
    assert httpx.get(f"{served.url}/api/items/{shop.new_id}").status_code == 200
    assert _search_over_http(served.url, shop.new_photo)[0] == shop.new_id
    jobs = httpx.get(f"{served.url}/api/jobs").json()
    assert jobs[0]["state"] == "done" and jobs[0]["summary"]["images_embedded"] == 2
    assert jobs[0]["catalogue"] == "more.jsonl"  # no server path for others
    again = _cli("index", str(shop.more), "--index", index, "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["items"] == 1 and summary["images_unchanged"] == 2
    assert set(summary) == {f.name for f in fields(IndexSummary)}  # as `index --json` prints
    assert summary["items_in_index"] == 4  # as the server's engine counts, not a default

    # What cannot go through a server says which server has the index.
    for command in (["duplicates"], ["migrate", "--to", f"qdrant+local://{shop.index}-q#x"]):
        out = _cli(*command, "--index", index)
        assert out.returncode == 7 and served.url in out.stderr, out.stderr
        assert "WouldBlock" not in out.stderr

    # A second server on the same index says which one has it (and leaves its file alone).
    out = _cli("serve", "--index", index, "--port", "0")
    assert out.returncode == 7 and served.url in out.stderr, out.stderr
    assert json.loads(info.read_text()) == served.record

    # Without the secret, writes are refused (no --api-key: writes are off for others).
    for headers in ({}, {"X-API-Key": "a-guess"}):
        r = httpx.delete(f"{served.url}/api/items/{shop.new_id}", headers=headers)
        assert r.status_code in (401, 403), r.text
        job = {"catalogue": str(shop.more)}
        r = httpx.post(f"{served.url}/api/jobs/index", json=job, headers=headers)
        assert r.status_code in (401, 403), r.text
    out = _cli("delete", shop.new_id, "--index", index)
    assert out.returncode == 0, out.stderr
    assert httpx.get(f"{served.url}/api/items/{shop.new_id}").status_code == 404

    # After a clean stop the file is gone and the CLI opens the index itself, same answers.
    out = _cli("search", shop.query, "--index", index, "-k", "3", "--json")
    through = json.loads(out.stdout)  # the index as it is now (a job recalibrated its levels)
    out = _cli("stats", "--index", index, "--json")
    stats = json.loads(out.stdout)
    _stop(served)
    assert not info.exists()
    out = _cli("search", shop.query, "--index", index, "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    local = json.loads(out.stdout)
    # The same answer, to the digit, but for the timings and the server's names of image files.
    assert _comparable(local) == _comparable(through)
    out = _cli("stats", "--index", index, "--json")
    assert out.returncode == 0, out.stderr
    local_stats = json.loads(out.stdout)
    assert list(local_stats) == list(stats)
    assert {k: v for k, v in local_stats.items() if k != "disk_bytes"} == {
        k: v for k, v in stats.items() if k != "disk_bytes"
    }


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k != "timings_ms"}
    out["results"] = [{**r, "image": Path(r["image"]).name} for r in result["results"]]
    return out


def test_a_killed_servers_file_is_ignored(shop: Shop, tmp_path: Path) -> None:
    server = _start(shop.index, tmp_path / "serve.log")
    try:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        info = shop.index / "server.json"
        assert info.exists()  # left behind: nobody removed it
        out = _cli("stats", "--index", str(shop.index), "--json")
        assert out.returncode == 0, out.stderr  # opened locally: the dead server is ignored
        # A live process that is not a server at that URL (the pid reused): ignored too.
        record = {**server.record, "pid": os.getpid()}
        info.write_text(json.dumps(record))
        out = _cli("stats", "--index", str(shop.index), "--json")
        assert out.returncode == 0, out.stderr
    finally:
        _stop(server)
        (shop.index / "server.json").unlink(missing_ok=True)


def test_with_an_api_key_the_cli_still_needs_none(shop: Shop, tmp_path: Path) -> None:
    server = _start(shop.index, tmp_path / "serve.log", "--api-key", "k-123")
    try:
        out = _cli("index", str(shop.more), "--index", str(shop.index), "--json")
        assert out.returncode == 0, out.stderr
        url = f"{server.url}/api/items/{shop.new_id}"
        assert httpx.delete(url, headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.delete(url, headers={"X-API-Key": "k-123"}).status_code == 200
    finally:
        _stop(server, signal.SIGTERM)
    assert not (shop.index / "server.json").exists()


def test_faces_search_goes_through_the_server(shop: Shop, data_dir: Path, tmp_path: Path) -> None:
    import shutil

    deepface = data_dir / "faces" / "deepface"
    album = tmp_path / "album"
    album.mkdir()
    for name in ("img1.jpg", "img4.jpg", "img3.jpg", "img12.jpg"):  # person01 x2, person02 x2
        shutil.copy(deepface / name, album / name)
    out = _cli("faces", "index", str(album), "--index", str(shop.index), "--json")
    assert out.returncode == 0, out.stderr
    selfie = deepface / "img2.jpg"  # person01, not indexed
    server = _start(shop.index, tmp_path / "serve.log")
    try:
        # The server opens the face index on its first face request: from then on it holds it.
        with open(selfie, "rb") as fh:
            r = httpx.post(f"{server.url}/api/faces/search", files={"photo": fh}, timeout=120)
        assert r.status_code == 200, r.text
        out = _cli("faces", "search", str(selfie), "--index", str(shop.index), "--json")
        assert out.returncode == 0, out.stderr
        found = json.loads(out.stdout)
        photos = {Path(m["photo"]).name for m in found["results"]}
        assert photos == {"img1.jpg", "img4.jpg"}, found
        assert {"threshold", "query_face", "query_faces", "timings_ms", "results"} <= set(found)
        out = _cli("faces", "stats", "--index", str(shop.index))
        assert out.returncode != 0 and server.url in out.stderr, out.stderr
    finally:
        _stop(server)


def test_a_server_stopped_mid_job_stops_it_and_a_rerun_finishes(shop: Shop, tmp_path: Path) -> None:
    big = _big_catalogue(shop, tmp_path)
    server = _start(shop.index, tmp_path / "serve.log")
    cli = subprocess.Popen(
        [sys.executable, "-m", "lookalike.api.cli", "index", str(big), "--index", str(shop.index)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until the job has embedded some photos, not all
            jobs = httpx.get(f"{server.url}/api/jobs").json()
            if (
                jobs
                and jobs[0]["state"] == "running"
                and jobs[0]["stages"].get("embed", {}).get("done")
            ):
                break
            assert time.monotonic() < deadline and cli.poll() is None, jobs
            time.sleep(0.05)
        started = time.monotonic()
        _stop(server)  # Ctrl-C: the job stops after its batch, the server exits
        assert server.process.returncode in (0, 130)  # 130: uvicorn re-raises Ctrl-C
        assert time.monotonic() - started < 30
        assert not (shop.index / "server.json").exists()
        _, err = cli.communicate(timeout=60)
        assert cli.returncode == 7, err
        assert "run the same `lookalike index` again" in " ".join(err.split()), err
    finally:
        if cli.poll() is None:
            cli.kill()
        _stop(server)
    out = _cli("index", str(big), "--index", str(shop.index), "--json")  # no server: locally
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["images_unchanged"] > 0 and summary["images_embedded"] > 0, summary
    assert summary["images_unchanged"] + summary["images_embedded"] == summary["images_seen"]
    out = _cli("delete", *[json.loads(r)["id"] for r in big.read_text().splitlines()],
               "--index", str(shop.index))  # fmt: skip
    assert out.returncode == 0, out.stderr
