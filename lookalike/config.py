"""Settings: environment variables with the LOOKALIKE_ prefix, or a `.env` file; CLI flags override them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lookalike"


class Settings(BaseSettings):
    """Where things live and how hard to work. Every path is a setting, never a hard-coded folder."""

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", env_file=".env", extra="ignore")

    index: Path = Field(default=Path("lookalike-index"), description="Index folder.")
    models_mirror: Path | None = Field(
        default=None, description="A folder of model files tried before the cache and the network."
    )
    cache_dir: Path = Field(default_factory=_default_cache, description="Model cache folder.")
    embedder: str = Field(default="efficientnet-lite2", description="Image embedder model name.")
    threads: int = Field(default=0, description="ONNX Runtime intra-op threads; 0 = all cores.")
    ort_optimization: Literal["all", "extended", "basic", "disabled"] = Field(
        default="all", description="ONNX Runtime graph optimisation level of the embedder."
    )
    ort_spinning: bool = Field(
        default=False,
        description="Let idle ONNX Runtime threads busy-wait between operators. Off: measured "
        "faster indexing (the spinning threads steal the cores decoding needs), see "
        "docs/benchmarks.md.",
    )
    draft_size: int = Field(
        default=0,
        description="Large JPEGs are decoded at 1/2-1/8 scale, never below this many pixels a "
        "side; 0 = automatic (what the embedder needs for whole photos, 1024 with detection or "
        "isolation).",
    )
    batch_size: int = Field(
        default=8, description="Images per inference batch (4-8 is fastest per image on 2 cores)."
    )
    max_image_bytes: int = Field(default=50 * 1024 * 1024, description="Larger files are skipped.")
    max_image_pixels: int = Field(
        default=64_000_000, description="Larger images (decompression bombs) are skipped."
    )
    mode: Literal["views", "centroid"] = Field(
        default="centroid",
        description="Default aggregation: mean of an item's views measured better on grocery "
        "(docs/quality.md); `views` ranks by each item's best single view.",
    )
    detect: bool = Field(
        default=False,
        description="Detect objects (YOLOX-Nano) and index each relevant one as its own view.",
    )
    isolate: Literal["none", "salient", "garment"] = Field(
        default="none", description="Cut detected objects out of their background before embedding."
    )
    labels: str = Field(
        default="all",
        description="Which detected objects matter: a preset (see `lookalike.pipeline.detect`) "
        "or comma-separated COCO labels.",
    )
    garment: Literal["upper", "lower", "all"] = Field(
        default="upper", description="With isolate=garment: which garment of each person to keep."
    )
    isolate_background: tuple[int, int, int] = Field(
        default=(255, 255, 255),
        description="RGB colour cut-outs are flattened on before embedding (product shots: white).",
    )
    isolate_margin: float = Field(
        default=0.05, description="Space around a cut-out, as a share of its longer side."
    )
    attributes: bool = Field(
        default=True,
        description="Compute named colours and ImageNet classes of each photo at indexing time.",
    )
    text_fields: tuple[str, ...] = Field(
        default=("title", "name", "description", "category", "brand", "colour", "color", "tags"),
        description="Catalogue fields whose words text queries match (with the attributes).",
    )
    offline: bool = Field(default=False, description="Never touch the network for models.")
    store: str = Field(
        default="edge",
        description="Where a NEW index keeps its vectors (`--store` spec): edge (embedded, in the "
        "index folder), qdrant://HOST:6333[/COLLECTION], qdrants://..., qdrant+local://PATH, "
        "memory. An existing index uses the store its manifest records.",
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None,
        description="API key for a Qdrant server (else env QDRANT_API_KEY). Never logged: "
        "repr and errors show it as '**********'.",
    )
    hnsw_m: int = Field(
        default=32,
        description="Edge store: HNSW graph degree for new indexes (docs/parts/scale.md).",
    )
    hnsw_ef_construct: int = Field(
        default=200, description="Edge store: HNSW build beam width for new indexes."
    )
    hnsw_ef: int = Field(default=64, description="Edge store: HNSW search beam width per query.")
    quantization: Literal["none", "int8"] = Field(
        default="none",
        description="Edge store, new indexes: `int8` keeps scalar int8 codes in RAM and the float32 "
        "vectors on disk, rescoring the best candidates with them (4x less RAM).",
    )
    oversampling: float = Field(
        default=2.0, description="With int8: candidates rescored with float32 per result wanted."
    )
    optimize_threshold: int = Field(
        default=2000,
        description="Edge store: build the HNSW graph after an indexing run only once the index "
        "holds at least this many points (below it, exact search is as fast).",
    )
    tta: Literal["none", "flip", "crops", "flip+crops"] = Field(
        default="crops",
        description="Query test-time augmentation: the query vector is the mean of the photo's "
        "and its centre crop's (0.8) / mirror's vectors (one embedding per variant). `crops` was "
        "chosen on held-out catalogue photos; grocery val R@1 +2.4 points (docs/quality.md).",
    )
    ocr: bool = Field(
        default=False,
        description="Read the text on catalogue photos at indexing time (rapidocr), only where a "
        "cheap text detector finds text; the words are stored with the views (`ocr_words`).",
    )
    text_fusion: bool = Field(
        default=True,
        description="When the index holds OCR words and most of a photo query's first candidates "
        "carry text, read the query's text and fuse the word match with the image score.",
    )
    text_weight: float = Field(
        default=0.3,
        description="Weight of the text score (0-1) added to the cosine similarity (0.3 chosen on "
        "held-out catalogue photos with a tuned index; 0.1 without `lookalike tune`).",
    )
    tuned: bool = Field(
        default=True,
        description="Search with the index's learned projection (`lookalike tune`) when it has "
        "one: grocery val centroid R@1 0.740 -> 0.794 (docs/quality.md).",
    )
