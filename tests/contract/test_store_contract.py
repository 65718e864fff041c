"""One contract, every store backend: the exact in-memory reference, Qdrant Edge, and Qdrant
through qdrant-client (local mode always, a real server when QDRANT_URL is set)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.store.base import Condition, Filter, PointRecord, Store, point_id, where
from lookalike.store.filters import parse_where

DIM = 16


def _make(kind: str, path: Path) -> Store:
    if kind == "memory":
        from lookalike.store.memory import MemoryStore

        return MemoryStore()
    if kind == "qdrant-local":
        from lookalike.store.qdrant import QdrantStore

        return QdrantStore(str(path / "qdrant"), "contract", {"image": DIM})
    if kind == "qdrant-server":
        import uuid

        from lookalike.store.qdrant import QdrantStore

        return QdrantStore(
            os.environ["QDRANT_URL"],
            f"lookalike-contract-{uuid.uuid4().hex[:12]}",
            {"image": DIM},
            api_key=os.environ.get("QDRANT_API_KEY") or None,
        )
    from lookalike.store.edge import EdgeParams, EdgeStore

    if kind == "edge-int8":  # quantised codes, rescored with the originals; graph from 1 point on
        params = EdgeParams(quantization="int8", optimize_threshold=1)
        return _Settling(EdgeStore(path / "shard", {"image": DIM}, params))
    return EdgeStore(path / "shard", {"image": DIM})


class _Settling:
    """An EdgeStore that builds its HNSW graph after every write, as the engine does after a run:
    the contract must hold on graph-indexed, quantised segments too, not only on plain ones."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if name in ("upsert", "delete", "delete_where", "set_payload"):

            def write(*args: object, **kwargs: object) -> object:
                out = attr(*args, **kwargs)
                self.inner.settle()  # type: ignore[attr-defined]
                return out

            return write
        return attr


# qdrant-client's local mode always; a real Qdrant server when QDRANT_URL names one (else those
# cases are reported as skipped, with the reason, rather than silently absent).
_BACKENDS = ["memory", "edge", "edge-int8", "qdrant-local", "qdrant-server"]


@pytest.fixture(params=_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "qdrant-server" and not os.environ.get("QDRANT_URL"):
        pytest.skip(
            "QDRANT_URL is not set: set it (e.g. http://localhost:6333, plus QDRANT_API_KEY if "
            "the server wants one) to run the contract suite against a real Qdrant server"
        )
    s = _make(request.param, tmp_path)
    yield s
    if request.param == "qdrant-server":
        s.drop()  # type: ignore[attr-defined]  # leave no test collections on the server
    s.close()


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _points(n_items: int = 6, views: int = 3, seed: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    pts = []
    for i in range(n_items):
        for j in range(views):
            pts.append(
                PointRecord(
                    point_id(f"item{i}", f"img{j}"),
                    {"image": _unit(rng)},
                    {
                        "item_id": f"item{i}",
                        "kind": "view",
                        "price": float(10 * i),
                        "category": "Milk" if i % 2 else "Juice",
                        "tags": ["a", "b"] if i == 0 else ["c"],
                    },
                )
            )
    return pts


def test_upsert_count_retrieve(store: Store) -> None:
    pts = _points()
    store.upsert(pts)
    assert store.count() == len(pts)
    got = store.retrieve([pts[0].id, "00000000-0000-0000-0000-00000000dead"], with_vectors=True)
    assert [r.id for r in got] == [pts[0].id]
    np.testing.assert_allclose(got[0].vectors["image"], pts[0].vectors["image"], atol=1e-6)
    assert got[0].payload["item_id"] == "item0"


def test_upsert_is_idempotent(store: Store) -> None:
    pts = _points()
    store.upsert(pts)
    store.upsert(pts)
    assert store.count() == len(pts)


def test_search_matches_exact_ranking(store: Store) -> None:
    pts = _points()
    store.upsert(pts)
    q = pts[4].vectors["image"]
    hits = store.search(q, limit=5)
    assert hits[0].point_id == pts[4].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    mat = np.stack([p.vectors["image"] for p in pts])
    expected = [pts[i].id for i in np.argsort(-(mat @ q))[:5]]
    assert [h.point_id for h in hits] == expected
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_filter_inside_search(store: Store) -> None:
    pts = _points()
    store.upsert(pts)
    store.ensure_index("category", "keyword")
    store.ensure_index("price", "float")
    q = pts[0].vectors["image"]  # an item0 (Juice) view: the filter must exclude it
    flt = parse_where("category = 'Milk' and price < 40")
    hits = store.search(q, limit=100, flt=flt)
    assert hits, "filtered search returned nothing"
    assert {h.item_id for h in hits} == {"item1", "item3"}
    assert len(hits) == 6  # all matching points are returned, not a post-filtered top-k


def test_filter_ops(store: Store) -> None:
    store.upsert(_points())
    assert store.count(parse_where("category != 'Milk'")) == 9
    assert store.count(parse_where("item_id in ('item1', 'item2')")) == 6
    assert store.count(parse_where("item_id not in ('item1', 'item2')")) == 12
    assert store.count(parse_where("price >= 20 and price <= 30")) == 6
    assert store.count(parse_where("tags = 'b'")) == 3  # any value of a list field
    assert store.count(Filter((Condition("price", "range", gt=45.0),))) == 3


def test_search_groups_one_per_item(store: Store) -> None:
    pts = _points(n_items=8, views=4)
    store.upsert(pts)
    q = pts[5 * 4].vectors["image"]  # a view of item5
    groups = store.search_groups(q, groups=5)
    items = [h.item_id for h in groups]
    assert len(items) == 5 and len(set(items)) == 5
    assert items[0] == "item5"
    # Best view per group, in order: equals grouping the exact ranking.
    mat = np.stack([p.vectors["image"] for p in pts])
    order = np.argsort(-(mat @ q))
    exact: list[str] = []
    for i in order:
        it = pts[i].payload["item_id"]
        if it not in exact:
            exact.append(it)
    assert items == exact[:5]
    assert len(store.search_groups(q, groups=50)) == 8  # fewer groups than asked: all of them


def test_delete_and_delete_where(store: Store) -> None:
    pts = _points()
    store.upsert(pts)
    store.delete([pts[0].id])
    assert store.count() == len(pts) - 1
    store.delete_where(where("item_id", "item2"))
    assert store.count(where("item_id", "item2")) == 0
    assert store.count() == len(pts) - 4


def test_scroll_fields_and_vectors(store: Store) -> None:
    pts = _points(n_items=400, views=3)  # more than one scroll page
    store.upsert(pts)
    recs = list(store.scroll(fields=["item_id"]))
    assert len(recs) == len(pts)
    assert all(set(r.payload) == {"item_id"} and not r.vectors for r in recs)
    recs = list(store.scroll(where("item_id", "item7"), with_vectors=True))
    assert len(recs) == 3 and all(r.vectors["image"].shape == (DIM,) for r in recs)


def test_set_payload(store: Store) -> None:
    store.upsert(_points())
    store.set_payload(where("item_id", "item1"), {"price": 999.0, "title": "new"})
    recs = list(store.scroll(where("item_id", "item1")))
    assert all(r.payload["price"] == 999.0 and r.payload["title"] == "new" for r in recs)
    assert all(r.payload["category"] == "Milk" for r in recs)  # merged, not replaced


def test_facet(store: Store) -> None:
    store.upsert(_points())
    counts = store.facet("category")
    assert counts == {"Juice": 9, "Milk": 9}
    assert store.facet("category", parse_where("price < 20")) == {"Juice": 3, "Milk": 3}


def test_facet_answers_values_as_written(store: Store) -> None:
    # The embedded store once answered "Large (XL)" as "XL" (an unwrapping of older bindings).
    vector = np.ones(DIM, dtype=np.float32)
    store.upsert([PointRecord(point_id("p"), {"image": vector}, {"size": "Large (XL)"})])
    assert store.facet("size") == {"Large (XL)": 1}


def test_edge_persists_across_reopen(tmp_path: Path) -> None:
    from lookalike.store.edge import EdgeStore

    pts = _points()
    s = EdgeStore(tmp_path / "shard", {"image": DIM})
    s.upsert(pts)
    s.close()
    s = EdgeStore(tmp_path / "shard", {"image": DIM})
    assert s.count() == len(pts)
    assert s.search(pts[3].vectors["image"], limit=1)[0].point_id == pts[3].id
    s.close()


def test_point_id_is_deterministic() -> None:
    assert point_id("a", "b") == point_id("a", "b")
    assert point_id("a", "b") != point_id("a", "c")
    assert point_id("ab", "c") != point_id("a", "bc")


def test_payload_schema(store: Store) -> None:
    store.upsert(_points())
    store.ensure_index("category", "keyword")
    store.ensure_index("price", "float")
    schema = store.payload_schema()
    assert schema["category"] == "keyword" and schema["price"] == "float"


def test_text_search_bm25(store: Store) -> None:
    rng = np.random.default_rng(3)
    texts = {
        "granny": "Granny Smith apple green sour",
        "golden": "Golden Delicious apple yellow sweet",
        "milk": "Arla milk carton medium fat",
        "juice": "Tropicana orange juice",
    }
    store.upsert(
        [
            PointRecord(point_id(k), {"image": _unit(rng)}, {"item_id": k, "text": t, "kind": "c"})
            for k, t in texts.items()
        ]
    )
    store.ensure_index("text", "text")
    hits = store.text_search("text", "green apple", limit=10)
    assert [h.item_id for h in hits] == ["granny", "golden"]  # both apples, the green one first
    assert hits[0].score > hits[1].score > 0
    assert [h.item_id for h in store.text_search("text", "apples", limit=10)] != []  # stemmed
    assert store.text_search("text", "bicycle", limit=10) == []
    only = store.text_search("text", "apple", limit=10, flt=where("item_id", "golden"))
    assert [h.item_id for h in only] == ["golden"]


# -- payload types: booleans, integers vs floats, lists, nulls, nested objects ----------------------

_TYPED = {
    "p0": {"in_stock": True, "count": 2, "weight": 2.0, "tags": ["a", "b"], "note": None,
           "specs": {"colour": "red", "size": 3}},
    "p1": {"in_stock": False, "count": 3, "weight": 2.5, "tags": [], "note": "x",
           "specs": {"colour": "blue"}},
    "p2": {"count": 2.0, "weight": 3, "tags": ["b"]},
}  # fmt: skip


def _typed_points() -> list[PointRecord]:
    rng = np.random.default_rng(7)
    return [
        PointRecord(point_id(k), {"image": _unit(rng)}, {"item_id": k, "kind": "view", **fields})
        for k, fields in _TYPED.items()
    ]


def _ids(store: Store, flt: Filter) -> set[str]:
    return {r.payload["item_id"] for r in store.scroll(flt, fields=["item_id"])}


_TYPED_CASES = [
    # booleans (the engine's own `pending` guard is one of these)
    ("in_stock = true", {"p0"}),
    ("in_stock != true", {"p1", "p2"}),
    ("in_stock = false", {"p1"}),
    ("in_stock != false", {"p0", "p2"}),
    ("in_stock in (true)", {"p0"}),
    ("in_stock in (true, false)", {"p0", "p1"}),
    ("in_stock not in (true)", {"p1", "p2"}),
    ("in_stock = 1", set()),  # a boolean is not the number 1
    ("count = true", set()),
    # integers and floats compare as numbers, whichever way the payload spells them
    ("count = 2", {"p0", "p2"}),
    ("count = 2.0", {"p0", "p2"}),
    ("count != 2", {"p1"}),
    ("count in (2, 3)", {"p0", "p1", "p2"}),
    ("count not in (3)", {"p0", "p2"}),
    ("weight = 2", {"p0"}),
    ("weight = 3", {"p2"}),
    ("weight >= 2.5", {"p1", "p2"}),
    ("weight < 3", {"p0", "p1"}),
    # lists: any of their values; an empty list has none
    ("tags = 'b'", {"p0", "p2"}),
    ("tags != 'b'", {"p1"}),
    ("tags in ('a', 'zz')", {"p0"}),
    ("tags not in ('a')", {"p1", "p2"}),
    # nulls and missing fields match no value, and every `!=` / `not in`
    ("note = 'x'", {"p1"}),
    ("note != 'x'", {"p0", "p2"}),
    ("note >= 0", set()),
    # nested objects, by dotted path
    ("specs.colour = 'red'", {"p0"}),
    ("specs.colour != 'red'", {"p1", "p2"}),
    ("specs.size >= 3", {"p0"}),
    ("specs.colour in ('red', 'blue')", {"p0", "p1"}),
]


@pytest.mark.parametrize("indexed", [False, True], ids=["no-index", "indexed"])
def test_filter_payload_types(store: Store, indexed: bool) -> None:
    store.upsert(_typed_points())
    if indexed:  # the same answers with payload indexes as without (the engine indexes `pending`)
        store.ensure_index("in_stock", "bool")
        store.ensure_index("count", "float")
        store.ensure_index("weight", "float")
        store.ensure_index("tags", "keyword")
    wrong = []
    for text, expected in _TYPED_CASES:
        flt = parse_where(text)
        assert flt is not None
        reference = {k for k, v in _TYPED.items() if flt.matches({"item_id": k, **v})}
        assert reference == expected, f"reference semantics of {text!r}"
        got = _ids(store, flt)
        if got != expected or store.count(flt) != len(expected):
            wrong.append(f"{text!r}: {sorted(got)}, want {sorted(expected)}")
    assert not wrong, "; ".join(wrong)


def test_boolean_filter_in_search_and_writes(store: Store) -> None:
    store.upsert(_typed_points())
    store.ensure_index("in_stock", "bool")
    q = _typed_points()[1].vectors["image"]
    hits = store.search(q, limit=10, flt=where("in_stock", True))
    assert [h.item_id for h in hits] == ["p0"]
    groups = store.search_groups(q, groups=10, flt=parse_where("in_stock != true"))
    assert {h.item_id for h in groups} == {"p1", "p2"}
    # set_payload and delete_where by a boolean filter (the engine's pending -> visible step)
    store.set_payload(where("in_stock", True), {"in_stock": False, "seen": 1})
    assert _ids(store, where("in_stock", False)) == {"p0", "p1"}
    assert _ids(store, where("seen", 1)) == {"p0"}
    store.delete_where(where("in_stock", False))
    assert _ids(store, Filter()) == {"p2"}
