"""The base of an engine's collaborators (`Indexer`, `Searcher`, `TextFusion`, `FilterFields`), and
the facade's methods that are theirs (`Forward`)."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, Generic, ParamSpec, TypeVar, overload

if TYPE_CHECKING:
    from lookalike.engine.core import Engine

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


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


class Forward(Generic[P, R]):
    """A facade method that is a collaborator's: `query_vector = Forward("_searcher",
    Searcher.query_vector)` makes `engine.query_vector(...)` call the engine's `Searcher`, with
    the same signature (for the type checker too) and docstring. The facade's own methods
    (index, search, search_text, similar, delete, item, stats) stay written out."""

    def __init__(self, part: str, method: Callable[Concatenate[S, P], R]) -> None:
        self.part, self.name = part, method.__name__
        self.__doc__ = method.__doc__
        params = list(inspect.signature(method).parameters.values())[1:]  # without self
        self.shown = f"{method.__qualname__}{inspect.Signature(params)}"

    def __repr__(self) -> str:
        """What `help(Engine)` shows: the collaborator's method, its signature."""
        return self.shown

    @overload
    def __get__(self, engine: None, owner: type) -> Forward[P, R]: ...
    @overload
    def __get__(self, engine: object, owner: type) -> Callable[P, R]: ...
    def __get__(self, engine: object | None, owner: type) -> Forward[P, R] | Callable[P, R]:
        if engine is None:
            return self
        method: Callable[P, R] = getattr(getattr(engine, self.part), self.name)
        return method
