"""Which local files the HTTP server serves, and the names it shows for them.

Two rules, both checked on every request (a file can change between indexing and serving):

- Listed: a request path must name one of the files the index records (after `.`/`..` are
  collapsed), never a prefix test, so `../` and look-alike folder names lead nowhere.
- Contained: that file, with every symbolic link on its way resolved *now*, must lie in an
  allowed folder: under the catalogue root, under the index's `uploads/`, or in the very folder
  the index records it in. So a catalogue link retargeted after indexing (to `/etc/passwd`, to a
  photo elsewhere) is not followed: the answer is 404, never the other file.

Names: responses never show an absolute path of the server. A file under the catalogue root is
shown relative to it (`img/a.jpg`), an upload as `uploads/ab/<sha256>.jpg`, anything else as
`~<12 hex digits>/<file name>` (a digest of its path, so the URL is stable and tells nothing of the
server's folders). URLs (`http(s)://...`) are shown as they are.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote

_REFRESH_S = 10.0
"""A request for a file the index does not list re-reads the list at most this often."""

_HASHED = re.compile(r"~([0-9a-f]{12})/[^/]+")
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"`:]+/)+([^\s/'\"`:,;)]*)")


def norm(path: str) -> str:
    """Absolute, `.` and `..` collapsed; symbolic links are left as they are."""
    return os.path.normpath(os.path.abspath(path))


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def under(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies below it (both absolute and normalised)."""
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # one relative, or different drives
        return False


def contained(path: str, folders: Iterable[str]) -> bool:
    """True when `path`, its links resolved now, lies under one of `folders` (resolved too) or in
    the folder it is recorded in (that folder resolved now). Blocking (it reads the disk)."""
    real = os.path.realpath(path)
    allowed = [os.path.realpath(f) for f in folders]
    allowed.append(os.path.realpath(os.path.dirname(path)))
    return any(under(real, f) for f in allowed)


def hidden_name(path: str) -> str:
    """`~<12 hex>/<file name>`: a stable name for a file outside every named folder."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"~{digest}/{os.path.basename(path)}"


def redact(message: str) -> str:
    """`message` with every absolute path cut to `.../<last part>` (URLs are left alone)."""
    return _ABSOLUTE_PATH.sub(lambda m: ".../" + m.group(1), message)


class ServedFiles:
    """The local files one endpoint may serve (`prefix`), listed by `load` (which returns the
    recorded paths, URLs included or not). `root`: the catalogue root; `uploads`: the index's
    uploads folder. Thread-safe; `lookup` and `load` are blocking."""

    def __init__(
        self,
        prefix: str,
        load: Callable[[], Iterable[str]],
        root: str | os.PathLike[str] | None,
        uploads: str | os.PathLike[str] | None,
    ) -> None:
        self.prefix = prefix
        self._load_fn = load
        # Resolved like an added item's paths are, so a root given through a link still yields
        # relative names for them.
        self.root = os.path.realpath(root) if root is not None else None
        self.uploads = norm(os.fspath(uploads)) if uploads is not None else None
        self._paths: frozenset[str] | None = None
        self._hashed: dict[str, str] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    # -- names -----------------------------------------------------------------------------------

    def name(self, ref: str) -> str:
        """What a response shows for `ref` (a recorded path or URL): see the module docstring."""
        if not ref or is_url(ref):
            return ref
        path = norm(ref)
        if self.root is not None and under(path, self.root):
            return os.path.relpath(path, self.root)
        if self.uploads is not None and under(path, self.uploads):
            return "uploads/" + os.path.relpath(path, self.uploads)
        return hidden_name(path)

    def url_for(self, ref: str) -> str | None:
        """Where a browser loads `ref`: itself for a URL, else under `prefix`."""
        if is_url(ref):
            return ref
        if not ref:
            return None
        return self.prefix + quote(self.name(ref), safe="/~")

    # -- serving ---------------------------------------------------------------------------------

    def lookup(self, rel: str) -> str | None:
        """The recorded file a request path names, when it may be served now; else None."""
        for attempt in range(2):
            paths, hashed = self._current(refresh=attempt == 1)
            for candidate in self._candidates(rel, hashed):
                if candidate in paths:
                    folders = [f for f in (self.root, self.uploads) if f is not None]
                    return candidate if contained(candidate, folders) else None
        return None

    def _candidates(self, rel: str, hashed: dict[str, str]) -> list[str]:
        out = []
        if self.root is not None:
            out.append(norm(os.path.join(self.root, rel)))
        if self.uploads is not None and rel.startswith("uploads/"):
            out.append(norm(os.path.join(self.uploads, rel.removeprefix("uploads/"))))
        found = _HASHED.fullmatch(rel)
        if found and found.group(1) in hashed:
            out.append(hashed[found.group(1)])
        return out

    def invalidate(self) -> None:
        with self._lock:
            self._paths = None

    def _current(self, *, refresh: bool) -> tuple[frozenset[str], dict[str, str]]:
        with self._lock:
            stale = time.monotonic() - self._loaded_at > _REFRESH_S
            if self._paths is None or (refresh and stale):
                self._paths = frozenset(norm(p) for p in self._load_fn() if p and not is_url(p))
                self._hashed = {hidden_name(p)[1:13]: p for p in self._paths}
                self._loaded_at = time.monotonic()
            return self._paths, self._hashed
