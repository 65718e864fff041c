"""qdrant-client's local mode, one client per folder in a process.

Local mode locks its folder for one client, so two stores in one folder (a product index and its
faces, `--store qdrant+local://PATH` for both: collections `name` and `name-faces`) would refuse
each other inside one process (`lookalike serve`). They share one client here instead, closed when
the last store using it closes. Another process still gets the folder-locked error: concurrent
access across processes needs a Qdrant server.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_CLIENTS: dict[Path, list[Any]] = {}
"""Resolved folder -> [client, number of stores using it]."""
_LOCK = threading.Lock()


def open_local(folder: Path) -> Any:
    """The local-mode `QdrantClient` of `folder`, opened on first use. Pair with `release_local`."""
    from qdrant_client import QdrantClient

    key = Path(folder).resolve()
    with _LOCK:
        entry = _CLIENTS.get(key)
        if entry is None:
            entry = _CLIENTS[key] = [QdrantClient(path=str(folder)), 0]
        entry[1] += 1
        return entry[0]


def release_local(client: Any) -> None:
    """One store stops using `client`: closed when no other store in this process uses it."""
    with _LOCK:
        for key, entry in list(_CLIENTS.items()):
            if entry[0] is client:
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del _CLIENTS[key]
                break
    client.close()
