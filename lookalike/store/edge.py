"""Qdrant Edge (`qdrant-edge-py`): the Qdrant engine in-process, persisted in a folder.

HNSW, payload indexes and filters, facets and a write-ahead log (every `update` is durable on return,
so a killed process loses nothing it was told was written). The Python bindings have no
`query_groups`, so `search_groups` over-fetches and groups here, widening until it has enough groups.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lookalike.errors import StoreError
from lookalike.store.base import Condition, Filter, IndexKind, PointRecord, as_vector
from lookalike.types import F32, Hit

_SCROLL_PAGE = 1024


def _qe() -> Any:
    import qdrant_edge

    return qdrant_edge


def _pid(point_id: Any) -> str:
    return str(point_id)


class EdgeStore:
    """One Edge shard in `path`. `vectors` maps vector names to dimensions (used when creating)."""

    def __init__(self, path: Path, vectors: Mapping[str, int]) -> None:
        qe = _qe()
        self.path = Path(path)
        try:
            if (self.path / "edge_config.json").exists():
                self._shard = qe.EdgeShard.load(str(self.path))
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                config = qe.EdgeConfig(
                    vectors={
                        name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)
                        for name, dim in vectors.items()
                    }
                )
                self._shard = qe.EdgeShard.create(str(self.path), config)
        except Exception as exc:  # the bindings raise plain exceptions
            raise StoreError(f"cannot open Qdrant Edge shard at {self.path}: {exc}") from exc
        self._indexed: set[str] = set(self._shard.info().payload_schema)

    # -- filters -------------------------------------------------------------------------------

    @staticmethod
    def _condition(c: Condition) -> tuple[str, Any]:
        """One condition -> ("must" | "must_not", qdrant condition)."""
        qe = _qe()
        match c.op:
            case "eq":
                return "must", qe.FieldCondition(key=c.field, match=qe.MatchValue(c.value))
            case "ne":
                return "must_not", qe.FieldCondition(key=c.field, match=qe.MatchValue(c.value))
            case "in":
                return "must", qe.FieldCondition(key=c.field, match=qe.MatchAny(list(c.value)))
            case "not_in":
                return "must_not", qe.FieldCondition(key=c.field, match=qe.MatchAny(list(c.value)))
            case "range":
                rng = qe.RangeFloat(gt=c.gt, gte=c.gte, lt=c.lt, lte=c.lte)
                return "must", qe.FieldCondition(key=c.field, range=rng)
        raise StoreError(f"unsupported condition {c}")

    def _filter(self, flt: Filter | None) -> Any:
        if flt is None or not flt.conditions:
            return None
        must: list[Any] = []
        must_not: list[Any] = []
        for c in flt.conditions:
            kind, cond = self._condition(c)
            (must if kind == "must" else must_not).append(cond)
        return _qe().Filter(must=must or None, must_not=must_not or None)

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        qe = _qe()
        batch = [
            qe.Point(
                id=p.id,
                vector={k: as_vector(v).tolist() for k, v in p.vectors.items()},
                payload=dict(p.payload),
            )
            for p in points
        ]
        self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._shard.update(_qe().UpdateOperation.delete_points(list(ids)))

    def delete_where(self, flt: Filter) -> None:
        self._shard.update(_qe().UpdateOperation.delete_points_by_filter(self._filter(flt)))

    def set_payload(self, flt: Filter, payload: Mapping[str, Any]) -> None:
        op = _qe().UpdateOperation.set_payload_by_filter(self._filter(flt), dict(payload))
        self._shard.update(op)

    def ensure_index(self, field_name: str, kind: IndexKind) -> None:
        if field_name in self._indexed:
            return
        qe = _qe()
        schema: Any = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.PayloadSchemaType.Integer,
            "float": qe.PayloadSchemaType.Float,
            "bool": qe.PayloadSchemaType.Bool,
        }.get(kind)
        if kind == "text":
            # Words, lower-cased, English stemming ("apples" finds "apple"), with the term
            # statistics BM25 scoring needs.
            schema = qe.TextIndexParams(
                tokenizer=qe.TokenizerType.Word,
                lowercase=True,
                stemmer=qe.SnowballParams(qe.SnowballLanguage.English),
                scoring=True,
            )
        self._shard.update(qe.UpdateOperation.create_field_index(field_name, schema))
        self._indexed.add(field_name)

    # -- reads ---------------------------------------------------------------------------------

    def _query(self, vector: F32, using: str, limit: int, flt: Filter | None, payload: Any) -> Any:
        qe = _qe()
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(as_vector(vector).tolist(), using=using),
            filter=self._filter(flt),
            with_payload=payload,
        )
        return self._shard.query(request)

    def search(
        self, vector: F32, *, using: str = "image", limit: int = 10, flt: Filter | None = None
    ) -> list[Hit]:
        return [
            Hit(
                _pid(p.id),
                float(p.score),
                str((p.payload or {}).get("item_id", "")),
                p.payload or {},
            )
            for p in self._query(vector, using, limit, flt, True)
        ]

    def search_groups(
        self,
        vector: F32,
        *,
        using: str = "image",
        groups: int = 10,
        group_by: str = "item_id",
        flt: Filter | None = None,
    ) -> list[Hit]:
        # Group on the key alone, then fetch the winners' payloads: moving whole payloads of the
        # over-fetched points costs more than the vector search itself.
        key_only = _qe().PayloadSelector.Include([group_by])
        limit = max(groups * 4, 32)
        while True:
            points = self._query(vector, using, limit, flt, key_only)
            best: dict[Any, Any] = {}
            for p in points:
                key = (p.payload or {}).get(group_by)
                if key is not None and key not in best:
                    best[key] = p
                    if len(best) == groups:
                        break
            if len(best) == groups or len(points) < limit:
                break
            limit *= 4
        winners = list(best.values())
        payloads = {
            _pid(r.id): r.payload or {}
            for r in self._shard.retrieve(
                [p.id for p in winners], with_payload=True, with_vector=False
            )
        }
        return [
            Hit(
                _pid(p.id),
                float(p.score),
                str(payloads[_pid(p.id)].get("item_id", "")),
                payloads[_pid(p.id)],
            )
            for p in winners
        ]

    def text_search(
        self, field_name: str, query: str, *, limit: int = 10, flt: Filter | None = None
    ) -> list[Hit]:
        qe = _qe()
        self.ensure_index(field_name, "text")
        request = qe.QueryRequest(
            limit=limit,
            query=qe.TextQuery(field_name, query),
            filter=self._filter(flt),
            with_payload=True,
        )
        return [
            Hit(
                _pid(p.id),
                float(p.score),
                str((p.payload or {}).get("item_id", "")),
                p.payload or {},
            )
            for p in self._shard.query(request)
        ]

    def count(self, flt: Filter | None = None) -> int:
        return int(self._shard.count(_qe().CountRequest(exact=True, filter=self._filter(flt))))

    def scroll(
        self,
        flt: Filter | None = None,
        *,
        fields: Sequence[str] | None = None,
        with_vectors: bool = False,
    ) -> Iterator[PointRecord]:
        qe = _qe()
        offset: Any = None
        with_payload: Any = True if fields is None else qe.PayloadSelector.Include(list(fields))
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=self._filter(flt),
                    with_payload=with_payload,
                    with_vector=with_vectors,
                )
            )
            for r in records:
                yield self._record(r, with_vectors)
            if offset is None:
                return

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[PointRecord]:
        if not ids:
            return []
        records = self._shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [self._record(r, with_vectors) for r in records]

    @staticmethod
    def _record(r: Any, with_vectors: bool) -> PointRecord:
        vectors: dict[str, F32] = {}
        if with_vectors and isinstance(r.vector, dict):
            vectors = {k: as_vector(v) for k, v in r.vector.items()}
        return PointRecord(_pid(r.id), vectors, dict(r.payload or {}))

    def facet(self, field_name: str, flt: Filter | None = None, limit: int = 20) -> dict[Any, int]:
        qe = _qe()
        self.ensure_index(field_name, "keyword")  # Qdrant facets need a keyword index
        response = self._shard.facet(
            qe.FacetRequest(key=field_name, limit=limit, exact=True, filter=self._filter(flt))
        )
        return {_facet_value(h.value): int(h.count) for h in response.hits}

    def payload_schema(self) -> dict[str, str]:
        schema = self._shard.info().payload_schema
        return {
            name: str(info.data_type).rsplit(".", 1)[-1].lower() for name, info in schema.items()
        }

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> bool:
        """Build HNSW / merge segments now instead of on the next writes."""
        return bool(self._shard.optimize())

    def close(self) -> None:
        if getattr(self, "_shard", None) is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


def _facet_value(v: Any) -> Any:
    # The bindings wrap values (Keyword("x")); unwrap to the plain Python value.
    for attr in ("value", "_0"):
        if hasattr(v, attr):
            return getattr(v, attr)
    text = str(v)
    if "(" in text and text.endswith(")"):
        inner = text[text.index("(") + 1 : -1]
        return inner.strip('"')
    return v
