"""`lookalike` command line: a thin layer over `Engine`. Owns progress bars, tables and exit codes.

Heavy modules (numpy, onnxruntime, qdrant) are imported inside commands so `--help` is instant.

Here: the app, `search` (of one photo, or of several: one row each) and `similar` and their
output. The other commands live in their group's module (`cli_index`, `cli_catalogue`, `cli_tune`,
`cli_isolate`, `cli_serve`, and the `models` and `faces` sub-apps) and are registered on the app
below, in the order `lookalike --help` lists them; `remote.open_engine` opens the index.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lookalike.api import (
    cli_catalogue,
    cli_faces,
    cli_index,
    cli_isolate,
    cli_models,
    cli_serve,
    cli_tune,
)
from lookalike.api.console import errors_to_exit, print_json, table_of
from lookalike.api.options import IndexOpt, JsonOpt, KOpt, MirrorOpt, ModeOpt, StoreOpt, WhereOpt
from lookalike.api.remote import ServedIndex, open_engine, through_server
from lookalike.api.results import result_json
from lookalike.errors import DecodeError, QueryError

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.engine.records import SearchResult
    from lookalike.types import ProductHit

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
    """`lookalike search FOLDER` / several photos: every photo searched in one command, one row
    each.

    Formats (`--format`):
    - `table`: one row per photo with its best item (similarity, match, title); failures in red.
    - `json`: JSON Lines, one object per photo, written as each photo is searched: `photo`,
      `error` (null, or why the photo could not be searched) and, when it was, the fields of
      `search PHOTO --json` (`results`, `match`, `mode` ...).
    - `csv`: a header, then one row per result: `photo, rank, item_id, similarity, match, title,
      error` (`-k 1`: one row per photo); a photo that failed has one row with only `error`.
    - `paths`: the best item's image path (or URL), one line per searched photo, nothing else on
      stdout, so `lookalike search shots/ --format paths | xargs ...` works; failures go to
      stderr.

    A photo that cannot be decoded (or read) is reported with its reason and the others are still
    searched; the exit code is then DecodeError's (3), after all output, so scripts notice.
    """
    if box or all_objects:
        raise QueryError("--box and --all-objects search one photo; give a single PHOTO")
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    queries = expand_photos(photos)
    with through_server(open_engine(index, mirror=models_mirror, store=store)) as engine:

        def one(photo: str) -> SearchResult:
            return engine.search(photo, k=k, where=where, mode=mode, text=text)  # type: ignore[arg-type]  # --mode is a str: the engine checks it

        failed = write_outcomes(search_each(queries, one), fmt)
    if failed:  # after all output
        raise DecodeError(f"{failed} of {len(queries)} photos could not be searched (see above)")


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

    con = Console()
    if result.match == "no close match":  # above the table
        con.print(
            "[yellow]no close match:[/yellow] nothing in this index is as close to the photo as "
            "its own products are to one another; the nearest ones follow"
        )
    qo = result.query_object
    searched = f"; searched with {qo.label} {[round(c) for c in qo.box]}" if qo else ""
    score_col = "similar" if result.score == "cosine" else result.score
    judged = any(h.match for h in result.hits)
    columns = ("#", "item", score_col, *(("match",) if judged else ()), "title", "image")
    with table_of(f"results ({result.mode}, {result.score}{searched})", *columns) as table:
        for i, h in enumerate(result.hits, 1):
            title = _title(h)
            shown = (
                f"{h.similarity_percent:.1f} %" if result.score == "cosine" else f"{h.score:.3f}"
            )
            match = (_MATCH_STYLE.get(h.match or "", h.match or ""),) if judged else ()
            table.add_row(str(i), h.item_id, shown, *match, title, Path(h.image).name)
    con.print(", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()), style="dim")


# -- several photos (`_search_many`) ------------------------------------------------------------

FORMATS = ("table", "json", "csv", "paths")


@dataclass(frozen=True)
class PhotoOutcome:
    """One query photo's search: its result, or the error that stopped it."""

    photo: str
    result: SearchResult | None = None
    error: str | None = None


def expand_photos(sources: Sequence[str]) -> list[str]:
    """The query photos: files and URLs as given, folders replaced by the images under them
    (recursively, sorted, hidden files skipped, as `lookalike index FOLDER` picks them). A
    missing path stays in the list: its search reports it."""
    from lookalike.catalog.folder import is_image_name

    photos: list[str] = []
    for source in sources:
        if not Path(source).is_dir():
            photos.append(source)
            continue
        found: list[str] = []
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(root, f) for f in files if is_image_name(f))
        if not found:
            raise QueryError(f"no images in folder {source}")
        photos.extend(sorted(found))
    return photos


def search_each(
    photos: Sequence[str], search: Callable[[str], SearchResult]
) -> Iterator[PhotoOutcome]:
    """`search(photo)` for each photo, in order; a photo's DecodeError becomes its outcome's
    error (other errors, e.g. a bad filter or a missing index, stop the run: they would fail
    every photo alike)."""
    for photo in photos:
        try:
            yield PhotoOutcome(photo, result=search(photo))
        except DecodeError as exc:
            yield PhotoOutcome(photo, error=str(exc))


def write_outcomes(outcomes: Iterator[PhotoOutcome], fmt: str) -> int:
    """Write every outcome to stdout in `fmt` (one of FORMATS); the number of photos that failed."""
    failed = 0
    rows: list[PhotoOutcome] = []
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["photo", "rank", "item_id", "similarity", "match", "title", "error"])
    for out in outcomes:
        failed += out.error is not None
        result = out.result
        if fmt == "json":
            body = result_json(result) if result is not None else {}
            print(json.dumps({"photo": out.photo, "error": out.error, **body}, default=str))
        elif fmt == "table":
            rows.append(out)
        elif result is None:  # csv or paths: the photo failed
            if writer is not None:
                writer.writerow([out.photo, "", "", "", "", "", out.error])
            else:
                print(f"{out.photo}: {out.error}", file=sys.stderr)
        elif writer is not None:
            for rank, hit in enumerate(result.hits, 1):
                writer.writerow(
                    [out.photo, rank, hit.item_id, _similarity(result, hit), hit.match or "",
                     _title(hit), ""]
                )  # fmt: skip
        elif result.hits:
            print(result.hits[0].image)
        sys.stdout.flush()
    if fmt == "table":
        _table(rows)
    return failed


def _title(hit: ProductHit) -> str:
    return str(hit.fields.get("title", hit.fields.get("name", "")))


def _similarity(result: SearchResult, hit: ProductHit) -> str:
    return f"{hit.similarity_percent:.1f}" if result.score == "cosine" else ""


def _table(rows: Sequence[PhotoOutcome]) -> None:
    from rich.markup import escape

    title = f"best item for each of {len(rows)} photos"
    with table_of(title, "photo", "item", "similar", "match", "title", fold=True) as table:
        for out in rows:
            if out.result is None:
                table.add_row(
                    escape(out.photo), f"[red]{escape(out.error or '')}[/red]", "", "", ""
                )
            elif not out.result.hits:
                table.add_row(escape(out.photo), "(no result)", "", "", "")
            else:
                hit = out.result.hits[0]
                shown = _similarity(out.result, hit)
                table.add_row(
                    escape(out.photo),
                    escape(hit.item_id),
                    f"{shown} %" if shown else f"{hit.score:.3f}",
                    hit.match or "",
                    escape(_title(hit)),
                )


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
app.command("crawl")(cli_catalogue.crawl)
app.command()(cli_isolate.isolate)
app.command()(cli_index.migrate)
app.command()(cli_serve.serve)
app.add_typer(cli_models.app, name="models")
app.add_typer(cli_faces.app, name="faces")


def main() -> None:
    app(prog_name="lookalike")


if __name__ == "__main__":
    main()
