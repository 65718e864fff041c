"""Re-ranking research (bench/rerank.py): geometric verification with local features on real photos, TTA and query expansion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.rerank import (
    Candidate,
    FeatureCache,
    GeometricReranker,
    LocalFeatureSettings,
    RerankSettings,
    count_inliers,
    expand_query,
    extract_features,
)
from lookalike.pipeline.embed import tta_embed, tta_images

_PACKAGES = "grocery/val/Packages/Juice"
_QUERY = f"{_PACKAGES}/Bravo-Apple-Juice/Bravo-Apple-Juice_001.jpg"
_SIBLINGS = (
    f"{_PACKAGES}/Bravo-Orange-Juice/Bravo-Orange-Juice_001.jpg",
    f"{_PACKAGES}/Bravo-Orange-Juice/Bravo-Orange-Juice_002.jpg",
)
_FRUIT = (
    "grocery/val/Fruit/Apple/Golden-Delicious/Golden-Delicious_001.jpg",
    "grocery/val/Fruit/Banana/Banana_001.jpg",
)


def _photo(data_dir: Path, rel: str) -> Image.Image:
    from lookalike.pipeline.decode import load_image

    path = data_dir / rel
    if not path.exists():
        pytest.fail(f"test photo missing: {path}")
    return load_image(str(path)).image


def _same_photo_again(image: Image.Image, tmp_path: Path) -> str:
    """The query photo as a catalogue would hold it: turned 7 degrees, shrunk, re-encoded as JPEG."""
    turned = image.rotate(
        7, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128)
    )
    small = turned.resize((turned.width * 4 // 5, turned.height * 4 // 5))
    path = tmp_path / "same.jpg"
    small.save(path, quality=80)
    return str(path)


def _cache() -> FeatureCache:
    from lookalike.pipeline.decode import load_image

    return FeatureCache(None, LocalFeatureSettings(), loader=lambda p: load_image(p).image)


def test_an_identical_photo_lifts_its_item_from_second_to_first(
    data_dir: Path, tmp_path: Path
) -> None:
    query = _photo(data_dir, _QUERY)
    same = _same_photo_again(query, tmp_path)
    siblings = [str(data_dir / p) for p in _SIBLINGS]
    fruit = [str(data_dir / p) for p in _FRUIT]
    # The global vectors put the sibling product first; the right item's best-scoring view is
    # another photo, the identical one is its second view.
    candidates = [
        Candidate("bravo-orange", 0.90, tuple((p, 0.9) for p in siblings)),
        Candidate("bravo-apple", 0.86, ((fruit[0], 0.86), (same, 0.85))),
        Candidate("banana", 0.70, ((fruit[1], 0.7),)),
    ]
    reranker = GeometricReranker(_cache(), RerankSettings(top_k=3))
    out = reranker.rerank(query, candidates)
    assert [r.item_id for r in out] == ["bravo-apple", "bravo-orange", "banana"]
    assert out[0].image == same and out[0].inliers >= 60
    assert out[0].score == pytest.approx(0.86 + reranker.settings.weight)
    # Different products (even of the same brand) keep far fewer geometric inliers.
    assert out[1].inliers < out[0].inliers / 2
    assert reranker.last_ms > 0


def test_without_the_identical_photo_the_image_order_stands(data_dir: Path) -> None:
    query = _photo(data_dir, _QUERY)
    siblings = [str(data_dir / p) for p in _SIBLINGS]
    fruit = [str(data_dir / p) for p in _FRUIT]
    candidates = [
        Candidate("bravo-orange", 0.90, tuple((p, 0.9) for p in siblings)),
        Candidate("fruit", 0.86, tuple((p, 0.86) for p in fruit)),
    ]
    out = GeometricReranker(_cache(), RerankSettings(top_k=1)).rerank(query, candidates)
    assert [r.item_id for r in out] == ["bravo-orange", "fruit"]
    # Beyond top_k nothing is verified.
    assert out[1].inliers == 0 and out[1].score == 0.86


@pytest.mark.parametrize("method", ["orb", "sift"])
def test_local_features_match_a_photo_to_itself_not_to_fruit(
    data_dir: Path, tmp_path: Path, method: str
) -> None:
    settings = LocalFeatureSettings(method=method, n_features=300)  # type: ignore[arg-type]
    query = _photo(data_dir, _QUERY)
    q = extract_features(query, settings)
    same = extract_features(Image.open(_same_photo_again(query, tmp_path)), settings)
    fruit = extract_features(_photo(data_dir, _FRUIT[1]), settings)
    assert 0 < len(q) <= 300 and q.points.shape == (len(q), 2)
    assert q.descriptors.dtype == np.uint8 and q.descriptors.shape[1] == (
        32 if method == "orb" else 128
    )
    assert count_inliers(q, same) >= 40
    assert count_inliers(q, fruit) < 15
    # Features of different methods never match.
    other = extract_features(
        query, LocalFeatureSettings(method="sift" if method == "orb" else "orb")
    )
    assert count_inliers(q, other) == 0


def test_feature_cache_round_trips(data_dir: Path, tmp_path: Path) -> None:
    from lookalike.pipeline.decode import load_image

    settings = LocalFeatureSettings(n_features=200)
    path = tmp_path / "features.npz"
    photos = [str(data_dir / p) for p in (_QUERY, *_FRUIT)]
    cache = FeatureCache(path, settings, loader=lambda p: load_image(p).image)
    first = [cache.get(p) for p in photos]
    cache.save()
    again = FeatureCache(path, settings)
    assert len(again) == 3
    for p, f in zip(photos, first, strict=True):
        g = again.get(p)
        assert g is not None and np.array_equal(g.points, f.points)
        assert np.array_equal(g.descriptors, f.descriptors)
    assert again.get("not-cached.jpg") is None
    # Features of other settings are never mixed in.
    assert len(FeatureCache(path, LocalFeatureSettings(n_features=100))) == 0


def test_empty_image_has_no_features_and_matches_nothing() -> None:
    blank = extract_features(Image.new("RGB", (64, 64), "white"))
    assert len(blank) == 0
    assert count_inliers(blank, blank) == 0


def test_tta_images_and_embedding() -> None:
    image = Image.new("RGB", (100, 80))
    assert [i.size for i in tta_images(image, "none")] == [(100, 80)]
    assert [i.size for i in tta_images(image, "flip+crops")] == [
        (100, 80),
        (80, 64),
        (100, 80),
        (80, 64),
    ]
    with pytest.raises(ValueError):
        tta_images(image, "rotate")  # type: ignore[arg-type]

    calls = []

    def embed(images: list[Image.Image]) -> np.ndarray:
        calls.append(len(images))
        return np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)[: len(images)]

    out = tta_embed(embed, image, "flip")
    assert calls == [2]
    assert out.shape == (1, 2) and np.allclose(out, [[np.sqrt(0.5), np.sqrt(0.5)]])


def test_alpha_query_expansion() -> None:
    q = np.array([1.0, 0.0], dtype=np.float32)
    neighbours = np.array([[0.0, 1.0], [0.0, -1.0]], dtype=np.float32)
    # sim 1 neighbour pulls fully, a negative similarity is ignored.
    out = expand_query(q, neighbours, [1.0, -0.5], alpha=3.0)
    assert np.allclose(out, [np.sqrt(0.5), np.sqrt(0.5)])
    assert np.isclose(np.linalg.norm(out), 1.0)
    # a large alpha all but ignores weak neighbours
    weak = expand_query(q, neighbours[:1], [0.3], alpha=10.0)
    assert weak[0] > 0.999
    assert expand_query(q[None, :], neighbours, [0.5, 0.5]).shape == (1, 2)
