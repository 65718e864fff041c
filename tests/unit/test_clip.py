"""ClipEmbedder end to end: files on disk -> ONNX sessions -> preprocessing / tokenisation -> vectors.

The model is a tiny randomly initialised CLIP of the real architecture (tests/clip_fixture.py),
exported the way the Hub's ONNX CLIP exports are laid out. The torch model it came from is the
reference: the ONNX path must give the same vectors on the same inputs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from lookalike.errors import ModelError
from lookalike.models.catalog import Preprocess
from lookalike.pipeline.clip import ClipEmbedder
from lookalike.pipeline.embed import ImageEmbedder, TextEmbedder, to_tensor
from tests.clip_fixture import END, PROJECTION_DIM, START, build_tiny_clip, load_reference

# OpenAI CLIP's preprocessing, written out here so these tests do not depend on the catalogue;
# the last test checks the catalogue's entries against transformers' CLIP image processor.
CLIP_PREPROCESS = Preprocess(
    size=224,
    resize="centre_crop",
    crop_fraction=1.0,
    mean=(0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255),
    std=(0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255),
)

TEXTS = [
    "a photo of a red midi dress",
    "black leather ankle boots",
    "",
    "size 38 sandals for 49.99 — brand new!",
    " ".join(["a very long description of a striped linen shirt in navy and white"] * 12),
]


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    # Everything is built locally; make any accidental Hub access fail fast instead of hanging.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, offline: None) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def bare_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """The same model, exported without attention_mask and with generic output names."""
    return build_tiny_clip(
        tmp_path_factory.mktemp("tiny-clip-bare"),
        attention_mask=False,
        named_outputs=False,
        tokenizer_from=tiny_dir,
    )


@pytest.fixture(scope="module")
def clip(tiny_dir: Path) -> ClipEmbedder:
    return ClipEmbedder("tiny-clip", tiny_dir, CLIP_PREPROCESS, threads=1)


@pytest.fixture(scope="module")
def reference(tiny_dir: Path) -> torch.nn.Module:
    return load_reference(tiny_dir)


@pytest.fixture(scope="module")
def reference_tokenizer(tiny_dir: Path) -> Any:
    """transformers' own wrapper around the same tokenizer.json: an independent padding path."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(tiny_dir / "tokenizer.json"),
        bos_token=START,
        eos_token=END,
        pad_token=END,
    )


def _images() -> list[Image.Image]:
    """Deterministic photos-ish: different sizes, aspect ratios and modes."""
    rng = np.random.default_rng(7)
    out = []
    for w, h, mode in [(224, 224, "RGB"), (640, 480, "RGB"), (300, 500, "RGBA"), (97, 61, "L")]:
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        y, x = np.mgrid[0:h, 0:w]
        base = (x[..., None] * 255 // w + y[..., None] * 128 // h) % 256
        noise = rng.integers(0, 64, size=(h, w, channels))
        arr = ((base + noise) % 256).astype(np.uint8)
        out.append(Image.fromarray(arr[..., 0] if mode == "L" else arr, mode))
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_implements_both_protocols_with_equal_dims(clip: ClipEmbedder) -> None:
    assert isinstance(clip, ImageEmbedder)
    assert isinstance(clip, TextEmbedder)
    assert clip.dim == PROJECTION_DIM
    images, texts = clip.embed_images(_images()), clip.embed_texts(TEXTS)
    assert images.shape == (4, clip.dim) and texts.shape == (len(TEXTS), clip.dim)
    assert images.dtype == np.float32 and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert clip.embed_images([]).shape == (0, clip.dim)
    assert clip.embed_texts([]).shape == (0, clip.dim)


def test_image_vectors_match_torch(clip: ClipEmbedder, reference: torch.nn.Module) -> None:
    images = _images()
    pixels = torch.from_numpy(to_tensor(images, CLIP_PREPROCESS))
    with torch.no_grad():
        expected = reference.get_image_features(pixel_values=pixels).pooler_output.numpy()
    cos = _cosines(clip.embed_images(images), expected)
    assert cos.min() > 0.999, cos


def test_text_vectors_match_torch(
    clip: ClipEmbedder, reference: torch.nn.Module, reference_tokenizer: Any
) -> None:
    batch = reference_tokenizer(
        TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        expected = reference.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).pooler_output.numpy()
    cos = _cosines(clip.embed_texts(TEXTS), expected)
    assert cos.min() > 0.999, cos


def test_tokenisation_pads_truncates_and_keeps_end_token(
    clip: ClipEmbedder, reference_tokenizer: Any
) -> None:
    start, end = reference_tokenizer.convert_tokens_to_ids([START, END])
    encodings = clip._tokenizer.encode_batch(TEXTS)
    expected = reference_tokenizer(TEXTS, padding="max_length", max_length=77, truncation=True)
    assert [e.ids for e in encodings] == expected["input_ids"]
    for e in encodings:
        assert len(e.ids) == 77 and e.ids[0] == start
    short, long = encodings[0], encodings[-1]
    # The tower pools at the first end token: it must follow the words, then pad with end ids.
    n = sum(short.attention_mask)
    assert short.ids[n - 1] == end and set(short.ids[n:]) == {end}
    assert long.ids[-1] == end and sum(long.attention_mask) == 77


def test_texts_are_normalised_by_the_tokenizer(clip: ClipEmbedder) -> None:
    a, b = clip.embed_texts(["a photo of a red midi dress", "A Photo  of a RED\tmidi dress"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_different_texts_give_different_vectors(clip: ClipEmbedder) -> None:
    vectors = clip.embed_texts(TEXTS)
    sims = vectors @ vectors.T
    off_diagonal = sims[~np.eye(len(TEXTS), dtype=bool)]
    assert off_diagonal.max() < 0.999


def test_batching_gives_the_same_vectors_as_one_by_one(tiny_dir: Path) -> None:
    # batch_size=3 makes 5 texts / 4 images run as uneven chunks.
    clip = ClipEmbedder("tiny-clip", tiny_dir, CLIP_PREPROCESS, threads=1, batch_size=3)
    images = _images()
    together = clip.embed_images(images)
    alone = np.concatenate([clip.embed_images([im]) for im in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    together = clip.embed_texts(TEXTS)
    alone = np.concatenate([clip.embed_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_export_without_attention_mask_or_output_names(clip: ClipEmbedder, bare_dir: Path) -> None:
    bare = ClipEmbedder("tiny-clip", bare_dir, CLIP_PREPROCESS, threads=1)
    assert bare.dim == clip.dim
    # Same weights; the causal mask already hides padding, so dropping the mask changes nothing.
    np.testing.assert_allclose(bare.embed_texts(TEXTS), clip.embed_texts(TEXTS), atol=1e-5)
    np.testing.assert_allclose(
        bare.embed_images(_images()), clip.embed_images(_images()), atol=1e-5
    )


@pytest.mark.parametrize("missing", ["vision_model.onnx", "text_model.onnx", "tokenizer.json"])
def test_missing_file_is_a_model_error(tiny_dir: Path, tmp_path: Path, missing: str) -> None:
    for f in ("vision_model.onnx", "text_model.onnx", "tokenizer.json"):
        if f != missing:
            shutil.copy(tiny_dir / f, tmp_path / f)
    with pytest.raises(ModelError, match=missing.replace(".", r"\.")) as err:
        ClipEmbedder("fashion-clip", tmp_path, CLIP_PREPROCESS)
    assert "lookalike models pull fashion-clip" in str(err.value)


def test_corrupt_tokenizer_is_a_model_error(tiny_dir: Path, tmp_path: Path) -> None:
    for f in ("vision_model.onnx", "text_model.onnx"):
        shutil.copy(tiny_dir / f, tmp_path / f)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="tokenizer"):
        ClipEmbedder("tiny-clip", tmp_path, CLIP_PREPROCESS)


def test_towers_of_different_width_are_a_model_error(tiny_dir: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # A stand-in text tower: embedding lookup + mean over tokens, 8-d instead of 16-d.
    table = numpy_helper.from_array(np.ones((602, 8), dtype=np.float32), "table")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
            helper.make_node("ReduceMean", ["tokens"], ["text_embeds"], axes=[1], keepdims=0),
        ],
        "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "l"])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["n", 8])],
        initializer=[table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what opset 17 needs; newer onnx defaults beyond what onnxruntime reads
    onnx.save(model, tmp_path / "text_model.onnx")
    for f in ("vision_model.onnx", "tokenizer.json"):
        shutil.copy(tiny_dir / f, tmp_path / f)
    with pytest.raises(ModelError, match="16 dimensions and text vectors 8"):
        ClipEmbedder("tiny-clip", tmp_path, CLIP_PREPROCESS)


@pytest.mark.parametrize("name", ["fashion-clip", "clip-vit-b32"])
def test_catalogue_preprocessing_matches_transformers_image_processor(name: str) -> None:
    from transformers import CLIPImageProcessorPil
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from lookalike.models.catalog import get_spec

    pp = get_spec(name).preprocess
    np.testing.assert_allclose(np.array(pp.mean) / 255, OPENAI_CLIP_MEAN, atol=1e-7)
    np.testing.assert_allclose(np.array(pp.std) / 255, OPENAI_CLIP_STD, atol=1e-7)
    # Both Xenova exports keep OpenAI's processor settings, which are transformers' defaults.
    processor = CLIPImageProcessorPil()
    images = _images()
    ours = to_tensor(images, pp)
    theirs = processor(images=[im.convert("RGB") for im in images], return_tensors="np")
    theirs = np.asarray(theirs["pixel_values"], dtype=np.float32)
    assert ours.shape == theirs.shape
    for image, a, b in zip(images, ours, theirs, strict=True):
        short, long = sorted(image.size)
        if (long * 224) % short == 0:
            # Resize, crop and normalisation agree exactly when the resized long side is whole.
            np.testing.assert_allclose(a, b, atol=1e-4)
        else:
            # Otherwise transformers truncates the long side and `to_tensor` rounds it: one pixel
            # of scale apart. The exact cases above are the ones that catch a wrong mean/std or
            # interpolation; this only bounds the rounding.
            assert np.abs(a - b).mean() < 0.25


def test_engine_fuses_the_text_tower_with_catalogue_words(tiny_dir: Path, tmp_path: Path) -> None:
    """With a CLIP-family index, text queries use the text tower and BM25, fused (RRF)."""
    import json

    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.models.catalog import CLIP_PREPROCESS
    from lookalike.pipeline.clip import ClipEmbedder
    from tests.fakes import photo

    rows = [
        {"id": f"p{i}", "images": [str(photo(tmp_path / f"p{i}.jpg", seed=i))], "title": t}
        for i, t in enumerate(["red dress", "blue shirt", "green hat"])
    ]
    manifest = tmp_path / "c.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache")
    clip = ClipEmbedder("tiny-clip", tiny_dir, CLIP_PREPROCESS)
    with Engine(settings.index, settings=settings, image_embedder=clip) as engine:
        engine.index(manifest)
        result = engine.search_text("blue shirt", k=3)
        assert result.score == "rrf" and len(result.hits) == 3  # the tower ranks every item
        assert result.hits[0].item_id == "p1"  # the words agree with one ranking: it wins
