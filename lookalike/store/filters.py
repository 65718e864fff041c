"""Filters in two syntaxes, one model (`Filter`): `--where` expressions (`parse_where`) and JSON
filters (`structured_filter`, the HTTP API's `filters`); `combined_filter` ANDs both.

`where` grammar (case-insensitive keywords), conditions joined by AND:
    field = 'text' | field != 3 | field < 10.5 | field >= 2 | field in ('a', 'b') | field not in (1, 2)
Strings are single- or double-quoted; bare numbers are numbers; true/false are booleans.

JSON filters: `{field: value | [values] | {"gte": .., "lt": ..}}`, all must hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from lookalike.errors import QueryError
from lookalike.json_input import check_depth, loads
from lookalike.store.base import Condition, Filter
from lookalike.types import JSONValue

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op><=|>=|!=|==|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, JSONValue]]:
    out: list[tuple[str, JSONValue]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"cannot parse filter at {text[pos:]!r} (in {text!r})")
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind or 0)  # one named alternative always matched: kind is set
        if kind == "str":
            out.append(("value", re.sub(r"\\(.)", r"\1", raw[1:-1])))
        elif kind == "num":
            out.append(("value", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif kind == "word" and raw.lower() in ("true", "false"):
            out.append(("value", raw.lower() == "true"))
        elif kind == "word" and raw.lower() in ("and", "in", "not"):
            out.append((raw.lower(), raw))
        else:
            out.append((kind or "", raw))
    return out


def parse_where(text: str | None) -> Filter | None:
    """Parse a `--where` expression; None or blank gives None. Raises QueryError on bad syntax."""
    if text is None or not text.strip():
        return None
    toks = _tokens(text)
    conditions: list[Condition] = []
    i = 0

    def expect(kind: str) -> JSONValue:
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind:
            found = toks[i][1] if i < len(toks) else "end of filter"
            raise QueryError(f"expected {kind} but found {found!r} in filter {text!r}")
        i += 1
        return toks[i - 1][1]

    while True:
        field = expect("word")
        if i < len(toks) and toks[i][0] in ("in", "not"):
            negate = toks[i][0] == "not"
            i += 1
            if negate:
                expect("in")
            expect("punct")
            values: list[JSONValue] = [expect("value")]
            while i < len(toks) and toks[i] == ("punct", ","):
                i += 1
                values.append(expect("value"))
            if expect("punct") != ")":
                raise QueryError(f"expected ')' in filter {text!r}")
            conditions.append(Condition(field, "not_in" if negate else "in", tuple(values)))
        else:
            op = expect("op")
            value = expect("value")
            conditions.append(_comparison(field, op, value, text))
        if i == len(toks):
            break
        expect("and")
    return Filter(tuple(conditions))


def _comparison(field: str, op: str, value: JSONValue, text: str) -> Condition:
    if op in ("=", "=="):
        if isinstance(value, float):
            return Condition(field, "range", gte=value, lte=value)
        return Condition(field, "eq", value)
    if op == "!=":
        return Condition(field, "ne", value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryError(f"{field} {op} needs a number, got {value!r} in filter {text!r}")
    bound = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
    return Condition(field, "range", **{bound: float(value)})


# -- JSON filters --------------------------------------------------------------------------------

_FIELD_NAME = re.compile(r"[A-Za-z_][\w\-]*")
_RANGE_KEYS = ("gt", "gte", "lt", "lte")


def structured_filter(spec: Mapping[str, Any] | str | None) -> Filter | None:
    """JSON filters -> Filter. `{field: value | [values] | {"gte": 1, "lt": 9}}`, all must hold.

    A float value matches numerically (as `field = 2.5` does in a `where` expression); a list matches
    any of its values (strings or integers); an empty list or an empty object adds no condition.
    Raises QueryError with the reason for anything else.
    """
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        spec = loads(spec, "filters (a JSON object)")
    else:
        check_depth(spec, "filters")
    if not isinstance(spec, Mapping):
        raise QueryError(f"filters must be a JSON object, got {type(spec).__name__}")
    conditions: list[Condition] = []
    for name, value in spec.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise QueryError(f"filters: {name!r} is not a field name")
        if isinstance(value, list):
            if not value:
                continue
            if not all(_keyword_like(v) for v in value):
                raise QueryError(f"filters: {name} lists must hold strings or integers")
            conditions.append(Condition(name, "in", tuple(value)))
        elif isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_RANGE_KEYS))
            if unknown:
                raise QueryError(
                    f"filters: {name} has {unknown}; a range takes {', '.join(_RANGE_KEYS)}"
                )
            for key, bound in value.items():
                if bound is not None and not _number(bound):
                    raise QueryError(f"filters: {name}.{key} must be a number, got {bound!r}")
            bounds = {key: float(bound) for key, bound in value.items() if bound is not None}
            if bounds:
                conditions.append(Condition(name, "range", **bounds))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise QueryError(f"filters: {name} must be a finite number")
            conditions.append(Condition(name, "range", gte=value, lte=value))
        elif isinstance(value, str | int | bool):
            conditions.append(Condition(name, "eq", value))
        else:
            raise QueryError(
                f"filters: {name} must be a value, a list of values or a range, got {value!r}"
            )
    return Filter(tuple(conditions)) if conditions else None


def _keyword_like(v: object) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def _number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def combined_filter(where: str | None, filters: Mapping[str, Any] | str | None) -> Filter | None:
    """The `where` expression AND the structured filters (either may be absent)."""
    expr = parse_where(where)
    structured = structured_filter(filters)
    return structured if expr is None else expr & structured
