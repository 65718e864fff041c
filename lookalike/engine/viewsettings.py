"""How catalogue photos become views: the view settings a new index takes from the settings, and
those an existing index recorded (read as they were made)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lookalike.config import Settings
from lookalike.engine.manifest import IndexManifest
from lookalike.errors import IndexMismatchError

if TYPE_CHECKING:
    from pathlib import Path

    from lookalike.pipeline.views import ViewSettings


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
