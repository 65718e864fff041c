"""`lookalike tune --train` on an ensemble index (Lite2 + Lite1), end to end on real grocery photos
and the real models: the first network trains, the second stays frozen beside it in the exported
file, every stored vector is the new ensemble's, and `--reset` goes back to the base ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.models.store import ModelStore
from tests.grocery_index import build_small_grocery

ENSEMBLE = "efficientnet-lite2+lite1"
SHORT = ["--augmentations", "1", "--epochs", "1", "--force", "--no-projection", "--json"]


def _views(index: Path) -> dict[str, np.ndarray]:
    """The index's view vectors (centroids left out: their normalisation mixes both halves)."""
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    with Engine(index, settings=Settings(index=index)) as engine:
        return {
            r.id: np.asarray(r.vectors["image"])
            for r in engine.store.scroll(with_vectors=True)
            if r.payload.get("kind") == "view"
        }


@pytest.mark.e2e
def test_ensemble_trains_its_first_network_beside_the_frozen_other(
    data_dir: Path, model_store: ModelStore, tmp_path: Path
) -> None:
    from lookalike.api.cli import app
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    model_store.path(ENSEMBLE)  # exported (once per cache) before the index opens it
    small = build_small_grocery(data_dir, tmp_path, products=4, photos=2, embedder=ENSEMBLE)
    base = _views(small.index)
    assert len(base) == 8 and all(v.shape == (2560,) for v in base.values())

    out = CliRunner().invoke(app, ["tune", "--index", str(small.index), "--train", *SHORT])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["applied"] and summary["views"] == 8

    trained = _views(small.index)
    assert trained.keys() == base.keys()
    lite2_moved = 0.0
    for pid, vec in trained.items():
        assert vec.shape == (2560,)
        assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-4)
        # Lite1 (frozen) gives the same half as before; Lite2 (trained) a different one.
        np.testing.assert_allclose(vec[1280:], base[pid][1280:], atol=2e-3)
        lite2_moved = max(lite2_moved, float(np.abs(vec[:1280] - base[pid][:1280]).max()))
    assert lite2_moved > 1e-2
    with Engine(small.index, settings=Settings(index=small.index)) as engine:
        assert engine.embedder.name == f"{ENSEMBLE}+adapted"
        assert engine.embedder.dim == 2560

    out = CliRunner().invoke(app, ["tune", "--index", str(small.index), "--reset", "--json"])
    assert out.exit_code == 0, out.output
    reset = _views(small.index)
    for pid, vec in reset.items():
        np.testing.assert_allclose(vec, base[pid], atol=1e-4)
