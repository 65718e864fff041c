"""Filters checked against the fields an index has, so a mistake is an error, not an empty answer.

A filter on a field no item has, or comparing a field with a value of another type (`in_stock = 1`
for a true/false field, `price = 'cheap'`), can only match nothing: `check_filter` says so, naming
the field and the fields the index has. A text value that no item has (`category = 'milk'` where
the catalogue says `Milk`) is caught by `check_values`, which suggests the close values the field
has (read through a facet, only when the value matched nothing).

Field kinds, as `field_kinds` reads them from payloads and `schema_kinds` from a store's payload
indexes: `text` (strings), `number` (integers and floats), `bool`, `list`, `object` (nested; its
dotted sub-fields are accepted unchecked) and `mixed` (values of several kinds: not checked).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lookalike.errors import FilterFieldError, FilterValueError
from lookalike.store.base import Filter
from lookalike.types import JSONValue

_SCHEMA_KINDS = {
    "keyword": "text",
    "text": "text",
    "integer": "number",
    "float": "number",
    "bool": "bool",
}
_LOOSE = ("list", "object", "mixed")
"""Kinds whose values are not checked (a list holds values of any kind)."""
_SHOWN = 12
"""Fields or values listed in a message at most."""


def value_kind(value: JSONValue) -> str | None:
    """The kind of one payload value; None for null (which says nothing about the field)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return "mixed"


def merge_kinds(*kinds: Mapping[str, str]) -> dict[str, str]:
    """Field -> kind over several sources: a field seen with two kinds is `mixed`."""
    out: dict[str, str] = {}
    for mapping in kinds:
        for name, kind in mapping.items():
            out[name] = kind if out.get(name, kind) == kind else "mixed"
    return out


def field_kinds(payloads: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Field -> kind of every field of `payloads` (nulls skipped)."""
    return merge_kinds(
        *(
            {name: kind for name, value in payload.items() if (kind := value_kind(value))}
            for payload in payloads
        )
    )


def schema_kinds(schema: Mapping[str, str]) -> dict[str, str]:
    """A store's payload index kinds (`Store.payload_schema`) as field kinds."""
    return {name: _SCHEMA_KINDS.get(kind, "mixed") for name, kind in schema.items()}


def _kind_of(name: str, kinds: Mapping[str, str]) -> str | None:
    if name in kinds:
        return kinds[name]
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):  # `specs.colour`: inside a nested object
        if kinds.get(".".join(parts[:i])) in ("object", "mixed"):
            return "mixed"
    return None


def _describe(kind: str) -> str:
    return {"text": "text", "number": "numbers", "bool": "true/false"}.get(kind, kind)


def _shown(values: Iterable[JSONValue]) -> str:
    values = list(values)
    text = ", ".join(repr(v) if not isinstance(v, str) else v for v in values[:_SHOWN])
    return text + (f" ... ({len(values)} in all)" if len(values) > _SHOWN else "")


def check_filter(flt: Filter | None, kinds: Mapping[str, str]) -> None:
    """Raise FilterFieldError for a condition on a field that `kinds` (field -> kind) does not
    have, or that compares it with a value of another kind. Fields of kind list, object or mixed
    take any value."""
    if flt is None:
        return
    for c in flt.conditions:
        kind = _kind_of(c.field, kinds)
        if kind is None:
            close = difflib.get_close_matches(c.field, list(kinds), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise FilterFieldError(
                f"no item has a field {c.field!r}{hint} Fields you can filter on: "
                f"{_shown(sorted(kinds)) or 'none'}"
            )
        if kind in _LOOSE:
            continue
        if c.op == "range":
            if kind != "number":
                raise FilterFieldError(
                    f"{c.field} holds {_describe(kind)}: <, <=, > and >= compare numbers"
                )
            continue
        values = c.value if c.op in ("in", "not_in") else (c.value,)
        for v in values:
            if value_kind(v) != kind:
                example = {"bool": "true", "number": "2.5", "text": "'some text'"}[kind]
                raise FilterFieldError(
                    f"{c.field} holds {_describe(kind)}, not {v!r}: compare it with a value "
                    f"like {c.field} = {example}"
                )


def check_values(
    flt: Filter | None,
    kinds: Mapping[str, str],
    *,
    count: Callable[[Filter], int],
    facet: Callable[[str], Mapping[JSONValue, int]],
) -> None:
    """Raise FilterValueError when an `=` / `in` condition on a text field matches no item at all,
    suggesting the field's close values (case aside, as `difflib` sees them).

    count: items matching a filter; facet: a field's values -> items (keyword-indexed fields).
    Costs one count per such condition; the facet only when it matched nothing.
    """
    if flt is None:
        return
    for c in flt.conditions:
        if c.op not in ("eq", "in") or _kind_of(c.field, kinds) != "text":
            continue
        if count(Filter((c,))) > 0:
            continue
        have = [v for v in facet(c.field) if isinstance(v, str)]
        asked = [c.value] if c.op == "eq" else list(c.value)
        close: list[str] = []
        for value in asked:
            lowered = {h.lower(): h for h in have}
            if value.lower() in lowered:
                close.append(lowered[value.lower()])
            close += difflib.get_close_matches(value, have, n=3, cutoff=0.6)
        close = list(dict.fromkeys(close))
        what = f"{c.field} = {asked[0]!r}" if len(asked) == 1 else f"{c.field} in {tuple(asked)}"
        if close:
            hint = f"did you mean {' or '.join(repr(v) for v in close)}?"
        else:
            hint = f"values it has: {_shown(have) or 'none'}"
        raise FilterValueError(f"no item has {what}; {hint}")
