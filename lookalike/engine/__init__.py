"""The engine: one facade (`Engine`) over the modules that index, search and keep an index folder.

`from lookalike.engine import Engine` is lazy so that importing a small part (the manifest, the
lock) does not import onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.engine.records import QueryObject, SearchResult

_PUBLIC = ("Engine", "QueryObject", "SearchResult")


def __getattr__(name: str) -> type:
    if name == "Engine":
        from lookalike.engine import core

        return core.Engine
    if name in _PUBLIC:
        from lookalike.engine import records

        return getattr(records, name)
    raise AttributeError(name)


__all__ = ["Engine", "QueryObject", "SearchResult"]
