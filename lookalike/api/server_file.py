"""`<index>/server.json`: how the CLI finds the `lookalike serve` that has an index open.

While a server runs on an index, the embedded store is locked by it (one process may open a
Qdrant Edge shard), so the CLI goes through the server instead. The server leaves this file in the
index folder: its URL, its process id and a random secret. Only the index's owner can read it
(mode 0600), so presenting the secret proves a request comes from someone who may write the index
folder anyway: the server accepts it as a credential for writes, beside `--api-key`.

The file is removed on clean shutdown. A server killed with `kill -9` leaves it behind: readers
treat it as stale when its process is gone or the server does not answer (`lookalike.api.remote`).
Light: standard library only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "server.json"


@dataclass(frozen=True)
class ServerRecord:
    """A running server as its index folder records it."""

    url: str
    """Base URL this machine reaches it at (`http://127.0.0.1:8000`), no trailing slash."""
    secret: str
    pid: int
    index: str
    """The index folder it serves (resolved)."""


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server listening on `host`: a wildcard address
    (every interface) is reached through loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def write_record(index_dir: Path, url: str, secret: str) -> ServerRecord:
    """Write `<index_dir>/server.json` readable by its owner only; atomic (a reader never sees
    half a file), and never world-readable, even for an instant."""
    record = ServerRecord(url.rstrip("/"), secret, os.getpid(), str(Path(index_dir).resolve()))
    path = Path(index_dir) / FILE_NAME
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask only towards fewer rights
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(record), fh)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return record


def read_record(index_dir: Path) -> ServerRecord | None:
    """The record in `index_dir`, or None when there is none or it cannot be read (another user's
    server: its file is not readable by us; a damaged file: as good as none)."""
    try:
        data = json.loads((Path(index_dir) / FILE_NAME).read_text())
        return ServerRecord(
            url=str(data["url"]),
            secret=str(data["secret"]),
            pid=int(data["pid"]),
            index=str(data["index"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_record(index_dir: Path, record: ServerRecord) -> None:
    """Remove the file if it is still `record`'s (a newer server may have replaced it)."""
    if read_record(index_dir) == record:
        (Path(index_dir) / FILE_NAME).unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
