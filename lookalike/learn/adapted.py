"""An index's adapted network (`lookalike tune --train`): opening it, and saying what it is.

The manifest's `network` record names the ONNX file inside the index folder and its sha256; the
engine embeds with it instead of the base model whenever the record is there (queries, indexing,
Ray workers), after checking the file is the one recorded. The base model's identity stays the
index's identity: the adapted network takes the same input and gives vectors of the same size.
No torch here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.engine.calibration import stale_note, views_stale
from lookalike.errors import IndexMismatchError

if TYPE_CHECKING:
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.models.catalog import ModelSpec
    from lookalike.pipeline.embed import OnnxImageEmbedder


def network_path(index_dir: Path, record: Mapping[str, Any]) -> Path:
    """Where the recorded network file is: `path` (absolute, given to Ray workers) or `file` in
    the index folder."""
    return Path(record["path"]) if record.get("path") else index_dir / str(record["file"])


def open_adapted(
    index_dir: Path, record: Mapping[str, Any], spec: ModelSpec, settings: Settings
) -> OnnxImageEmbedder:
    """The embedder of the index's adapted network, its file checked against the record's sha256
    (IndexMismatchError if absent or different: the index's vectors came from that file)."""
    from lookalike.models.store import sha256_file
    from lookalike.pipeline.embed import OnnxImageEmbedder

    path = network_path(index_dir, record)
    if not path.is_file():
        raise IndexMismatchError(
            f"the index at {index_dir} was re-embedded with its adapted network {path.name}, which "
            "is missing: restore the folder, or run `lookalike tune --reset` (back to the base network)"
        )
    digest = sha256_file(path)
    if digest != record.get("sha256"):
        raise IndexMismatchError(
            f"the adapted network {path} is not the one the index records "
            f"({digest[:12]} != {str(record.get('sha256'))[:12]}): run `lookalike tune --reset` "
            "or `lookalike tune --train` again"
        )
    return OnnxImageEmbedder(
        f"{spec.name}+adapted",
        path,
        spec.image_preprocess,
        output=str(spec.extra.get("output", "gem")),
        threads=settings.models.threads,
        optimization=settings.models.ort_optimization,
        spinning=settings.models.ort_spinning,
    )


@dataclass(frozen=True)
class NetworkStatus:
    """Whether an index's vectors come from an adapted network, and whether it is stale.

    stale: views were added, changed or removed since training (they are embedded with the adapted
    network, which was not trained on them: run `lookalike tune --train` again).
    """

    present: bool
    base: str | None = None
    sha256: str | None = None
    trained: str | None = None
    stale: bool = False
    trained_views: int = 0
    current_views: int = 0
    report: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        if not self.present:
            return "network: base (run `lookalike tune --train` to adapt it to the catalogue)"
        r = self.report
        line = (
            f"network: adapted from {self.base} on {self.trained} "
            f"({r.get('items')} items, {r.get('views')} views, {r.get('wild', 0)} pair photos; "
            f"held-out R@1 {r.get('base_recall', 0):.3f} -> {r.get('recall', 0):.3f}, "
            f"{r.get('best_epoch')} epochs), sha256 {str(self.sha256)[:12]}"
        )
        if r.get("instance"):
            line += ", instance views (one photo per item, no pairs)"
        if self.stale:
            line += stale_note(
                "trained", self.trained_views, self.current_views, "lookalike tune --train"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def network_status(engine: Engine, *, exact: bool = True) -> NetworkStatus:
    """What network `engine`'s index embeds with, and whether it is stale (exact: compare every
    view's content hash; else the number of views)."""
    record = getattr(engine.manifest, "network", None)
    if not record:
        return NetworkStatus(present=False)
    stale, count = views_stale(engine.store, record, exact)
    return NetworkStatus(
        present=True,
        base=record.get("base"),
        sha256=record.get("sha256"),
        trained=record.get("trained"),
        stale=stale,
        trained_views=int(record.get("view_count") or 0),
        current_views=count,
        report=dict(record.get("report") or {}),
    )
