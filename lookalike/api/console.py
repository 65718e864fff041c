"""What every CLI command shares: the stderr console and the mapping of errors to exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """LookalikeError -> a red one-line message on stderr and the error's exit code, no traceback.

    Anything else propagates: an unexpected exception is a bug and its traceback is wanted.
    """
    from lookalike.errors import LookalikeError

    try:
        yield
    except LookalikeError as exc:
        from rich.markup import escape

        stderr_console().print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
