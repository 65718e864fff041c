"""Exact, in-process store on numpy: the reference the contract suite checks other backends against,
and a fast fake for unit tests. Not persisted."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from lookalike.store.base import Filter, IndexKind, PointRecord, Store, as_vector, flatten
from lookalike.types import F32, Hit, JSONValue


class MemoryStore(Store):
    def __init__(self) -> None:
        self._points: dict[str, PointRecord] = {}
        self._schema: dict[str, str] = {}

    def upsert(self, points: Sequence[PointRecord]) -> None:
        for p in points:
            vectors = {k: as_vector(v) for k, v in p.vectors.items()}
            self._points[p.id] = PointRecord(p.id, vectors, dict(p.payload))

    def delete(self, ids: Sequence[str]) -> None:
        for i in ids:
            self._points.pop(i, None)

    def delete_where(self, flt: Filter) -> None:
        self.delete([p.id for p in self._matching(flt)])

    def _matching(self, flt: Filter | None) -> list[PointRecord]:
        """The points `flt` keeps (every point without a filter), in insertion order."""
        return [p for p in self._points.values() if flt is None or flt.matches(p.payload)]

    def _nearest(
        self, vector: F32, using: str, limit: int, flt: Filter | None, fields: list[str] | None
    ) -> list[Hit]:
        cands = [p for p in self._matching(flt) if using in p.vectors]
        if not cands:
            return []
        mat = np.stack([p.vectors[using] for p in cands])
        q = as_vector(vector)
        # Cosine: stored vectors may not be unit length, so normalise both sides here.
        scores = (
            mat @ q / (np.linalg.norm(mat, axis=1) * max(float(np.linalg.norm(q)), 1e-12) + 1e-12)
        )
        order = np.argsort(-scores, kind="stable")
        return [cands[i].hit(float(scores[i])) for i in order[:limit]]

    def text_search(
        self, field_name: str, query: str, *, limit: int = 10, flt: Filter | None = None
    ) -> list[Hit]:
        docs = [
            (p, _words(str(p.payload.get(field_name, ""))))
            for p in self._matching(flt)
            if field_name in p.payload
        ]
        terms = set(_words(query))
        if not docs or not terms:
            return []
        avg_len = sum(len(w) for _, w in docs) / len(docs)
        df = {t: sum(1 for _, w in docs if t in w) for t in terms}
        idf = {t: math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
        scored = []
        for p, words in docs:
            norm = 1.2 * (0.25 + 0.75 * len(words) / avg_len)
            score = sum(idf[t] * tf * 2.2 / (tf + norm) for t in terms if (tf := words.count(t)))
            if score > 0:
                scored.append((score, p))
        scored.sort(key=lambda sp: -sp[0])
        return [p.hit(sc) for sc, p in scored[:limit]]

    def count(self, flt: Filter | None = None) -> int:
        return len(self._matching(flt))

    def _scroll(
        self, flt: Filter | None, fields: Sequence[str] | None, with_vectors: bool
    ) -> Iterator[PointRecord]:
        for p in self._matching(flt):
            yield _copy(p, with_vectors, fields)

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[PointRecord]:
        return [_copy(p, with_vectors) for p in map(self._points.get, ids) if p is not None]

    def set_payload(self, flt: Filter, payload: Mapping[str, Any]) -> None:
        for p in self._matching(flt):
            self._points[p.id] = PointRecord(p.id, p.vectors, {**p.payload, **payload})

    def ensure_index(self, field_name: str, kind: IndexKind) -> None:
        self._schema[field_name] = kind  # exact scan: nothing to build, but remember the kind

    def payload_schema(self) -> dict[str, str]:
        return dict(self._schema)

    def _facet(self, field_name: str, flt: Filter | None, limit: int) -> dict[JSONValue, int]:
        values = [p.payload[field_name] for p in self._matching(flt) if field_name in p.payload]
        counts = Counter(flatten(values))
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit])


def _copy(p: PointRecord, with_vectors: bool, fields: Sequence[str] | None = None) -> PointRecord:
    """A copy of `p` as read back: vectors only `with_vectors`, only `fields` of the payload."""
    payload = p.payload if fields is None else {k: p.payload[k] for k in fields if k in p.payload}
    return PointRecord(p.id, dict(p.vectors) if with_vectors else {}, dict(payload))


def singular(word: str) -> str:
    """`word` without a crude English plural ending (`boxes` -> `box`, `apples` -> `apple`)."""
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    """Lower-cased words with a crude English plural stemmer: the reference, not a linguist."""
    return [singular(w) for w in re.findall(r"[\w]+", text.lower())]
