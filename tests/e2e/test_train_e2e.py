"""`lookalike tune --train` / `--reset` end to end on real grocery photos and the real model: a short
training run exports the adapted network into the index, re-embeds every point with it, every query
uses it; `--reset` goes back; a run killed before its swap leaves the previous network answering.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.grocery_index import build_small_grocery

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--augmentations", "1", "--epochs", "1", "--force", "--no-projection", "--json"]


def _points(index: Path) -> dict[str, np.ndarray]:
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    with Engine(index, settings=Settings(index=index)) as engine:
        return {
            r.id: np.asarray(r.vectors["image"]) for r in engine.store.scroll(with_vectors=True)
        }


def _search(index: Path, query: str) -> list[tuple[str, float]]:
    from lookalike.api.cli import app

    out = CliRunner().invoke(app, ["search", query, "--index", str(index), "-k", "4", "--json"])
    assert out.exit_code == 0, out.output
    return [(r["item_id"], r["score"]) for r in json.loads(out.stdout)["results"]]


@pytest.mark.e2e
def test_train_exports_reembeds_serves_and_resets(
    data_dir: Path, lite2_dir: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    from lookalike.api.cli import app
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.engine.manifest import IndexManifest
    from lookalike.models.store import sha256_file
    from lookalike.pipeline.embed import l2_normalise, to_tensor
    from lookalike.store.base import where

    small = build_small_grocery(data_dir, tmp_path, products=4, photos=2)
    query = next(qs[0] for qs in small.queries.values() if qs)
    base_points = _points(small.index)
    base_hits = _search(small.index, query)

    out = CliRunner().invoke(app, ["tune", "--index", str(small.index), "--train", *SHORT])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["applied"] and summary["items"] == 4 and summary["views"] == 8
    assert not summary["instance_views"] and summary["epochs"] == 1

    manifest = IndexManifest.load(small.index)
    assert manifest is not None and manifest.network is not None
    network = small.index / manifest.network["file"]
    assert sha256_file(network) == manifest.network["sha256"] == summary["sha256"]
    assert manifest.identity() == IndexManifest.load(small.index).identity()  # base identity kept

    # Every stored vector is the exported network's output on the view, and not the base one.
    session = ort.InferenceSession(str(network), providers=["CPUExecutionProvider"])
    points = _points(small.index)
    with Engine(small.index, settings=Settings(index=small.index)) as engine:
        assert engine.embedder.name == "efficientnet-lite2+adapted"
        pp = engine.embedder.preprocess  # type: ignore[attr-defined]
        views = list(engine.store.scroll(where("kind", "view"), fields=["image", "view_key"]))
        assert len(views) == 8
        for rec in views:
            (image,) = [im for key, im in engine.training_views(rec.payload["image"])]
            (gem,) = session.run(["gem"], {"pixels": to_tensor([image], pp)})
            assert np.allclose(points[rec.id], l2_normalise(gem)[0], atol=1e-4)
            assert not np.allclose(points[rec.id], base_points[rec.id], atol=1e-3)
        # A query is embedded with the adapted network too (Python API).
        photo = engine.decode_query(query)
        qview = engine.query_views(photo)[0].image.convert("RGB")
        (qgem,) = session.run(["gem"], {"pixels": to_tensor([qview], pp)})
        assert np.allclose(
            engine.embedder.embed_images([qview])[0], l2_normalise(qgem)[0], atol=1e-4
        )
        q = engine.embed_queries([photo])[0]  # with the query TTA, on the adapted network
        assert "network: adapted from efficientnet-lite2" in engine.stats()["network"]
        # A Ray indexing worker embeds with the adapted network too (the actor, without Ray).
        from lookalike.engine.distributed import _EmbedActor, _network_for_workers

        actor = _EmbedActor(
            engine.settings.model_dump(mode="json", exclude={"index"}),
            engine.embedder_name,
            engine.views.to_dict(),
            json.dumps(engine.manifest.identity(), sort_keys=True, default=str),
            network=_network_for_workers(engine),
        )
        photo_of = {r.id: r.payload["image"] for r in views}
        pid = sorted(photo_of)[0]
        rows = actor(
            {
                "pos": np.array([0]),
                "item_id": np.array(["x"], dtype=object),
                "image": np.array([photo_of[pid]], dtype=object),
                "known": np.array([""], dtype=object),
                "read": np.array([False]),
            }
        )
        assert np.allclose(rows["vector"][0], points[pid], atol=1e-5)
        assert not engine.network_status().stale

    hits = _search(small.index, query)  # through the CLI
    assert hits != base_hits
    # ... and through the HTTP server
    from fastapi.testclient import TestClient

    from lookalike.api.http import create_app

    with (
        Engine(small.index, settings=Settings(index=small.index)) as engine,
        TestClient(create_app(engine)) as client,
    ):
        data = Path(query).read_bytes()
        r = client.post("/api/search", files={"photo": ("q.jpg", data)}, data={"k": "4"})
        assert r.status_code == 200, r.text
        served = [(h["item_id"], h["score"]) for h in r.json()["results"]]
        assert "network: adapted" in client.get("/api/stats").json()["network"]
    assert [i for i, _ in served] == [i for i, _ in hits]
    assert np.allclose([s for _, s in served], [s for _, s in hits], atol=1e-4)
    cents = {
        p: v
        for p, v in points.items()
        if p not in {r.id for r in views}  # the centroids
    }
    assert np.isclose(max(float(q @ v) for v in cents.values()), hits[0][1], atol=1e-3)

    out = CliRunner().invoke(app, ["stats", "--index", str(small.index)])
    assert "network          network: adapted" in out.stdout

    out = CliRunner().invoke(app, ["tune", "--index", str(small.index), "--reset", "--json"])
    assert out.exit_code == 0, out.output
    manifest = IndexManifest.load(small.index)
    assert manifest is not None and manifest.network is None
    assert not list(small.index.glob("network*"))
    back = _points(small.index)
    assert back.keys() == base_points.keys()
    for pid, vec in back.items():
        assert np.allclose(vec, base_points[pid], atol=1e-5)
    assert [i for i, _ in _search(small.index, query)] == [i for i, _ in base_hits]


@pytest.mark.e2e
def test_killed_training_leaves_the_previous_network(
    data_dir: Path, lite2_dir: Path, tmp_path: Path
) -> None:
    """Killed (SIGKILL) once its new network is written, while it re-embeds: the index answers
    as before, and the next run trains and swaps cleanly."""
    from lookalike.engine.manifest import IndexManifest

    small = build_small_grocery(data_dir, tmp_path, products=4, photos=2)
    query = next(qs[0] for qs in small.queries.values() if qs)
    before = _points(small.index)
    hits = _search(small.index, query)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike.api.cli", "tune", "--index", str(small.index), "--train",
         *SHORT],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while not list(small.index.glob("network-*.onnx")):
            assert proc.poll() is None, "the run ended before writing its network"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    manifest = IndexManifest.load(small.index)
    assert manifest is not None and manifest.network is None
    assert _search(small.index, query) == hits
    after = _points(small.index)
    assert after.keys() == before.keys()
    assert all(np.allclose(after[p], before[p]) for p in before)


def test_interrupted_swap_is_repaired_when_opened(tmp_path: Path) -> None:
    """The two half-done states a kill can leave between the commit's renames."""
    from lookalike.learn.swap import NEW_SHARD, NEXT_MANIFEST, recover_network_swap

    def layout(*names: str) -> Path:
        index = tmp_path / "-".join(names)
        for name in names:
            (index / name).mkdir(parents=True)
            (index / name / "marker").write_text(name)
        (index / "lookalike.json").write_text(json.dumps({"network": None}))
        (index / NEXT_MANIFEST).write_text(json.dumps({"network": {"file": "network-new.onnx"}}))
        (index / "network-new.onnx").write_text("x")
        return index

    # killed after `shard` -> `shard.old`, before `shard.training` -> `shard`: undone
    index = layout("shard.old", NEW_SHARD)
    recover_network_swap(index)
    assert (index / "shard" / "marker").read_text() == "shard.old"
    assert not (index / NEW_SHARD).exists() and not (index / NEXT_MANIFEST).exists()
    assert json.loads((index / "lookalike.json").read_text())["network"] is None
    assert not (index / "network-new.onnx").exists()

    # killed after both renames, before the manifest: finished
    index = layout("shard", "shard.old")
    recover_network_swap(index)
    assert (index / "shard" / "marker").read_text() == "shard"
    assert not (index / "shard.old").exists() and not (index / NEXT_MANIFEST).exists()
    assert json.loads((index / "lookalike.json").read_text())["network"]["file"] == (
        "network-new.onnx"
    )
    assert (index / "network-new.onnx").exists()


def _one_photo_index(data_dir: Path, dest: Path, products: int) -> tuple[Path, list[Path]]:
    """An index of `products` grocery products with one photo each (copies, so a test may break
    one after indexing)."""
    import shutil

    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    root = data_dir / "grocery" / "train" / "Packages"
    photos = []
    lines = []
    for d in sorted(p for p in root.iterdir() if p.is_dir())[:products]:
        src = sorted(d.rglob("*.jpg"))[0]
        photo = dest / "photos" / f"{d.name}.jpg"
        photo.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, photo)
        photos.append(photo)
        lines.append(json.dumps({"id": d.name, "title": d.name, "images": [str(photo)]}))
    manifest = dest / "one.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    index = dest / "index"
    with Engine(index, settings=Settings(index=index)) as engine:
        engine.index(manifest)
    return index, photos


@pytest.mark.e2e
def test_refused_runs_change_nothing(data_dir: Path, lite2_dir: Path, tmp_path: Path) -> None:
    """Too little data, or more memory than allowed: a typed error (exit code 9) before anything
    in the index changes."""
    from lookalike.api.cli import app

    index, _ = _one_photo_index(data_dir, tmp_path / "one", 1)
    before = (index / "lookalike.json").read_text()
    out = CliRunner().invoke(app, ["tune", "--index", str(index), "--train"])
    assert out.exit_code == 9, out.output
    assert "at least 2 items" in out.output
    assert (index / "lookalike.json").read_text() == before

    index, _ = _one_photo_index(data_dir, tmp_path / "three", 3)
    before = (index / "lookalike.json").read_text()
    out = CliRunner().invoke(app, ["tune", "--index", str(index), "--train", "--max-memory", "0.1"])
    assert out.exit_code == 9, out.output
    message = " ".join(out.output.split())  # rich wraps long lines
    assert "needs about" in message and "--max-memory" in message
    assert (index / "lookalike.json").read_text() == before
    assert not list(index.glob("network*")) and not (index / "shard.training").exists()


@pytest.mark.e2e
def test_one_photo_items_train_on_instance_views_and_skip_bad_photos(
    data_dir: Path, lite2_dir: Path, tmp_path: Path
) -> None:
    """One photo per item and no pairs: instance views, said so; a photo that no longer decodes is
    skipped with its reason and its views leave the re-embedded index."""
    from lookalike.api.cli import app

    index, photos = _one_photo_index(data_dir, tmp_path, 4)
    photos[0].write_bytes(b"\xff\xd8\xff\xe0 not a jpeg any more")
    out = CliRunner().invoke(app, ["tune", "--index", str(index), "--train", *SHORT])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["instance_views"] and summary["items"] == 3 and summary["applied"]
    assert [s["source"] for s in summary["skipped"]] == [str(photos[0])]
    assert summary["skipped"][0]["reason"]
    assert summary["dropped_points"] == 2  # its view and its item's centroid
    points = _points(index)
    assert len(points) == 6  # 3 views + 3 centroids

    out = CliRunner().invoke(
        app, ["tune", "--index", str(index), "--train", *SHORT[:-1]]
    )  # the human output says it trained on instance views
    assert out.exit_code == 0, out.output
    assert "instance views" in " ".join(out.output.split())
    from lookalike.engine.manifest import IndexManifest

    manifest = IndexManifest.load(index)  # the same data and seed: the same network, bit for bit
    assert manifest is not None and manifest.network is not None
    assert manifest.network["sha256"] == summary["sha256"]


@pytest.mark.e2e
def test_pairs_teach_the_worn_photos(data_dir: Path, lite2_dir: Path, tmp_path: Path) -> None:
    """--pairs: the worn photos of the garments train with their product shots (not instance
    views), some are held out to choose; pairs naming unknown items are refused first."""
    import csv

    from lookalike.api.cli import app
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    fashion = data_dir / "fashion"
    with open(fashion / "pairs.csv") as fh:
        rows = list(csv.DictReader(fh))[:6]
    catalogue = tmp_path / "garments.jsonl"
    catalogue.write_text(
        "".join(
            json.dumps({"id": r["garment_id"], "images": [str(fashion / r["product_image"])]})
            + "\n"
            for r in rows
        )
    )
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "image,item_id\n"
        + "".join(f"{fashion / r['worn_image']},{r['garment_id']}\n" for r in rows)
    )
    index = tmp_path / "index"
    with Engine(index, settings=Settings(index=index)) as engine:
        engine.index(catalogue)
    before = (index / "lookalike.json").read_text()

    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"image,item_id\n{fashion / rows[0]['worn_image']},nope\n")
    out = CliRunner().invoke(
        app, ["tune", "--index", str(index), "--train", "--pairs", str(unknown)]
    )
    assert out.exit_code == 4, out.output  # CatalogueError
    assert (index / "lookalike.json").read_text() == before

    out = CliRunner().invoke(
        app, ["tune", "--index", str(index), "--train", "--pairs", str(pairs), "--int8", *SHORT]
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["pair_photos"] == 6 and not summary["instance_views"]
    assert summary["held_out"] >= 1 and summary["applied"]

    # --int8: quantised, compared with the float network on the held-out draw, the choice recorded
    from lookalike.engine.manifest import IndexManifest
    from lookalike.models.store import sha256_file

    network = IndexManifest.load(index).network  # type: ignore[union-attr]
    assert network is not None
    int8 = network["int8"]
    assert int8["used"] == (int8["int8_recall"] >= int8["float_recall"] - 0.01)
    assert sha256_file(index / network["file"]) == network["sha256"] == summary["sha256"]
    assert (network["sha256"] != int8["float_sha256"]) == int8["used"]
    assert [p.name for p in index.glob("network*")] == [network["file"]]
    with Engine(index, settings=Settings(index=index)) as engine:
        assert engine.embedder.name.endswith("+adapted")
