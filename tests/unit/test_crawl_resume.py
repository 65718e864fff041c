"""A crawl killed with SIGKILL (or stopped with Ctrl-C) mid-way, then rerun: finished pages and
images are not fetched again, and the catalogue equals the one of an uninterrupted crawl."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lookalike.catalog.crawl.crawler import crawl
from tests.fixtures.shop.server import ShopServer, quick_options

pytestmark = pytest.mark.slow  # Chromium / subprocesses: several seconds each

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import json, signal, sys
# A test runner started in the background (`cmd &` in a script) passes SIGINT on as ignored, and
# Python then never raises KeyboardInterrupt: restore what a terminal's Ctrl-C meets.
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from lookalike.catalog.crawl.crawler import crawl
from tests.fixtures.shop.server import quick_options

url, out, rate = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
options = quick_options(
    politeness={"rate": rate, "concurrency": 1, "timeout_s": 0.5}, checkpoint_s=0.2
)
summary = crawl([url], out, options)
print(json.dumps({"resumed": summary.resumed, "items": summary.items,
                  "skipped": summary.products_resumed}))
"""


@pytest.fixture
def shop() -> ShopServer:
    with ShopServer(slow_s=1.5) as server:
        yield server


def _interrupt(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    assert proc.poll() is None, "the crawl finished before it could be interrupted"
    proc.send_signal(sig)


def _start(url: str, out: Path, rate: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(out), str(rate)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _journal(out: Path) -> list[dict]:
    path = out / ".crawl" / "state.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(ValueError):  # a line cut by the kill
            records.append(json.loads(line))
    return records


def _wait_for_products(proc: subprocess.Popen[str], out: Path, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(r["e"] == "product" for r in _journal(out)) >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"the crawl ended before it could be interrupted: {proc.stderr.read()}"
            )  # type: ignore[union-attr]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the crawl made no progress")


def _catalogue(out: Path) -> list[dict]:
    """The catalogue with each image path replaced by the sha256 of its file."""
    items = [json.loads(line) for line in (out / "catalogue.jsonl").read_text().splitlines()]
    for item in items:
        item["images"] = [
            hashlib.sha256((out / p).read_bytes()).hexdigest() for p in item["images"]
        ]
    return items


def test_kill_9_mid_crawl_then_rerun_skips_finished_work(shop: ShopServer, tmp_path: Path) -> None:
    seed = f"{shop.url}/shop/"
    clean = tmp_path / "clean"
    crawl([seed], clean, quick_options(politeness={"timeout_s": 0.5}))
    shop.clear_log()

    out = tmp_path / "killed"
    proc = _start(seed, out, rate=12.0)  # about 3 s for the whole shop
    _wait_for_products(proc, out, at_least=2)
    _interrupt(proc, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    journal = _journal(out)
    done = {r["url"] for r in journal if r["e"] == "product"}
    images = {r["url"] for r in journal if r["e"] == "image"}
    listings = {r["url"] for r in journal if r["e"] == "listing"}
    assert 2 <= len(done) < 7, "the kill did not land mid-crawl"

    shop.clear_log()
    rerun = _start(seed, out, rate=100.0)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert json.loads(stdout) == {"resumed": True, "items": 7, "skipped": len(done)}

    asked = [h.path for h in shop.hits()]
    for url in done | images | listings:
        path = url.removeprefix(shop.url)
        assert path not in asked, f"{path} was finished before the kill but fetched again"
    assert _catalogue(out) == _catalogue(clean)


def test_ctrl_c_writes_what_is_finished_and_resumes(shop: ShopServer, tmp_path: Path) -> None:
    seed = f"{shop.url}/shop/"
    out = tmp_path / "out"
    proc = _start(seed, out, rate=12.0)
    _wait_for_products(proc, out, at_least=2)
    _interrupt(proc, signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0  # KeyboardInterrupt
    done = [r for r in _journal(out) if r["e"] == "product"]
    lines = (out / "catalogue.jsonl").read_text().splitlines()
    assert len(lines) == len(done) < 7  # everything finished, nothing else, is in the catalogue

    rerun = _start(seed, out, rate=100.0)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert json.loads(stdout) == {"resumed": True, "items": 7, "skipped": len(done)}
