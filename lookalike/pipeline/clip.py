"""CLIP-family models (OpenAI CLIP, FashionCLIP, ...) on ONNX Runtime: images and texts, one space.

A model directory holds the layout of the Hub's ONNX exports (e.g. Xenova/clip-vit-base-patch32,
Xenova/fashion-clip):

    vision_model.onnx   pixel_values (N, 3, S, S) float32 -> image_embeds (N, D)
    text_model.onnx     input_ids (N, L) int64 [, attention_mask (N, L) int64] -> text_embeds (N, D)
    tokenizer.json      a `tokenizers` tokenizer (normaliser, BPE, start/end post-processor)

Input and output names are read from the sessions, not assumed: exports differ in whether the
text tower takes an attention mask and in what they call their outputs.

`load_embedder` picks the image embedder a catalogue `ModelSpec` asks for: an ONNX CNN
(`lookalike.pipeline.embed`) or a CLIP model (here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image

from lookalike.errors import ModelError
from lookalike.models.catalog import ModelSpec, Preprocess
from lookalike.pipeline.embed import ImageEmbedder, OnnxImageEmbedder, l2_normalise, to_tensor
from lookalike.types import F32

if TYPE_CHECKING:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from lookalike.models.runtime import Optimization

T = TypeVar("T")

VISION_FILE = "vision_model.onnx"
TEXT_FILE = "text_model.onnx"
TOKENIZER_FILE = "tokenizer.json"
FILES = (VISION_FILE, TEXT_FILE, TOKENIZER_FILE)
"""What a CLIP model directory must hold."""

_PAD_TOKEN = "<|endoftext|>"
"""What CLIP pads with when the tokenizer file configures no padding: its end-of-text token (id
49407, the largest, in OpenAI's vocabulary). The text tower pools at the first end-of-text position,
found either as that id's first occurrence or, in older exports, as the argmax of the ids (which
is the same first 49407); under the causal mask nothing after it can change the vector."""


def _pick_output(
    session: ort.InferenceSession, preferred: str, path: Path
) -> tuple[str, int | None]:
    """The output named `preferred`, else the only 2-D output: (name, dim), dim being the last
    axis when it is a fixed number, else None (symbolic axis)."""
    outputs = session.get_outputs()
    named = [out for out in outputs if out.name == preferred]
    picked = named or [out for out in outputs if len(out.shape) == 2]
    if len(picked) != 1:
        raise ModelError(
            f"{path}: no output {preferred!r} and not exactly one 2-D output to use instead; "
            f"outputs are {[(o.name, o.shape) for o in outputs]}"
        )
    last = picked[0].shape[-1] if picked[0].shape else None
    return picked[0].name, last if isinstance(last, int) and last > 0 else None


_ORT_INT: dict[str, type] = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class ClipEmbedder:
    """Images and texts -> (N, dim) L2-normalised float32 vectors in one space (cosine = dot).

    Implements both `ImageEmbedder` and `TextEmbedder`. Construction opens both ONNX sessions and
    the tokenizer, and fails with `ModelError` when a file is missing or unusable, or when the two
    towers disagree on `dim`. Both `embed_*` methods are pure and thread-safe (ONNX Runtime
    sessions and `tokenizers` allow concurrent calls).

    name: the model's catalogue name, recorded in index manifests.
    model_dir: directory with `vision_model.onnx`, `text_model.onnx`, `tokenizer.json`.
    preprocess: image preprocessing, from the model's catalogue entry (OpenAI CLIP's for the
        CLIP family: shorter side to 224 bicubic, centre crop, OpenAI mean/std).
    threads: ONNX Runtime intra-op threads; 0 = one per core.
    max_length: token sequence length; texts are truncated (keeping the end token) and padded to
        exactly this, the text tower's position limit (77 for CLIP).
    batch_size: images or texts per inference call; bounds memory, does not change vectors.
    """

    def __init__(
        self,
        name: str,
        model_dir: Path,
        preprocess: Preprocess,
        *,
        threads: int = 0,
        max_length: int = 77,
        batch_size: int = 32,
    ) -> None:
        from lookalike.models.runtime import open_session

        model_dir = Path(model_dir)
        missing = [f for f in FILES if not (model_dir / f).is_file()]
        if missing:
            raise ModelError(
                f"{name}: {model_dir} lacks {', '.join(missing)}; a CLIP model directory holds "
                f"{', '.join(FILES)} (get them with `lookalike models pull {name}` or "
                "`lookalike models import DIR`)"
            )
        if max_length < 2:
            raise ValueError(
                f"max_length must leave room for the start and end tokens: {max_length}"
            )
        self.name = name
        self.preprocess = preprocess
        self.max_length = max_length
        self.batch_size = max(1, batch_size)

        self._vision = open_session(model_dir / VISION_FILE, threads=threads)
        self._pixels, self._image_out, image_dim = self._vision_io(model_dir / VISION_FILE)
        self._text = open_session(model_dir / TEXT_FILE, threads=threads)
        self._text_inputs, self._text_out, text_dim = self._text_io(model_dir / TEXT_FILE)
        self._tokenizer = self._load_tokenizer(model_dir / TOKENIZER_FILE)

        # A symbolic embedding axis is rare but legal in ONNX; one probe run settles it.
        image_dim = image_dim or self._embed_image_batch([Image.new("RGB", (8, 8))]).shape[1]
        text_dim = text_dim or self._embed_text_batch([""]).shape[1]
        if image_dim != text_dim:
            raise ModelError(
                f"{name}: image vectors have {image_dim} dimensions and text vectors {text_dim}; "
                "the towers come from different models"
            )
        self.dim = int(image_dim)

    # -- construction helpers ------------------------------------------------------------------

    def _vision_io(self, path: Path) -> tuple[str, str, int | None]:
        """(pixel input name, embedding output name, dim or None) of the vision session."""
        inputs = self._vision.get_inputs()
        named = [i for i in inputs if i.name == "pixel_values"]
        images = named or [i for i in inputs if len(i.shape) == 4]
        if len(images) != 1 or len(inputs) != 1:
            raise ModelError(
                f"{path}: expected one image input (N, 3, H, W); inputs are "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        # A fixed spatial size that differs from the preprocessing would fail on every image.
        h, w = images[0].shape[2:4]
        size = self.preprocess.size
        if any(isinstance(s, int) and s != size for s in (h, w)):
            raise ModelError(f"{path} takes {h} x {w} images but the preprocessing makes {size}")
        return images[0].name, *_pick_output(self._vision, "image_embeds", path)

    def _text_io(self, path: Path) -> tuple[dict[str, type], str, int | None]:
        """({input name: integer dtype}, embedding output name, dim or None) of the text session."""
        inputs = {i.name: i.type for i in self._text.get_inputs()}
        unknown = set(inputs) - {"input_ids", "attention_mask"}
        if "input_ids" not in inputs or unknown:
            raise ModelError(
                f"{path}: expected inputs input_ids [, attention_mask]; inputs are {sorted(inputs)}"
            )
        bad = {n: t for n, t in inputs.items() if t not in _ORT_INT}
        if bad:
            raise ModelError(f"{path}: text inputs must be int32 or int64, got {bad}")
        dtypes = {n: _ORT_INT[t] for n, t in inputs.items()}
        return dtypes, *_pick_output(self._text, "text_embeds", path)

    def _load_tokenizer(self, path: Path) -> Tokenizer:
        """The tokenizer from `path`, set to truncate and pad every text to `max_length` tokens.

        Casing, Unicode and whitespace normalisation stay the tokenizer file's business (CLIP's
        lower-cases); we only fix the length, so that a batch and one-by-one calls feed the model
        identical rows.
        """
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exceptions with a serde message
            raise ModelError(f"cannot load tokenizer {path}: {exc}") from exc
        configured = tok.padding
        if configured is not None:
            pad_id, pad_token = configured["pad_id"], configured["pad_token"]
        else:
            pad_id = tok.token_to_id(_PAD_TOKEN)
            if pad_id is None:
                raise ModelError(
                    f"{path} configures no padding and has no {_PAD_TOKEN} token to pad with"
                )
            pad_token = _PAD_TOKEN
        # Truncation reserves room for the post-processor's start/end tokens, so a long text
        # still ends with the end token the text tower pools at.
        tok.enable_truncation(max_length=self.max_length)
        tok.enable_padding(length=self.max_length, pad_id=pad_id, pad_token=pad_token)
        return tok

    # -- inference -----------------------------------------------------------------------------

    def _embed_image_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Raw (unnormalised) image embeddings of one batch."""
        pixels = to_tensor(images, self.preprocess)
        (out,) = self._vision.run([self._image_out], {self._pixels: pixels})
        return np.asarray(out)

    def _embed_text_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Raw (unnormalised) text embeddings of one batch."""
        encodings = self._tokenizer.encode_batch(list(texts))
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        feed: dict[str, np.ndarray] = {
            n: np.asarray(columns[n], dtype=t) for n, t in self._text_inputs.items()
        }
        (out,) = self._text.run([self._text_out], feed)
        return np.asarray(out)

    def _batched(self, embed_batch: Callable[[Sequence[T]], np.ndarray], items: Sequence[T]) -> F32:
        """Unit rows of `items` embedded `batch_size` at a time by `embed_batch`, in input order."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [
            embed_batch(items[i : i + self.batch_size])
            for i in range(0, len(items), self.batch_size)
        ]
        return l2_normalise(np.concatenate(chunks))

    def embed_images(self, images: Sequence[Image.Image]) -> F32:
        """PIL images (any mode and size) -> (N, dim) float32, unit rows, in input order.

        Each image is preprocessed on its own (`to_tensor`), so results do not depend on batching.
        """
        return self._batched(self._embed_image_batch, images)

    def embed_texts(self, texts: Sequence[str]) -> F32:
        """Strings -> (N, dim) float32, unit rows, in input order, comparable to image vectors.

        Texts longer than `max_length` tokens are truncated; the empty string is a valid query
        (start and end tokens only).
        """
        return self._batched(self._embed_text_batch, texts)


def load_embedder(
    spec: ModelSpec,
    model_dir: Path,
    *,
    threads: int = 0,
    optimization: Optimization = "all",
    spinning: bool = True,
) -> ImageEmbedder:
    """Build the image embedder a catalogue `ModelSpec` describes, from its files in `model_dir`.

    threads, optimization, spinning: ONNX Runtime settings (`lookalike.models.runtime.open_session`);
    CLIP models take only `threads`.
    """
    match spec.role, spec.preprocess:
        case "image-embedder", Preprocess() as preprocess:
            return OnnxImageEmbedder(
                spec.name,
                model_dir / spec.files[0].filename,
                preprocess,
                output=spec.extra.get("output", "gem"),
                threads=threads,
                optimization=optimization,
                spinning=spinning,
            )
        case "clip", Preprocess() as preprocess:
            return ClipEmbedder(spec.name, model_dir, preprocess, threads=threads)
    raise ModelError(f"{spec.name} is a {spec.role} model, not an image embedder")
