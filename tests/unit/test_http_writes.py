"""Writes through the HTTP API under hostile or careless clients (issue 14): image URLs are fetched
with the crawler's address checks on every hop and a whole-download deadline, outside the write
lock; a write whose client has gone is dropped; the server's uploads never outlive their items."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from lookalike.api.http import create_app
from lookalike.api.remote_images import FetchPolicy
from lookalike.config import Settings
from lookalike.engine.core import Engine
from tests.fakes import TinyEmbedder, photo, small_catalogue
from tests.live_server import live_server

KEY = "s3cret-key"
AUTH = {"X-API-Key": KEY}


def _engine(root: Path, embedder: TinyEmbedder | None = None) -> Engine:
    settings = Settings(index=root / "index", cache_dir=root / "cache", batch_size=4, tta="none")
    engine = Engine(settings.index, settings=settings, image_embedder=embedder or TinyEmbedder())
    engine.index(small_catalogue(root, n_items=3, views=1))
    return engine


class _Origin:
    """A web server on 127.0.0.1 that plays the image host: a photo, text, redirects, a slow
    photo (one byte a second). `hits` counts the requests by path."""

    def __init__(self, jpeg: bytes) -> None:
        self.hits: dict[str, int] = {}
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                origin.hits[self.path] = origin.hits.get(self.path, 0) + 1
                if self.path == "/photo.jpg":
                    self._send(200, jpeg, "image/jpeg")
                elif self.path == "/notes.jpg":
                    self._send(200, b"internal notes, plain text\n" * 10, "image/jpeg")
                elif self.path.startswith("/go?"):
                    self.send_response(302)
                    self.send_header("Location", self.path[4:])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/slow.jpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(jpeg)))
                    self.end_headers()
                    try:
                        for i in range(len(jpeg)):
                            self.wfile.write(jpeg[i : i + 1])
                            self.wfile.flush()
                            time.sleep(1.0)
                    except OSError:
                        pass  # the client hung up: the point of the test
                else:
                    self._send(404, b"no", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[_Origin]:
    server = _Origin(photo(tmp_path / "origin" / "photo.jpg", seed=4321).read_bytes())
    yield server
    server.close()


# -- server-side requests ------------------------------------------------------------------------


def test_image_urls_on_internal_addresses_are_refused(tmp_path: Path, origin: _Origin) -> None:
    engine = _engine(tmp_path)
    with TestClient(create_app(engine, api_key=KEY)) as c:  # the default policy
        for url in (
            f"{origin.url}/photo.jpg",
            origin.url.replace("127.0.0.1", "localhost") + "/photo.jpg",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9/x.jpg",
            "http://10.0.0.1/x.jpg",
            "http://2130706433/x.jpg",  # 127.0.0.1 as one number
            "http://0x7f.1/x.jpg",
            "http://[::ffff:127.0.0.1]/x.jpg",
            "http://[2001:db8::1]/x.jpg",  # documentation range: not global
        ):
            r = c.post("/api/items", json={"id": "in", "images": [url]}, headers=AUTH)
            assert r.status_code == 422, (url, r.text)
            assert "non-public address" in r.text and "not added" in r.text, r.text
        assert origin.hits == {}  # refused before any connection was made
        assert c.get("/api/items/in").status_code == 404
    engine.close()


def test_a_redirect_to_an_internal_address_is_refused(tmp_path: Path, origin: _Origin) -> None:
    engine = _engine(tmp_path)
    policy = FetchPolicy.allowing(["127.0.0.1"])  # the test's origin only, not the rest of 127/8
    with TestClient(create_app(engine, api_key=KEY, image_fetch=policy)) as c:
        for target in (
            "http://169.254.169.254/latest/meta-data",
            origin.url.replace("127.0.0.1", "127.0.0.2") + "/photo.jpg",
            "file:///etc/passwd",
        ):
            r = c.post(
                "/api/items",
                json={"id": "r", "images": [f"{origin.url}/go?{target}"]},
                headers=AUTH,
            )
            assert r.status_code == 422 and "not added" in r.text, (target, r.text)
        assert origin.hits.get("/photo.jpg") is None and c.get("/api/items/r").status_code == 404
        # the allowed origin itself, through a redirect, works: a copy is kept and indexed
        r = c.post(
            "/api/items",
            json={"id": "ok", "images": [f"{origin.url}/go?/photo.jpg"]},
            headers=AUTH,
        )
        assert r.status_code == 201, r.text
        shown = r.json()["item"]["images"]
        assert len(shown) == 1 and shown[0].startswith("uploads/")
        assert c.get(r.json()["item"]["image_urls"][0]).status_code == 200
    engine.close()


def test_url_errors_do_not_tell_what_is_behind_the_url(tmp_path: Path, origin: _Origin) -> None:
    engine = _engine(tmp_path)
    policy = FetchPolicy.allowing(["127.0.0.1"])
    closed = origin.url.rsplit(":", 1)[0] + ":9"  # discard port: nothing listens
    with TestClient(create_app(engine, api_key=KEY, image_fetch=policy)) as c:
        answers = {}
        for path in (f"{origin.url}/notes.jpg", f"{origin.url}/missing.jpg", f"{closed}/x.jpg"):
            r = c.post("/api/items", json={"id": "e", "images": [path]}, headers=AUTH)
            assert r.status_code == 422, r.text
            answers[path] = r.json()["detail"].replace(path, "URL")
        assert len(set(answers.values())) == 1, answers  # the same words whatever went wrong
        text = " ".join(answers.values()).lower()
        for leak in ("refused", "text", "404", "not found", "connect"):
            assert leak not in text, text
        # one good photo and one bad URL: the item is added, the URL skipped, generically
        r = c.post(
            "/api/items",
            json={"id": "e", "images": [f"{origin.url}/photo.jpg", f"{origin.url}/notes.jpg"]},
            headers=AUTH,
        )
        assert r.status_code == 201, r.text
        assert [s["source"] for s in r.json()["skipped"]] == [f"{origin.url}/notes.jpg"]
        assert "text" not in r.json()["skipped"][0]["reason"]
    engine.close()


# -- slow image hosts ----------------------------------------------------------------------------


def test_a_slow_image_url_holds_up_no_other_write(tmp_path: Path, origin: _Origin) -> None:
    engine = _engine(tmp_path)
    photo(tmp_path / "new" / "n.jpg", seed=77)
    policy = FetchPolicy.allowing(["127.0.0.1"], deadline_s=5.0)  # the JPEG would take 20 min
    app = create_app(engine, api_key=KEY, catalogue_root=tmp_path, image_fetch=policy)
    with live_server(app) as url:
        slow: list[httpx.Response] = []

        def add_slow() -> None:
            item = {"id": "slow", "images": [f"{origin.url}/slow.jpg"]}
            slow.append(httpx.post(f"{url}/api/items", json=item, headers=AUTH, timeout=30))

        started = time.perf_counter()
        thread = threading.Thread(target=add_slow)
        thread.start()
        time.sleep(0.3)  # the slow download is under way
        t0 = time.perf_counter()
        added = httpx.post(
            f"{url}/api/items", json={"id": "n", "images": ["new/n.jpg"]}, headers=AUTH, timeout=30
        )
        deleted = httpx.delete(f"{url}/api/items/p1", headers=AUTH, timeout=30)
        others_s = time.perf_counter() - t0
        slow_still_running = not slow
        thread.join()
        slow_s = time.perf_counter() - started
        assert added.status_code == 201 and deleted.status_code == 200, (added.text, deleted.text)
        # done while the slow download still ran: not queued behind it
        assert slow_still_running and others_s < 4.0, others_s
        assert slow[0].status_code == 422 and "within 5 s" in slow[0].json()["detail"]
        assert slow_s < 9.0, slow_s  # cut at the whole-download deadline, not per read
        assert httpx.get(f"{url}/api/items/slow").status_code == 404
    engine.close()


def test_a_write_whose_client_gave_up_is_not_applied(tmp_path: Path) -> None:
    slow = TinyEmbedder(delay=1.5)
    engine = _engine(tmp_path)
    engine._embedder = slow  # every indexing call now takes 1.5 s: the write lock stays busy
    photo(tmp_path / "new" / "a.jpg", seed=11)
    late = photo(tmp_path / "late.jpg", seed=12).read_bytes()
    with live_server(create_app(engine, api_key=KEY, catalogue_root=tmp_path)) as url:
        first: list[int] = []

        def add_first() -> None:
            item = {"id": "a", "images": ["new/a.jpg"]}
            r = httpx.post(f"{url}/api/items", json=item, headers=AUTH, timeout=30)
            first.append(r.status_code)

        thread = threading.Thread(target=add_first)
        thread.start()
        time.sleep(0.3)  # "a" holds the write lock now
        with pytest.raises(httpx.ReadTimeout):  # this client gives up while waiting its turn
            httpx.post(
                f"{url}/api/items",
                data={"item": json.dumps({"id": "b"})},
                files=[("photos", ("late.jpg", late, "image/jpeg"))],
                headers=AUTH,
                timeout=0.5,
            )
        thread.join()
        after_a = slow.calls  # "a" embedded (and the index's match levels calibrated)
        time.sleep(2.0)  # time enough for "b" to be indexed (and cleaned up), were it going to be
        assert first == [201]
        assert httpx.get(f"{url}/api/items/b").status_code == 404
        assert slow.calls == after_a  # nothing embedded for "b"
        uploads = engine.index_dir / "uploads"
        assert not uploads.exists() or not any(uploads.rglob("*.jpg"))  # no orphaned photo
    engine.close()


# -- uploads follow their items ------------------------------------------------------------------


def test_uploads_are_removed_with_their_item(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    uploads = engine.index_dir / "uploads"
    one = photo(tmp_path / "one.jpg", seed=21).read_bytes()
    two = photo(tmp_path / "two.jpg", seed=22).read_bytes()

    def add(c: TestClient, item_id: str, *photos: bytes) -> list[str]:
        r = c.post(
            "/api/items",
            data={"item": json.dumps({"id": item_id})},
            files=[("photos", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)],
            headers=AUTH,
        )
        assert r.status_code in (200, 201), r.text
        return sorted(uploads.rglob("*.jpg"))

    with TestClient(create_app(engine, api_key=KEY)) as c:
        assert len(add(c, "x", one, two)) == 2
        assert len(add(c, "y", one)) == 2  # the same photo, kept once, used twice
        assert len(add(c, "x", two)) == 2  # "x" dropped `one`, but "y" still uses it
        assert c.delete("/api/items/y", headers=AUTH).status_code == 200
        assert [p.read_bytes() for p in uploads.rglob("*.jpg")] == [two]
        assert c.delete("/api/items/x", headers=AUTH).status_code == 200
        assert list(uploads.rglob("*")) == []
    engine.close()


def test_a_failed_add_leaves_no_upload_behind(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    good = photo(tmp_path / "good.jpg", seed=31).read_bytes()
    with TestClient(create_app(engine, api_key=KEY, write_wait_s=0.3)) as c:
        lock = c.app.state.lookalike.writer.gate.lock  # type: ignore[attr-defined]
        lock.acquire()  # another write holds the lock past the wait
        threading.Timer(3.0, lock.release).start()
        r = c.post(
            "/api/items",
            data={"item": json.dumps({"id": "f"})},
            files=[("photos", ("good.jpg", good, "image/jpeg"))],
            headers=AUTH,
        )
        assert r.status_code == 503 and "nothing was written" in r.json()["detail"]
        assert c.get("/api/items/f").status_code == 404
        deadline = time.monotonic() + 10  # cleaned up once the lock is free (after 3 s)
        while list((engine.index_dir / "uploads").rglob("*.jpg")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list((engine.index_dir / "uploads").rglob("*.jpg"))
    engine.close()


def test_serve_checks_the_image_networks(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from lookalike.api.cli_serve import serve

    app = typer.Typer()
    app.command()(serve)
    args = ["--index", str(tmp_path / "nothing"), "--port", "1", "--api-key", KEY]
    result = CliRunner().invoke(app, [*args, "--allow-image-network", "10.0.0.0/99"])
    assert result.exit_code == 2 and "--allow-image-network" in result.output, result.output
    result = CliRunner().invoke(app, [*args, "--allow-image-network", "10.0.0.0/8"])
    assert result.exit_code == 7 and "no index" in result.output, result.output
