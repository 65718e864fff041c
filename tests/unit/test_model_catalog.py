"""The model catalogue is data: check it is complete and that preprocessing matches the models' docs."""

from __future__ import annotations

import re

import pytest

from lookalike.errors import ModelError
from lookalike.models import export
from lookalike.models.catalog import (
    CATALOGUE,
    CatalogueFile,
    ExportSource,
    HfSource,
    ModelFile,
    PypiMemberSource,
    UrlSource,
    ensemble_members,
    ensemble_name,
    get_spec,
)

HEX64 = re.compile(r"[0-9a-f]{64}")
ROLES = {"image-embedder", "clip", "detector", "segmenter"}


def every_file() -> list[tuple[str, ModelFile]]:
    """(model, file) for every catalogue file, export inputs included."""
    out = []
    for name, spec in CATALOGUE.items():
        for mf in spec.files:
            out.append((name, mf))
            for source in mf.sources:
                if isinstance(source, ExportSource):
                    out.extend(
                        (name, inp) for inp in source.inputs.values() if isinstance(inp, ModelFile)
                    )
    return out


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_spec_is_complete(name: str) -> None:
    spec = CATALOGUE[name]
    assert spec.name == name
    assert spec.role in ROLES
    assert spec.license and spec.origin and spec.description
    assert spec.files
    if spec.role in ("image-embedder", "clip"):
        assert spec.preprocess is not None and spec.dim


@pytest.mark.parametrize(("name", "mf"), every_file(), ids=lambda v: getattr(v, "filename", v))
def test_file_has_sources_and_a_well_formed_hash(name: str, mf: ModelFile) -> None:
    assert mf.sources, f"{name}/{mf.filename} has no source"
    if mf.sha256 is not None:
        assert HEX64.fullmatch(mf.sha256), mf.sha256
    if mf.size is not None:
        assert mf.size > 0
    for source in mf.sources:
        match source:
            case UrlSource(url=url):
                assert url.startswith("https://")
            case HfSource():
                assert source.repo.count("/") == 1 and source.revision and source.path
            case PypiMemberSource():
                assert source.package and source.version and source.member
            case ExportSource():
                assert source.recipe in export.RECIPES
                for inp in source.inputs.values():
                    if isinstance(inp, CatalogueFile):  # another model's file, verified as its own
                        assert inp.model != name
                        assert inp.filename in {f.filename for f in CATALOGUE[inp.model].files}
                    else:  # fetched from the network: must be pinned
                        assert inp.sha256 is not None


def test_hashes_documented_in_the_shared_readme() -> None:
    pinned = {mf.filename: mf.sha256 for _, mf in every_file()}
    assert pinned["yolox_nano.onnx"] == (
        "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
    )
    assert pinned["pan_clothes_skin_hair.onnx"] == (
        "324a22a1c2e3a433d6225d4c5c50f50912797a4d14b69f7d632eeb5c85346f36"
    )
    assert (
        pinned["u2netp.onnx"] == "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
    )
    assert pinned["efficientnet-lite2-9656183e.pth"] == (
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"
    )
    assert pinned["efficientnet-lite0-57934424.pth"] == (
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    )
    assert pinned["efficientnet-lite1-77cc7160.pth"] == (
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"
    )
    # u2netp comes from a wheel first, and the hash prefix in each .pth name matches its hash.
    u2netp = get_spec("u2netp").files[0]
    assert isinstance(u2netp.sources[0], PypiMemberSource) and u2netp.size == 4574861
    for filename, sha in pinned.items():
        if filename.endswith(".pth"):
            assert sha is not None and sha.startswith(filename.rsplit("-", 1)[1][:-4])


@pytest.mark.parametrize(
    ("name", "size"),
    [("efficientnet-lite0", 224), ("efficientnet-lite1", 240), ("efficientnet-lite2", 260)],
)
def test_efficientnet_lite_preprocessing(name: str, size: int) -> None:
    spec = get_spec(name)
    pp = spec.preprocess
    assert pp is not None
    # TF-Lite EfficientNet-Lite: (x - 127) / 128 on RGB, 0.875 centre crop at the native resolution.
    assert (pp.size, pp.resize, pp.crop_fraction, pp.channels) == (
        size,
        "centre_crop",
        0.875,
        "RGB",
    )
    assert pp.mean == (127, 127, 127) and pp.std == (128, 128, 128)
    assert spec.dim == 1280 and spec.extra["output"] == "gem" and spec.license == "Apache-2.0"
    (onnx,) = spec.files
    assert onnx.filename == f"{name}.onnx" and onnx.sha256 is None
    (source,) = onnx.sources
    assert isinstance(source, ExportSource) and source.recipe == name


def test_lite2_lite1_ensemble_is_exported_from_both_pinned_weights() -> None:
    spec, lite2, lite1 = (
        get_spec(n)
        for n in ("efficientnet-lite2+lite1", "efficientnet-lite2", "efficientnet-lite1")
    )
    # Lite2's input (the ensemble runs both networks on it); both feature vectors side by side.
    assert spec.preprocess == lite2.preprocess and spec.dim == 2 * 1280
    assert spec.role == "image-embedder" and spec.extra == {"output": "gem"}
    (onnx,) = spec.files
    (source,) = onnx.sources
    assert isinstance(source, ExportSource) and source.recipe == spec.name
    own_weights = [
        s.inputs["weights"]
        for m in (lite2, lite1)
        for s in m.files[0].sources
        if isinstance(s, ExportSource)
    ]
    assert source.inputs == {
        "weights": own_weights[0],
        "weights_efficientnet-lite1": own_weights[1],
    }


def test_ensemble_members_invert_the_name_and_say_what_tune_train_adapts() -> None:
    from lookalike.learn.net import members

    pair = ("efficientnet-lite2", "efficientnet-lite1")
    assert ensemble_members(ensemble_name(pair)) == pair
    assert ensemble_members("efficientnet-lite2") == ("efficientnet-lite2",)
    assert members("efficientnet-lite2+lite1") == pair  # Lite2 trains, Lite1 stays frozen
    with pytest.raises(ModelError, match="clip-vit-b32"):
        members("clip-vit-b32")
    with pytest.raises(ModelError, match="int8"):
        members("efficientnet-lite2-int8")


@pytest.mark.parametrize("name", ["clip-vit-b32", "fashion-clip"])
def test_clip_preprocessing_and_files(name: str) -> None:
    spec = get_spec(name)
    pp = spec.preprocess
    assert pp is not None
    # OpenAI CLIP: bicubic resize of the shorter side to 224, 224 centre crop, its mean/std in 0-1.
    assert (pp.size, pp.resize, pp.crop_fraction, pp.interpolation) == (
        224,
        "centre_crop",
        1.0,
        "bicubic",
    )
    assert [m / 255 for m in pp.mean] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert [s / 255 for s in pp.std] == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert spec.role == "clip" and spec.dim == 512
    assert [f.filename for f in spec.files] == [
        "vision_model.onnx",
        "text_model.onnx",
        "tokenizer.json",
    ]
    assert all(isinstance(f.sources[0], HfSource) for f in spec.files)


def test_get_spec_lists_the_valid_names() -> None:
    with pytest.raises(ModelError) as info:
        get_spec("no-such-model")
    for name in CATALOGUE:
        assert name in str(info.value)


def test_int8_embedder_is_made_from_the_float_export() -> None:
    float_spec, spec = get_spec("efficientnet-lite2"), get_spec("efficientnet-lite2-int8")
    assert spec.role == "image-embedder" and spec.dim == float_spec.dim
    assert spec.preprocess == float_spec.preprocess and spec.extra == float_spec.extra
    (onnx,) = spec.files
    assert onnx.filename == "efficientnet-lite2-int8.onnx" and onnx.sha256 is None
    (source,) = onnx.sources
    assert isinstance(source, ExportSource) and source.recipe in export.RECIPES
    assert source.inputs == {
        "float": CatalogueFile("efficientnet-lite2", "efficientnet-lite2.onnx")
    }
