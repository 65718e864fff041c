"""The quality gate on real photos: grocery catalogue (iconic + train), queries = val photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lookalike.config import Settings

pytestmark = pytest.mark.e2e


def test_grocery_recall_meets_the_target(
    tmp_path: Path, data_dir: Path, lite2_dir: Path, model_settings: Settings
) -> None:
    from lookalike.catalog.sample import prepare_grocery
    from lookalike.engine.core import Engine
    from lookalike.evaluation.run import run_evaluation

    files = prepare_grocery(data_dir / "grocery", tmp_path / "sample")
    settings = model_settings.replace(index=tmp_path / "index")
    with Engine(settings.index, settings=settings) as engine:
        outcome = run_evaluation(
            engine, files.catalogue, files.queries, report_dir=tmp_path / "report"
        )
    print(json.dumps(outcome.metrics, indent=2))
    assert outcome.queries == 296 and outcome.items == 81 and not outcome.skipped
    best = max(outcome.metrics.values(), key=lambda m: m["recall@1"])
    assert best["recall@1"] >= 0.72, outcome.metrics
    assert best["recall@3"] >= 0.89, outcome.metrics
