"""The eight headline cases of the reliability probe (issue 14), as a user and an attacker would
reproduce them: the real CLI and a real `lookalike serve` in subprocesses on 127.0.0.1, real
grocery photos, the real default model. Each case has its own unit tests beside the fix; this file
checks them again through the product, together.

1. a boolean payload filter matches          5. an IPv6 literal in urls.txt: the crawl finishes
2. an unknown filter field is an error       6. an item image URL on 127.0.0.1 is refused
3. a 16-bit PNG of 64 MP: bounded memory     7. a write with no key configured: 403
4. a zeroed block in the largest vector file 8. deeply nested filter JSON: 422
   is reported, and `--repair` rebuilds it
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.fixtures.shop.cli import ROOT, lookalike

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Shop:
    catalogue: Path
    index: Path
    query: str
    in_stock: frozenset[str]
    out_of_stock: frozenset[str]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, lite2_dir: Path) -> Shop:
    """Four grocery products of two photos each, half of them `in_stock`, indexed by the CLI."""
    import csv

    from lookalike.catalog.sample import prepare_grocery

    dest = tmp_path_factory.mktemp("probe")
    files = prepare_grocery(data_dir / "grocery", dest / "sample")
    rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()][::20][:4]
    for n, row in enumerate(rows):
        row["images"] = row["images"][:2]
        row["in_stock"] = n % 2 == 0
    catalogue = dest / "catalogue.jsonl"
    catalogue.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(files.queries) as fh:
        query = next(r["image"] for r in csv.DictReader(fh) if r["item_id"] == rows[0]["id"])
    index = dest / "index"
    out = lookalike("index", str(catalogue), "--index", str(index), "--json")
    assert out.returncode == 0, out.stderr
    return Shop(
        catalogue,
        index,
        query,
        frozenset(r["id"] for r in rows if r["in_stock"]),
        frozenset(r["id"] for r in rows if not r["in_stock"]),
    )


def _ids(out: subprocess.CompletedProcess[str]) -> set[str]:
    assert out.returncode == 0, out.stderr
    return {r["item_id"] for r in json.loads(out.stdout)["results"]}


def test_1_boolean_filters_match(shop: Shop) -> None:
    base = ("search", shop.query, "--index", str(shop.index), "-k", "10", "--json")
    assert _ids(lookalike(*base, "--where", "in_stock = true")) == shop.in_stock
    assert _ids(lookalike(*base, "--where", "in_stock != true")) == shop.out_of_stock


def test_2_an_unknown_filter_field_is_an_error_naming_the_fields(shop: Shop) -> None:
    out = lookalike("search", shop.query, "--index", str(shop.index), "--where", "price < 2")
    assert out.returncode != 0 and out.stdout == ""
    assert "price" in out.stderr and "in_stock" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


_MEASURED = """
import runpy, sys
sys.argv = ["lookalike", *sys.argv[1:]]
try:
    runpy.run_module("lookalike.api.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
# VmHWM, not ru_maxrss: Linux carries the parent's RSS into a child's ru_maxrss at exec.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK_MB", int(hwm.split()[1]) // 1024, file=sys.stderr)
sys.exit(code)
"""


def test_3_a_sixteen_bit_png_of_64_megapixels_is_searched_in_bounded_memory(
    shop: Shop, tmp_path: Path
) -> None:
    png = tmp_path / "big16.png"
    Image.new("I;16", (7990, 7990), 30000).save(png, optimize=True)  # 142 KB
    out = subprocess.run(
        [sys.executable, "-c", _MEASURED, "search", str(png), "--index", str(shop.index), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    peak = int(out.stderr.split("PEAK_MB")[1].split()[0])
    # The probe measured 2.2 GB (model and store included); the issue asks below 1.2 GB.
    assert peak < 1200, f"peak RSS {peak} MB"


def test_4_a_zeroed_block_in_the_largest_vector_file_is_reported_then_repaired(
    shop: Shop, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(shop.index, index)
    vectors = [p for p in (index / "shard").rglob("*") if p.is_file() and "vector" in str(p)]
    largest = max(vectors, key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    # A block where the vectors are (a small index fills only the start of its preallocated file).
    assert any(data[:4096]), largest
    data[:4096] = bytes(4096)
    largest.write_bytes(bytes(data))

    out = lookalike("search", shop.query, "--index", str(index), "--json")
    assert out.returncode == 8 and out.stdout == "", (out.returncode, out.stdout)
    assert "damaged" in out.stderr and "--repair" in out.stderr, out.stderr
    out = lookalike("verify", "--index", str(index))
    assert out.returncode == 8, out.stderr

    out = lookalike("index", str(shop.catalogue), "--index", str(index), "--repair", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["repaired"], out.stdout
    assert lookalike("verify", "--index", str(index)).returncode == 0
    before = lookalike("search", shop.query, "--index", str(shop.index), "--json")
    after = lookalike("search", shop.query, "--index", str(index), "--json")
    assert [r["item_id"] for r in json.loads(after.stdout)["results"]] == [
        r["item_id"] for r in json.loads(before.stdout)["results"]
    ]


def test_5_an_ipv6_literal_in_urls_txt_is_skipped_and_the_crawl_finishes(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://[2001:db8::1]/p\nhttp://0177.0.0.1/q\n")
    for _ in range(2):  # and again on a rerun
        out = lookalike("crawl", str(urls), "-o", str(tmp_path / "shop"), "--json")
        assert "Traceback" not in out.stderr, out.stderr
        failures = {f["url"]: f["reason"] for f in json.loads(out.stdout)["failures"]}
        assert "non-public address 2001:db8::1" in failures["http://[2001:db8::1]/p"]
        assert "non-public address 127.0.0.1" in failures["http://127.0.0.1/q"]


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str


@pytest.fixture
def server(shop: Shop, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """`lookalike serve` on a copy of the shop's index, on a free port of 127.0.0.1, with the
    arguments the test's `serve_args` marker gives."""
    index = tmp_path / "index"
    shutil.copytree(shop.index, index)
    marker = request.node.get_closest_marker("serve_args")
    args = marker.args if marker else ()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.api.cli", "serve", "--index", str(index), "--port", "0",
         "--log-level", "warning", *args],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    record = index / "server.json"
    deadline = time.monotonic() + 180
    while not record.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError((tmp_path / "serve.log").read_text())
        time.sleep(0.1)
    try:
        yield Server(process, json.loads(record.read_text())["url"])
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.mark.serve_args("--api-key", "k3y")
def test_6_an_item_image_url_on_127_0_0_1_is_refused(
    server: Server, shop: Shop, tmp_path: Path
) -> None:
    hits: list[str] = []

    class Origin(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = Path(shop.query).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{origin.server_address[1]}/photo.jpg"
        item = {"id": "internal", "images": [url]}
        r = httpx.post(f"{server.url}/api/items", json=item, headers={"X-API-Key": "k3y"})
        assert r.status_code == 422, r.text
        assert "Connection refused" not in r.text and "text file" not in r.text  # generic
        assert hits == []  # never fetched
        assert httpx.get(f"{server.url}/api/items/internal").status_code == 404
    finally:
        origin.shutdown()


def test_7_a_write_with_no_key_configured_is_403(server: Server, shop: Shop) -> None:
    item = {"id": "anyone", "images": [shop.query]}
    r = httpx.post(f"{server.url}/api/items", json=item)
    assert r.status_code == 403 and "--api-key" in r.json()["detail"], r.text
    some = sorted(shop.in_stock)[0]
    assert httpx.delete(f"{server.url}/api/items/{some}").status_code == 403
    assert httpx.get(f"{server.url}/api/items/{some}").status_code == 200


def test_8_deeply_nested_filter_json_is_a_422(server: Server, shop: Shop) -> None:
    nested = "[" * 3000 + "]" * 3000
    photo = {"photo": ("q.jpg", Path(shop.query).read_bytes())}
    r = httpx.post(f"{server.url}/api/search", data={"filters": nested}, files=photo, timeout=60)
    assert r.status_code == 422, r.text
    r = httpx.get(f"{server.url}/api/facets", params={"field": "category", "filters": nested})
    assert r.status_code == 422, r.text
