"""`lookalike models ...`: list, fetch and import model files.

A thin layer over `lookalike.models.store.ModelStore`: it builds the store from flags and settings,
draws progress and tables with rich, and maps `LookalikeError` to a red message and an exit code.
Heavy modules (pydantic, numpy via the catalogue, httpx) are imported inside the commands so that
`lookalike --help` stays instant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lookalike.api.console import errors_to_exit, print_json, stderr_console, table_of

if TYPE_CHECKING:
    from rich.console import Console

    from lookalike.models.store import ModelStore

app = typer.Typer(help="List, fetch and import models.", no_args_is_help=True)

MirrorOpt = Annotated[
    Path | None,
    typer.Option(
        "--mirror",
        "--models-mirror",
        help="Folder of model files tried before the cache and the network "
        "(default: env LOOKALIKE_MODELS_MIRROR).",
        show_default=False,
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Model cache folder (default: env LOOKALIKE_CACHE_DIR, else ~/.cache/lookalike).",
        show_default=False,
    ),
]
OfflineOpt = Annotated[
    bool | None,
    typer.Option(
        "--offline/--online",
        help="Never touch the network for models (default: env LOOKALIKE_OFFLINE, else online).",
        show_default=False,
    ),
]


def _store(
    mirror: Path | None,
    cache_dir: Path | None,
    offline: bool | None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> ModelStore:
    """A store from the flags, falling back to `Settings()` for each flag not given."""
    from lookalike.config import Settings
    from lookalike.engine import wiring

    flags = {"cache_dir": cache_dir, "models_mirror": mirror, "offline": offline}
    settings = Settings().replace(**{k: v for k, v in flags.items() if v is not None})
    return wiring.model_store(settings, progress)


@contextmanager
def _warnings_shown(console: Console) -> Iterator[None]:
    """Show the store's warnings (corrupt copies, failed sources) while a command runs."""
    from rich.markup import escape

    class _ToConsole(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            console.print(f"[yellow]warning:[/yellow] {escape(record.getMessage())}")

    logger = logging.getLogger("lookalike.models.store")
    handler = _ToConsole(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _state(status: dict[str, Any]) -> str:
    files = status["files"]
    verified = sum(f["verified"] for f in files)
    present = sum(f["present"] for f in files)
    if verified == len(files):
        return "[green]verified[/green]"
    if present == len(files):
        return "[yellow]present, not yet verified[/yellow]"
    if present:
        return f"[yellow]partial {present}/{len(files)}[/yellow]"
    return "[dim]missing[/dim]"


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    mirror: MirrorOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = None,
) -> None:
    """List the catalogue's models and whether their files are present and verified."""
    with errors_to_exit():
        store = _store(mirror, cache_dir, offline)
        statuses = [store.status(name) for name in store.catalogue]
        if as_json:
            print_json(statuses)
            return
        title = f"models (cache: {store.cache_dir})"
        with table_of(title, "name", "role", "license", "state", "files") as table:
            for s in statuses:
                files = ", ".join(f["filename"] for f in s["files"])
                table.add_row(s["name"], s["role"], s["license"], _state(s), files)


@app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="Model name, as `lookalike models list` shows.")],
    mirror: MirrorOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = None,
) -> None:
    """Fetch (or export) every file of model NAME and verify it."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = stderr_console()
    with (
        errors_to_exit(),
        _warnings_shown(console),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as bar,
    ):
        tasks: dict[str, Any] = {}

        def on_progress(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        store = _store(mirror, cache_dir, offline, progress=on_progress)
        paths = store.pull(name)
        bar.stop()
        for path in paths:
            typer.echo(str(path))


@app.command("import")
def import_models(
    directory: Annotated[
        Path,
        typer.Argument(help="Folder holding model files (flat, or one sub-folder per model)."),
    ],
    mirror: MirrorOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = None,
) -> None:
    """Copy the model files found in DIRECTORY into the cache, verifying each one."""
    console = stderr_console()
    with errors_to_exit(), _warnings_shown(console):
        store = _store(mirror, cache_dir, offline)
        done = store.import_dir(directory)
        if done:
            console.print(f"[green]complete:[/green] {', '.join(done)}")
        else:
            console.print("no complete model found in the folder")
        for name in done:
            typer.echo(name)
