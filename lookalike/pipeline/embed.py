"""Embedders: images (and, for CLIP-family models, texts) -> L2-normalised float32 vectors.

The seam is two small Protocols. Pre-processing is data: each model carries a `Preprocess` value
(`lookalike.models.catalog`) and one function applies it (`to_tensor`); the ONNX Runtime session
that executes the model comes from `lookalike.models.runtime`, and normalisation happens here, once.
`tta_embed` embeds a query photo with test-time augmentation: the mean of itself, its mirror image
and/or centre crops (`search.tta`; docs/quality.md has what each mode measured on the grocery photos).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from lookalike.models.catalog import Preprocess
from lookalike.types import F32

if TYPE_CHECKING:
    import onnxruntime as ort

    from lookalike.models.runtime import Optimization


# --- image preprocessing ---------------------------------------------------------------------------

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def fit_to_input(image: Image.Image, pp: Preprocess) -> Image.Image:
    """The RGB image resized (and cropped or padded) to the model's input square, before
    normalisation: `to_tensor` is `normalise` of this. Kept public so training can hold inputs as
    8-bit pixels and normalise them exactly as the embedder does."""
    image = image.convert("RGB")
    resample = _RESAMPLE[pp.interpolation]
    w, h = image.size
    if pp.resize == "squash":
        return image.resize((pp.size, pp.size), resample)
    if pp.resize == "letterbox":
        scale = pp.size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (pp.size, pp.size), (pp.pad_value,) * 3)
        canvas.paste(image.resize((nw, nh), resample), ((pp.size - nw) // 2, (pp.size - nh) // 2))
        return canvas
    scale = pp.size / pp.crop_fraction / min(w, h)
    nw, nh = max(pp.size, round(w * scale)), max(pp.size, round(h * scale))
    image = image.resize((nw, nh), resample)
    left, top = (nw - pp.size) // 2, (nh - pp.size) // 2
    return image.crop((left, top, left + pp.size, top + pp.size))


def normalise(pixels: np.ndarray, pp: Preprocess) -> F32:
    """(N, size, size, 3) RGB uint8 pixels (`fit_to_input` outputs) -> (N, 3, size, size) float32,
    normalised as `pp` says."""
    mean = np.asarray(pp.mean, dtype=np.float32)
    std = np.asarray(pp.std, dtype=np.float32)
    arr = np.asarray(pixels, dtype=np.float32)
    if pp.channels == "BGR":
        arr = arr[..., ::-1]
    return np.ascontiguousarray(((arr - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)


def to_tensor(images: Sequence[Image.Image], pp: Preprocess) -> F32:
    """RGB PIL images -> (N, 3, size, size) float32 batch, normalised as `pp` says."""
    if not images:
        return np.empty((0, 3, pp.size, pp.size), dtype=np.float32)
    return normalise(np.stack([np.asarray(fit_to_input(image, pp)) for image in images]), pp)


# --- embedders ------------------------------------------------------------------------------------


def l2_normalise(x: np.ndarray) -> F32:
    """Rows of `x` scaled to unit length (float32). The only place vectors are normalised."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@runtime_checkable
class ImageEmbedder(Protocol):
    """Images -> (N, dim) L2-normalised float32 vectors."""

    name: str
    dim: int

    def embed_images(self, images: Sequence[Image.Image]) -> F32: ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Texts -> (N, dim) L2-normalised float32 vectors in the same space as the image vectors."""

    name: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> F32: ...


class OnnxImageEmbedder:
    """A CNN exported to ONNX with a pooled-feature output (e.g. EfficientNet-Lite with GeM).

    The ONNX graph has one input (N, 3, H, W) and named outputs; `output` picks the feature output
    (`gem` or `avg` for our EfficientNet exports). `logits`, when present, are the ImageNet scores.
    """

    def __init__(
        self,
        name: str,
        model_path: Path,
        preprocess: Preprocess,
        *,
        output: str = "gem",
        threads: int = 0,
        optimization: Optimization = "all",
        spinning: bool = True,
    ) -> None:
        from lookalike.models.runtime import open_session

        self.name = name
        self.preprocess = preprocess
        self.output = output
        # The session is public for callers that time the bare model (`lookalike.models.quantize`).
        self.session: ort.InferenceSession = open_session(
            model_path, threads=threads, optimization=optimization, spinning=spinning
        )
        self.input_name: str = self.session.get_inputs()[0].name  # the (N, 3, H, W) pixel input
        outputs = {o.name: o for o in self.session.get_outputs()}
        if output not in outputs:
            raise ValueError(f"{model_path} has no output {output!r}; it has {sorted(outputs)}")
        self.dim = int(outputs[output].shape[-1])
        self._has_logits = "logits" in outputs

    def prepare(self, image: Image.Image) -> F32:
        """The (3, size, size) float32 model input of one RGB image (resize, crop, normalise).

        Pure and thread-safe: indexing runs it on the decode threads, overlapped with inference.
        """
        return to_tensor([image], self.preprocess)[0]

    def embed_prepared(
        self, batch: F32, *, top: int = 0
    ) -> tuple[F32, list[list[tuple[int, float]]]]:
        """(N, dim) vectors of a (N, 3, size, size) batch of `prepare` outputs, and, when `top` > 0
        and the model has logits, each image's `top` ImageNet classes (index, probability) from the
        same forward pass (else one empty list per image)."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32), []
        if top <= 0 or not self._has_logits:
            (features,) = self.session.run([self.output], {self.input_name: batch})
            return l2_normalise(features), [[] for _ in range(len(batch))]
        features, logits = self.session.run([self.output, "logits"], {self.input_name: batch})
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        order = np.argsort(-probs, axis=1)[:, :top]
        tops = [[(int(c), float(p[c])) for c in row] for row, p in zip(order, probs, strict=True)]
        return l2_normalise(features), tops

    def embed_images(self, images: Sequence[Image.Image]) -> F32:
        return self.embed_prepared(to_tensor(images, self.preprocess))[0]

    def classify(
        self, images: Sequence[Image.Image], top: int = 5
    ) -> list[list[tuple[int, float]]]:
        """ImageNet top classes (index, probability) per image, for models exported with logits."""
        return self.embed_images_with_classes(images, top=top)[1]

    def embed_images_with_classes(
        self, images: Sequence[Image.Image], top: int = 5
    ) -> tuple[F32, list[list[tuple[int, float]]]]:
        """Vectors and ImageNet top classes from one forward pass (models exported with logits)."""
        if not self._has_logits:
            raise ValueError(f"{self.name} has no logits output")
        return self.embed_prepared(to_tensor(images, self.preprocess), top=top)


# --- test-time augmentation of a query photo -------------------------------------------------------

TtaMode = Literal["none", "flip", "crops", "flip+crops"]


def tta_images(image: Image.Image, mode: TtaMode = "flip", crop: float = 0.8) -> list[Image.Image]:
    """The query and its augmentations: "flip" adds the mirror image; "crops" adds a centre crop
    of `crop` of each side; "flip+crops" both (and the mirrored crop). The original comes first."""
    images = [image]
    if mode in ("crops", "flip+crops"):
        w, h = image.size
        dx, dy = round(w * (1 - crop) / 2), round(h * (1 - crop) / 2)
        images.append(image.crop((dx, dy, w - dx, h - dy)))
    if mode in ("flip", "flip+crops"):
        images += [ImageOps.mirror(i) for i in list(images)]
    if mode not in ("none", "flip", "crops", "flip+crops"):
        raise ValueError(f"unknown TTA mode {mode!r}; use none, flip, crops, flip+crops")
    return images


def tta_embed(
    embed: Callable[[Sequence[Image.Image]], F32],
    image: Image.Image,
    mode: TtaMode = "flip+crops",
) -> F32:
    """(1, D) L2-normalised mean of the embeddings of `tta_images(image, mode)` (one batch)."""
    return l2_normalise(embed(tta_images(image, mode)).mean(axis=0, keepdims=True))
