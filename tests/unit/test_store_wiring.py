"""The store registry inside the engine: the `store` setting, the manifest's record of where the
vectors live, the API key setting, and what readers see while an indexing run writes."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lookalike.engine.records as records_module
import lookalike.engine.searcher as searcher_module
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.engine.manifest import IndexManifest
from lookalike.errors import IndexMismatchError
from lookalike.store.base import Filter, PointRecord, Store, point_id
from lookalike.store.memory import MemoryStore
from tests.fakes import TinyEmbedder, noisy_copy, photo


def _catalogue(root: Path, ids: Sequence[int], views: int = 3, name: str = "cat") -> Path:
    rows = [
        {
            "id": f"p{i}",
            "images": [
                str(photo(root / "img" / f"p{i}_{j}.jpg", seed=i * 100 + j)) for j in range(views)
            ],
            "title": f"product {i}",
        }
        for i in ids
    ]
    manifest = root / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", batch_size=2, **kw)


def test_index_records_its_store_and_later_commands_use_it(tmp_path: Path) -> None:
    manifest = _catalogue(tmp_path, range(5))
    settings = _settings(tmp_path)
    spec = f"qdrant+local://{tmp_path / 'qdrant'}#shop"
    with Engine(
        settings.index, settings=settings, image_embedder=TinyEmbedder(), store_spec=spec
    ) as engine:
        engine.index(manifest)
    recorded = IndexManifest.load(settings.index)
    assert recorded is not None
    assert recorded.store["kind"] == "qdrant-local" and recorded.store["collection"] == "shop"
    assert recorded.store["location"] == str((tmp_path / "qdrant").resolve())
    assert not (settings.index / "shard").exists()  # nothing went to the embedded store
    query = noisy_copy(tmp_path / "img" / "p3_1.jpg", tmp_path / "q.jpg", seed=7)
    # No --store: the recorded one.
    with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine:
        assert engine.stats()["items"] == 5
        assert engine.search(query, k=1).hits[0].item_id == "p3"
    # The same store named again is fine; another one is a clear error, not an empty index.
    with Engine(
        settings.index, settings=settings, image_embedder=TinyEmbedder(), store_spec=spec
    ) as engine:
        assert engine.stats()["items"] == 5
    with pytest.raises(IndexMismatchError, match="lookalike migrate"):
        Engine(settings.index, settings=settings, store_spec="edge").store_record()


def test_store_setting_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().vectors.store == "edge"
    monkeypatch.setenv("LOOKALIKE_STORE", f"qdrant+local://{tmp_path / 'q'}")
    settings = _settings(tmp_path)
    assert settings.vectors.store.startswith("qdrant+local://")
    with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine:
        engine.index(_catalogue(tmp_path, range(2)))
        assert engine.store_record()["collection"] == "index"  # the index folder's name
    # An old index (manifest without a store record) is the embedded shard, whatever the env says.
    old = tmp_path / "old"
    with Engine(old, settings=_settings(tmp_path).replace(store="edge"),
                image_embedder=TinyEmbedder()) as engine:  # fmt: skip
        engine.index(_catalogue(tmp_path, range(2), name="old"))
    raw = json.loads((old / "lookalike.json").read_text())
    del raw["store"]
    (old / "lookalike.json").write_text(json.dumps(raw))
    with Engine(old, settings=settings, image_embedder=TinyEmbedder()) as engine:
        assert engine.store_record()["kind"] == "edge"
        assert engine.stats()["items"] == 2


def test_api_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_QDRANT_API_KEY", "s3cret-key")
    settings = Settings()
    assert settings.vectors.qdrant_api_key is not None
    assert settings.vectors.qdrant_api_key.get_secret_value() == "s3cret-key"
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cret-key" not in shown


class _Watching:
    """A store that, after every write, runs `check` (which searches through the engine)."""

    def __init__(self, inner: Store, check: Callable[[str], None]) -> None:
        self.inner = inner
        self.check = check
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _after(self, op: str) -> None:
        self.writes += 1
        self.check(op)

    def upsert(self, points: Sequence[PointRecord]) -> None:
        self.inner.upsert(points)
        self._after("upsert")

    def delete(self, ids: Sequence[str]) -> None:
        self.inner.delete(ids)
        self._after("delete")

    def delete_where(self, flt: Filter) -> None:
        self.inner.delete_where(flt)
        self._after("delete_where")

    def set_payload(self, flt: Filter, payload: Any) -> None:
        self.inner.set_payload(flt, payload)
        self._after("set_payload")


def _partial_answers(tmp_path: Path, kind: str = "memory") -> tuple[list[str], int]:
    """Index part 1, then part 2 (3 new items of 3 photos, batches of 2 photos) while searching
    (and reading the item, as `GET /api/items/ID` does) after every single write in both modes;
    returns every answer that showed a part-2 item before all of its views and its centroid were
    in the store. kind: the store, `memory` (the reference) or `edge` (the embedded default)."""
    part1 = _catalogue(tmp_path, range(4), name="part1")
    part2 = _catalogue(tmp_path, range(10, 13), name="part2")
    settings = _settings(tmp_path)
    embedder = TinyEmbedder()
    inner: Store = MemoryStore()
    if kind == "edge":
        from lookalike.store.edge import EdgeStore

        inner = EdgeStore(tmp_path / "edge-shard", {"image": embedder.dim})
    engine = Engine(settings.index, settings=settings, image_embedder=embedder, store=inner)
    engine.index(part1)
    rows = [json.loads(line) for line in part2.read_text().splitlines()]
    from PIL import Image

    images = {r["id"]: [Image.open(p) for p in r["images"]] for r in rows}
    queries = {i: embedder.embed_images(ims) for i, ims in images.items()}
    bad: list[str] = []

    def complete(item_id: str) -> bool:
        views = list(inner.scroll(Filter(()) & _eq("item_id", item_id) & _eq("kind", "view")))
        centroid = inner.retrieve([point_id(item_id, "centroid")])
        return len(views) == len(images[item_id]) and bool(centroid)

    def check(op: str) -> None:
        for vectors in queries.values():
            for vec in np.asarray(vectors):
                for mode in ("views", "centroid"):
                    for hit in engine.search_vector(vec, k=10, mode=mode):  # type: ignore[arg-type]
                        if hit.item_id in queries and not complete(hit.item_id):
                            bad.append(f"after {op}: {mode} search showed {hit.item_id}")
        for item_id in queries:
            shown = engine.item(item_id)
            if shown is not None and not complete(item_id):
                bad.append(f"after {op}: item {item_id} shown with {len(shown['images'])} photos")

    watching = _Watching(inner, check)
    engine._store = watching  # type: ignore[assignment]  # the engine writes through the watcher
    engine.index(part2)
    assert engine.stats()["items"] == 7  # the run did finish: every item visible at the end
    for item_id, vectors in queries.items():
        assert engine.search_vector(np.asarray(vectors)[0], k=1, mode="views")[0].item_id == item_id
        assert len(engine.item(item_id)["images"]) == len(images[item_id])  # type: ignore[index]
    # Every view lost its flag at the end of the run (the step that once matched nothing).
    assert inner.count(records_module.PENDING_VIEWS) == 0
    assert inner.count(_eq("pending", False)) == inner.count(_eq("kind", "view")) > 0
    return bad, watching.writes


def _eq(field_name: str, value: Any) -> Filter:
    from lookalike.store.base import where

    return where(field_name, value)


@pytest.mark.parametrize("kind", ["memory", "edge"])
def test_no_query_sees_a_partially_indexed_item(tmp_path: Path, kind: str) -> None:
    bad, writes = _partial_answers(tmp_path, kind)
    assert writes >= 5  # views in several batches, centroids, the flag: many states were searched
    assert bad == []


def test_the_check_catches_partial_items_without_the_pending_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run with view searches not skipping pending views: the check must see the
    partial items (so the test above can fail)."""
    from lookalike.store.base import Condition

    monkeypatch.setattr(
        searcher_module, "VISIBLE_VIEWS", Filter((Condition("kind", "eq", "view"),))
    )
    bad, _ = _partial_answers(tmp_path, "edge")
    assert any("views search" in b for b in bad), bad


def test_an_index_from_before_the_flags_worked_stays_searchable(tmp_path: Path) -> None:
    """Indexes written while boolean filters matched nothing kept every view `pending: true`:
    they read as before (every view) until a run clears the flags, then the flags count."""
    from lookalike.store.edge import EdgeStore

    part1 = _catalogue(tmp_path, range(4), name="part1")
    settings = _settings(tmp_path)
    embedder = TinyEmbedder()
    with Engine(settings.index, settings=settings, image_embedder=embedder) as engine:
        engine.index(part1)
    # As such an index looks on disk: every view flagged, no `visibility` in lookalike.json, and
    # no seal (`lookalike.engine.integrity`: those came later too).
    (settings.index / "lookalike.seal.json").unlink()
    store = EdgeStore(settings.index / "shard", {"image": embedder.dim})
    store.set_payload(_eq("kind", "view"), {"pending": True})
    store.close()
    record = json.loads((settings.index / "lookalike.json").read_text())
    del record["visibility"]
    (settings.index / "lookalike.json").write_text(json.dumps(record))

    with Engine(settings.index, settings=settings, image_embedder=embedder) as engine:
        assert engine.manifest is not None and engine.manifest.visibility == 0
        vec = engine.item_vector("p1")
        assert engine.search_vector(vec, k=1, mode="views")[0].item_id == "p1"
        assert engine.item("p1") is not None and len(engine.item("p1")["images"]) == 3  # type: ignore[index]
        engine.index(part1)  # nothing to embed; the run clears the flags
        assert engine.store.count(records_module.PENDING_VIEWS) == 0
    assert json.loads((settings.index / "lookalike.json").read_text())["visibility"] == 1
