"""`lookalike tune` wired into the engine, with the tiny fake embedder: the projection is stored with
the index (sha256 in the manifest), applied to views, centroids and queries, survives reopening,
is reported, and a projection that no longer matches the index is detected."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.config import Settings
from lookalike.engine.adapted import PROJECTION_FILE, recover_shard
from lookalike.engine.core import Engine
from lookalike.engine.manifest import IndexManifest
from lookalike.errors import IndexMismatchError
from lookalike.learn.projection import Projection
from lookalike.pipeline.embed import l2_normalise
from lookalike.store.base import point_id, where
from lookalike.store.registry import store_record
from tests.fakes import TinyEmbedder, noisy_copy, photo


def _projection(engine: Engine) -> Projection:
    assert engine.projection is not None
    return engine.projection


def _catalogue(root: Path, n_items: int = 8, views: int = 5) -> Path:
    rows = []
    for i in range(n_items):
        first = photo(root / "img" / f"p{i}_0.jpg", seed=i)
        images = [str(first)] + [
            str(noisy_copy(first, root / "img" / f"p{i}_{j}.jpg", seed=100 * i + j))
            for j in range(1, views)
        ]
        rows.append({"id": f"p{i}", "images": images, "title": f"product {i}"})
    manifest = root / "catalogue.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", batch_size=4, **kw)  # type: ignore[arg-type]


def _engine(settings: Settings) -> Engine:
    return Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())


def _tune(engine: Engine) -> object:
    # Small grid: the 48-d fake vectors; `force` so the wiring is tested whatever the fit says.
    return engine.tune(dims=(8, 16), lambdas=(0.3, 1.0), force=True)


def test_tune_stores_applies_and_survives_reopening(tmp_path: Path) -> None:
    manifest = _catalogue(tmp_path)
    settings = _settings(tmp_path)
    query = noisy_copy(tmp_path / "img" / "p3_0.jpg", tmp_path / "q.jpg", seed=999)
    with _engine(settings) as engine:
        engine.index(manifest)
        assert not engine.projection_status().present
        outcome = _tune(engine)
        assert outcome.applied and outcome.views == 40 and outcome.items == 8  # type: ignore[attr-defined]
        projection = engine.projection
        assert projection is not None
        assert projection is not None and projection.d_in == 48
        # stored with the index, versioned, its sha256 in the manifest
        on_disk = Projection.load(settings.index / PROJECTION_FILE)
        record = IndexManifest.load(settings.index).projection  # type: ignore[union-attr]
        assert record["sha256"] == on_disk.sha256 == projection.sha256
        assert record["version"] == on_disk.version and record["d_out"] == projection.d_out
        assert record["choice"]["held_out"]["views"]["queries"] > 0
        # every view carries its projected vector; centroids are recomputed in projected space
        views = list(engine.store.scroll(where("kind", "view"), with_vectors=True))
        for rec in views:
            assert np.allclose(
                rec.vectors["tuned"], projection.apply(rec.vectors["image"]), atol=1e-5
            )
        cent = engine.store.retrieve([point_id("p3", "centroid")], with_vectors=True)[0]
        mine = l2_normalise(
            np.mean([r.vectors["tuned"] for r in views if r.payload["item_id"] == "p3"], axis=0)
        )
        assert np.allclose(cent.vectors["tuned"], mine, atol=1e-5)
        # queries are projected and searched among the tuned vectors: same order as numpy
        tuned_hits = engine.search(query, k=8, mode="centroid").hits
        q = projection.apply(engine.embed_queries([engine.decode_query(query)])[0])
        cents = {
            r.payload["item_id"]: r.vectors["tuned"]
            for r in engine.store.scroll(where("kind", "centroid"), with_vectors=True)
        }
        expected = sorted(cents, key=lambda i: -float(q @ cents[i]))
        assert [h.item_id for h in tuned_hits] == expected
        assert engine.projection_status().applied and not engine.projection_status().stale
    # reopened: the same projection, the same results
    with _engine(settings) as engine:
        assert engine.projection is not None and engine.projection.sha256 == projection.sha256
        assert [h.item_id for h in engine.search(query, k=8).hits] == expected
        assert "applied" in engine.stats()["projection"]
    # the setting turns it off: raw vectors again
    with _engine(_settings(tmp_path, tuned=False)) as engine:
        assert engine.projection is None
        status = engine.projection_status()
        assert status.present and not status.applied
        raw = engine.search(query, k=8).hits
        assert raw[0].item_id == "p3"


def test_reindex_after_tune_projects_new_views_and_reports_stale(tmp_path: Path) -> None:
    manifest = _catalogue(tmp_path)
    settings = _settings(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
        _tune(engine)
        projection = engine.projection
        assert projection is not None
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        new = photo(tmp_path / "img" / "new_0.jpg", seed=4242)
        extra = noisy_copy(new, tmp_path / "img" / "new_1.jpg", seed=1)
        rows.append({"id": "new", "images": [str(new), str(extra)], "title": "new one"})
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        engine.index(manifest)
        for rec in engine.store.scroll(where("item_id", "new"), with_vectors=True):
            assert "tuned" in rec.vectors  # views and centroid of the new item are projected too
            if rec.payload["kind"] == "view":
                assert np.allclose(
                    rec.vectors["tuned"], projection.apply(rec.vectors["image"]), atol=1e-5
                )
        status = engine.projection_status()
        assert status.stale and status.fitted_views == 40 and status.current_views == 42
        assert "STALE" in status.describe()
        assert (
            engine.search(noisy_copy(new, tmp_path / "q.jpg", seed=5), k=1).hits[0].item_id == "new"
        )
        _tune(engine)
        assert not engine.projection_status().stale


def test_projection_not_matching_the_manifest_is_refused(tmp_path: Path) -> None:
    manifest = _catalogue(tmp_path)
    settings = _settings(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
        _tune(engine)
        projection = engine.projection
        assert projection is not None
    # another projection written over the index's (a stale file from another tune / index)
    other = Projection(np.eye(48, 8, dtype=np.float32), np.zeros(48, np.float32))
    other.save(settings.index / PROJECTION_FILE)
    with _engine(settings) as engine, pytest.raises(IndexMismatchError, match="manifest"):
        engine.search(tmp_path / "img" / "p1_0.jpg", k=1)
    projection.save(settings.index / PROJECTION_FILE)  # put back: works again
    with _engine(settings) as engine:
        assert engine.search(tmp_path / "img" / "p1_0.jpg", k=1).hits[0].item_id == "p1"
    (settings.index / f"{PROJECTION_FILE}.npz").unlink()
    with _engine(settings) as engine, pytest.raises(IndexMismatchError):
        engine.search(tmp_path / "img" / "p1_0.jpg", k=1)


def test_interrupted_shard_swap_is_recovered(tmp_path: Path) -> None:
    manifest = _catalogue(tmp_path, n_items=3, views=3)
    settings = _settings(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
    index = settings.index
    (index / "shard").rename(index / "shard.old")  # killed between the two renames
    (index / "shard.tuning").mkdir()
    recover_shard(index)
    assert (index / "shard").exists() and not (index / "shard.old").exists()
    assert not (index / "shard.tuning").exists()
    with _engine(settings) as engine:
        assert engine.stats()["views"] == 9


def test_eval_reports_the_projection(tmp_path: Path) -> None:
    from lookalike.evaluation.run import run_evaluation

    manifest = _catalogue(tmp_path)
    queries = tmp_path / "queries.csv"
    q = noisy_copy(tmp_path / "img" / "p2_0.jpg", tmp_path / "q2.jpg", seed=77)
    queries.write_text(f"image,item_id\n{q},p2\n")
    settings = _settings(tmp_path)
    with _engine(settings) as engine:
        before = run_evaluation(engine, manifest, queries)
        assert before.projection is not None and not before.projection["present"]
        _tune(engine)
        after = run_evaluation(engine, manifest, queries, report_dir=tmp_path / "report")
        assert (
            after.projection["applied"] and after.projection["sha256"] == _projection(engine).sha256
        )  # type: ignore[index,union-attr]
        assert "projection: applied" in (tmp_path / "report" / "index.html").read_text()
    shutil.rmtree(tmp_path / "report")


def test_tune_with_a_store_that_takes_any_named_vector(tmp_path: Path) -> None:
    from lookalike.store.memory import MemoryStore

    manifest = _catalogue(tmp_path, n_items=4, views=4)
    settings = _settings(tmp_path)
    store = MemoryStore()
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder(), store=store)
    engine.index(manifest)
    _tune(engine)
    assert not (settings.index / "shard.tuning").exists()
    views = list(store.scroll(where("kind", "view"), with_vectors=True))
    assert all(
        np.allclose(r.vectors["tuned"], _projection(engine).apply(r.vectors["image"]), atol=1e-5)
        for r in views
    )
    query = noisy_copy(tmp_path / "img" / "p2_0.jpg", tmp_path / "q.jpg", seed=3)
    assert engine.search(query, k=1).hits[0].item_id == "p2"


def test_cross_domain_tune_from_pairs(tmp_path: Path) -> None:
    from lookalike.errors import CatalogueError

    manifest = _catalogue(tmp_path, n_items=8, views=3)
    settings = _settings(tmp_path)
    pairs = tmp_path / "pairs.csv"
    rows = ["image,item_id"]
    for i in range(8):  # "worn" photos: another noisy copy of each item's first photo
        worn = noisy_copy(tmp_path / "img" / f"p{i}_0.jpg", tmp_path / "worn" / f"w{i}.jpg", i + 50)
        rows.append(f"{worn},p{i}")
    pairs.write_text("\n".join(rows) + "\n")
    with _engine(settings) as engine:
        engine.index(manifest)
        with pytest.raises(CatalogueError, match="does not hold"):
            engine.tune(pairs=[(str(tmp_path / "worn" / "w0.jpg"), "nope")], force=True)
        out = engine.tune(pairs=[tuple(r.split(",")) for r in rows[1:]], dims=(8,),
                          lambdas=(1.0,), force=True)  # fmt: skip
        assert out.applied and _projection(engine).params["method"] == "cross-domain"
        assert out.result.split["held_out_items"] >= 1
    # reopened: the cross-domain projection is the one searched with
    with _engine(settings) as engine:
        assert _projection(engine).params["method"] == "cross-domain"
        assert engine.search(tmp_path / "worn" / "w3.jpg", k=1).hits[0].item_id == "p3"


def test_a_tuned_index_migrates_with_its_projected_vectors(tmp_path: Path) -> None:
    from lookalike.store.migrate import migrate

    manifest = _catalogue(tmp_path)
    settings = _settings(tmp_path, tta="none")
    query = noisy_copy(tmp_path / "img" / "p5_0.jpg", tmp_path / "q.jpg", seed=7)
    with _engine(settings) as engine:
        engine.index(manifest)
        _tune(engine)
        before = [(h.item_id, round(h.score, 4)) for h in engine.search(query, k=3).hits]
        # the destination collection is created with the `tuned` vector too
        dest = engine.open_store_at(f"qdrant+local://{tmp_path / 'q'}#shop")
        migrate(engine.store, dest)
        rec = dest.retrieve([point_id("p5", "centroid")], with_vectors=True)[0]
        assert set(rec.vectors) == {"image", "tuned"}
        dest.close()
    # switch the index to the copy, as `lookalike migrate` does, and drop the embedded shard
    spec = f"qdrant+local://{tmp_path / 'q'}#shop"
    old = IndexManifest.load(settings.index)
    dataclasses.replace(old, store=store_record(spec, settings.index)).save(settings.index)
    shutil.rmtree(settings.index / "shard")
    with _engine(settings) as engine:
        after = [(h.item_id, round(h.score, 4)) for h in engine.search(query, k=3).hits]
    assert after == before and before[0][0] == "p5"
