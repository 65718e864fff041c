"""Which image embedder a catalogue `ModelSpec` asks for: an ONNX CNN (`lookalike.pipeline.embed`)
or a CLIP model (`lookalike.pipeline.clip`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.pipeline.embed import ImageEmbedder, OnnxImageEmbedder

if TYPE_CHECKING:
    from lookalike.models.runtime import Optimization


def load_embedder(
    spec: Any,
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
    from lookalike.errors import ModelError

    match spec.role:
        case "image-embedder":
            return OnnxImageEmbedder(
                spec.name,
                model_dir / spec.files[0].filename,
                spec.preprocess,
                output=spec.extra.get("output", "gem"),
                threads=threads,
                optimization=optimization,
                spinning=spinning,
            )
        case "clip":
            from lookalike.pipeline.clip import ClipEmbedder

            return ClipEmbedder(spec.name, model_dir, spec.preprocess, threads=threads)
    raise ModelError(f"{spec.name} is a {spec.role} model, not an image embedder")
