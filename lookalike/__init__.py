"""lookalike: visual similarity search. `from lookalike import Engine`."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lookalike.engine.core import Engine


def __getattr__(name: str) -> type[Engine]:
    # Lazy: importing lookalike (for the CLI's --help) must not import onnxruntime or numpy-heavy modules.
    if name == "Engine":
        from lookalike.engine.core import Engine

        return Engine
    raise AttributeError(name)


__all__ = ["Engine", "__version__"]
