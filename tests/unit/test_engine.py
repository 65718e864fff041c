"""Engine behaviour with a fake embedder on generated photos: incremental, idempotent, filtered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.errors import CatalogueError, IndexMismatchError, QueryError, StoreError
from tests.fakes import TinyEmbedder, noisy_copy, photo, small_catalogue


def _write(manifest: Path, rows: list[dict]) -> None:
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        index=tmp_path / "index", cache_dir=tmp_path / "cache", batch_size=4, tta="none"
    )


def _engine(settings: Settings, embedder: TinyEmbedder | None = None) -> Engine:
    return Engine(settings.index, settings=settings, image_embedder=embedder or TinyEmbedder())


def test_index_then_search_finds_the_product(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path)
    with _engine(settings) as engine:
        summary = engine.index(manifest)
        assert (summary.items, summary.images_embedded, summary.skipped) == (6, 18, ())
        stats = engine.stats()
        assert (stats["items"], stats["views"]) == (6, 18)
        query = noisy_copy(tmp_path / "img" / "p3_1.jpg", tmp_path / "q.jpg", seed=7)
        for mode in ("views", "centroid"):
            result = engine.search(query, k=4, mode=mode)
            ids = [h.item_id for h in result.hits]
            assert ids[0] == "p3" and len(ids) == 4 and len(set(ids)) == 4, mode
            assert result.hits[0].fields["title"] == "product 3"
            assert set(result.timings_ms) == {"decode", "embed", "search"}


def test_rerun_embeds_nothing_and_changes_nothing(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path)
    embedder = TinyEmbedder()
    with _engine(settings, embedder) as engine:
        engine.index(manifest)
        calls = embedder.calls
        again = engine.index(manifest)
    assert (again.images_embedded, again.images_unchanged) == (0, 18)
    assert embedder.calls == calls


def test_changed_image_is_reembedded_alone(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
        photo(tmp_path / "img" / "p2_0.jpg", seed=999)  # new content, same path
        summary = engine.index(manifest)
        assert (summary.images_embedded, summary.images_unchanged) == (1, 17)
        assert engine.stats()["views"] == 18
        hit = engine.search(tmp_path / "img" / "p2_0.jpg", k=1, mode="views").hits[0]
        assert hit.item_id == "p2" and hit.score == pytest.approx(1.0, abs=1e-4)


def test_removed_image_and_sync(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
        rows = _rows(manifest)
        rows[0]["images"] = rows[0]["images"][:1]  # p0 drops two photos
        del rows[5]  # p5 leaves the catalogue
        _write(manifest, rows)
        summary = engine.index(manifest)
        assert summary.items_removed == 0
        assert engine.stats()["views"] == 18 - 2  # p5 stays without --sync
        summary = engine.index(manifest, sync=True)
        assert summary.items_removed == 1
        stats = engine.stats()
        assert (stats["items"], stats["views"]) == (5, 13)
        assert all(h.item_id != "p5" for h in engine.search(tmp_path / "img/p5_0.jpg", k=5).hits)


def test_changed_fields_update_payload(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
        rows = _rows(manifest)
        rows[1]["price"] = 1.5
        _write(manifest, rows)
        summary = engine.index(manifest)
        assert summary.images_embedded == 0
        for mode in ("views", "centroid"):
            hit = engine.search(tmp_path / "img/p1_0.jpg", k=1, mode=mode).hits[0]
            assert hit.fields["price"] == 1.5, mode


def test_filters_apply_inside_search(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
        query = tmp_path / "img/p0_0.jpg"  # a Juice: the filter must exclude it
        for mode in ("views", "centroid"):
            hits = engine.search(
                query, k=10, where="category = 'Milk' and price < 40", mode=mode
            ).hits
            assert sorted(h.item_id for h in hits) == ["p1", "p3"], mode
        with pytest.raises(QueryError):
            engine.search(query, where="price <")


def test_bad_files_are_skipped_and_listed(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path, n_items=3)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not an image")
    good = photo(tmp_path / "img" / "trunc_src.jpg", seed=5, size=(256, 256)).read_bytes()
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 2])
    rows = _rows(manifest)
    rows[0]["images"] += [str(bad / n) for n in ("empty.jpg", "text.jpg", "truncated.jpg")]
    rows[1]["images"].append(str(bad / "missing.jpg"))
    _write(manifest, rows)
    with _engine(settings) as engine:
        summary = engine.index(manifest)
        assert summary.images_embedded == 9
        assert sorted(Path(s.source).name for s in summary.skipped) == [
            "empty.jpg",
            "missing.jpg",
            "text.jpg",
            "truncated.jpg",
        ]
        assert all(s.reason for s in summary.skipped)
        assert engine.stats()["views"] == 9


def test_counts_agree_with_stats_and_an_empty_catalogue_is_an_error(
    tmp_path: Path, settings: Settings
) -> None:
    manifest = small_catalogue(tmp_path, n_items=3)
    rows = _rows(manifest)
    (tmp_path / "text.jpg").write_text("not an image")
    rows.append({"id": "broken", "images": [str(tmp_path / "text.jpg")], "title": "broken"})
    _write(manifest, rows)
    with _engine(settings) as engine:
        summary = engine.index(manifest)
        # the item whose only photo is no photo is not in the index: not counted as indexed
        assert (summary.items, summary.items_in_catalogue) == (3, 4)
        assert summary.items_in_index == engine.stats()["items"] == 3
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    with (
        _engine(settings) as engine,
        pytest.raises(CatalogueError, match=r"no items in .*sub-folder"),
    ):
        engine.index(tmp_path / "empty")


def test_opening_with_another_embedder_is_an_error(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path, n_items=2)
    with _engine(settings) as engine:
        engine.index(manifest)

    class Other(TinyEmbedder):
        name = "other-embedder"

    with pytest.raises(IndexMismatchError):
        Engine(settings.index, settings=settings, embedder="efficientnet-lite0")
    with pytest.raises(IndexMismatchError), _engine(settings, Other()) as engine:
        engine.index(manifest)


def test_search_without_index_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(StoreError, match="lookalike index"):
        _engine(settings).stats()


def test_delete_items(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path, n_items=3)
    with _engine(settings) as engine:
        engine.index(manifest)
        engine.delete(["p1"])
        assert engine.stats()["items"] == 2
        assert all(h.item_id != "p1" for h in engine.search(tmp_path / "img/p1_0.jpg", k=3).hits)


def test_folder_catalogue_and_hostile_files(tmp_path: Path, settings: Settings) -> None:
    """A folder catalogue (one sub-folder per item) with a decompression bomb and an odd format."""
    from PIL import Image

    root = tmp_path / "shop"
    for i in range(3):
        for j in range(2):
            photo(root / f"sku{i}" / f"{j}.jpg", seed=i * 10 + j)
    # 20000 x 20000 palette PNG: a few KB on disk, 400 Mpx once decoded.
    Image.new("P", (20000, 20000)).save(root / "sku0" / "bomb.png", optimize=True)
    (root / "sku1" / "doc.png").write_bytes(b"%PDF-1.4 not a png")
    with _engine(settings) as engine:
        summary = engine.index(root)
        assert summary.items == 3 and summary.images_embedded == 6
        reasons = {Path(s.source).name: s.reason for s in summary.skipped}
        assert set(reasons) == {"bomb.png", "doc.png"}
        assert "pixels" in reasons["bomb.png"] or "bomb" in reasons["bomb.png"]
        hit = engine.search(root / "sku2" / "1.jpg", k=1).hits[0]
        assert hit.item_id == "sku2" and hit.fields["title"] == "sku2"


def test_box_exclude_item_facets_and_fields(tmp_path: Path, settings: Settings) -> None:
    from PIL import Image

    manifest = small_catalogue(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
        # A query photo with product p4's picture pasted in its right half: the box finds p4.
        scene = Image.new("RGB", (128, 48), (0, 0, 0))
        scene.paste(Image.open(tmp_path / "img/p4_0.jpg"), (64, 0))
        hits = engine.search(scene, k=1, box=(64, 0, 128, 48), mode="views").hits
        assert hits[0].item_id == "p4" and hits[0].score == pytest.approx(1.0, abs=1e-3)
        with pytest.raises(QueryError):
            engine.search(scene, box=(500, 500, 600, 600))
        excluded = engine.search(tmp_path / "img/p4_0.jpg", k=3, exclude=["p4"]).hits
        assert "p4" not in {h.item_id for h in excluded} and len(excluded) == 3
        item = engine.item("p2")
        assert item is not None and item["fields"]["title"] == "product 2"
        assert len(item["images"]) == 3 and engine.item("nope") is None
        assert engine.item_vector("p2").shape == (48,)
        assert engine.facets("category") == {"Juice": 3, "Milk": 3}
        assert engine.facets("category", where="price < 25") == {"Juice": 2, "Milk": 1}
        assert engine.fields() == {
            "title": "keyword",
            "category": "keyword",
            "price": "float",
            "colours": "keyword",
            "classes": "keyword",
            "labels": "keyword",
        }


def test_text_search_image_plus_text_and_similar(tmp_path: Path, settings: Settings) -> None:
    manifest = small_catalogue(tmp_path)
    rows = _rows(manifest)
    rows[3]["description"] = "a crunchy green apple"
    rows[4]["description"] = "semi-skimmed milk in a carton"
    _write(manifest, rows)
    with _engine(settings) as engine:
        engine.index(manifest)
        result = engine.search_text("green apples", k=3)
        assert result.score == "bm25" and result.hits[0].item_id == "p3"
        assert engine.search_text("carton", k=3, where="category = 'Juice'").hits[0].item_id == "p4"
        with pytest.raises(QueryError):
            engine.search_text("  ")
        # Photo of p0 + the words of p3: both rankings count, so both items lead the fusion.
        fused = engine.search(tmp_path / "img/p0_0.jpg", k=2, text="crunchy apple", mode="views")
        assert fused.score == "rrf" and {h.item_id for h in fused.hits} == {"p0", "p3"}
        similar = engine.similar("p2", k=3)
        assert "p2" not in {h.item_id for h in similar.hits} and len(similar.hits) == 3
        centroid = engine.item("p1")
        assert centroid is not None and centroid["fields"]["colours"]  # automatic attribute


def test_an_index_recorded_before_fit_small_still_opens_and_updates(
    tmp_path: Path, settings: Settings
) -> None:
    manifest = small_catalogue(tmp_path)
    with _engine(settings) as engine:
        engine.index(manifest)
    record = json.loads((settings.index / "lookalike.json").read_text())
    del record["options"]["views"]["fit_small"]  # as written before the setting existed
    (settings.index / "lookalike.json").write_text(json.dumps(record))
    query = noisy_copy(tmp_path / "img" / "p2_1.jpg", tmp_path / "q.jpg", seed=3)
    with _engine(settings) as engine:
        assert engine.views.fit_small is False
        assert engine.index(manifest).images_embedded == 0  # no mismatch, nothing redone
        assert engine.search(query, k=1).hits[0].item_id == "p2"


def test_one_detector_pass_per_photo_search(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search both chooses the view to embed and lists the photo's objects from one detection."""
    from lookalike.engine import wiring
    from lookalike.pipeline.detect import Detection
    from lookalike.types import Box

    calls: list[tuple[int, int]] = []

    class CountingDetector:
        name = "counting"

        def detect(self, image: object) -> list[Detection]:
            size = image.size  # type: ignore[attr-defined]  # a PIL image
            calls.append(size)
            w, h = size
            return [Detection(Box(w * 0.1, h * 0.1, w * 0.9, h * 0.9), "bottle", 0.9)]

    monkeypatch.setattr(wiring, "load_stages", lambda s, vs: (CountingDetector(), None))
    manifest = small_catalogue(tmp_path)
    with _engine(settings.replace(detect=True, labels="bottle")) as engine:
        engine.index(manifest)
        calls.clear()
        result = engine.search(tmp_path / "img" / "p3_1.jpg", k=2)
        assert len(calls) == 1
        assert result.query_object is not None and result.query_object.label == "bottle"
        assert [o.label for o in result.objects] == ["bottle"]
