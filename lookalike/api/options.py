"""CLI options shared by the command groups (`lookalike`, `lookalike faces`, ...), so every command
spells `--index` and `--json` the same way. Light: typer only (`--help` stays instant)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", help="Index folder (default: $LOOKALIKE_INDEX or ./lookalike-index)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
