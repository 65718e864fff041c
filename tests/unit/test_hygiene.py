"""Near-duplicates across items and per-item outliers, on generated photos with a fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.evaluation.hygiene import (
    near_duplicates,
    outliers,
    why_no_outliers,
    write_duplicates_page,
    write_outliers_page,
)
from tests.fakes import TinyEmbedder, noisy_copy, photo


def _index(tmp_path: Path) -> Engine:
    rows = []
    for i in range(5):
        images = [str(photo(tmp_path / f"p{i}_{j}.jpg", seed=i)) for j in range(3)]
        # three near-identical photos per item (same pattern, different noise) ...
        images = [
            str(noisy_copy(Path(p), tmp_path / f"n{i}_{j}.jpg", seed=j))
            for j, p in enumerate(images)
        ]
        rows.append({"id": f"p{i}", "images": images})
    # ... item p0's photo filed again under item dup (a duplicate across items) ...
    Image.open(tmp_path / "n0_0.jpg").resize((32, 24)).save(tmp_path / "dup.jpg", quality=60)
    rows.append({"id": "dup", "images": [str(tmp_path / "dup.jpg")]})
    # ... and a mislabelled photo: item p3 gets a photo that looks like nothing else of it.
    rows[3]["images"].append(str(photo(tmp_path / "odd.jpg", seed=777)))
    manifest = tmp_path / "c.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache")
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    engine.index(manifest)
    return engine


def test_duplicates_across_items_only(tmp_path: Path) -> None:
    with _index(tmp_path) as engine:
        groups = near_duplicates(engine.store, threshold=0.9)
        assert len(groups) == 1
        assert groups[0].items == ("dup", "p0")  # same-item look-alikes are not reported
        assert groups[0].min_similarity >= 0.9
        assert near_duplicates(engine.store, threshold=0.99999) == []
        page = write_duplicates_page(tmp_path / "dups" / "index.html", groups, 0.9)
        assert "dup" in page.read_text() and (tmp_path / "dups" / "thumbs").is_dir()


def test_outliers_find_the_mislabelled_photo(tmp_path: Path) -> None:
    with _index(tmp_path) as engine:
        found = outliers(engine.store, top=3)
        assert found[0].photo.image.endswith("odd.jpg") and found[0].photo.item_id == "p3"
        assert found[0].similarity < found[1].similarity
        page = write_outliers_page(tmp_path / "out" / "index.html", found, engine.store)
        assert "odd.jpg" in page.read_text()


def test_outliers_of_one_photo_items_say_why_there_are_none(tmp_path: Path) -> None:
    rows = [
        {"id": f"p{i}", "images": [str(photo(tmp_path / f"p{i}.jpg", seed=i))]} for i in range(4)
    ]
    manifest = tmp_path / "c.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache")
    with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine:
        engine.index(manifest)
        assert outliers(engine.store) == []
        why = why_no_outliers(engine.store)
        assert why is not None and "4 items, at most 1 photo each" in why
        page = write_outliers_page(tmp_path / "out" / "index.html", [], engine.store, note=why)
        assert "at most 1 photo each" in page.read_text()
    with _index(tmp_path / "many") as engine:
        assert why_no_outliers(engine.store) is None
