"""JSON from requests, parsed with a bound on nesting: deep input is a 422, never a 500.

Python's `json` recurses once per `[` or `{`: 3,000 of them raise RecursionError, and shallower
input that still nests deeply would make later code (filters, payloads, the store) recurse. Every
JSON a client sends (filters, items) goes through `loads`; FastAPI's own body parsing is covered
by the app's RecursionError handler (`lookalike.api.http_errors`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from lookalike.errors import QueryError

if TYPE_CHECKING:  # lookalike.types imports numpy: keep the server's imports light
    from lookalike.types import JSONValue

MAX_DEPTH = 32
"""Deepest nesting of lists and objects accepted (an item or a filter needs 3)."""


def too_deep(what: str) -> QueryError:
    return QueryError(f"{what} is nested too deeply: at most {MAX_DEPTH} levels of [ and {{")


def loads(raw: str | bytes, what: str) -> JSONValue:
    """`raw` parsed. QueryError naming `what` when it is not JSON or nests over MAX_DEPTH.

    The JSON error keeps json's own reason and column (`Expecting value at column 3`).
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep(what) from None
    except json.JSONDecodeError as exc:
        raise QueryError(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except UnicodeDecodeError:
        raise QueryError(f"{what} is not valid JSON: it is not UTF-8 text") from None
    check_depth(value, what)
    return value


def check_depth(value: JSONValue, what: str) -> None:
    """QueryError when lists and dicts in `value` nest deeper than MAX_DEPTH. Iterative."""
    stack: list[tuple[JSONValue, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise too_deep(what)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)
