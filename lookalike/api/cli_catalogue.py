"""`lookalike facets`, `duplicates`, `outliers`, `sample`: what a catalogue holds and its hygiene.

Registered on the app by `lookalike.api.cli`. Light at import (typer and the console only): the
engine loads inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lookalike.api.console import errors_to_exit, print_json, progress_bar, stderr_console
from lookalike.api.options import IndexOpt, JsonOpt, StoreOpt, WhereOpt
from lookalike.api.remote import local_only, open_engine, through_server


def facets(
    field_names: Annotated[list[str], typer.Argument(help="Fields to count (see `stats`).")],
    where: WhereOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Values per field.")] = 20,
    index: IndexOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How many items have each value of FIELD (among those matching --where)."""
    with errors_to_exit(), through_server(open_engine(index, store=store)) as engine:
        counts = {f: engine.facets(f, where=where, limit=limit) for f in field_names}
    if as_json:
        print_json({f: [{"value": v, "count": n} for v, n in c.items()] for f, c in counts.items()})
        return
    for f, c in counts.items():
        typer.echo(f"{f}:")
        for v, n in c.items():
            typer.echo(f"  {n:6d}  {v}")


def duplicates(
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", help="Cosine similarity for 'same photo' (default: calibrated)."
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a page of the groups to this folder.")
    ] = None,
    index: IndexOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Near-identical photos filed under different items (catalogue hygiene)."""
    with errors_to_exit(), local_only(open_engine(index, store=store), "`duplicates`") as engine:
        from lookalike.evaluation.hygiene import (
            DUPLICATE_THRESHOLD,
            near_duplicates,
            write_duplicates_page,
        )

        t = DUPLICATE_THRESHOLD if threshold is None else threshold
        with progress_bar(not as_json) as progress:
            groups = near_duplicates(engine.store, threshold=t, progress=progress)
        page = write_duplicates_page(html / "index.html", groups, t) if html else None
    if as_json:
        print_json([{"items": g.items, "photos": [vars(p) for p in g.photos],
                     "min_similarity": g.min_similarity} for g in groups])  # fmt: skip
        return
    for g in groups:
        typer.echo(f"{g.min_similarity:.3f}  {', '.join(g.items)}")
        for ph in g.photos:
            typer.echo(f"        {ph.item_id}: {ph.image}")
    stderr_console().print(
        f"{len(groups)} group(s) at similarity >= {t:.3f}" + (f"; page: {page}" if page else "")
    )


def outliers(
    top: Annotated[int, typer.Option("--top", help="How many photos to list.")] = 20,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a page of the outliers to this folder.")
    ] = None,
    index: IndexOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Photos least like the rest of their item: candidates for a wrong label."""
    with errors_to_exit(), local_only(open_engine(index, store=store), "`outliers`") as engine:
        from lookalike.evaluation.hygiene import outliers as find_outliers
        from lookalike.evaluation.hygiene import why_no_outliers, write_outliers_page

        found = find_outliers(engine.store, top=top)
        why = None if found else why_no_outliers(engine.store)
        page = (
            write_outliers_page(html / "index.html", found, engine.store, note=why)
            if html
            else None
        )
    if why:
        stderr_console().print(f"[yellow]no outliers:[/yellow] {why}")
    if as_json:
        print_json([{"item_id": o.photo.item_id, "image": o.photo.image,
                     "similarity": o.similarity} for o in found])  # fmt: skip
        return
    for o in found:
        typer.echo(f"{o.similarity:.3f}  {o.photo.item_id}  {o.photo.image}")
    if page:
        stderr_console().print(f"page: {page}")


def sample(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the manifests.")] = Path(
        "sample"
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="A local copy of the Grocery Store Dataset; default: the setting sample_data "
            "(env LOOKALIKE_SAMPLE_DATA), else downloaded from GitHub.",
        ),
    ] = None,
) -> None:
    """Prepare the sample catalogue (Grocery Store Dataset): catalogue.jsonl + queries.csv."""
    with errors_to_exit():
        from lookalike.catalog.sample import fetch_grocery, prepare_grocery
        from lookalike.config import Settings

        data_dir = data_dir or Settings().sample_data
        if data_dir is None:
            with progress_bar(True) as progress:
                data_dir = fetch_grocery(out / "GroceryStoreDataset", progress=progress)
        files = prepare_grocery(data_dir, out)
        stderr_console().print(
            f"{files.items} products, {files.catalogue_images} catalogue photos -> {files.catalogue}; "
            f"{files.queries_count} query photos -> {files.queries}"
        )
