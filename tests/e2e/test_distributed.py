"""Distributed indexing on a local Ray instance (2 worker CPUs, 127.0.0.1 only, no dashboard, no
usage statistics) builds the index a single-process run builds, keeping the incremental rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lookalike.config import Settings
from lookalike.engine.core import Engine

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _catalogue(data_dir: Path, out: Path, *, broken: Path | None = None) -> Path:
    """~40 real grocery photos: 8 products x 5 photos (plus, optionally, a broken file)."""
    lines = []
    for d in sorted((data_dir / "grocery" / "train" / "Packages").iterdir())[:8]:
        photos = [str(p) for p in sorted(d.rglob("*.jpg"))[:5]]
        if broken is not None and not lines:
            photos.append(str(broken))
        lines.append(json.dumps({"id": d.name, "title": d.name, "images": photos}))
    out.write_text("\n".join(lines) + "\n")
    return out


def _snapshot(engine: Engine) -> dict[str, tuple[dict, np.ndarray]]:
    return {
        r.id: (r.payload, np.asarray(r.vectors["image"]))
        for r in engine.store.scroll(None, with_vectors=True)
    }


@pytest.fixture(scope="module")
def local_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


def test_ray_index_matches_the_single_process_index(
    tmp_path: Path, data_dir: Path, local_ray: object
) -> None:
    from lookalike.engine.distributed import RayRunner

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    catalogue = _catalogue(data_dir, tmp_path / "cat.jsonl", broken=broken)
    settings = Settings(index=tmp_path / "unused")
    with Engine(tmp_path / "single", settings=settings) as single:
        one = single.index(catalogue)
        expected = _snapshot(single)
    runner = RayRunner(workers=2, cpus_per_worker=1)
    with Engine(tmp_path / "ray", settings=settings) as engine:
        summary = engine.index(catalogue, runner=runner)
        got = _snapshot(engine)
    assert summary.images_embedded == one.images_embedded == 40
    assert summary.views_written == one.views_written
    assert [(s.source, s.reason) for s in summary.skipped] == [
        (s.source, s.reason) for s in one.skipped
    ]
    assert [s.source for s in summary.skipped] == [str(broken)]
    assert set(got) == set(expected)  # the same point ids: views and centroids
    assert len([p for p, _ in got.values() if p["kind"] == "centroid"]) == 8
    for pid, (payload, vector) in expected.items():
        assert got[pid][0] == payload, pid
        np.testing.assert_allclose(got[pid][1], vector, atol=1e-5)

    # Incremental: a rerun over Ray re-embeds nothing, and a new photo is the only work.
    with Engine(tmp_path / "ray", settings=settings) as engine:
        again = engine.index(catalogue, runner=runner)
    assert (again.images_embedded, again.images_unchanged) == (0, 40)
    assert [s.source for s in again.skipped] == [str(broken)]
