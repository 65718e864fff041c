"""Settings: environment variables with the LOOKALIKE_ prefix, or a `.env` file; CLI flags override them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
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
