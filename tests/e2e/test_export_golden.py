"""The ONNX export of EfficientNet-Lite2 computes what the PyTorch model computes, on a real photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.models.store import ModelStore

pytestmark = pytest.mark.e2e

GRANNY_SMITH = 948  # ImageNet class index


def test_onnx_matches_torch_and_classifies_a_real_photo(
    lite2_dir: Path, data_dir: Path, model_settings: Settings
) -> None:
    import torch  # the export extra; missing it must fail this test, not skip it
    from efficientnet_lite_pytorch import EfficientNet

    from lookalike.models.catalog import get_spec
    from lookalike.pipeline.embed import OnnxImageEmbedder, to_tensor

    spec = get_spec("efficientnet-lite2")
    embedder = OnnxImageEmbedder(spec.name, lite2_dir / spec.files[0].filename, spec.preprocess)
    photos = sorted((data_dir / "grocery/train/Fruit/Apple/Granny-Smith").glob("*.jpg"))[:4]
    assert photos, "no Granny Smith photos in the grocery data"
    images = [Image.open(p).convert("RGB") for p in photos]

    from lookalike.engine import wiring

    store = wiring.model_store(model_settings)
    weights = store.export_input("efficientnet-lite2", "weights")  # the verified .pth
    model = EfficientNet.from_pretrained("efficientnet-lite2", weights_path=str(weights)).eval()
    batch = torch.from_numpy(to_tensor(images, spec.preprocess))
    with torch.no_grad():
        fmap = model.extract_features(batch)
        gem = fmap.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3).numpy()
        logits = model(batch).numpy()

    ours = embedder.embed_images(images)
    ref = gem / np.linalg.norm(gem, axis=1, keepdims=True)
    cos = (ours * ref).sum(axis=1)
    assert cos.min() > 0.999, cos

    top = embedder.classify(images, top=5)
    assert [t[0][0] for t in top].count(GRANNY_SMITH) >= 3, top
    assert all(int(np.argmax(row)) == t[0][0] for row, t in zip(logits, top, strict=True))


def test_lite2_lite1_ensemble_is_both_networks_side_by_side(
    lite2_dir: Path, model_store: ModelStore, data_dir: Path
) -> None:
    """The ensemble's vector is Lite2's and Lite1's (on the same pixels) each at weight 1/sqrt(2),
    and its classes are Lite2's."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from lookalike.models.catalog import get_spec
    from lookalike.pipeline.embed import OnnxImageEmbedder, to_tensor

    spec, lite2_spec = get_spec("efficientnet-lite2+lite1"), get_spec("efficientnet-lite2")
    folder = model_store.path(spec.name)
    ensemble = OnnxImageEmbedder(spec.name, folder / spec.files[0].filename, spec.preprocess)
    lite2 = OnnxImageEmbedder(
        lite2_spec.name, lite2_dir / lite2_spec.files[0].filename, lite2_spec.preprocess
    )
    photos = sorted((data_dir / "grocery/train/Packages/Milk").glob("*/*.jpg"))[:3]
    assert photos, "no milk photos in the grocery data"
    images = [Image.open(p).convert("RGB") for p in photos]

    both = ensemble.embed_images(images)
    assert both.shape == (3, 2560) and ensemble.dim == 2560
    half = np.sqrt(0.5)
    np.testing.assert_allclose(np.linalg.norm(both[:, :1280], axis=1), half, atol=1e-4)
    assert ((both[:, :1280] / half) * lite2.embed_images(images)).sum(axis=1).min() > 0.999

    weights = model_store.export_input(spec.name, "weights_efficientnet-lite1")
    lite1 = EfficientNet.from_pretrained("efficientnet-lite1", weights_path=str(weights)).eval()
    with torch.no_grad():
        fmap = lite1.extract_features(torch.from_numpy(to_tensor(images, spec.preprocess)))
        gem = fmap.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3).numpy()
    ref = gem / np.linalg.norm(gem, axis=1, keepdims=True)
    assert ((both[:, 1280:] / half) * ref).sum(axis=1).min() > 0.999
    # Lite1's half is not a copy of Lite2's: the two networks see the photo differently.
    assert ((both[:, :1280] * both[:, 1280:]).sum(axis=1) / 0.5).max() < 0.9
    classes = [[c for c, _ in top] for top in ensemble.classify(images, top=3)]
    assert classes == [[c for c, _ in top] for top in lite2.classify(images, top=3)]
