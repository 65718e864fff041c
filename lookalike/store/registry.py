"""`--store` specs -> a `Store`.

    edge                          the embedded default: Qdrant Edge in `<index>/shard`
    memory                        exact in-process numpy store, not persisted (tests, demos)
    qdrant://host:6333[/name]     a Qdrant server or cluster node over http; collection `name`
                                  (default: the index folder's name)
    qdrants://host:6333[/name]    the same over https (use this with an API key)
    qdrant+local://PATH[#name]    qdrant-client's local mode in folder PATH (CI, small data)

Another part of an index keeps its own vectors apart from the product vectors through the same spec:
`shard` names its edge folder (faces: `<index>/faces`) and `suffix` is added to its collection name
(faces: `<collection>-faces`), so one `--store` serves both without mixing them.

Query parameters of the qdrant schemes: `?shards=N&replication=R` (used when the collection is
created), `?timeout=S`. The API key comes from the `api_key` argument, else env `QDRANT_API_KEY`,
never from the spec (specs end up in logs and shell history).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from lookalike.errors import StoreError

if TYPE_CHECKING:  # the base module imports numpy: keep `--store` parsing light for the CLI
    from lookalike.store.base import Store
    from lookalike.store.edge import EdgeParams

_COLLECTION = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")


@dataclass(frozen=True)
class StoreSpec:
    """A parsed `--store` value.

    kind: `edge`, `memory`, `qdrant` (server) or `qdrant-local`.
    location: server URL (`http(s)://host:port`) or local-mode folder; empty for edge / memory.
    collection: collection name for the qdrant kinds, else empty.
    """

    kind: str
    location: str = ""
    collection: str = ""
    shards: int | None = None
    replication: int | None = None
    timeout: float = 30.0


def parse_store_spec(spec: str | None, index_dir: Path, *, suffix: str = "") -> StoreSpec:
    """Parse `spec` (None or blank means `edge`). Raises StoreError listing valid forms.

    suffix: added to the collection name of the qdrant kinds (given or the folder's name)."""
    text = (spec or "").strip() or "edge"
    if text in ("edge", "memory"):
        return StoreSpec(text)
    if text.startswith("qdrant+local://"):
        folder, _, name = text.removeprefix("qdrant+local://").partition("#")
        if not folder:
            raise StoreError(f"--store {text!r}: give a folder, e.g. qdrant+local://./qdrant-data")
        return StoreSpec("qdrant-local", folder, _collection(name, index_dir, text, suffix))
    if text.startswith(("qdrant://", "qdrants://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise StoreError(f"--store {text!r}: give a host, e.g. qdrant://localhost:6333/shop")
        if parts.username or parts.password:
            raise StoreError(
                f"--store {text!r}: do not put credentials in the spec; set QDRANT_API_KEY"
            )
        try:
            port = parts.port or 6333
        except ValueError as exc:
            raise StoreError(f"--store {text!r}: bad port ({exc})") from None
        scheme = "https" if parts.scheme == "qdrants" else "http"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        query = parse_qs(parts.query)
        return StoreSpec(
            "qdrant",
            f"{scheme}://{host}:{port}",
            _collection(parts.path.strip("/"), index_dir, text, suffix),
            shards=_int_param(query, "shards", text),
            replication=_int_param(query, "replication", text),
            timeout=float(_int_param(query, "timeout", text) or 30),
        )
    raise StoreError(
        f"unknown store {text!r}: valid stores are edge (default), memory, "
        "qdrant://HOST:PORT[/COLLECTION], qdrants://HOST:PORT[/COLLECTION], "
        "qdrant+local://PATH[#COLLECTION]"
    )


def store_record(spec: str | None, index_dir: Path, *, suffix: str = "") -> dict[str, Any]:
    """What an index manifest records about its store: kind, a canonical spec (local folders made
    absolute, so the index works from any working directory), location and collection.
    Never a credential (specs cannot hold one).

    suffix: as `parse_store_spec`; the canonical spec names the collection with the suffix
    already added, so it is opened again without one."""
    parsed = parse_store_spec(spec, index_dir, suffix=suffix)
    canonical: str
    match parsed.kind:
        case "edge" | "memory":
            canonical = parsed.kind
        case "qdrant-local":
            folder = Path(parsed.location).resolve()
            parsed = replace(parsed, location=str(folder))
            canonical = f"qdrant+local://{folder}#{parsed.collection}"
        case _:
            scheme = "qdrants" if parsed.location.startswith("https://") else "qdrant"
            host = parsed.location.split("://", 1)[1]
            timeout = f"{parsed.timeout:g}" if parsed.timeout != 30.0 else None
            given = {"shards": parsed.shards, "replication": parsed.replication, "timeout": timeout}
            query = "&".join(f"{k}={v}" for k, v in given.items() if v is not None)
            canonical = f"{scheme}://{host}/{parsed.collection}" + (f"?{query}" if query else "")
    return {
        "kind": parsed.kind,
        "spec": canonical,
        "location": parsed.location,
        "collection": parsed.collection,
    }


def same_store(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two `store_record`s name the same place (kind, location, collection)."""
    keys = ("kind", "location", "collection")
    return all((a.get(k) or "") == (b.get(k) or "") for k in keys)


def open_store(
    spec: str | None,
    index_dir: Path,
    vectors: Mapping[str, int],
    *,
    api_key: str | None = None,
    edge: EdgeParams | None = None,
    shard: str = "shard",
    suffix: str = "",
) -> Store:
    """The store `spec` names, for the index in `index_dir` with `vectors` (name -> dimension).

    api_key: for qdrant servers; defaults to env QDRANT_API_KEY.
    edge: graph, quantisation and search settings of the embedded store (default `EdgeParams()`).
    shard: the embedded store's folder inside `index_dir`.
    suffix: added to the qdrant collection name (see `parse_store_spec`).
    """
    if not shard or Path(shard).name != shard or shard in (".", ".."):
        raise StoreError(f"shard {shard!r}: give a folder name inside the index folder")
    parsed = parse_store_spec(spec, index_dir, suffix=suffix)
    match parsed.kind:
        case "edge":
            from lookalike.store.edge import EdgeStore

            return EdgeStore(Path(index_dir) / shard, dict(vectors), edge)
        case "memory":
            from lookalike.store.memory import MemoryStore

            return MemoryStore()
        case _:  # qdrant, qdrant-local
            from lookalike.config import VectorsConfig
            from lookalike.store.qdrant import QdrantStore

            secret = VectorsConfig().qdrant_api_key
            key = api_key or (secret.get_secret_value() if secret else None) or None
            return QdrantStore(
                parsed.location,
                parsed.collection,
                dict(vectors),
                api_key=key if parsed.kind == "qdrant" else None,
                shard_number=parsed.shards,
                replication_factor=parsed.replication,
                timeout=parsed.timeout,
            )


def _collection(name: str, index_dir: Path, spec: str, suffix: str = "") -> str:
    name = (name or Path(index_dir).resolve().name) + suffix
    if not _COLLECTION.match(name):
        raise StoreError(
            f"--store {spec!r}: collection name {name!r} may hold only letters, digits, '_', '-', '.'"
        )
    return name


def _int_param(query: Mapping[str, list[str]], key: str, spec: str) -> int | None:
    if key not in query:
        return None
    try:
        value = int(query[key][-1])
    except ValueError:
        raise StoreError(f"--store {spec!r}: {key} must be a whole number") from None
    if value < 1:
        raise StoreError(f"--store {spec!r}: {key} must be at least 1")
    return value
