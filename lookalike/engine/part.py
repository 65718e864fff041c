"""The base of an engine's collaborators (`Indexer`, `Searcher`, `TextFusion`, `FilterFields`)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lookalike.engine.core import Engine


class EnginePart:
    """A collaborator the `Engine` facade keeps for its lifetime. It holds the engine weakly, so
    that no reference cycle keeps an engine dropped without `close()` (and its open store)
    alive until the garbage collector runs."""

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)

    @property
    def engine(self) -> Engine:
        engine = self._engine()
        if engine is None:
            raise ReferenceError("the engine this belongs to is gone")
        return engine
