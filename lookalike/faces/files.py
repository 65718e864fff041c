"""The face index's files in an index folder (layout: `lookalike.faces.index`), and how its JSON
files are written."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SHARD = "faces"
"""The Qdrant Edge shard's folder in the index folder (the default store)."""
SUFFIX = "-faces"
"""Added to a qdrant collection name: `--store qdrant://host/shop` keeps faces in `shop-faces`."""
MANIFEST = "faces.json"
PEOPLE = "faces-people.json"
OPTIONS = "faces-options.json"
LOCK = ".faces.lock"
FORMAT = 1


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (temporary file, fsync, rename): a reader never sees half of it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
