"""Field values out of page text: plain text, prices and currencies."""

from __future__ import annotations

import html as html_lib
import math
import re

from selectolax.lexbor import LexborHTMLParser

_SPACES = re.compile(r"\s+")


def clean_text(value: object, max_len: int = 5000) -> str | None:
    """A JSON-LD / meta / element value as one line of plain text (tags and entities resolved)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return clean_text(value.get("name") or value.get("@value"), max_len)
    if isinstance(value, list):
        for v in value:
            text = clean_text(v, max_len)
            if text:
                return text
        return None
    text = str(value)
    if "<" in text and ">" in text:
        text = LexborHTMLParser(text).text(separator=" ") or ""
    text = _SPACES.sub(" ", html_lib.unescape(text)).strip()
    return text[:max_len] or None


_CURRENCY_SYMBOLS = (
    ("US$", "USD"),
    ("A$", "AUD"),
    ("C$", "CAD"),
    ("€", "EUR"),
    ("£", "GBP"),
    ("¥", "JPY"),
    ("₹", "INR"),
    ("₩", "KRW"),
    ("₺", "TRY"),
    ("zł", "PLN"),
    ("$", "USD"),
)
CURRENCY_CODES = frozenset(
    [
        "EUR",
        "USD",
        "GBP",
        "CHF",
        "JPY",
        "CNY",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "RON",
        "AUD",
        "CAD",
        "NZD",
        "INR",
        "BRL",
        "MXN",
        "ZAR",
        "KRW",
        "TRY",
        "HKD",
        "SGD",
        "ILS",
        "AED",
        "SAR",
        "THB",
        "IDR",
        "MYR",
        "PHP",
    ]
)
"""The ISO 4217 codes a price text is recognised by."""
_NUMBER = re.compile(r"\d[\d.,'\s\u00a0\u202f]*")


def parse_price(value: object) -> float | None:
    """A price as a number: 49.9, "49,90 €", "$1,299.00", "1.299,00", "1 299" ...; else None.

    With both `,` and `.`, the last one is the decimal mark; with one of them, it is a decimal
    mark unless it is repeated or followed by exactly three digits (a thousands separator).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, dict):
        return parse_price(value.get("price") or value.get("@value"))
    match = _NUMBER.search(str(value))
    if not match:
        return None
    token = re.sub(r"['\s\u00a0\u202f]", "", match.group()).rstrip(".,")
    if "," in token and "." in token:
        decimal = "," if token.rfind(",") > token.rfind(".") else "."
        other = "." if decimal == "," else ","
        token = token.replace(other, "").replace(decimal, ".")
    elif "," in token or "." in token:
        mark = "," if "," in token else "."
        head, _, tail = token.rpartition(mark)
        thousands = token.count(mark) > 1 or (len(tail) == 3 and head not in ("", "0"))
        token = token.replace(mark, "") if thousands else token.replace(mark, ".")
    try:
        number = float(token)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_currency(value: object) -> str | None:
    """An ISO 4217 code from a code (`eur`) or a symbol in a price text (`49,90 €`)."""
    text = clean_text(value, 200)
    if not text:
        return None
    for code in re.findall(r"[A-Za-z]{3}", text):
        if code.upper() in CURRENCY_CODES:
            return code.upper()
    return next((code for symbol, code in _CURRENCY_SYMBOLS if symbol in text), None)
