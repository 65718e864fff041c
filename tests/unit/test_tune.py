"""The catalogue-adapted projection (`lookalike.learn.projection`): cases where the right answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lookalike.errors import CatalogueError, IndexMismatchError
from lookalike.evaluation.metrics import evaluate
from lookalike.learn.projection import VERSION, Projection
from lookalike.learn.tuning import (
    FIT,
    QUERY,
    REFERENCE,
    fit_cross_domain,
    fit_grid,
    fit_projection,
    holdout_split,
    item_rankings,
)
from lookalike.pipeline.embed import l2_normalise

D = 32
SIGNAL = slice(24, 32)  # the only directions in which items differ: quiet ones


def nuisance_world(
    items: int, photos: int, seed: int, *, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors whose items differ only along low-variance directions.

    Each item has a fixed signature in dims 24-31 (small: 0.5 per dim); each photo adds large
    noise in dims 0-23 (std 2: light, hand, shelf) and a little in the signature dims. Returns
    (vectors (N, D) L2-normalised float32, item ids (N,), item signatures (items, 8)).
    """
    rng = np.random.default_rng(1000 + offset)
    signatures = rng.normal(0.0, 0.5, size=(items, SIGNAL.stop - SIGNAL.start))
    noise = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(items):
        for _ in range(photos):
            v = np.zeros(D)
            v[:24] = noise.normal(0.0, 2.0, 24)
            v[SIGNAL] = signatures[i] + noise.normal(0.0, 0.1, SIGNAL.stop - SIGNAL.start)
            rows.append(v)
            labels.append(f"item-{i}")
    return l2_normalise(np.array(rows)), np.array(labels), signatures


def r_at_1(gallery, gallery_items, queries, query_items, mode="centroid", projection=None):
    if projection is not None:
        gallery, queries = projection.apply(gallery), projection.apply(queries)
    ranked = item_rankings(gallery, gallery_items, queries, mode=mode)
    return evaluate(ranked, list(query_items))["recall@1"]


GRID = {"dims": (4, 8, 16), "lambdas": (0.01, 0.1, 1.0)}


@pytest.fixture(scope="module")
def world() -> dict[str, np.ndarray]:
    cat, cat_items, _ = nuisance_world(20, 8, seed=1)
    queries, query_items, _ = nuisance_world(20, 3, seed=2)  # new photos of the same items
    return {"cat": cat, "cat_items": cat_items, "queries": queries, "query_items": query_items}


@pytest.fixture(scope="module")
def fitted(world: dict[str, np.ndarray]):
    return fit_projection(world["cat"], world["cat_items"], **GRID)


# -- the projection learns what separates items ------------------------------------------------


def test_projection_raises_recall_when_items_differ_only_in_quiet_directions(world, fitted):
    w = world
    plain = r_at_1(w["cat"], w["cat_items"], w["queries"], w["query_items"])
    args = (w["cat"], w["cat_items"], w["queries"], w["query_items"])
    tuned = r_at_1(*args, "centroid", fitted.projection)
    views = r_at_1(*args, "views", fitted.projection)
    assert plain < 0.5, plain  # the nuisance dominates cosine similarity
    assert tuned >= 0.95 and views >= 0.9, (tuned, views)
    # The held-out choice saw the same thing on catalogue photos alone.
    assert fitted.improves
    assert fitted.chosen.metrics["centroid"]["recall@1"] >= 0.9
    assert fitted.baseline.metrics["centroid"]["recall@1"] < 0.5


def test_projection_keeps_the_signal_directions(fitted):
    # Mapping the 24 nuisance dims through the projection gives far less than the 8 signal dims.
    m = fitted.projection.matrix.astype(np.float64)
    assert np.linalg.norm(m[SIGNAL]) > 5 * np.linalg.norm(m[:24])


def test_choice_prefers_dims_that_hold_the_signal(fitted):
    # 8 directions separate the items; 4 cannot hold them all, so 4 must not be chosen.
    assert fitted.chosen.dim >= 8
    assert fitted.projection.d_out == fitted.chosen.dim
    assert fitted.projection.params == {
        "method": "within-item",
        "dim": fitted.chosen.dim,
        "lam": fitted.chosen.lam,
    }
    assert len(fitted.grid) == 9
    assert "**" in fitted.table()


# -- shapes and normalisation ------------------------------------------------------------------


def test_apply_shapes_dtype_and_norm(world, fitted):
    p = fitted.projection
    out = p.apply(world["cat"])
    assert out.shape == (len(world["cat"]), p.d_out) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    one = p.apply(world["cat"][0])
    assert one.shape == (p.d_out,)
    np.testing.assert_allclose(one, out[0], atol=1e-6)
    assert p.matrix.shape == (D, p.d_out) and p.mean.shape == (D,)
    assert p.matrix.dtype == np.float32 and p.mean.dtype == np.float32


def test_apply_refuses_vectors_of_another_embedder(fitted):
    with pytest.raises(IndexMismatchError, match="32-d"):
        fitted.projection.apply(np.ones((2, 64), dtype=np.float32))


def test_projection_is_read_only(fitted):
    with pytest.raises(ValueError):
        fitted.projection.matrix[0, 0] = 1.0


def test_projection_validates_its_arrays():
    with pytest.raises(ValueError, match="D_in"):
        Projection(np.zeros((4, 2), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="finite"):
        Projection(np.full((3, 2), np.nan, np.float32), np.zeros(3, np.float32))


# -- save / load -------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path, world, fitted):
    p = fitted.projection
    npz = p.save(tmp_path / "index" / "projection")
    assert npz == tmp_path / "index" / "projection.npz"
    meta = json.loads((tmp_path / "index" / "projection.json").read_text())
    assert meta["version"] == VERSION and meta["sha256"] == p.sha256
    assert meta["d_in"] == D and meta["d_out"] == p.d_out
    assert meta["fitted_on"]["vectors"] == len(world["cat"])
    loaded = Projection.load(tmp_path / "index" / "projection.npz")
    assert loaded == p and loaded.sha256 == p.sha256
    assert loaded.params == p.params and loaded.fitted_on == p.fitted_on
    np.testing.assert_array_equal(loaded.apply(world["queries"]), p.apply(world["queries"]))
    assert loaded.record() == p.record()
    assert not list((tmp_path / "index").glob("*.tmp"))


def test_load_refuses_a_changed_matrix(tmp_path: Path, fitted):
    p = fitted.projection
    p.save(tmp_path / "projection")
    tampered = p.matrix.copy()
    tampered[0, 0] += 0.5
    np.savez(tmp_path / "projection.npz", matrix=tampered, mean=p.mean)
    with pytest.raises(IndexMismatchError, match="sha256"):
        Projection.load(tmp_path / "projection")


def test_load_refuses_another_version_and_missing_files(tmp_path: Path, fitted):
    fitted.projection.save(tmp_path / "projection")
    meta = tmp_path / "projection.json"
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, "version": "whiten-pca/0"}))
    with pytest.raises(IndexMismatchError, match="version"):
        Projection.load(tmp_path / "projection")
    with pytest.raises(IndexMismatchError, match="cannot read"):
        Projection.load(tmp_path / "nothing-here")
    meta.write_text(json.dumps(record))
    (tmp_path / "projection.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(IndexMismatchError, match="cannot read"):
        Projection.load(tmp_path / "projection")


# -- determinism -------------------------------------------------------------------------------


def test_same_data_and_seed_give_the_same_bytes(world, fitted):
    again = fit_projection(world["cat"], world["cat_items"], **GRID)
    assert again.projection.sha256 == fitted.projection.sha256
    np.testing.assert_array_equal(again.projection.matrix, fitted.projection.matrix)
    assert again.chosen == fitted.chosen


def test_the_split_follows_the_seed(world):
    a = holdout_split(world["cat_items"], 0.25, 0)
    b = holdout_split(world["cat_items"], 0.25, 0)
    c = holdout_split(world["cat_items"], 0.25, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# -- no leakage: parameters are chosen on catalogue photos only --------------------------------


def test_holdout_split_is_by_photo_within_items():
    items = ["a"] * 10 + ["b"] * 2 + ["c"] + ["d"] * 5 + ["e"] * 3
    roles = holdout_split(items, 0.2, seed=3)
    labels = np.array(items)

    def held(item: str) -> int:
        return int((roles[labels == item] == QUERY).sum())

    assert (held("a"), held("b"), held("c"), held("d"), held("e")) == (2, 0, 0, 1, 1)
    for item in "ade":  # every item keeps two fitted photos: its within-item scatter
        assert (roles[labels == item] == FIT).sum() >= 2
    assert not (roles == REFERENCE).any()
    assert (holdout_split(items, 0.0, seed=3) == FIT).all()


def test_items_with_two_photos_are_held_out_whole():
    # Front and back shots only: holding one photo out would leave nothing to learn from, so
    # whole items are held out; one of their photos is searched among, the other searched for.
    items = [f"i{k // 2}" for k in range(20)]
    roles = holdout_split(items, 0.2, seed=0)
    labels = np.array(items)
    unseen = sorted(set(labels[roles != FIT].tolist()))
    assert len(unseen) == 2
    for item in unseen:
        assert sorted(roles[labels == item].tolist()) == [QUERY, REFERENCE]
    assert (roles[~np.isin(labels, unseen)] == FIT).all()


def test_a_catalogue_of_photo_pairs_can_be_tuned():
    cat, items, _ = nuisance_world(20, 2, seed=1)
    result = fit_projection(cat, items, **GRID)
    assert result.split["by"] == "item" and result.split["unseen_items"] == 4
    assert result.chosen.metrics["views"]["queries"] == 4 * result.split["splits"]
    assert result.projection.fitted_on["vectors"] == 40


def test_held_out_photos_are_not_fitted_and_the_final_fit_uses_all(world, fitted):
    n = len(world["cat"])
    split = fitted.split
    assert split["fit_vectors"] + split["held_out_vectors"] == n
    assert split["by"] == "photo" and split["reference_vectors"] == 0
    assert split["held_out_vectors"] == (holdout_split(world["cat_items"], 0.2, 0) == QUERY).sum()
    # Metrics are means over the draws; `queries` counts every draw's scored photos.
    assert split["splits"] == 5 and split["held_out_scored"] == split["held_out_vectors"]
    assert fitted.chosen.metrics["views"]["queries"] > split["held_out_vectors"]
    assert fitted.projection.fitted_on["vectors"] == n


def test_held_out_photos_do_not_shape_the_candidates(world):
    # Replacing the held-out photos changes their scores, never the fitted candidates: rerunning
    # with garbage in the held-out rows keeps every candidate the same except for its score.
    cat, items = world["cat"], world["cat_items"]
    held = holdout_split(items, 0.2, 0) == QUERY
    noisy = cat.copy()
    noisy[held] = l2_normalise(np.random.default_rng(9).normal(size=(held.sum(), D)))
    a = fit_projection(cat, items, dims=(8,), lambdas=(0.1,))
    b = fit_projection(noisy, items, dims=(8,), lambdas=(0.1,))
    assert a.chosen.score > b.chosen.score  # the held-out rows were scored ...
    fit_only = fit_projection(cat[~held], items[~held], holdout=0.0, dims=(8,), lambdas=(0.1,))
    c = fit_projection(cat[~held], items[~held], holdout=0.0, dims=(8,), lambdas=(0.1,))
    assert fit_only.projection == c.projection  # ... and the fit depends on the fitted rows only


def test_bench_fits_on_the_catalogue_only(tmp_path: Path, world, monkeypatch):
    """The benchmark's projections do not change when only the query photos change."""
    import importlib

    # as when run as `python bench/eval_tune.py`: its folder first on the path (for bench/common.py)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "bench"))
    bench = importlib.import_module("eval_tune")
    images = np.array(
        [
            f"/x/{'iconic-images' if k % 8 == 0 else 'train'}/{k}.jpg"
            for k in range(len(world["cat"]))
        ]
    )
    reports = []
    for seed in (5, 6):  # two different query sets
        queries, query_items, _ = nuisance_world(20, 2, seed=seed)
        npz = tmp_path / f"g{seed}.npz"
        np.savez(
            npz,
            cat_vectors=world["cat"],
            cat_items=world["cat_items"],
            cat_images=images,
            query_vectors=queries,
            query_items=query_items,
            query_images=np.array([f"q{k}" for k in range(len(queries))]),
        )
        reports.append(bench.grocery_report(npz, seeds=(0,)))
    for key in ("full",):
        assert reports[0][key]["choice"] == reports[1][key]["choice"]
    assert reports[0]["iconic_only"]["choice_cross"] == reports[1]["iconic_only"]["choice_cross"]


# -- cross-domain ------------------------------------------------------------------------------


def test_cross_domain_brings_wild_photos_to_their_product_shots():
    rng = np.random.default_rng(4)
    n = 120
    product = rng.normal(0.0, 1.0, size=(n, D))
    shift = np.zeros(D)
    shift[:12] = 3.0  # the same scene shift on every worn photo ...
    wild = (
        product
        + shift
        + np.concatenate(  # ... plus strong per-photo clutter in 12 dims
            [rng.normal(0.0, 3.0, size=(n, 12)), rng.normal(0.0, 0.2, size=(n, D - 12))], axis=1
        )
    )
    wild, product = l2_normalise(wild), l2_normalise(product)
    ids = np.array([f"g{i}" for i in range(n)])
    grid = {"dims": (16, 20, 24), "lambdas": (0.01, 0.1, 1.0)}
    result = fit_cross_domain(wild[:80], product[:80], groups=ids[:80], **grid)
    assert result.split["held_out_items"] == 16 and result.split["fit_pairs"] == 64
    plain = r_at_1(product[80:], ids[80:], wild[80:], ids[80:], "views")
    tuned = r_at_1(product[80:], ids[80:], wild[80:], ids[80:], "views", result.projection)
    assert plain < 0.6 and tuned >= 0.9, (plain, tuned)
    assert result.improves and set(result.chosen.metrics) == {"cross"}
    assert result.projection.params["method"] == "cross-domain"
    assert result.projection.fitted_on["pairs"] == 80


def test_cross_domain_holds_out_whole_items():
    rng = np.random.default_rng(0)
    wild, product = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    groups = [f"g{i // 3}" for i in range(30)]  # 10 items, 3 pairs each
    result = fit_cross_domain(wild, product, groups=groups, dims=(4,), lambdas=(0.1,), holdout=0.3)
    assert result.split["held_out_items"] == 3 and result.split["held_out_pairs"] == 9
    assert result.split["splits"] == 5 and result.baseline.metrics["cross"]["queries"] == 5 * 9


def test_cross_domain_choice_is_the_mean_over_seeded_held_out_draws():
    rng = np.random.default_rng(1)
    wild, product = l2_normalise(rng.normal(size=(40, 8))), l2_normalise(rng.normal(size=(40, 8)))
    grid = {"dims": (2, 4), "lambdas": (0.1, 1.0)}
    one = fit_cross_domain(wild, product, splits=1, seed=0, **grid)
    three = fit_cross_domain(wild, product, splits=3, seed=0, **grid)
    queries = [p.metrics["cross"]["queries"] for p in (three.baseline, *three.grid)]
    assert queries == [3 * one.baseline.metrics["cross"]["queries"]] * 5  # every draw scored
    assert three.chosen.score == max(p.score for p in three.grid)
    assert three.split["splits"] == 3 and one.split["splits"] == 1
    with pytest.raises(ValueError, match="splits"):
        fit_cross_domain(wild, product, splits=0, **grid)


# -- errors and progress -----------------------------------------------------------------------


def test_a_catalogue_of_single_photos_cannot_be_tuned():
    vectors = l2_normalise(np.random.default_rng(0).normal(size=(10, 8)))
    with pytest.raises(CatalogueError, match=r"two photos.*--pairs"):
        fit_projection(vectors, [f"i{k}" for k in range(10)])


def test_malformed_arguments_are_value_errors(world):
    cat, items = world["cat"], world["cat_items"]
    with pytest.raises(ValueError, match="one id per vector"):
        fit_projection(cat, items[:-1])
    with pytest.raises(ValueError, match="exactly one"):
        fit_projection(cat, items, holdout=0.0)
    with pytest.raises(ValueError, match="holdout"):
        fit_projection(cat, items, holdout=1.0)
    with pytest.raises(ValueError, match="NaN"):
        fit_projection(np.full_like(cat, np.nan), items)
    with pytest.raises(ValueError, match="criterion"):
        fit_projection(cat, items, criterion="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="paired"):
        fit_cross_domain(cat, cat[:-1])


def test_fixed_parameters_without_holdout(world):
    result = fit_projection(
        world["cat"], world["cat_items"], holdout=0.0, dims=(8,), lambdas=(0.1,)
    )
    assert result.projection.d_out == 8 and result.projection.fitted_on["vectors"] == len(
        world["cat"]
    )
    assert result.grid == (result.chosen,)


def test_the_choice_averages_several_held_out_draws(world):
    cat, items = world["cat"], world["cat_items"]
    one = fit_projection(cat, items, **GRID, splits=1)
    three = fit_projection(cat, items, **GRID, splits=3)
    # The first draw is the same photos either way; the three-draw means differ from it.
    assert one.split["held_out_vectors"] == three.split["held_out_vectors"]
    assert three.chosen.metrics["views"]["queries"] == 3 * one.chosen.metrics["views"]["queries"]
    by_params = {(p.dim, p.lam): p.score for p in three.grid}
    draws = [
        {(p.dim, p.lam): p.score for p in fit_projection(cat, items, **GRID, seed=s, splits=1).grid}
        for s in (0, 1, 2)
    ]
    for key, score in by_params.items():
        assert score == pytest.approx(np.mean([d[key] for d in draws]))
    with pytest.raises(ValueError, match="splits"):
        fit_projection(cat, items, **GRID, splits=0)


def test_fit_grid_matches_single_fits(world):
    grid = fit_grid(world["cat"], world["cat_items"], dims=(4, 8), lambdas=(0.1, 1.0))
    assert sorted(grid) == [(4, 0.1), (4, 1.0), (8, 0.1), (8, 1.0)]
    single = fit_projection(
        world["cat"], world["cat_items"], holdout=0.0, dims=(8,), lambdas=(1.0,)
    )
    np.testing.assert_allclose(grid[8, 1.0].matrix, single.projection.matrix, rtol=1e-5, atol=1e-6)


def test_dims_above_the_input_are_dropped(world):
    result = fit_projection(world["cat"], world["cat_items"], dims=(16, 64, 1000), lambdas=(0.1,))
    assert [p.dim for p in result.grid] == [16]


def test_progress_reports_every_grid_point_then_the_refit(world):
    calls: list[tuple[str, int, int]] = []
    fit_projection(world["cat"], world["cat_items"], **GRID, progress=lambda *a: calls.append(a))
    tune = [c for c in calls if c[0] == "tune"]
    assert tune[-1] == ("tune", 45, 45) and len(tune) == 45  # 9 points x 5 held-out draws
    assert calls[-1] == ("refit", 1, 1)


# -- ranking -----------------------------------------------------------------------------------


def test_item_rankings_by_best_view_and_by_centroid():
    # Item a: one view right on the query and one far away; item b: two views fairly close.
    s = np.sqrt(0.5)
    gallery = np.array([[1.0, 0.0], [-1.0, 0.0], [s, s], [s, s]], dtype=np.float32)
    items = ["a", "a", "b", "b"]
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    assert item_rankings(gallery, items, query, mode="views") == [["a", "b"]]
    assert item_rankings(gallery, items, query, mode="centroid") == [["b", "a"]]
    assert item_rankings(gallery, items, query, mode="views", depth=1) == [["a"]]
