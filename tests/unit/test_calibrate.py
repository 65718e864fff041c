"""Match levels ("same product", "similar", "no close match"): the pure choice on hand-checked
scores, and an index that calibrates itself from its own photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.engine.levels import Levels, choose_levels, held_out_scores, query_scores
from tests.fakes import TinyEmbedder


def test_levels_are_chosen_at_the_wanted_precision() -> None:
    # by score: .9 P, .8 P, .75 N, .7 P (3/4 right), .5 N, .4 N
    lv = choose_levels([0.9, 0.8, 0.7], [0.75, 0.5, 0.4], source="held-out", precision=0.9)
    assert lv.same == pytest.approx(0.8) and lv.precision == 1.0
    assert lv.recall == pytest.approx(2 / 3)
    assert lv.floor == pytest.approx(0.41)  # 5 % quantile of the negatives, linear
    assert [lv.match(s) for s in (0.85, 0.8, 0.6, 0.3)] == [
        "same product", "same product", "similar", "no close match",
    ]  # fmt: skip
    # 3/4 is enough at 0.75: the level goes down to the third positive
    assert choose_levels([0.9, 0.8, 0.7], [0.75], source="x", precision=0.75).same == 0.7
    # a negative above every positive and a precision nothing reaches: never "same product"
    never = choose_levels([0.5], [0.9], source="x")
    assert never.same > 0.9 and never.recall == 0.0 and never.floor <= never.same
    assert Levels.from_record(lv.record()) == lv


def test_held_out_and_query_scores_by_hand() -> None:
    s = 0.6
    vectors = np.array([[1, 0], [0.8, s], [0, 1]], np.float32)
    items = ["a", "a", "b"]  # b has one photo: it is a negative only
    pos, neg = held_out_scores(vectors, items, "centroid")
    assert pos == pytest.approx([0.8, 0.8]) and neg == pytest.approx([0.0, 0.6])
    pos, neg = held_out_scores(vectors, items, "views")
    assert pos == pytest.approx([0.8, 0.8]) and neg == pytest.approx([0.0, 0.6])
    q = np.array([[0, 1]], np.float32)
    pos, neg = query_scores(q, ["b"], vectors, items, "views")
    assert pos == pytest.approx([1.0]) and neg == pytest.approx([0.6])
    pos, neg = query_scores(q, ["b"], vectors, items, "centroid")
    assert pos == pytest.approx([1.0]) and neg == pytest.approx([0.6 / np.hypot(1.8, 0.6)])


def _blocks(arr: np.ndarray, path: Path) -> Path:
    """A 64x48 JPEG of a 4x4 colour pattern (what TinyEmbedder sees)."""
    img = np.kron(np.clip(arr, 0, 255).astype(np.uint8), np.ones((12, 16, 1), np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)
    return path


def _catalogue(root: Path, items: int, photos: int) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    """Items that share a common look (like a shop's products do), each with `photos` noisy
    shots of its own pattern."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, (4, 4, 3))
    own = [rng.uniform(0, 255, (4, 4, 3)) for _ in range(items)]
    rows = []
    for i, pattern in enumerate(own):
        look = 0.6 * base + 0.4 * pattern
        images = [
            str(_blocks(look + rng.normal(0, 6, look.shape), root / f"i{i}_{j}.jpg"))
            for j in range(photos)
        ]
        rows.append({"id": f"i{i}", "images": images, "title": f"item {i}"})
    manifest = root / "cat.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, base, own


@pytest.mark.parametrize("photos", [3, 1])  # one photo per item: augmented views
def test_an_index_tells_same_product_from_similar_and_no_match(tmp_path: Path, photos: int) -> None:
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", tta="none")
    manifest, base, own = _catalogue(tmp_path / "cat", items=12, photos=photos)
    rng = np.random.default_rng(1)
    same = _blocks(0.6 * base + 0.4 * own[3] + rng.normal(0, 6, base.shape), tmp_path / "q1.jpg")
    alike = _blocks(base, tmp_path / "q2.jpg")  # the shop's common look, no item's own
    other = _blocks(rng.uniform(0, 255, base.shape), tmp_path / "q3.jpg")  # unrelated
    with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine:
        engine.index(manifest)
        record = engine.manifest.calibration
        levels = record["spaces"]["image"]["centroid"]
        assert levels["source"] == ("held-out" if photos > 1 else "augmented")
        assert levels["floor"] < levels["same"]
        for mode in ("centroid", "views"):
            hit = engine.search(same, k=3, mode=mode)
            assert (hit.hits[0].item_id, hit.match) == ("i3", "same product"), mode
            assert "same product" not in [h.match for h in hit.hits[1:]], mode
            if photos > 1:  # a crop of a 4x4 pattern is a harsh change: one-photo levels are low
                assert engine.search(alike, k=3, mode=mode).match == "similar", mode
            assert engine.search(other, k=3, mode=mode).match == "no close match", mode
        assert "same product >=" in engine.stats()["match_levels"]
    again = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    with again:
        engine.index(manifest)  # nothing changed: the levels are kept, not recomputed
        assert again.manifest.calibration == record


def test_large_indexes_recalibrate_when_their_size_drifts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lookalike.engine.calibration as ic

    monkeypatch.setattr(ic, "EXACT_BELOW", 0)  # behave as an index of many photos
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", tta="none")
    manifest, _, _ = _catalogue(tmp_path / "cat", items=12, photos=3)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine:
        engine.index(rows_file(tmp_path, rows[:10]))
        first = engine.manifest.calibration
        assert first["view_count"] == 30
        engine.index(rows_file(tmp_path, rows[:11]))  # 33 views: within 10 %, kept
        assert engine.manifest.calibration == first
        engine.index(rows_file(tmp_path, rows))  # 36 views: 20 % more, recalibrated
        assert engine.manifest.calibration["view_count"] == 36


def rows_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
