"""The engine: one facade (`Engine`) over the modules that index, search and keep an index folder.

`from lookalike.engine import Engine` is lazy so that importing a small part (the manifest, the
lock) does not import onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.engine.core import Engine, QueryObject, SearchResult

_PUBLIC = ("Engine", "QueryObject", "SearchResult")


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        from lookalike.engine import core

        return getattr(core, name)
    raise AttributeError(name)


__all__ = ["Engine", "QueryObject", "SearchResult"]
