"""Detection in the engine, on a real photo with the real YOLOX-Nano: every kept object of a
catalogue photo is its own view, the query searches with its most relevant object."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.errors import IndexMismatchError
from lookalike.pipeline.views import ViewSettings
from tests.fakes import TinyEmbedder, photo

pytestmark = pytest.mark.e2e


def test_objects_become_views_and_queries_use_the_object(
    tmp_path: Path, model_settings: Settings
) -> None:
    from skimage import data

    coffee = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(coffee)
    rows = [{"id": "mug", "images": [str(coffee)]}] + [
        {"id": f"p{i}", "images": [str(photo(tmp_path / f"p{i}.jpg", seed=i))]} for i in range(3)
    ]
    manifest = tmp_path / "c.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # tta none: the query is the indexed photo itself, scored against its own view.
    settings = model_settings.replace(index=tmp_path / "index", tta="none")
    views = ViewSettings(detect=True, labels=frozenset({"cup"}))
    with Engine(
        settings.index, settings=settings, image_embedder=TinyEmbedder(), views=views
    ) as engine:
        summary = engine.index(manifest)
        assert summary.images_embedded == 4
        labels = sorted(
            r.payload["label"] for r in engine.store.scroll(fields=["label", "kind", "item_id"])
            if r.payload["kind"] == "view" and r.payload["item_id"] == "mug"
        )  # fmt: skip
        assert labels == ["cup", "image"]  # the cup, and the whole photo
        result = engine.search(coffee, k=2, mode="views")
        assert result.query_object is not None and result.query_object.label == "cup"
        assert [o.label for o in result.objects] == ["cup"]
        assert result.hits[0].item_id == "mug" and result.hits[0].score > 0.99
        chips = engine.search_objects(coffee, k=1)
        assert [c.query_object.label for c in chips if c.query_object] == ["cup"]
        boxed = engine.search(coffee, k=1, box=(0, 0, 200, 200))
        assert boxed.query_object is not None and boxed.query_object.label == "box"
        assert engine.item("mug")["fields"]["labels"] == ["cup"]  # type: ignore[index]
        assert engine.search_text("cup", k=1).hits[0].item_id == "mug"  # detector label as a word
        again = engine.index(manifest)
        assert again.images_embedded == 0 and engine.stats()["views"] == 5
    # The view settings are part of the index: asking for others is an error.
    with pytest.raises(IndexMismatchError):
        Engine(settings.index, settings=settings, views=ViewSettings(detect=False))
    assert Engine(settings.index, settings=settings).views == views  # recorded, not re-asked


def test_a_top_photographed_alone_keeps_its_whole_view_a_worn_one_is_cut_out(
    tmp_path: Path, data_dir: Path, model_settings: Settings
) -> None:
    from lookalike.pipeline.views import kept_objects, query_views, views_for_image

    settings = model_settings.replace(index=tmp_path / "index")
    views = ViewSettings(detect=True, isolate="garment", labels=frozenset({"person"}))
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder(), views=views)
    detector, isolator = engine.stages()
    assert detector is not None
    product = Image.open(data_dir / "fashion" / "products" / "viton_000220.jpg").convert("RGB")
    worn = Image.open(data_dir / "fashion" / "worn" / "viton_000220_0.jpg").convert("RGB")
    # YOLOX calls the top lying flat a person, but nobody wears it: no garment view.
    assert [d.label for d in kept_objects(detector.detect(product), product.size, views)][:1] == [
        "person"
    ]
    assert [v.label for v in views_for_image(product, detector, isolator, views)] == ["image"]
    assert [v.label for v in query_views(product, detector, isolator, views)] == ["image"]
    every = replace(views, min_skin=0.0)  # as indexes recorded before the setting
    assert [v.label for v in views_for_image(product, detector, isolator, every)] == [
        "person",
        "image",
    ]
    # The worn photo shows skin and hair: its top is cut out, for the index and the query.
    assert [v.label for v in views_for_image(worn, detector, isolator, views)] == [
        "person",
        "image",
    ]
    (query,) = query_views(worn, detector, isolator, views)
    assert query.label == "person" and query.image.size[1] < worn.size[1]
    # ... and where people read it (the page's boxes, the CLI), it is named after the garment
    assert [o.label for o in engine.detected_objects(worn)][:1] == ["top"]
    # A region the user chose is cut out even where nobody wears it.
    (boxed,) = query_views(product, detector, isolator, views, box=(0, 0, *product.size))
    assert boxed.label == "box"


def test_view_records_from_before_fit_small_keep_the_native_network_sides() -> None:
    from lookalike.engine.wiring import LEGACY_VIEWS, same_views, views_from_dict

    old = ViewSettings(detect=True, isolate="garment").to_dict()
    for key in LEGACY_VIEWS:
        del old[key]  # an index built before the settings existed
    assert views_from_dict(old).fit_small is False  # its crops were made at 416 / 512 px
    assert views_from_dict(old).min_skin == 0.0  # and every person box was cut out
    now = ViewSettings(detect=True, isolate="garment").to_dict()
    assert not same_views(now, old)  # asking today's settings of it is a mismatch
    assert not same_views(
        ViewSettings(detect=True, isolate="garment", fit_small=False).to_dict(), old
    )
    legacy = ViewSettings(detect=True, isolate="garment", **LEGACY_VIEWS)
    assert same_views(legacy.to_dict(), old)
    salient = ViewSettings(detect=True, isolate="salient", **LEGACY_VIEWS).to_dict()
    assert same_views(salient, {**salient, "min_skin": 0.5})  # garments only
    assert not same_views(salient, {**salient, "salient_fit_small": True})
    plain = ViewSettings(detect=False).to_dict()
    for key in LEGACY_VIEWS:
        del plain[key]
    assert same_views(ViewSettings(detect=False).to_dict(), plain)  # no network: irrelevant
