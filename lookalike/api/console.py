"""What every CLI command shares: the stderr console and the mapping of errors to exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from lookalike.errors import LookalikeError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn, TaskID
    from rich.table import Table


def print_json(data: object) -> None:
    """`data` as indented JSON on stdout: what `--json` prints."""
    typer.echo(json.dumps(data, indent=2, default=str))


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def table_of(title: str, *columns: str, fold: bool = False) -> Iterator[Table]:
    """A rich table titled `title` with `columns`, for the block to fill; printed on stdout when
    the block ends. `fold`: wrap long cells (whole paths, even in 80 columns), do not cut them."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold" if fold else "ellipsis")
    yield table
    Console().print(table)


def capped(console: Console, lines: Sequence[str], limit: int = 50) -> None:
    """Print the first `limit` of `lines`, then how many more there are (`--json` has them all)."""
    for line in lines[:limit]:
        console.print(line)
    if len(lines) > limit:
        console.print(f"  ... and {len(lines) - limit} more (use --json for all)")


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """LookalikeError -> a red one-line message on stderr and the error's exit code, no traceback.

    Anything else propagates: an unexpected exception is a bug and its traceback is wanted.
    """
    try:
        yield
    except LookalikeError as exc:
        from rich.markup import escape

        # soft_wrap: one line, never cut at the console's width (a long path broke "already lives"
        # over two lines for whoever greps or pipes stderr).
        stderr_console().print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A `progress(stage, done, total)` callback drawing one rich bar per stage on stderr (the
    library's progress protocol); a no-op when not `enabled` (--json keeps stdout and stderr
    clean). `total` 0 means unknown (an indeterminate bar)."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    with stage_bars(14) as update:
        yield update


@contextmanager
def stage_bars(width: int, *extra: ProgressColumn) -> Iterator[Callable[..., None]]:
    """`update(stage, done, total, **fields)` drawing one rich bar per stage on stderr: the stage
    (right-aligned in `width`), the bar, done/total, the `extra` columns (which may show
    `fields`), elapsed and remaining time. `total` 0 means unknown (an indeterminate bar)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(f"{{task.description:>{width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr_console(), transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int, **fields: Any) -> None:  # Any: for rich
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None, **fields)
            bar.update(tasks[stage], completed=done, total=total or None, **fields)

        yield update
