"""Reading the packaging and test-time augmentation wired into the engine, with fakes: OCR runs at
indexing time only where the text gate fires (words stored with the views), the query is read only
when its candidates carry text, and the word match re-orders near-identical products."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.pipeline.embed import l2_normalise
from lookalike.pipeline.ocr import OcrResult, TextGate, normalise_tokens
from lookalike.store.base import where
from tests.fakes import TinyEmbedder, noisy_copy, photo

WORDS = {64: "Alpha Oat Milk", 68: "Beta Orange Juice", 72: "Gamma Soy Yoghurt"}
"""The fake OCR reads a photo's words from its width: p0's photos are 64 px wide, p1's 68, p2's 72."""


class FakeReader:
    """Stands in for `pipeline.ocr.TextReader`: text on 64 / 68 px wide photos, none elsewhere."""

    def __init__(self) -> None:
        self.gated = 0
        self.reads = 0

    def read(self, image: Image.Image) -> OcrResult:
        self.reads += 1
        text = WORDS.get(image.width, "")
        return OcrResult(text, normalise_tokens(text), (), 1.0)

    def read_if_text(self, image: Image.Image) -> tuple[TextGate, OcrResult | None]:
        self.gated += 1
        has = image.width in WORDS
        return TextGate(has, 0.1 if has else 0.0, int(has), 1.0), self.read(image) if has else None


def _catalogue(root: Path) -> Path:
    rows = []
    # p0-p2: one carton design (same pattern), different print; p3-p5: products without text.
    for i, (seed, width) in enumerate([(1, 64), (1, 68), (1, 72), (2, 60), (3, 60), (4, 60)]):
        images = []
        for j in range(3):
            first = photo(root / "img" / f"p{i}_base.jpg", seed=seed, size=(width, 48))
            images.append(str(noisy_copy(first, root / "img" / f"p{i}_{j}.jpg", seed=10 * i + j)))
        rows.append({"id": f"p{i}", "images": images, "title": f"product {i}"})
    manifest = root / "catalogue.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _engine(tmp_path: Path, reader: FakeReader, **kw: object) -> Engine:
    kw.setdefault("tta", "none")  # the fake photos are flat patterns: a crop changes little
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", batch_size=4, **kw)  # type: ignore[arg-type]
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    engine._reader = reader  # type: ignore[assignment]  # a fake TextReader
    return engine


def test_ocr_at_indexing_only_where_the_gate_fires(tmp_path: Path) -> None:
    reader = FakeReader()
    with _engine(tmp_path, reader, ocr=True) as engine:
        engine.index(_catalogue(tmp_path))
        assert reader.gated == 18 and reader.reads == 9  # 18 photos gated, the 9 with text read
        words = {
            r.payload["image"]: r.payload["ocr_words"]
            for r in engine.store.scroll(where("kind", "view"))
        }
        assert sorted(set(map(tuple, words.values()))) == [
            (),
            ("alpha", "oat", "milk"),
            ("beta", "orange", "juice"),
            ("gamma", "soy", "yoghurt"),
        ]
        index = engine.text_index()
        assert index is not None
        assert index.has_text("p0") and index.has_text("p1") and not index.has_text("p3")


def test_query_text_reorders_near_identical_products(tmp_path: Path) -> None:
    reader = FakeReader()
    manifest = _catalogue(tmp_path)
    # A photo of p1 (68 px wide, "Beta Orange Juice") whose image is closest to p0's photos.
    base = Image.open(tmp_path / "img" / "p0_0.jpg").resize((68, 48))
    query = tmp_path / "q.jpg"
    base.save(query, quality=95)
    with _engine(tmp_path, reader, ocr=True, text_fusion=False) as engine:
        engine.index(manifest)
        image_only = engine.search(query, k=4)
        assert image_only.hits[0].item_id == "p0" and image_only.score == "cosine"
    reads = reader.reads
    with _engine(tmp_path, reader, ocr=True, text_weight=0.5) as engine:
        fused = engine.search(query, k=4)
        assert reader.reads == reads + 1  # the query was read: its candidates carry text
        assert fused.hits[0].item_id == "p1" and fused.score == "cosine+text"
        assert "ocr" in fused.timings_ms and len(fused.hits) == 4
        # a query whose candidates carry no text is not read
        other = noisy_copy(tmp_path / "img" / "p3_0.jpg", tmp_path / "q2.jpg", seed=3)
        assert engine.search(other, k=1).hits[0].item_id == "p3"
        assert reader.reads == reads + 1


def test_index_without_ocr_never_reads(tmp_path: Path) -> None:
    reader = FakeReader()
    with _engine(tmp_path, reader) as engine:
        engine.index(_catalogue(tmp_path))
        assert engine.text_index() is None
        result = engine.search(tmp_path / "img" / "p1_0.jpg", k=2)
        assert reader.gated == reader.reads == 0 and result.score == "cosine"


def test_tta_query_vector_is_the_mean_of_the_variants(tmp_path: Path) -> None:
    reader = FakeReader()
    with _engine(tmp_path, reader, tta="flip") as engine:
        engine.index(_catalogue(tmp_path))
        image = Image.open(tmp_path / "img" / "p3_1.jpg").convert("RGB")
        raw = TinyEmbedder().embed_images([image, ImageOps.mirror(image)])
        expected = l2_normalise(raw.mean(axis=0))
        assert np.allclose(engine.query_vector(image), expected, atol=1e-6)
        assert engine.search(tmp_path / "img" / "p3_1.jpg", k=1).hits[0].item_id == "p3"


def test_turning_ocr_on_reads_indexed_photos_without_reembedding(tmp_path: Path) -> None:
    reader = FakeReader()
    manifest = _catalogue(tmp_path)
    with _engine(tmp_path, reader) as engine:
        engine.index(manifest)
        assert engine.text_index() is None
    embedder = TinyEmbedder()
    settings = Settings(
        index=tmp_path / "index", cache_dir=tmp_path / "cache", batch_size=4, ocr=True, tta="none"
    )
    with Engine(settings.index, settings=settings, image_embedder=embedder) as engine:
        engine._reader = reader  # type: ignore[assignment]  # a fake TextReader
        summary = engine.index(manifest)
        assert embedder.calls == 0 and summary.images_unchanged == 18  # vectors kept
        assert reader.gated == 18 and reader.reads == 9
        assert (index := engine.text_index()) is not None and index.has_text("p1")
        engine.index(manifest)  # read once: nothing to do the second time
        assert reader.gated == 18 and embedder.calls == 0
