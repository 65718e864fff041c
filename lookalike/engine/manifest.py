"""The record, inside each index folder, of what built it (`lookalike.json`).

Vectors from different models (or the same model with other preprocessing) are not comparable:
opening an index with anything else must be an error, not silent garbage.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lookalike.engine.lock import write_json
from lookalike.errors import IndexDamagedError, IndexMismatchError

FORMAT = 1
FILENAME = "lookalike.json"


@dataclass(frozen=True)
class ModelRecord:
    name: str
    sha256: str
    role: str


@dataclass(frozen=True)
class IndexManifest:
    """What built an index. `embedder` vectors live under the named vector `image`.

    store: where the vectors live, as `lookalike.store.registry.store_record` writes it
    (`{"kind": "edge", "spec": "edge"}`, `{"kind": "qdrant", "spec": "qdrant://h:6333/shop", ...}`);
    empty for indexes from before stores were selectable (they are `edge`). Not part of `identity`:
    moving an index to another store (`lookalike migrate`) keeps its vectors comparable.
    """

    embedder: ModelRecord
    dim: int
    preprocess: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    projection: dict[str, Any] | None = None
    """The learned projection applied to this index (`lookalike tune`): `Projection.record()` plus
    what it was fitted on (`views`: signature of the views, `view_count`, `items`, `choice`).
    Not part of `identity`: the raw `image` vectors do not depend on it; the projected ones live
    under the named vector `tuned`."""
    visibility: int = 0
    """1: the views' `pending` flags hide half-written items (every indexing run clears them at
    its end). 0: an index written before boolean filters matched in the embedded store, whose
    runs never cleared the flags: they are ignored until a run clears them and sets 1."""

    fields: dict[str, str] = field(default_factory=dict)
    """The catalogue's fields and their kinds (`lookalike.store.filter_check`: text, number, bool,
    list, object, mixed), as indexing runs saw them: what filters may name. Empty for indexes from
    before it was recorded (then read from the items' payloads)."""
    calibration: dict[str, Any] | None = None
    """Match levels from the index's own photos (`lookalike.engine.calibration`): `spaces`
    (space -> mode -> `Levels.record()`) and the views signature and projection they were computed
    for. Not part of `identity`."""

    network: dict[str, Any] | None = None
    """The adapted network the index was re-embedded with (`lookalike tune --train`): its file in
    the index folder, sha256, base model, when and on what it was trained (`lookalike.learn`).
    Not part of `identity`: it takes the base model's input and gives vectors of its size; the
    engine embeds with it instead of the base model whenever it is recorded."""

    def identity(self) -> dict[str, Any]:
        """The parts that must match for two vectors to be comparable."""
        return {
            "format": self.format,
            "embedder": asdict(self.embedder),
            "dim": self.dim,
            "preprocess": self.preprocess,
            "options": self.options,
        }

    def check_compatible(self, wanted: IndexManifest, index_dir: Path) -> None:
        have, want = self.identity(), wanted.identity()
        if have == want:
            return
        diffs = [
            f"{k}: index has {have[k]!r}, asked for {want[k]!r}" for k in have if have[k] != want[k]
        ]
        raise IndexMismatchError(
            f"the index at {index_dir} was built differently; "
            + "; ".join(diffs)
            + ". Use the same models and options, or index into a new folder."
        )

    def save(self, index_dir: Path) -> None:
        index_dir.mkdir(parents=True, exist_ok=True)
        write_json(index_dir / FILENAME, asdict(self))

    @staticmethod
    def load(index_dir: Path) -> IndexManifest | None:
        path = index_dir / FILENAME
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError(f"a JSON {type(raw).__name__}, not an object")
        except (OSError, ValueError) as exc:  # truncated, garbled, unreadable
            raise IndexDamagedError(
                f"{path} is damaged ({exc}): `lookalike index CATALOGUE --index {index_dir} "
                "--repair` restores it from the last write's copy, or rebuilds the index"
            ) from None
        if raw.get("format") != FORMAT:
            raise IndexMismatchError(
                f"{path} has index format {raw.get('format')}, this lookalike reads {FORMAT}"
            )
        try:
            raw["embedder"] = ModelRecord(**raw["embedder"])
            return IndexManifest(**raw)
        except (KeyError, TypeError) as exc:
            raise IndexDamagedError(
                f"{path} is damaged (bad record: {exc}): `lookalike index CATALOGUE --index "
                f"{index_dir} --repair` restores it from the last write's copy"
            ) from None
