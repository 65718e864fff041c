"""`--where` expressions -> `Filter`.

Grammar (case-insensitive keywords), conditions joined by AND:
    field = 'text' | field != 3 | field < 10.5 | field >= 2 | field in ('a', 'b') | field not in (1, 2)
Strings are single- or double-quoted; bare numbers are numbers; true/false are booleans.
"""

from __future__ import annotations

import re
from typing import Any

from lookalike.errors import QueryError
from lookalike.store.base import Condition, Filter

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


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"cannot parse filter at {text[pos:]!r} (in {text!r})")
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind)
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

    def expect(kind: str) -> Any:
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
            values: list[Any] = [expect("value")]
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


def _comparison(field: str, op: str, value: Any, text: str) -> Condition:
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
