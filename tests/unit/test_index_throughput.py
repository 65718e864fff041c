"""Indexing throughput changes: runtime settings, automatic JPEG draft size, inputs prepared on the
decode threads, and the int8 embedder made through the model store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.errors import ModelError
from lookalike.models.catalog import Preprocess
from lookalike.models.runtime import open_session
from tests.fakes import TinyEmbedder


class PreparingEmbedder(TinyEmbedder):
    """TinyEmbedder with a `preprocess` (as the ONNX embedders have) for the draft-size rule."""

    preprocess = Preprocess(size=260, resize="centre_crop", crop_fraction=0.875)


def _engine(tmp_path: Path, **settings: object) -> Engine:
    return Engine(
        tmp_path / "index",
        settings=Settings(index=tmp_path / "index", **settings),  # type: ignore[arg-type]
        image_embedder=PreparingEmbedder(),
    )


def test_draft_size_follows_the_embedder_for_whole_photos(tmp_path: Path) -> None:
    # 260 / 0.875 = 297.1: the shorter side the centre crop resizes to, rounded up.
    assert _engine(tmp_path).views.detect is False
    assert _engine(tmp_path).decode_limits().draft_size == 298


def test_draft_size_keeps_detail_for_detection_and_when_set(tmp_path: Path) -> None:
    assert _engine(tmp_path, detect=True).decode_limits().draft_size == 1024
    assert _engine(tmp_path, draft_size=640).decode_limits().draft_size == 640
    limits = _engine(tmp_path, max_image_bytes=1234, max_image_pixels=5678).decode_limits()
    assert (limits.max_bytes, limits.max_pixels) == (1234, 5678)


def test_large_jpeg_is_decoded_at_reduced_size(tmp_path: Path) -> None:
    from lookalike.engine.records import Task
    from lookalike.types import Item

    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (2400, 3200, 3), dtype=np.uint8)).save(path)
    engine = _engine(tmp_path)
    loaded = engine.pipeline.load(
        Task(Item("a", (str(path),)), str(path)), {}, engine.decode_limits()
    )
    assert loaded.image is not None and loaded.skipped is None
    # 1/4 scale keeps both sides >= 298 (1/8 would give 300 x 400: also >= 298, so Pillow may pick
    # it); never the full 3200 x 2400.
    assert min(loaded.image.size) >= 298 and max(loaded.image.size) <= 800


def test_runtime_settings_reach_the_session(tmp_path: Path, lite2_dir: Path) -> None:
    model = lite2_dir / "efficientnet-lite2.onnx"
    session = open_session(model, threads=1, optimization="basic", spinning=False)
    assert session.get_inputs()[0].name == "pixels"
    with pytest.raises(ModelError, match="unknown graph optimisation"):
        open_session(model, optimization="fastest")  # type: ignore[arg-type]


@pytest.mark.e2e
def test_prepared_batches_embed_like_images(lite2_dir: Path, data_dir: Path) -> None:
    """Inputs made on the decode threads (`prepare`) give the vectors `embed_images` gives."""
    from lookalike.models.catalog import get_spec
    from lookalike.pipeline.clip import load_embedder
    from lookalike.pipeline.decode import load_image

    spec = get_spec("efficientnet-lite2")
    embedder = load_embedder(spec, lite2_dir, spinning=False)
    photos = sorted((data_dir / "grocery" / "train" / "Fruit" / "Banana").rglob("*.jpg"))[:5]
    images = [load_image(str(p)).image for p in photos]
    direct = embedder.embed_images(images)
    prepared, tops = embedder.embed_prepared(np.stack([embedder.prepare(i) for i in images]), top=3)
    np.testing.assert_allclose(prepared, direct, atol=1e-6)
    assert [len(t) for t in tops] == [3] * 5


@pytest.mark.e2e
def test_int8_embedder_from_the_model_store(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`efficientnet-lite2-int8` is made by its export recipe (calibrated on grocery catalogue
    photos), cached with a recorded sha256, and indexes photos close to the float model."""
    from lookalike.models.catalog import get_spec
    from lookalike.models.store import ModelStore

    monkeypatch.setenv("LOOKALIKE_SAMPLE_DATA", str(data_dir / "grocery"))
    settings = Settings()
    store = ModelStore(settings.models.cache_dir, mirror=settings.models.models_mirror)
    folder = store.path("efficientnet-lite2-int8")
    assert (folder / "efficientnet-lite2-int8.onnx").is_file()
    status = store.status("efficientnet-lite2-int8")
    assert status["complete"], status  # verified against its recorded sha256
    photos = sorted((data_dir / "grocery" / "train" / "Packages" / "Milk").rglob("*.jpg"))[:6]
    catalogue = tmp_path / "cat.jsonl"
    catalogue.write_text(
        "".join(json.dumps({"id": str(i), "images": [str(p)]}) + "\n" for i, p in enumerate(photos))
    )
    vectors = {}
    for name in ("efficientnet-lite2", "efficientnet-lite2-int8"):
        with Engine(tmp_path / name, settings=Settings(index=tmp_path / name), embedder=name) as e:
            e.index(catalogue)
            assert e.manifest is not None and e.manifest.embedder.name == name
            vectors[name] = np.stack(
                [e.store.retrieve([pid], with_vectors=True)[0].vectors["image"] for pid in _ids(e)]
            )
    cosines = np.sum(vectors["efficientnet-lite2"] * vectors["efficientnet-lite2-int8"], axis=1)
    assert get_spec("efficientnet-lite2-int8").dim == vectors["efficientnet-lite2-int8"].shape[1]
    assert cosines.min() > 0.9, cosines


def _ids(engine: Engine) -> list[str]:
    from lookalike.store.base import where

    return sorted(r.id for r in engine.store.scroll(where("kind", "view")))
