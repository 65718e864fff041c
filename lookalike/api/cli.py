"""`lookalike` command line: a thin layer over `Engine`. Owns progress bars, tables and exit codes.

Heavy modules (numpy, onnxruntime, qdrant) are imported inside commands so `--help` is instant.

Here: the app, `search` and `similar` and their output. The other commands live in their group's
module (`cli_index`, `cli_catalogue`, `cli_tune`, `cli_crawl`, `cli_isolate`, `cli_migrate`,
`cli_serve`, and the `models` and `faces` sub-apps) and are registered on the app below, in the
order `lookalike --help` lists them; `cli_engine` opens the index for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lookalike.api import (
    cli_catalogue,
    cli_crawl,
    cli_faces,
    cli_index,
    cli_isolate,
    cli_migrate,
    cli_models,
    cli_serve,
    cli_tune,
)
from lookalike.api.cli_engine import open_engine, through_server
from lookalike.api.console import errors_to_exit, print_json
from lookalike.api.options import IndexOpt, JsonOpt, KOpt, MirrorOpt, ModeOpt, StoreOpt, WhereOpt
from lookalike.api.remote import ServedIndex
from lookalike.api.results import result_json

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.engine.results import SearchResult

app = typer.Typer(
    name="lookalike",
    help="Visual similarity search: index a catalogue, find the product in a photo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def search(
    photos: Annotated[
        list[str] | None,
        typer.Argument(
            help="Query photo: a path or an http(s) URL; several, or a folder: each searched "
            "(see --format).",
            metavar="PHOTO",
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help='Words: alone, or with PHOTO ("this, but in red").'),
    ] = None,
    k: KOpt = 5,
    where: WhereOpt = None,
    mode: ModeOpt = None,
    box: Annotated[
        str | None,
        typer.Option("--box", help="Search with this region: x1,y1,x2,y2 (see --box-units)."),
    ] = None,
    box_units: Annotated[
        str,
        typer.Option(
            "--box-units",
            help="px: pixels of the photo (EXIF-rotated); fraction: 0 to 1 of its width and "
            "height (as the HTTP API's box_units).",
        ),
    ] = "px",
    all_objects: Annotated[
        bool, typer.Option("--all-objects", help="Results for every detected object of the photo.")
    ] = False,
    index: IndexOpt = None,
    store: StoreOpt = None,
    models_mirror: MirrorOpt = None,
    as_json: JsonOpt = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="For several photos or a folder, one row per photo: table, json (JSON Lines, "
            "one object per photo), csv (photo, rank, item_id, similarity, match, title, "
            "error) or paths (the best item's image, one line per photo).",
        ),
    ] = None,
) -> None:
    """Find the products most like PHOTO (and/or matching --text): one result per product.
    Several photos or a FOLDER: each photo searched, one row per photo (--format); a photo
    that cannot be decoded is reported and the others are still searched (exit code 3)."""
    from lookalike.engine import wiring

    with errors_to_exit():
        from lookalike.errors import QueryError

        photo = photos[0] if photos and len(photos) == 1 else None
        if photos and (len(photos) > 1 or fmt is not None or Path(photos[0]).is_dir()):
            _search_many(photos, fmt or ("json" if as_json else "table"), text, k, where, mode,
                         box, all_objects, index, store, models_mirror)  # fmt: skip
            return
        if photo is None and not text:
            raise QueryError("give a PHOTO, --text WORDS, or both")
        region = _parse_box(box, box_units) if box else None
        with through_server(open_engine(index, mirror=models_mirror, store=store)) as engine:
            if photo is None:
                result = engine.search_text(text or "", k=k, where=where)
            elif all_objects:
                results = engine.search_objects(photo, k=k, where=where, mode=mode)  # type: ignore[arg-type]  # --mode is a str: the engine checks it
                if as_json:
                    # `search --json`'s object for the most relevant object (what a plain search
                    # answers), and every object's under `objects`.
                    per_object = [result_json(r) for r in results]
                    print_json({**per_object[0], "objects": per_object})
                else:
                    for r in results:
                        _print_hits(r)
                return
            elif isinstance(engine, ServedIndex):  # a running server takes fractions itself
                result = engine.search(
                    photo, k=k, where=where, mode=mode, box=region, text=text, box_units=box_units
                )
            else:
                query: str | Image.Image = photo
                if region is not None and box_units == "fraction":
                    from lookalike.pipeline.decode import load_image

                    query = load_image(photo, wiring.limits(engine.settings)).image
                    w, h = query.size
                    region = (region[0] * w, region[1] * h, region[2] * w, region[3] * h)
                result = engine.search(
                    query,
                    k=k,
                    where=where,
                    mode=mode,  # type: ignore[arg-type]  # --mode is a str: the engine checks it
                    box=region,
                    text=text,
                )
        _output(result, as_json)


def _search_many(
    photos: list[str],
    fmt: str,
    text: str | None,
    k: int,
    where: str | None,
    mode: str | None,
    box: str | None,
    all_objects: bool,
    index: Path | None,
    store: str | None,
    models_mirror: Path | None,
) -> None:
    """`search` of several photos or folders (`lookalike.api.cli_batch`)."""
    from lookalike.api import cli_batch
    from lookalike.errors import QueryError

    if box or all_objects:
        raise QueryError("--box and --all-objects search one photo; give a single PHOTO")
    if fmt not in cli_batch.FORMATS:
        raise QueryError(f"unknown format {fmt!r}; use one of {', '.join(cli_batch.FORMATS)}")
    queries = cli_batch.expand_photos(photos)
    with through_server(open_engine(index, mirror=models_mirror, store=store)) as engine:

        def one(photo: str) -> SearchResult:
            return engine.search(photo, k=k, where=where, mode=mode, text=text)  # type: ignore[arg-type]  # --mode is a str: the engine checks it

        failed = cli_batch.write_outcomes(cli_batch.search_each(queries, one), fmt)
    if failed:
        raise cli_batch.failed_error(failed, len(queries))


def similar(
    item_ids: Annotated[
        list[str],
        typer.Argument(help="Indexed items: find others like them.", metavar="ITEM_ID"),
    ],
    negative: Annotated[
        list[str] | None,
        typer.Option("--not", help="Less like this item (repeatable): a negative example."),
    ] = None,
    k: KOpt = 5,
    where: WhereOpt = None,
    mode: ModeOpt = None,
    index: IndexOpt = None,
    store: StoreOpt = None,
    models_mirror: MirrorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """More like this: the items nearest to ITEM_ID, the item itself excluded. Several items
    and `--not ID`: more like these, less like those (the mean of the items' vectors pushed
    away from the mean of the --not items', as Qdrant's recommend; every example excluded)."""
    with (
        errors_to_exit(),
        through_server(open_engine(index, mirror=models_mirror, store=store)) as engine,
    ):
        if len(item_ids) == 1 and not negative:
            result = engine.similar(item_ids[0], k=k, where=where, mode=mode)  # type: ignore[arg-type]  # --mode is a str: the engine checks it
        else:
            result = engine.recommend(item_ids, negative or [], k=k, where=where, mode=mode)  # type: ignore[arg-type]  # --mode is a str: the engine checks it
        _output(result, as_json)


def _parse_box(text: str, units: str = "px") -> tuple[float, float, float, float]:
    from lookalike.errors import QueryError

    if units not in ("px", "fraction"):
        raise QueryError(f"--box-units is px or fraction, got {units!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise QueryError(f"--box wants x1,y1,x2,y2 (four numbers), got {text!r}") from None
    if units == "fraction" and not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        raise QueryError(f"a fraction --box takes numbers from 0 to 1, got {text!r}")
    return x1, y1, x2, y2


def _output(result: SearchResult, as_json: bool) -> None:
    if as_json:
        print_json(result_json(result))
    else:
        _print_hits(result)


_MATCH_STYLE = {
    "same product": "[green]same product[/green]",
    "similar": "similar",
    "no close match": "[dim]no close match[/dim]",
}


def _print_hits(result: SearchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    qo = result.query_object
    searched = f"; searched with {qo.label} {[round(c) for c in qo.box]}" if qo else ""
    table = Table(title=f"results ({result.mode}, {result.score}{searched})")
    score_col = "similar" if result.score == "cosine" else result.score
    judged = any(h.match for h in result.hits)
    for col in ("#", "item", score_col, *(("match",) if judged else ()), "title", "image"):
        table.add_column(col)
    for i, h in enumerate(result.hits, 1):
        title = str(h.fields.get("title", h.fields.get("name", "")))
        shown = f"{h.similarity_percent:.1f} %" if result.score == "cosine" else f"{h.score:.3f}"
        match = (_MATCH_STYLE.get(h.match or "", h.match or ""),) if judged else ()
        table.add_row(str(i), h.item_id, shown, *match, title, Path(h.image).name)
    con = Console()
    if result.match == "no close match":
        con.print(
            "[yellow]no close match:[/yellow] nothing in this index is as close to the photo as "
            "its own products are to one another; the nearest ones follow"
        )
    con.print(table)
    con.print(", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()), style="dim")


# Every command, in the order `lookalike --help` lists them (the groups last). The modules are
# light (typer and the console only): heavy modules load inside the commands.
app.command()(cli_index.index)
app.command()(cli_index.verify)
app.command()(search)
app.command()(similar)
app.command()(cli_catalogue.facets)
app.command()(cli_catalogue.duplicates)
app.command()(cli_catalogue.outliers)
app.command()(cli_index.stats)
app.command()(cli_index.delete)
app.command(name="eval")(cli_tune.evaluate)
app.command()(cli_tune.tune)
app.command()(cli_catalogue.sample)
app.command("crawl")(cli_crawl.crawl)
app.command()(cli_isolate.isolate)
app.command()(cli_migrate.migrate)
app.command()(cli_serve.serve)
app.add_typer(cli_models.app, name="models")
app.add_typer(cli_faces.app, name="faces")


def main() -> None:
    app(prog_name="lookalike")


if __name__ == "__main__":
    main()
