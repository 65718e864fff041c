"""Search results as JSON, one serialiser for both edges: `lookalike search --json`
(`result_json`) and the HTTP API's search answers (`search_out`, shaped as `SearchOut`); and a
person of the face index (`person_json`: `faces people list --json`, `/api/faces/people`).

Light on purpose (no numpy, no engine at import): the CLI and the HTTP app import it at start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from lookalike.api.served_files import ServedFiles
    from lookalike.engine.records import SearchResult
    from lookalike.faces.people import PersonView
    from lookalike.types import ProductHit


def result_json(result: SearchResult) -> dict[str, Any]:
    """`lookalike search --json`: one search's results (also each line of a batch's JSONL)."""
    qo = result.query_object
    return {
        "mode": result.mode,
        "score": result.score,
        "match": result.match,
        "query_object": {"label": qo.label, "box": list(qo.box), "score": qo.score} if qo else None,
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "results": [
            {
                "rank": i + 1,
                "item_id": h.item_id,
                "score": round(h.score, 4),
                **({"similarity": h.similarity_percent} if result.score == "cosine" else {}),
                "match": h.match,
                "image": h.image,
                "fields": dict(h.fields),
            }
            for i, h in enumerate(result.hits)
        ],
    }


def search_out(
    images: ServedFiles,
    hits: Sequence[ProductHit],
    k: int,
    mode: str,
    timings: Mapping[str, float],
    *,
    score_kind: str = "cosine",
    objects: list[dict[str, Any]] | None = None,
    query: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The HTTP API's search answer (`http_schemas.SearchOut`); `images` names and links the
    hits' images."""
    results = []
    for rank, hit in enumerate(hits, 1):
        fields = dict(hit.fields)
        url = images.url_for(hit.image)
        local = url is not None and url.startswith("/api/images/")
        results.append(
            {
                "rank": rank,
                "item_id": hit.item_id,
                "score": round(float(hit.score), 5),
                "similarity": hit.similarity_percent if score_kind == "cosine" else None,
                "match": hit.match,
                **display_fields(hit.item_id, fields),
                "image": images.name(hit.image),
                "image_url": url,
                "thumbnail_url": f"{url}?size=320" if local else url,
                "box": list(hit.box) if hit.box else None,
                "fields": fields,
            }
        )
    total = sum(timings.values())
    return {
        "mode": mode,
        "k": k,
        "score_kind": score_kind,
        "match": hits[0].match if hits else None,
        "results": results,
        "objects": objects or [],
        "query": query,
        "timings_ms": {
            **{k_: round(v, 2) for k_, v in timings.items()},
            "total": round(total, 2),
        },
    }


def display_fields(item_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """title, price and currency for cards, from the catalogue's usual field names."""
    title = fields.get("title") or fields.get("name") or item_id
    price = fields.get("price")
    currency = fields.get("currency")
    return {
        "title": str(title),
        "price": float(price) if _number(price) else None,
        "currency": str(currency) if isinstance(currency, str) else None,
    }


def _number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def person_json(p: PersonView) -> dict[str, Any]:
    """A person of the face index (`lookalike.faces.people.PersonView`): id, name and counts;
    each edge adds its own `cover`."""
    return {
        "person": p.person_id,
        "name": p.name,
        "hidden": p.hidden,
        "faces": len(p.faces),
        "photos": len(p.photos),
    }
