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

from qdrant_client import QdrantClient

_CLIENTS: dict[Path, tuple[QdrantClient, int]] = {}
"""Resolved folder -> (client, number of stores using it)."""
_LOCK = threading.Lock()


def open_local(folder: Path) -> QdrantClient:
    """The local-mode `QdrantClient` of `folder`, opened on first use. Pair with `release_local`."""
    key = Path(folder).resolve()
    with _LOCK:
        client, users = _CLIENTS.get(key) or (QdrantClient(path=str(folder)), 0)
        _CLIENTS[key] = (client, users + 1)
        return client


def release_local(client: QdrantClient) -> None:
    """One store stops using `client`: closed when no other store in this process uses it."""
    with _LOCK:
        for key, (shared, users) in list(_CLIENTS.items()):
            if shared is client:
                if users > 1:
                    _CLIENTS[key] = (shared, users - 1)
                    return
                del _CLIENTS[key]
                break
    client.close()
