"""The records, inside each index folder, of what built it: `lookalike.json` for the catalogue's
views (`IndexManifest`), `faces.json` for the face index (`FaceManifest`).

Vectors from different models (or the same model with other preprocessing) are not comparable:
opening an index with anything else must be an error, not silent garbage. Both kinds of record
share one core (`Manifest`): the parts that must match (`identity`), a check that names what
differs, one atomic write, a read that tells a damaged file from one of another format, and where
the vectors live (`store`, chosen by `chosen_store`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from lookalike.engine.lock import write_json
from lookalike.errors import IndexDamagedError, IndexMismatchError

FORMAT = 1
FILENAME = "lookalike.json"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Manifest:
    """The core of every kind of index record (module docstring). A kind is a frozen dataclass
    with at least `format`, `store` and `created`, and says which of its fields make vectors
    comparable (`identity`)."""

    FILENAME: ClassVar[str]
    WHAT: ClassVar[str]
    """What the folder holds, in messages: "index", "face index"."""
    REPAIR: ClassVar[str]
    """What to do about a damaged record, in messages ({index_dir} is filled in)."""

    format: int
    store: dict[str, Any]
    __dataclass_fields__: ClassVar[dict[str, Any]]  # every kind is a dataclass (for `asdict`)

    def identity(self) -> dict[str, Any]:
        """The parts that must match for two vectors to be comparable."""
        raise NotImplementedError

    def check_compatible(self, wanted: Self, index_dir: Path) -> None:
        have, want = self.identity(), wanted.identity()
        if have == want:
            return
        diffs = [
            f"{k}: index has {have[k]!r}, asked for {want[k]!r}" for k in have if have[k] != want[k]
        ]
        raise IndexMismatchError(
            f"the {self.WHAT} at {index_dir} was built differently; "
            + "; ".join(diffs)
            + ". Use the same models and options, or index into a new folder."
        )

    def record(self) -> dict[str, Any]:
        """What the file holds."""
        return asdict(self)

    def save(self, index_dir: Path) -> None:
        index_dir.mkdir(parents=True, exist_ok=True)
        write_json(index_dir / self.FILENAME, self.record())

    @classmethod
    def read(cls, index_dir: Path) -> dict[str, Any] | None:
        """The record's JSON object, None when there is none; IndexDamagedError (truncated,
        garbled, unreadable), IndexMismatchError (another format)."""
        path = index_dir / cls.FILENAME
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError(f"a JSON {type(raw).__name__}, not an object")
        except (OSError, ValueError) as exc:  # truncated, garbled, unreadable
            repair = cls.REPAIR.format(index_dir=index_dir)
            raise IndexDamagedError(f"{path} is damaged ({exc}): {repair}") from None
        if raw.get("format") != FORMAT:
            raise IndexMismatchError(
                f"{path} has index format {raw.get('format')}, this lookalike reads {FORMAT}"
            )
        return raw

    @classmethod
    def damaged(cls, index_dir: Path, exc: Exception) -> IndexDamagedError:
        path = index_dir / cls.FILENAME
        repair = cls.REPAIR.format(index_dir=index_dir)
        return IndexDamagedError(f"{path} is damaged (bad record: {exc}): {repair}")


def chosen_store(
    recorded: dict[str, Any] | None,
    index_dir: Path,
    store_spec: str | None,
    *,
    default: str | None,
    suffix: str = "",
    what: str = "index",
    held: str = "vectors",
    otherwise: str,
) -> dict[str, Any]:
    """Where an index's vectors live (`registry.store_record`): as asked (`store_spec`), else as
    its manifest records (`recorded`), else `default`. IndexMismatchError if asked != recorded
    ("the {what} at DIR keeps its {held} in A, not B: leave out --store, or {otherwise}")."""
    from lookalike.store.registry import same_store, store_record

    if store_spec is None:
        return recorded or store_record(default, index_dir)
    asked = store_record(store_spec, index_dir, suffix=suffix)
    if recorded is not None and not same_store(asked, recorded):
        raise IndexMismatchError(
            f"the {what} at {index_dir} keeps its {held} in {recorded['spec']}, not "
            f"{asked['spec']}: leave out --store, or {otherwise}"
        )
    return asked


@dataclass(frozen=True)
class ModelRecord:
    name: str
    sha256: str
    role: str


@dataclass(frozen=True)
class IndexManifest(Manifest):
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
    created: str = field(default_factory=now)
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

    FILENAME = FILENAME
    WHAT = "index"
    REPAIR = (
        "`lookalike index CATALOGUE --index {index_dir} --repair` restores it from the last "
        "write's copy, or rebuilds the index"
    )

    def identity(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "embedder": asdict(self.embedder),
            "dim": self.dim,
            "preprocess": self.preprocess,
            "options": self.options,
        }

    @staticmethod
    def load(index_dir: Path) -> IndexManifest | None:
        raw = IndexManifest.read(index_dir)
        if raw is None:
            return None
        try:
            raw["embedder"] = ModelRecord(**raw["embedder"])
            return IndexManifest(**raw)
        except (KeyError, TypeError) as exc:
            raise IndexManifest.damaged(index_dir, exc) from None


@dataclass(frozen=True)
class FaceManifest(Manifest):
    """What built a face index (`lookalike.faces`): the face models (`EmbedderRecord`, or an
    injected embedder's name) and the descriptor size. store: as `IndexManifest.store`; left out
    of the file when it is the default, edge (indexes from before the setting are edge)."""

    embedder: dict[str, Any]
    dim: int
    store: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    created: str = field(default_factory=now)

    FILENAME = "faces.json"
    WHAT = "face index"
    REPAIR = "index the photos into a new folder"

    def identity(self) -> dict[str, Any]:
        return {"format": self.format, "embedder": self.embedder, "dim": self.dim}

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.store or self.store.get("kind") == "edge":
            out.pop("store")
        return out

    @staticmethod
    def load(index_dir: Path) -> FaceManifest | None:
        raw = FaceManifest.read(index_dir)
        if raw is None:
            return None
        try:
            return FaceManifest(**raw)
        except TypeError as exc:
            raise FaceManifest.damaged(index_dir, exc) from None
