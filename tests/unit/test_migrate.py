"""Moving an index between stores: embedded Qdrant Edge -> Qdrant (local mode here, a server or
cluster in production) and back, with every id, vector, payload and payload index kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.store.base import PointRecord, Store, point_id, where
from lookalike.store.migrate import migrate

DIM = 8


def _points(n: int, seed: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = rng.normal(size=DIM).astype(np.float32)
        out.append(
            PointRecord(
                point_id(f"item{i // 3}", f"img{i}"),
                {"image": v / np.linalg.norm(v)},
                {"item_id": f"item{i // 3}", "kind": "view", "price": float(i), "title": f"t {i}"},
            )
        )
    return out


def _snapshot(store: Store) -> dict[str, tuple[np.ndarray, dict]]:
    return {r.id: (r.vectors["image"], dict(r.payload)) for r in store.scroll(with_vectors=True)}


@pytest.fixture
def edge(tmp_path: Path) -> Store:
    from lookalike.store.edge import EdgeStore

    s = EdgeStore(tmp_path / "shard", {"image": DIM})
    s.upsert(_points(1100))  # more than one scroll page and several batches
    s.ensure_index("item_id", "keyword")
    s.ensure_index("price", "float")
    s.ensure_index("title", "text")
    yield s
    s.close()


def test_edge_to_qdrant_copies_everything(edge: Store, tmp_path: Path) -> None:
    from lookalike.store.qdrant import QdrantStore

    dest = QdrantStore(str(tmp_path / "q"), "shop", {"image": DIM})
    calls: list[tuple[str, int, int]] = []
    summary = migrate(edge, dest, batch_size=300, progress=lambda *a: calls.append(a))
    assert summary.points == 1100 and summary.deleted == 0
    assert summary.indexes == ("item_id", "price", "title")
    want, got = _snapshot(edge), _snapshot(dest)
    assert set(got) == set(want)
    for pid, (vec, payload) in want.items():
        np.testing.assert_allclose(got[pid][0], vec, atol=1e-6)
        assert got[pid][1] == payload
    assert dest.payload_schema() == {"item_id": "keyword", "price": "float", "title": "text"}
    copies = [c for c in calls if c[0] == "copy"]
    assert copies[0] == ("copy", 0, 1100) and copies[-1] == ("copy", 1100, 1100)
    assert len(copies) == 1 + 4  # start, then one per batch of 300
    # The copy answers queries like the original.
    q = want[next(iter(want))][0]
    assert [h.point_id for h in dest.search(q, limit=5)] == [
        h.point_id for h in edge.search(q, limit=5)
    ]
    assert dest.text_search("title", "t 7")[0].payload["title"] == "t 7"
    dest.close()


def test_rerun_converges_and_delete_extra_makes_an_exact_copy(edge: Store, tmp_path: Path) -> None:
    from lookalike.store.memory import MemoryStore

    dest = MemoryStore()
    stray = PointRecord(point_id("stray"), {"image": np.eye(DIM, dtype=np.float32)[0]}, {})
    dest.upsert([stray])
    migrate(edge, dest)
    assert dest.count() == 1101  # nothing deleted by default
    edge.delete_where(where("item_id", "item0"))  # the source changed since
    summary = migrate(edge, dest, delete_extra=True)
    assert summary.deleted == 1 + 3  # the stray point and item0's views
    assert set(_snapshot(dest)) == set(_snapshot(edge))
    assert dest.count() == 1097


def test_qdrant_back_to_edge(tmp_path: Path) -> None:
    from lookalike.store.edge import EdgeStore
    from lookalike.store.qdrant import QdrantStore

    src = QdrantStore(":memory:", "shop", {"image": DIM})
    src.upsert(_points(50, seed=1))
    src.ensure_index("item_id", "keyword")
    dest = EdgeStore(tmp_path / "back", {"image": DIM})
    migrate(src, dest)
    assert set(_snapshot(dest)) == set(_snapshot(src))
    assert dest.payload_schema() == {"item_id": "keyword"}
    dest.close()
    src.close()
