"""Is an index folder as its last write left it? The seal, the open-time check, `verify`, repair.

A damaged index must not answer: a zeroed block in a vector file changes result lists without a
word, a truncated file makes the store panic. So at the end of every successful write (`Engine`'s
write lock) the index is *sealed*: `lookalike.seal.json` records the size, modification time and
sha256 of each data file of the embedded shard (vectors, HNSW links, quantised codes, payload and
payload-index pages, id mappings) and a copy of `lookalike.json`. Qdrant Edge rewrites its small
bookkeeping files (trackers, flags, `segment.json`, the WAL) whenever a shard is opened, so those
are not sealed; nor are the id trackers' point versions, which the first open after a delete
rewrites (it applies the tracker journals the delete left); its data files only change when it
is written to, and every write is sealed.

- At open (`check`, cheap): every sealed file must exist with its size; a file whose modification
  time changed is hashed again and must have its digest. Cost: one `stat` per file, plus reading
  the files something wrote to since the seal. Damage that keeps size and time is left to `verify`.
- `verify` (`check(full=True)` + `vector_problems`): every sealed file hashed; every vector read
  back through the store must be finite and of unit length (the store normalises cosine vectors,
  so zeroed or garbled bytes show); every item's centroid must be the mean of its views.
- Repair (`lookalike index --repair`): `lookalike.json` is restored from the seal's copy; a damaged
  shard is moved to `shard.damaged/` and rebuilt from the catalogue by the indexing run.

While a write runs (or after one was killed) the seal says `writing` and nothing is compared: the
write-ahead log keeps the shard consistent and the next run finishes the job and seals it again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.engine.lock import write_json
from lookalike.errors import IndexDamagedError, StoreError

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.store.base import Store

SEAL_FILE = "lookalike.seal.json"
MANIFEST_FILE = "lookalike.json"
SHARD = "shard"
DAMAGED_SHARD = "shard.damaged"
_FORMAT = 1
_DATA_FILE = re.compile(
    r"segments/[^/]+/(?:"
    r"vector_storage-[^/]+/(?:matrix\.dat|deleted\.dat|quantized\.data|vectors/chunk_\d+\.mmap)"
    r"|vector_index-[^/]+/[^/]+\.bin"
    r"|payload_storage/page_\d+\.dat"
    r"|payload_index/[^/]+/page_\d+\.dat"
    r"|(?:mutable_)?id_tracker\.mappings"
    r")"
)
"""Qdrant Edge's data files, relative to the shard: written only by writes (see the docstring)."""
UNIT_TOLERANCE = 1e-3
"""How far from 1 a stored vector's length may be (float32 rounding is ~1e-7)."""
CENTROID_TOLERANCE = 1e-3
"""How far below 1 the cosine of a centroid and the mean of its views may be."""


@dataclass(frozen=True)
class Damage:
    """One damaged part of an index: `path` relative to the index folder (or `item ID`)."""

    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def data_files(shard: Path) -> Iterator[Path]:
    """The shard's sealed data files, sorted."""
    if not shard.is_dir():
        return
    for path in sorted(shard.rglob("*")):
        if path.is_file() and _DATA_FILE.fullmatch(path.relative_to(shard).as_posix()):
            yield path


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_seal(index_dir: Path) -> dict[str, Any] | None:
    """The seal; None when there is none (an index from before seals); IndexDamagedError when it
    cannot be read."""
    path = index_dir / SEAL_FILE
    if not path.exists():
        return None
    try:
        seal = json.loads(path.read_text())
        if not isinstance(seal, dict) or not isinstance(seal.get("files"), dict):
            raise ValueError("not a seal")
        return seal
    except (OSError, ValueError) as exc:
        raise IndexDamagedError(f"{path} is damaged ({exc}): {repair_hint(index_dir)}") from None


def begin_write(index_dir: Path) -> None:
    """Before a write: the seal says `writing` (the files are about to change). Keeps the file
    records so that `seal` re-hashes only the files that change."""
    try:
        seal = read_seal(index_dir) or {"files": {}}
    except IndexDamagedError:
        seal = {"files": {}}
    write_json(index_dir / SEAL_FILE, {**seal, "state": "writing", "format": _FORMAT}, indent=1)


def abandon_write(index_dir: Path) -> None:
    """After a write that failed: back to `sealed` when no data file changed (e.g. the run failed
    before writing), so that the open-time check keeps working; else the seal stays `writing`
    until a run succeeds."""
    try:
        sealed = read_seal(index_dir)
    except IndexDamagedError:
        return
    if sealed is None or "written" not in sealed:  # never sealed before
        return
    back = {**sealed, "state": "sealed"}
    write_json(index_dir / SEAL_FILE, back, indent=1)
    if check(index_dir):
        write_json(index_dir / SEAL_FILE, sealed, indent=1)


def seal(index_dir: Path) -> None:
    """After a successful write (store flushed): record every data file and `lookalike.json`."""
    try:
        previous = (read_seal(index_dir) or {}).get("files", {})
    except IndexDamagedError:
        previous = {}
    files: dict[str, dict[str, Any]] = {}
    for path in data_files(index_dir / SHARD):
        rel = path.relative_to(index_dir).as_posix()
        st = path.stat()
        old = previous.get(rel) or {}
        same = old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns
        digest = old["sha256"] if same and "sha256" in old else file_digest(path)
        files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    manifest = index_dir / MANIFEST_FILE
    write_json(
        index_dir / SEAL_FILE,
        {
            "format": _FORMAT,
            "state": "sealed",
            "written": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
            "manifest": manifest.read_text() if manifest.exists() else None,
        },
        indent=1,
    )


def check(index_dir: Path, *, full: bool = False) -> list[Damage]:
    """What differs from the seal. Cheap by default (sizes; digests of files whose time changed);
    `full`: every digest. Nothing when there is no seal or a write is under way."""
    return _compare(index_dir, full=full)[0]


def _compare(index_dir: Path, *, full: bool) -> tuple[list[Damage], dict[str, int]]:
    """(damage, files whose time changed but not their bytes: path -> their time now)."""
    sealed = read_seal(index_dir)
    if sealed is None or sealed.get("state") != "sealed":
        return [], {}
    damage: list[Damage] = []
    touched: dict[str, int] = {}
    records: Mapping[str, Mapping[str, Any]] = sealed["files"]
    for rel, rec in records.items():
        path = index_dir / rel
        try:
            st = path.stat()
        except OSError:
            damage.append(Damage(rel, "missing"))
            continue
        if st.st_size != rec.get("size"):
            what = "truncated" if st.st_size < rec.get("size", 0) else "grown"
            damage.append(Damage(rel, f"{what}: {st.st_size} bytes, written {rec.get('size')}"))
        elif full or st.st_mtime_ns != rec.get("mtime_ns"):
            if file_digest(path) != rec.get("sha256"):
                damage.append(Damage(rel, "its bytes changed since the last write"))
            elif st.st_mtime_ns != rec.get("mtime_ns"):
                touched[rel] = st.st_mtime_ns
    for path in data_files(index_dir / SHARD):
        rel = path.relative_to(index_dir).as_posix()
        if rel not in records:
            damage.append(Damage(rel, "appeared after the last write"))
    return damage, touched


def _refresh_times(index_dir: Path, touched: Mapping[str, int]) -> None:
    """Record the new times of files whose bytes did not change (an index copied without its
    times is otherwise hashed again at every open). Only when no writer holds the index (its
    lock taken without waiting), and never an error: a read-only folder just stays as it is."""
    from lookalike.engine.lock import folder_write_lock

    try:
        with folder_write_lock(index_dir, ".lock", ""):
            sealed = read_seal(index_dir)
            if sealed is None or sealed.get("state") != "sealed":
                return
            files = {
                rel: {**rec, "mtime_ns": touched.get(rel, rec.get("mtime_ns"))}
                for rel, rec in sealed["files"].items()
            }
            write_json(index_dir / SEAL_FILE, {**sealed, "files": files}, indent=1)
    except (OSError, StoreError):
        return


def repair_hint(index_dir: Path) -> str:
    return (
        f"rebuild it from the catalogue with `lookalike index CATALOGUE --index {index_dir} "
        f"--repair` (`lookalike verify --index {index_dir}` checks every file and vector)"
    )


def damaged_error(index_dir: Path, damage: Iterable[Damage]) -> IndexDamagedError:
    damage = list(damage)
    shown = "; ".join(str(d) for d in damage[:5])
    more = f" (and {len(damage) - 5} more)" if len(damage) > 5 else ""
    return IndexDamagedError(
        f"the index at {index_dir} is damaged: {shown}{more}. Its answers cannot be trusted: "
        + repair_hint(index_dir)
    )


def check_open(index_dir: Path) -> None:
    """The cheap check at open: IndexDamagedError naming what differs from the seal."""
    damage, touched = _compare(index_dir, full=False)
    if damage:
        raise damaged_error(index_dir, damage)
    if touched:
        _refresh_times(index_dir, touched)


def vector_problems(
    points: Iterable[tuple[str, Mapping[str, Any], Mapping[str, np.ndarray]]],
) -> list[Damage]:
    """Vectors read back through the store that cannot be what was written.

    points: (point id, payload with `item_id` and `kind`, named vectors). Every vector must be
    finite and of unit length; every item's `image` centroid the normalised mean of its views.
    """
    damage: list[Damage] = []
    sums: dict[str, np.ndarray] = {}
    centroids: dict[str, np.ndarray] = {}
    for pid, payload, vectors in points:
        item = str(payload.get("item_id", "?"))
        for name, vec in vectors.items():
            v = np.asarray(vec, dtype=np.float64)
            norm = float(np.linalg.norm(v)) if np.all(np.isfinite(v)) else float("nan")
            if not abs(norm - 1.0) <= UNIT_TOLERANCE:
                damage.append(Damage(f"item {item}", f"point {pid}: `{name}` vector length {norm}"))
        image = vectors.get("image")
        if image is None:
            continue
        if payload.get("kind") == "view":
            sums[item] = sums.get(item, 0) + np.asarray(image, dtype=np.float64)
        elif payload.get("kind") == "centroid":
            centroids[item] = np.asarray(image, dtype=np.float64)
    for item, centroid in centroids.items():
        total = sums.get(item)
        if total is None:
            continue
        mean = total / max(float(np.linalg.norm(total)), 1e-12)
        cos = float(mean @ centroid) / max(float(np.linalg.norm(centroid)), 1e-12)
        if not cos >= 1.0 - CENTROID_TOLERANCE:
            damage.append(
                Damage(f"item {item}", f"centroid differs from its views (cos {cos:.4f})")
            )
    return damage


def restore_manifest(index_dir: Path) -> bool:
    """`lookalike.json` unreadable: put back the seal's copy. True if it was restored."""
    path = index_dir / MANIFEST_FILE
    try:
        copy = (read_seal(index_dir) or {}).get("manifest")
    except IndexDamagedError:
        copy = None
    if not copy:
        return False
    try:
        json.loads(copy)
    except ValueError:
        return False
    tmp = path.with_name(MANIFEST_FILE + ".tmp")
    tmp.write_text(copy)
    tmp.replace(path)
    return True


def set_aside_shard(index_dir: Path) -> Path | None:
    """Move a damaged shard out of the way (`shard.damaged/`, replacing an older one) so that the
    indexing run builds a new one. Returns where it went, or None if there was no shard."""
    shard = index_dir / SHARD
    if not shard.exists():
        return None
    target = index_dir / DAMAGED_SHARD
    if target.exists():
        shutil.rmtree(target)
    shard.rename(target)
    return target


@dataclass(frozen=True)
class VerifyReport:
    """What `Engine.verify` found. state: `sealed`, `writing` (a write runs or was killed: the
    files were not compared), `unsealed` (an index from before seals: only vectors checked)."""

    state: str
    files_checked: int
    points_checked: int
    damage: tuple[Damage, ...]

    @property
    def ok(self) -> bool:
        return not self.damage


def repair_manifest(index_dir: Path) -> str | None:
    """Before a `--repair` run (the engine cannot open an index whose `lookalike.json` is
    unreadable): restore it from the seal's copy; failing that, set it and the shard aside so the
    run builds the index anew. Returns what was done, None when the manifest was fine."""
    from lookalike.engine.manifest import IndexManifest

    try:
        IndexManifest.load(index_dir)
        return None
    except IndexDamagedError:
        pass
    if restore_manifest(index_dir):
        try:
            IndexManifest.load(index_dir)
            return f"{MANIFEST_FILE}: restored from the last write's copy"
        except IndexDamagedError:
            pass
    path = index_dir / MANIFEST_FILE
    path.rename(path.with_name(MANIFEST_FILE + ".damaged"))
    set_aside_shard(index_dir)
    return f"{MANIFEST_FILE}: unreadable and no good copy; the index is rebuilt"


def verify_index(index_dir: Path, open_store: Callable[[], Store]) -> VerifyReport:
    """Everything `verify` checks: every sealed file's digest, then every point read back
    through the store `open_store()` gives (opened without the open-time check). Damage is
    reported, not raised; a StoreError opening the store (no index, locked) is raised."""
    try:
        sealed = read_seal(index_dir)
        damage = check(index_dir, full=True)
    except IndexDamagedError as exc:
        sealed, damage = None, [Damage(SEAL_FILE, str(exc))]
    state = "unsealed" if sealed is None else str(sealed.get("state"))
    points = 0

    def records(store: Store) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, np.ndarray]]]:
        nonlocal points
        for rec in store.scroll(fields=["item_id", "kind"], with_vectors=True):
            points += 1
            yield rec.id, rec.payload, rec.vectors

    try:
        problems = vector_problems(records(open_store()))
        if state == "writing":  # centroids are refreshed at the end of a run: not yet
            problems = [p for p in problems if "centroid" not in p.what]
        damage += problems
    except StoreError:
        raise  # no index, or locked by a writer: not a verdict on the files
    except BaseException as exc:  # the bindings panic on some damaged files
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        damage.append(Damage(SHARD, f"cannot be read: {exc}"))
    files = len((sealed or {}).get("files", {}))
    return VerifyReport(state, files, points, tuple(damage))


def repair_damage(engine: Engine) -> tuple[str, ...]:
    """Before a `--repair` run: find damage as `verify` does; a damaged shard is set aside
    (`shard.damaged/`) so that the run rebuilds it from the catalogue."""
    if engine.manifest is None or engine.store_record()["kind"] != "edge":
        return ()
    try:
        report = engine.verify()
    except StoreError as exc:
        # The shard cannot be opened. Damage only if its files say so: another process
        # holding it (a server) is not a reason to set it aside.
        files = check(engine.index_dir, full=True)
        if not files:
            raise
        report = VerifyReport(
            "sealed",
            0,
            0,
            (*files, Damage(SHARD, f"cannot be opened: {exc}")),
        )
    if not report.damage:
        return ()
    engine.close()
    set_aside_shard(engine.index_dir)
    return tuple(str(d) for d in report.damage)
