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

EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        "--embedder", help="Image embedder (see `lookalike models list`) (default: the index's)."
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Where the vectors live: edge (embedded, default), qdrant://HOST:6333/COLLECTION, "
        "qdrants://..., qdrant+local://PATH#COLLECTION. Default: what the index records, else "
        "$LOOKALIKE_STORE (faces: edge; their collection is COLLECTION-faces). API key: $LOOKALIKE_QDRANT_API_KEY or $QDRANT_API_KEY.",
    ),
]
MirrorOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-mirror", "--mirror", help="Folder of model files tried before cache and network."
    ),
]
WhereOpt = Annotated[
    str | None,
    typer.Option("--where", help="Filter, e.g. \"category = 'Milk' and price < 100\"."),
]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="centroid (mean of an item's views) or views (its best view) "
        "(default: $LOOKALIKE_MODE or centroid).",
    ),
]
KOpt = Annotated[int, typer.Option("-k", "--k", help="Number of products to return.")]
