"""`--store` and `lookalike migrate` through the real CLI, on real grocery photos, real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_cli_e2e import _cli, _small_grocery

pytestmark = pytest.mark.e2e


def _top(index: Path, image: str, *extra: str) -> list[tuple[str, float]]:
    out = _cli("search", image, "--index", str(index), "-k", "3", "--json", *extra)
    assert out.returncode == 0, out.stderr
    return [(r["item_id"], r["score"]) for r in json.loads(out.stdout)["results"]]


def _points(store: object) -> dict[str, tuple[dict, np.ndarray]]:
    return {
        r.id: (dict(r.payload), r.vectors["image"])
        for r in store.scroll(with_vectors=True)  # type: ignore[attr-defined]
    }


def test_qdrant_store_and_migrate_match_the_embedded_store(
    tmp_path: Path, data_dir: Path, lite2_dir: Path
) -> None:
    manifest, queries = _small_grocery(data_dir, tmp_path / "sample", products=6, photos=4)
    edge_index, q_index = tmp_path / "edge-index", tmp_path / "q-index"
    q_spec = f"qdrant+local://{tmp_path / 'qdrant'}#grocery"
    for index, extra in ((edge_index, ()), (q_index, ("--store", q_spec))):
        out = _cli("index", str(manifest), "--index", str(index), "--json", *extra)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["items"] == 6 and summary["images_embedded"] == 24, summary
    assert not (q_index / "shard").exists()
    assert json.loads((q_index / "lookalike.json").read_text())["store"]["kind"] == "qdrant-local"

    picked = [queries[i] for i in range(0, len(queries), max(1, len(queries) // 4))][:4]
    before = {}
    for q in picked:
        edge_hits = _top(edge_index, q["image"])
        # Without --store the recorded store is used; with it, the same answer.
        assert _top(q_index, q["image"]) == _top(q_index, q["image"], "--store", q_spec)
        q_hits = _top(q_index, q["image"])
        assert edge_hits[0][0] == q_hits[0][0]
        assert [i for i, _ in edge_hits] == [i for i, _ in q_hits]
        assert np.allclose([s for _, s in edge_hits], [s for _, s in q_hits], atol=1e-3)
        before[q["image"]] = edge_hits

    # Another store than the recorded one: a clear error, not an empty answer.
    out = _cli("search", picked[0]["image"], "--index", str(q_index), "--store", "edge")
    assert out.returncode != 0 and "lookalike migrate" in out.stderr, out.stderr

    # Move the embedded index into qdrant (local mode here; a server URL works the same).
    m_spec = f"qdrant+local://{tmp_path / 'moved'}#moved"
    out = _cli("migrate", "--index", str(edge_index), "--to", m_spec, "--json")
    assert out.returncode == 0, out.stderr
    moved = json.loads(out.stdout)
    assert moved["points"] == moved["destination_points"] == 24 + 6  # views + centroids
    assert moved["index_now_uses"].startswith("qdrant+local://")

    from lookalike.store.edge import EdgeStore
    from lookalike.store.qdrant import QdrantStore

    src = EdgeStore(edge_index / "shard", {"image": 1280})
    dst = QdrantStore(str(tmp_path / "moved"), "moved", {"image": 1280})
    try:
        a, b = _points(src), _points(dst)
        assert set(a) == set(b) and len(a) == 30
        for pid, (payload, vec) in a.items():
            assert b[pid][0] == payload
            assert np.allclose(b[pid][1], vec, atol=1e-6)
        assert set(dst.payload_schema()) >= {"item_id", "kind", "search_text"}
    finally:
        src.close()
        dst.close()
    for image, hits in before.items():
        after = _top(edge_index, image)  # now answered by the migrated collection
        assert [i for i, _ in after] == [i for i, _ in hits]
        assert np.allclose([s for _, s in after], [s for _, s in hits], atol=1e-3)
    out = _cli("stats", "--index", str(edge_index), "--json")
    assert json.loads(out.stdout)["items"] == 6

    # Migrating to where it already is: refused.
    out = _cli("migrate", "--index", str(edge_index), "--to", m_spec)
    assert out.returncode != 0 and "already lives" in out.stderr
