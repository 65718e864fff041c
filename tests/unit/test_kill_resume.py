"""`kill -9` during indexing, then a rerun, leaves exactly the index an uninterrupted run builds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.fakes import small_catalogue

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import sys
from pathlib import Path
from lookalike.config import Settings
from lookalike.engine.core import Engine
from tests.fakes import TinyEmbedder

index, manifest, delay, progress_file = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
settings = Settings(index=Path(index), cache_dir=Path(index) / "cache", batch_size=4)

def progress(stage, done, total):
    with open(progress_file, "a") as fh:
        fh.write(f"{stage} {done} {total}\\n")

with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder(delay)) as engine:
    engine.index(manifest, progress=progress)
"""


def _run(index: Path, manifest: Path, delay: float, progress: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(index), str(manifest), str(delay), str(progress)],
        env=env,
        cwd=ROOT,
    )


def _snapshot(index: Path) -> dict[str, tuple[dict, np.ndarray]]:
    from lookalike.store.edge import EdgeStore

    store = EdgeStore(index / "shard", {"image": 48})
    try:
        return {
            r.id: (dict(r.payload), r.vectors["image"]) for r in store.scroll(with_vectors=True)
        }
    finally:
        store.close()


def test_kill_9_mid_index_then_rerun_equals_clean_run(tmp_path: Path) -> None:
    manifest = small_catalogue(tmp_path / "cat", n_items=12, views=4)  # 48 images, 12 batches
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert _run(clean, manifest, 0.0, tmp_path / "p_clean").wait(timeout=120) == 0

    progress = tmp_path / "p_killed"
    proc = _run(killed, manifest, 0.25, progress)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some, not all, batches are written
        lines = progress.read_text().splitlines() if progress.exists() else []
        done = [int(line.split()[1]) for line in lines if line.startswith("embed ")]
        if done and 8 <= max(done) < 40:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("worker made no progress")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    partial = _snapshot(killed)
    assert 0 < len(partial) < len(_snapshot(clean)), "the kill did not land mid-run"

    assert _run(killed, manifest, 0.0, tmp_path / "p_rerun").wait(timeout=120) == 0
    want, got = _snapshot(clean), _snapshot(killed)
    assert set(got) == set(want)
    for pid, (payload, vector) in want.items():
        assert got[pid][0] == payload
        np.testing.assert_allclose(got[pid][1], vector, atol=1e-5)
