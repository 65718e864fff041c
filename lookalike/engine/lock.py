"""What every index folder needs around its store: one writer at a time, a store that is
closed when the owner is (`Engine`, `FaceIndex`), and JSON files written atomically."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from lookalike.errors import StoreError

if TYPE_CHECKING:
    from lookalike.store.base import Store


@contextmanager
def folder_write_lock(folder: Path, name: str, what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking `flock` on `folder/name` while the block runs.

    A second writer (another process, or another open object) fails at once with StoreError
    ("another process is writing {what} to FOLDER") instead of waiting: an indexing run that
    waits silently behind another looks hung. The lock dies with its process (kill -9 included).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another process is writing {what}to {folder}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_json(path: Path, data: Mapping[str, Any], *, indent: int = 2) -> None:
    """Write JSON atomically (temporary file, fsync, rename): a reader never sees half of it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=indent, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class ClosesStore:
    """Mixin: `close()` (and `with`) closes `self._store` once opened; safe to call twice."""

    _store: Store | None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
