"""How the `lookalike` commands open an index: an `Engine` with the command line's settings, or
the running `lookalike serve` that has the index open. Light at import: the engine loads inside."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.api.remote import ServedIndex
    from lookalike.engine.core import Engine


def open_engine(
    index: Path | None,
    embedder: str | None = None,
    mirror: Path | None = None,
    views: dict[str, Any] | None = None,
    store: str | None = None,
) -> Engine:
    """An engine on `index`. `views`: view settings given on the command line (detect, isolate,
    labels); for an existing index they must match what built it."""
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.engine.wiring import view_settings

    overrides: dict[str, Any] = {k: v for k, v in (views or {}).items() if v is not None}
    if mirror is not None:
        overrides["models_mirror"] = mirror
    settings = Settings(**overrides)
    asked = view_settings(settings) if any(v is not None for v in (views or {}).values()) else None
    return Engine(
        index or settings.index,
        settings=settings,
        embedder=embedder,
        views=asked,
        store_spec=store,
    )


def through_server(engine: Engine) -> Engine | ServedIndex:
    """The running `lookalike serve` that has the engine's index open (the CLI then goes
    through it: the embedded store admits one process), else the engine itself."""
    from lookalike.api.remote import find_server

    if engine.manifest is not None:
        engine.store_record()  # a --store other than the index's is an error here too
    served = find_server(engine.index_dir)
    if served is None:
        return engine
    engine.close()
    return served


def local_only(engine: Engine, command: str) -> Engine:
    """`engine`, or a StoreError naming the server that has its embedded store open (`command`
    does not go through a server)."""
    from lookalike.api.remote import refuse_if_served

    if engine.manifest is not None and engine.store_record()["kind"] in ("edge", "qdrant-local"):
        refuse_if_served(engine.index_dir, command)
    return engine
