"""Qdrant Edge (`qdrant-edge-py`): the Qdrant engine in-process, persisted in a folder.

HNSW, payload indexes and filters, facets and a write-ahead log (every `update` is durable on return,
so a killed process loses nothing it was told was written). The Python bindings have no
`query_groups`, so `search_groups` over-fetches and groups here, widening until it has enough groups.

Qdrant Edge builds no HNSW graph by itself: points stay in plain (exact, full-scan) segments until
`optimize()` runs (measured: 6,000 points, 0 indexed). `settle()` runs it once the shard is large
enough for a graph to pay (`EdgeParams.optimize_threshold`); the engine calls it after each
indexing run. Graph and quantisation parameters are fixed when the shard is created
(`edge_config.json`); `hnsw_ef` and rescoring apply per query. Measurements: docs/parts/scale.md
and docs/benchmarks.md ("Edge store: HNSW after indexing").
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import qdrant_edge as qe

from lookalike.errors import StoreError
from lookalike.store import qdrant_common as common
from lookalike.store.base import Filter, IndexKind, PointRecord, Store, as_vector
from lookalike.types import F32, Hit, JSONValue


@dataclass(frozen=True)
class EdgeParams:
    """How an Edge shard indexes and searches (defaults measured in docs/parts/scale.md).

    m, ef_construct: HNSW graph degree and build beam (used when the shard is created).
    hnsw_ef: search beam per query (recall / latency trade-off; 64 gave recall@10 0.995 at 100k).
    quantization: `int8` (new shards only): scalar int8 codes (quantile 0.99) in RAM, float32
        originals on disk (`Memory.Cold`), candidates rescored with the originals.
    oversampling: with int8, candidates rescored per result wanted (1 caps recall near 0.95).
    optimize_threshold: `settle()` builds the graph only from this many points on; below, an exact
        scan is about as fast and the build is not worth its time on every small run.
    full_scan_threshold_kb: per segment, below this size (KiB of vectors) or filtered cardinality
        Qdrant answers by exact scan instead of the graph (Qdrant's own default, 10,000).
    indexing_threshold_kb: Qdrant's optimizer builds a graph only for segments with at least this
        many KiB of vectors (None: Qdrant's default, 10,000 KiB = 2,000 vectors of 1280-d, which
        is why `optimize_threshold` defaults to 2,000). Tests lower it to get graphs on tiny data.
    acorn: filtered graph searches also walk through neighbours that fail the filter (ACORN),
        whatever the filter's selectivity. Needed by the engine's own layout: item centroids
        (means, hence hubs of the graph) share the vector space with the views, and a view search
        that filters them out without ACORN lost recall (grocery: recall@10 0.80-0.89 at
        hnsw_ef 64, 0.90 at 512; with ACORN 1.0; docs/benchmarks.md).
    """

    m: int = 32
    ef_construct: int = 200
    hnsw_ef: int = 64
    quantization: Literal["none", "int8"] = "none"
    oversampling: float = 2.0
    optimize_threshold: int = 2000
    full_scan_threshold_kb: int = 10_000
    acorn: bool = True
    indexing_threshold_kb: int | None = None


class EdgeStore(Store):
    """One Edge shard in `path`. `vectors` maps vector names to dimensions (used when creating);
    `params` the graph, quantisation and search settings (graph and quantisation: creation only)."""

    def __init__(
        self, path: Path, vectors: Mapping[str, int], params: EdgeParams | None = None
    ) -> None:
        self.path = Path(path)
        self.params = params or EdgeParams()
        try:
            if (self.path / "edge_config.json").exists():
                self._shard = qe.EdgeShard.load(str(self.path))
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self._shard = qe.EdgeShard.create(str(self.path), self._config(vectors))
        except Exception as exc:  # the bindings raise plain exceptions
            raise StoreError(f"cannot open Qdrant Edge shard at {self.path}: {exc}") from exc
        self._indexed: set[str] = set(self._shard.info().payload_schema)
        self._search_params = qe.SearchParams(
            hnsw_ef=self.params.hnsw_ef,
            acorn=qe.AcornSearchParams(enable=True, max_selectivity=1.0)
            if self.params.acorn
            else None,
            # Ignored by shards without quantisation; with int8 it rescores with the originals.
            quantization=qe.QuantizationSearchParams(
                rescore=True, oversampling=self.params.oversampling
            ),
        )

    def _config(self, vectors: Mapping[str, int]) -> qe.EdgeConfig:
        p = self.params
        quant: qe.ScalarQuantizationConfig | None = None
        originals = None
        if p.quantization == "int8":
            quant = qe.ScalarQuantizationConfig(
                qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned
            )
            # Codes in RAM for the graph walk; only the rescored candidates' originals are read.
            originals = qe.Memory.Cold
        elif p.quantization != "none":
            raise StoreError(f"unknown quantization {p.quantization!r}; use none or int8")
        return qe.EdgeConfig(
            vectors={
                name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, memory=originals)
                for name, dim in vectors.items()
            },
            hnsw_config=qe.HnswIndexConfig(
                m=p.m, ef_construct=p.ef_construct, full_scan_threshold=p.full_scan_threshold_kb
            ),
            quantization_config=quant,
            optimizers=None
            if p.indexing_threshold_kb is None
            else qe.EdgeOptimizersConfig(indexing_threshold=p.indexing_threshold_kb),
        )

    # -- filters -------------------------------------------------------------------------------

    @staticmethod
    def _filter(flt: Filter | None) -> qe.Filter | None:
        return common.build_filter(flt, _SPELLING, qe.Filter)

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        batch = common.point_structs(points, qe.Point)
        self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def delete_where(self, flt: Filter) -> None:
        flt_all = self._filter(flt) or qe.Filter()
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(flt_all))

    def set_payload(self, flt: Filter, payload: Mapping[str, Any]) -> None:
        flt_all = self._filter(flt) or qe.Filter()
        self._shard.update(qe.UpdateOperation.set_payload_by_filter(flt_all, dict(payload)))

    def ensure_index(self, field_name: str, kind: IndexKind) -> None:
        if field_name in self._indexed:
            return
        schema: qe.PayloadSchemaType | qe.TextIndexParams
        if kind == "text":
            # Words, lower-cased, English stemming ("apples" finds "apple"), with the term
            # statistics BM25 scoring needs.
            schema = qe.TextIndexParams(
                tokenizer=qe.TokenizerType.Word,
                lowercase=True,
                stemmer=qe.SnowballParams(qe.SnowballLanguage.English),
                scoring=True,
            )
        else:
            schema = getattr(qe.PayloadSchemaType, kind.capitalize())  # keyword -> Keyword ...
        self._shard.update(qe.UpdateOperation.create_field_index(field_name, schema))
        self._indexed.add(field_name)

    # -- reads ---------------------------------------------------------------------------------

    def _nearest(
        self, vector: F32, using: str, limit: int, flt: Filter | None, fields: list[str] | None
    ) -> list[Hit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(as_vector(vector).tolist(), using=using),
            filter=self._filter(flt),
            with_payload=True if fields is None else qe.PayloadSelector.Include(fields),
            params=self._search_params,
        )
        return [common.hit(p) for p in self._shard.query(request)]

    def text_search(
        self, field_name: str, query: str, *, limit: int = 10, flt: Filter | None = None
    ) -> list[Hit]:
        self.ensure_index(field_name, "text")
        request = qe.QueryRequest(
            limit=limit,
            query=qe.TextQuery(field_name, query),
            filter=self._filter(flt),
            with_payload=True,
        )
        return [common.hit(p) for p in self._shard.query(request)]

    def count(self, flt: Filter | None = None) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True, filter=self._filter(flt))))

    def _scroll(
        self, flt: Filter | None, fields: Sequence[str] | None, with_vectors: bool
    ) -> Iterator[PointRecord]:
        request = partial(
            qe.ScrollRequest,
            limit=common.SCROLL_PAGE,
            filter=self._filter(flt),
            with_payload=True if fields is None else qe.PayloadSelector.Include(list(fields)),
            with_vector=with_vectors,
        )

        def fetch(offset: qe.PointId | None) -> tuple[list[qe.Record], qe.PointId | None]:
            return self._shard.scroll(request(offset=offset))

        return common.paged(fetch, None, with_vectors)

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[PointRecord]:
        if not ids:
            return []
        records = self._shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [common.record(r, with_vectors) for r in records]

    def _facet(self, field_name: str, flt: Filter | None, limit: int) -> dict[JSONValue, int]:
        self.ensure_index(field_name, "keyword")  # Qdrant facets need a keyword index
        response = self._shard.facet(
            qe.FacetRequest(key=field_name, limit=limit, exact=True, filter=self._filter(flt))
        )
        return {h.value: int(h.count) for h in response.hits}

    def payload_schema(self) -> dict[str, str]:
        schema = self._shard.info().payload_schema
        return {
            name: str(info.data_type).rsplit(".", 1)[-1].lower() for name, info in schema.items()
        }

    def disk_bytes(self) -> int:
        return common.folder_bytes(self.path)

    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> bool:
        """Build the HNSW graph and merge segments now (Edge never does it on its own)."""
        return bool(self._shard.optimize())

    def settle(self) -> bool:
        """After a batch of writes: `optimize()` when the shard holds at least
        `params.optimize_threshold` points and some are not in a graph yet. True if it ran."""
        info = self.info()
        if info["points"] < self.params.optimize_threshold:
            return False
        # indexed_vectors_count counts every named vector: compare with points x vectors.
        try:
            config = json.loads((self.path / "edge_config.json").read_text())
            named = max(1, len(config.get("vectors") or {}))
        except (OSError, ValueError):
            named = 1  # the `image` vector alone
        if info["indexed_vectors"] >= info["points"] * named:
            return False
        return self.optimize()

    def info(self) -> dict[str, int]:
        """points, indexed_vectors (in HNSW graphs) and segments of the shard."""
        i = self._shard.info()
        return {
            "points": int(i.points_count),
            "indexed_vectors": int(i.indexed_vectors_count),
            "segments": int(i.segments_count),
        }

    def close(self) -> None:
        if getattr(self, "_shard", None) is not None:
            self._shard.flush()
            self._shard.close()
            del self._shard  # closed: close() again does nothing


def _match(key: str, value: JSONValue) -> qe.FieldCondition:
    # The bindings read a Python bool as the integer 0 / 1 (bool is an int subclass), which
    # matches no boolean payload: numpy's bool is not an int, so it arrives as a boolean.
    if isinstance(value, bool):
        value = np.bool_(value)
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


_SPELLING: common.Spelling[qe.ConditionType] = common.Spelling(
    match=_match,
    match_any=lambda key, values: qe.FieldCondition(key=key, match=qe.MatchAny(values)),
    range=lambda key, b: qe.FieldCondition(key=key, range=qe.RangeFloat(**b)),
    any_of=lambda conditions: qe.Filter(should=conditions),
)
