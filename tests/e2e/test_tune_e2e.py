"""`lookalike tune` end to end on real grocery photos and the real model: the projection is fitted
from the index's own views, stored with the index, applied to searches, survives reopening, is
reported by `lookalike eval`, and a re-index that changes the photos marks it stale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.grocery_index import build_small_grocery


@pytest.mark.e2e
def test_tune_real_grocery_index(data_dir: Path, lite2_dir: Path, tmp_path: Path) -> None:
    from lookalike.api.cli import app
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.engine.manifest import IndexManifest
    from lookalike.learn.projection import Projection
    from lookalike.store.base import where

    small = build_small_grocery(data_dir, tmp_path, products=8, photos=5)
    query, item = next((qs[0], i) for i, qs in small.queries.items() if qs)
    with Engine(small.index, settings=Settings(index=small.index)) as engine:
        plain = engine.search(query, k=8)
        assert engine.projection is None

    runner = CliRunner()
    out = runner.invoke(app, ["tune", "--index", str(small.index), "--force", "--json"])
    assert out.exit_code == 0, out.output
    choice = json.loads(out.stdout)
    assert choice["applied"] and choice["views"] == 40 and choice["items"] == 8
    split = choice["split"]  # queries are counted over every held-out draw
    assert choice["held_out"]["views"]["queries"] >= split["held_out_scored"] > 0
    assert split["splits"] == 5

    manifest = IndexManifest.load(small.index)
    assert manifest is not None and manifest.projection is not None
    stored = Projection.load(small.index / "projection")
    assert manifest.projection["sha256"] == stored.sha256 == choice["sha256"]
    assert stored.d_in == manifest.dim == 1280

    # reopened from disk: the projection is read back and used for queries
    with Engine(small.index, settings=Settings(index=small.index)) as engine:
        assert engine.projection == stored
        status = engine.projection_status()
        assert status.applied and not status.stale
        tuned = engine.search(query, k=8)
        q = stored.apply(engine.embed_queries([engine.decode_query(query)])[0])
        cents = {
            r.payload["item_id"]: r.vectors["tuned"]
            for r in engine.store.scroll(where("kind", "centroid"), with_vectors=True)
        }
        assert [h.item_id for h in tuned.hits] == sorted(cents, key=lambda i: -float(q @ cents[i]))
        assert np.isclose(tuned.hits[0].score, float(q @ cents[tuned.hits[0].item_id]), atol=1e-4)
        # scores live in the projected space, not the raw one
        assert [h.score for h in tuned.hits] != [h.score for h in plain.hits]
        assert item in [h.item_id for h in tuned.hits[:3]]

    # `lookalike eval` says which projection it used
    queries = tmp_path / "queries.csv"
    rows = [(q, i) for i, qs in small.queries.items() for q in qs[:2]]
    queries.write_text("image,item_id\n" + "".join(f"{q},{i}\n" for q, i in rows))
    out = runner.invoke(
        app,
        ["eval", "--catalogue", str(small.manifest), "--queries", str(queries),
         "--index", str(small.index), "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert set(json.loads(out.stdout)) == {"views", "centroid"}
    said = " ".join(out.stderr.split())  # rich wraps long lines
    assert f"projection: applied, within-item 1280->{stored.d_out}" in said
    assert f"sha256 {stored.sha256[:12]}" in said

    # re-index with one more photo: the new views are projected too, and the projection is stale
    catalogue = [json.loads(line) for line in small.manifest.read_text().splitlines()]
    extra = next(q for q in small.queries[catalogue[0]["id"]][2:3])
    catalogue[0]["images"].append(extra)
    small.manifest.write_text("".join(json.dumps(r) + "\n" for r in catalogue))
    with Engine(small.index, settings=Settings(index=small.index)) as engine:
        engine.index(small.manifest)
        status = engine.projection_status()
        assert status.stale and status.current_views == 41
        new = list(engine.store.scroll(where("image", extra), with_vectors=True))
        assert new and all("tuned" in r.vectors for r in new)
    out = runner.invoke(app, ["stats", "--index", str(small.index)])
    assert "STALE" in out.output
