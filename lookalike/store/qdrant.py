"""Qdrant server or cluster through `qdrant-client`: one collection per index.

`QdrantStore("http://host:6333", "shop", {"image": 1280}, api_key=...)` talks to a server (or to any
node of a distributed cluster: the cluster routes requests to the shards and replicas). The same
class runs on `qdrant-client`'s local mode (`":memory:"`, or a folder path) so the contract suite
and CI need no server; local mode is exact numpy search, meant for tests and small data only.

Semantics are those of the embedded `EdgeStore`: named cosine vectors, filters inside the search,
payload indexes, facets, one-best-point-per-group search (the server's `query_points_groups`), and
BM25 text search over a payload text index (Qdrant's `TextQuery` on an index with `scoring`).
Every write waits for the server to apply it (`wait=True`): durable in the server's WAL on return.

Differences of local mode, and why:
- payload indexes do nothing there (exact scan); their kinds are still recorded (in a JSON file next
  to a folder collection) so `payload_schema` answers like the server.
- text indexes there support the default tokenizer only, no stemming. So that a plural finds a
  singular as on the server, the query's words are widened with their crude singular and plural
  forms (`apples` -> `apples apple`); documents are not stemmed. BM25 ranking is otherwise the same
  formula (k1 1.2, b 0.75). On a server the index stems both sides with Snowball English.
- `disk_bytes` is the folder size in local mode; on a server it is 0 (the client API does not
  expose it: read the collection's size from the server's telemetry or its volume).
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from qdrant_client import QdrantClient, models

from lookalike.errors import IndexMismatchError, StoreError
from lookalike.store import qdrant_common as common
from lookalike.store.base import Filter, IndexKind, PointRecord, Store, as_vector
from lookalike.store.memory import singular
from lookalike.types import F32, Hit, JSONValue

_SCHEMA_FILE = "lookalike_payload_schema.json"
_HINT = (
    "start a Qdrant server there (e.g. `docker run -p 6333:6333 qdrant/qdrant`), check the host "
    "and port of --store / QDRANT_URL, or use the embedded default (--store edge)"
)
_SPELLING: common.Spelling[models.Condition] = common.Spelling(
    match=lambda key, v: models.FieldCondition(key=key, match=models.MatchValue(value=v)),
    match_any=lambda key, vs: models.FieldCondition(key=key, match=models.MatchAny(any=vs)),
    range=lambda key, b: models.FieldCondition(key=key, range=models.Range(**b)),
    any_of=lambda conditions: models.Filter(should=conditions),
)
Params = ParamSpec("Params")
R = TypeVar("R")


# -- local mode: one client per folder in a process -----------------------------------------------
# Local mode locks its folder for one client, so two stores in one folder (a product index and its
# faces, `--store qdrant+local://PATH` for both: collections `name` and `name-faces`) would refuse
# each other inside one process (`lookalike serve`). They share one client here instead, closed when
# the last store using it closes. Another process still gets the folder-locked error: concurrent
# access across processes needs a Qdrant server.

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


class QdrantStore(Store):
    """One Qdrant collection.

    url_or_location: `http(s)://host:port` of a server or cluster node; `":memory:"` or a folder
        path for qdrant-client's local mode.
    collection: the collection name (one per index); created with `vectors` when missing.
    vectors: vector name -> dimension; an existing collection must have the same ones.
    api_key: sent to the server (`QDRANT__SERVICE__API_KEY` on its side); needs https in production.
    shard_number, replication_factor: used only when the collection is created (cluster layout).
    timeout: seconds per request.
    """

    def __init__(
        self,
        url_or_location: str,
        collection: str,
        vectors: Mapping[str, int],
        api_key: str | None = None,
        *,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.location = str(url_or_location)
        self.collection = collection
        self.remote = self.location.startswith(("http://", "https://"))
        self._local_dir: Path | None = None
        try:
            if self.remote:
                # No version handshake: `collection_exists` below is the reachability check, and
                # its error says what to do; the server must be as new as qdrant-client's minor
                # version for BM25 text indexes (docs/deploy-cluster.md).
                self._client = QdrantClient(
                    url=self.location,
                    api_key=api_key,
                    timeout=max(1, round(timeout)),
                    check_compatibility=False,
                )
            elif self.location == ":memory:":
                self._client = QdrantClient(location=":memory:")
            else:
                self._local_dir = Path(self.location)
                self._local_dir.mkdir(parents=True, exist_ok=True)
                self._client = open_local(self._local_dir)  # one per folder in a process
        except Exception as exc:  # local mode: folder locked by another process, unreadable ...
            raise StoreError(f"cannot open Qdrant at {self.location}: {exc}") from exc
        try:
            self._call(
                "open collection", self._open_collection, vectors, shard_number, replication_factor
            )
        except (StoreError, IndexMismatchError):
            self.close()
            raise
        self._schema: dict[str, str] = self._load_schema()

    # -- errors --------------------------------------------------------------------------------

    def _error(self, what: str, exc: Exception) -> StoreError:
        """A StoreError that names the server and says what to do."""
        status = getattr(exc, "status_code", None)
        where = f"Qdrant at {self.location}, collection {self.collection!r}"
        if status in (401, 403):
            return StoreError(
                f"{what}: {where} refused the API key ({status}): set the key the server expects "
                "(env QDRANT_API_KEY)"
            )
        if self.remote and status is None:
            return StoreError(f"{what}: cannot reach {where} ({exc}); {_HINT}")
        return StoreError(f"{what}: {where} failed: {exc}")

    def _call(
        self, what: str, fn: Callable[Params, R], *args: Params.args, **kwargs: Params.kwargs
    ) -> R:
        try:
            return fn(*args, **kwargs)
        except (StoreError, IndexMismatchError):
            raise
        except Exception as exc:  # qdrant-client raises httpx / grpc / its own untyped errors
            raise self._error(what, exc) from exc

    # -- collection ----------------------------------------------------------------------------

    def _open_collection(
        self, vectors: Mapping[str, int], shards: int | None, replication: int | None
    ) -> None:
        """Create the collection when missing; check that it has `vectors`."""
        if not self._client.collection_exists(self.collection):
            self._client.create_collection(
                self.collection,
                vectors_config={
                    name: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                    for name, dim in vectors.items()
                },
                shard_number=shards,
                replication_factor=replication,
            )
        info = self._client.get_collection(self.collection)
        have = info.config.params.vectors
        have_dims = {k: v.size for k, v in have.items()} if isinstance(have, dict) else {}
        missing = {k: d for k, d in vectors.items() if have_dims.get(k) != d}
        if missing:
            raise IndexMismatchError(
                f"collection {self.collection!r} at {self.location} has vectors {have_dims}, "
                f"not {dict(vectors)}: use another collection name for this index"
            )

    def _load_schema(self) -> dict[str, str]:
        if self.remote:
            info = self._call("read schema", self._client.get_collection, self.collection)
            return {
                name: str(getattr(v.data_type, "value", v.data_type)).lower()
                for name, v in (info.payload_schema or {}).items()
            }
        if self._local_dir is not None and (self._local_dir / _SCHEMA_FILE).exists():
            saved = json.loads((self._local_dir / _SCHEMA_FILE).read_text())
            return dict(saved.get(self.collection, {}))
        return {}

    def _save_schema(self) -> None:
        if self._local_dir is None:
            return
        path = self._local_dir / _SCHEMA_FILE
        saved = json.loads(path.read_text()) if path.exists() else {}
        saved[self.collection] = self._schema
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=1, sort_keys=True))
        tmp.replace(path)

    # -- filters -------------------------------------------------------------------------------

    @staticmethod
    def _filter(flt: Filter | None) -> models.Filter | None:
        return common.build_filter(flt, _SPELLING, models.Filter)

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        batch = common.point_structs(points, models.PointStruct)
        self._call("upsert", self._client.upsert, self.collection, points=batch, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            selector = models.PointIdsList(points=list(ids))
            self._call("delete", self._client.delete, self.collection, selector, wait=True)

    def delete_where(self, flt: Filter) -> None:
        selector = models.FilterSelector(filter=self._filter(flt) or models.Filter())
        self._call("delete", self._client.delete, self.collection, selector, wait=True)

    def set_payload(self, flt: Filter, payload: Mapping[str, Any]) -> None:
        selector = models.FilterSelector(filter=self._filter(flt) or models.Filter())
        self._call(
            "set payload",
            self._client.set_payload,
            self.collection,
            payload=dict(payload),
            points=selector,
            wait=True,
        )

    def ensure_index(self, field_name: str, kind: IndexKind) -> None:
        if self._schema.get(field_name) == kind:
            return
        schema: models.PayloadSchemaType | models.TextIndexParams
        if kind == "text":
            schema = models.TextIndexParams(
                type=models.TextIndexType.TEXT,
                tokenizer=models.TokenizerType.WORD,
                lowercase=True,
                # Local mode ranks only default-tokenised text: no stemmer there (module docstring).
                stemmer=(
                    models.SnowballParams(
                        type=models.Snowball.SNOWBALL, language=models.SnowballLanguage.ENGLISH
                    )
                    if self.remote
                    else None
                ),
                scoring=True,  # term statistics for BM25
            )
        else:
            schema = models.PayloadSchemaType(kind)  # keyword -> KEYWORD ...
        if self.remote or kind == "text":
            with warnings.catch_warnings():
                # local mode warns that non-text indexes have no effect there: we know.
                warnings.simplefilter("ignore", UserWarning)
                self._call(
                    "create payload index",
                    self._client.create_payload_index,
                    self.collection,
                    field_name,
                    field_schema=schema,
                    wait=True,
                )
        self._schema[field_name] = kind
        self._save_schema()

    # -- reads ---------------------------------------------------------------------------------

    def _query(
        self,
        what: str,
        query: list[float] | models.TextQuery,
        using: str,
        limit: int,
        flt: Filter | None,
    ) -> list[models.ScoredPoint]:
        response = self._call(
            what,
            self._client.query_points,
            self.collection,
            query=query,
            using=using,
            query_filter=self._filter(flt),
            limit=limit,
            with_payload=True,
        )
        return response.points

    def _nearest(
        self, vector: F32, using: str, limit: int, flt: Filter | None, fields: list[str] | None
    ) -> list[Hit]:
        points = self._query("search", as_vector(vector).tolist(), using, limit, flt)
        return [common.hit(p) for p in points]

    def search_groups(
        self,
        vector: F32,
        *,
        using: str = "image",
        groups: int = 10,
        group_by: str = "item_id",
        flt: Filter | None = None,
    ) -> list[Hit]:
        response = self._call(
            "grouped search",
            self._client.query_points_groups,
            self.collection,
            group_by,
            query=as_vector(vector).tolist(),
            using=using,
            query_filter=self._filter(flt),
            limit=groups,
            group_size=1,
            with_payload=True,
        )
        hits = [common.hit(g.hits[0]) for g in response.groups if g.hits]
        # The server orders groups by their best hit; sort anyway (stable) so every backend agrees.
        return sorted(hits, key=lambda h: -h.score)

    def text_search(
        self, field_name: str, query: str, *, limit: int = 10, flt: Filter | None = None
    ) -> list[Hit]:
        self.ensure_index(field_name, "text")
        text = query if self.remote else _widen_plurals(query)
        if not text.strip():
            return []
        points = self._query("text search", models.TextQuery(text=text), field_name, limit, flt)
        return [common.hit(p) for p in points if p.score > 0]

    def count(self, flt: Filter | None = None) -> int:
        result = self._call(
            "count", self._client.count, self.collection, count_filter=self._filter(flt), exact=True
        )
        return int(result.count)

    def _scroll(
        self, flt: Filter | None, fields: Sequence[str] | None, with_vectors: bool
    ) -> Iterator[PointRecord]:
        with_payload = True if fields is None else list(fields)
        qfilter = self._filter(flt)

        def fetch(
            offset: models.ExtendedPointId | None,
        ) -> tuple[list[models.Record], models.ExtendedPointId | None]:
            return self._call(
                "scroll",
                self._client.scroll,
                self.collection,
                scroll_filter=qfilter,
                limit=common.SCROLL_PAGE,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )

        return common.paged(fetch, None, with_vectors)

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[PointRecord]:
        if not ids:
            return []
        records = self._call(
            "retrieve",
            self._client.retrieve,
            self.collection,
            ids=list(ids),
            with_payload=True,
            with_vectors=with_vectors,
        )
        by_id = {str(r.id): common.record(r, with_vectors) for r in records}
        return [by_id[i] for i in map(str, ids) if i in by_id]  # the order asked for

    def _facet(self, field_name: str, flt: Filter | None, limit: int) -> dict[JSONValue, int]:
        self.ensure_index(field_name, "keyword")  # the server facets keyword-indexed fields only
        response = self._call(
            "facet",
            self._client.facet,
            self.collection,
            field_name,
            facet_filter=self._filter(flt),
            limit=limit,
            exact=True,
        )
        return {h.value: int(h.count) for h in response.hits}

    def payload_schema(self) -> dict[str, str]:
        if self.remote:
            self._schema = {**self._schema, **self._load_schema()}
        return dict(self._schema)

    def disk_bytes(self) -> int:
        if self._local_dir is None:
            return 0
        return common.folder_bytes(self._local_dir)

    def drop(self) -> None:
        """Delete the whole collection on the server (or in the local folder). Irreversible."""
        self._call("drop collection", self._client.delete_collection, self.collection)
        self._schema = {}
        self._save_schema()

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            if self._local_dir is not None:
                release_local(client)  # closed when no other store in this process uses it
            else:
                client.close()
            del self._client  # closed: close() again does nothing


_WORD = re.compile(r"\w+")


def _widen_plurals(query: str) -> str:
    """Each word with its crude English singular and plural (local mode has no stemmer)."""
    out: list[str] = []
    for w in _WORD.findall(query.lower()):
        stem = singular(w)
        plural = stem + ("es" if stem.endswith(("s", "x", "z")) else "s")
        out.extend(dict.fromkeys((w, stem, plural)))
    return " ".join(out)
