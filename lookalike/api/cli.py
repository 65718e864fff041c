"""`lookalike` command line: a thin layer over `Engine`. Owns progress bars, tables and exit codes.

Heavy modules (numpy, onnxruntime, qdrant) are imported inside commands so `--help` is instant.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lookalike.api.console import errors_to_exit, progress_bar, stderr_console
from lookalike.api.options import IndexOpt, JsonOpt

if TYPE_CHECKING:
    from lookalike.api.remote import ServedIndex
    from lookalike.engine.core import Engine

app = typer.Typer(
    name="lookalike",
    help="Visual similarity search: index a catalogue, find the product in a photo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

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
        "$LOOKALIKE_STORE. API key: $LOOKALIKE_QDRANT_API_KEY or $QDRANT_API_KEY.",
    ),
]
MirrorOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-mirror", "--mirror", help="Folder of model files tried before cache and network."
    ),
]


def _engine(
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
    from lookalike.engine.viewsettings import view_settings

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


def _served(engine: Engine) -> Engine | ServedIndex:
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


def _local_only(engine: Engine, command: str) -> Engine:
    """`engine`, or a StoreError naming the server that has its embedded store open (`command`
    does not go through a server)."""
    from lookalike.api.remote import refuse_if_served

    if engine.manifest is not None and engine.store_record()["kind"] in ("edge", "qdrant-local"):
        refuse_if_served(engine.index_dir, command)
    return engine


@app.command()
def index(
    catalogue: Annotated[
        Path, typer.Argument(help="A folder (one sub-folder per item), or a JSONL / CSV manifest.")
    ],
    index: IndexOpt = None,
    store: StoreOpt = None,
    embedder: EmbedderOpt = None,
    sync: Annotated[
        bool, typer.Option("--sync", help="Remove items that are no longer in the catalogue.")
    ] = False,
    detect: Annotated[
        bool | None,
        typer.Option(
            "--detect/--no-detect",
            help="Index each relevant detected object as its own view (default: $LOOKALIKE_DETECT).",
        ),
    ] = None,
    isolate: Annotated[
        str | None,
        typer.Option(
            "--isolate", help="none, salient or garment: cut objects out before embedding."
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels", help="Objects that matter: a preset (fashion, grocery ...) or COCO labels."
        ),
    ] = None,
    models_mirror: MirrorOpt = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Decode and embed on a Ray cluster (`ray://head:10001`, `auto`), or `local` for "
            "a Ray instance on this machine; needs the ray extra (docs/parts/ray.md).",
        ),
    ] = None,
    ray_workers: Annotated[
        int,
        typer.Option("--ray-workers", help="Ray actors (0: one per CPU of the cluster)."),
    ] = 0,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Check every file and vector first (as `verify` does) and rebuild what is "
            "damaged from the catalogue (docs/guarantees.md).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index a catalogue. Incremental: only new or changed images are embedded; safe to rerun."""
    with errors_to_exit():
        views = {"detect": detect, "isolate": isolate, "labels": labels}
        restored = None
        if repair:  # before the engine reads lookalike.json, which may be what is damaged
            from lookalike.api.remote import refuse_if_served
            from lookalike.config import Settings
            from lookalike.engine.integrity import repair_manifest

            index_dir = Path(index or Settings().index)
            refuse_if_served(index_dir, "`index --repair`")
            restored = repair_manifest(index_dir)
        engine = _served(_engine(index, embedder, models_mirror, views, store))
        runner = None
        if ray is not None:
            from lookalike.engine.distributed import RayRunner

            runner = RayRunner(address=ray, workers=ray_workers)
        with engine, progress_bar(not as_json) as progress:
            summary = engine.index(
                catalogue, sync=sync, progress=progress, runner=runner, repair=repair
            )
        if restored:
            summary = dataclasses.replace(summary, repaired=(restored, *summary.repaired))
        nothing = summary.items == 0
        if as_json:
            print(json.dumps(dataclasses.asdict(summary), indent=2))
        else:
            con = stderr_console()
            missing = summary.items_in_catalogue - summary.items
            through = f" (through {engine.describe()})" if hasattr(engine, "describe") else ""
            con.print(
                f"[green]indexed[/green] {summary.items} items: {summary.images_embedded} images "
                f"embedded, {summary.images_unchanged} unchanged, {summary.items_removed} items "
                f"removed, {len(summary.skipped)} skipped in {summary.seconds:.1f} s -> "
                f"{engine.index_dir} ({summary.items_in_index} items in the index){through}"
            )
            for s in summary.skipped[:50]:
                con.print(f"  [yellow]skipped[/yellow] {s.source}: {s.reason}")
            if len(summary.skipped) > 50:
                con.print(f"  ... and {len(summary.skipped) - 50} more (use --json for all)")
            for what in summary.repaired:
                con.print(f"  [yellow]repaired[/yellow] {what}")
            if missing and not nothing:
                con.print(
                    f"[yellow]warning:[/yellow] {missing} item(s) of the catalogue have no photo "
                    "that could be indexed (see the skipped files above); they cannot be found"
                )
        if nothing:
            from lookalike.errors import CatalogueError

            raise CatalogueError(
                f"none of the {summary.items_in_catalogue} items of {catalogue} has a photo that "
                "could be indexed" + (" (see the skipped files above)" if not as_json else "")
            )


@app.command()
def verify(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Check an index completely: every file against the digests its last write recorded, and
    every vector read back (finite, unit length, centroids the mean of their views). Exit code 8
    when something is damaged (`lookalike index CATALOGUE --repair` rebuilds it)."""
    from lookalike.engine.integrity import repair_hint
    from lookalike.errors import IndexDamagedError

    with errors_to_exit(), _local_only(_engine(index), "`verify`") as engine:
        report = engine.verify()
        if as_json:
            out = dataclasses.asdict(report)
            out["damage"] = [str(d) for d in report.damage]
            print(json.dumps({"ok": report.ok, **out}, indent=2))
        else:
            con = stderr_console()
            con.print(
                f"checked {report.files_checked} files and {report.points_checked} points "
                f"({report.state}) in {engine.index_dir}"
            )
            for d in report.damage[:50]:
                con.print(f"  [red]damaged[/red] {d}")
            if len(report.damage) > 50:
                con.print(f"  ... and {len(report.damage) - 50} more (use --json for all)")
        if not report.ok:
            raise IndexDamagedError(
                f"{len(report.damage)} damaged part(s): {repair_hint(engine.index_dir)}"
            )


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


@app.command()
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
        with _served(_engine(index, mirror=models_mirror, store=store)) as engine:
            query: Any = photo
            units: dict[str, Any] = {}
            if region is not None and box_units == "fraction" and photo is not None:
                if hasattr(engine, "describe"):  # a running server takes fractions itself
                    units = {"box_units": "fraction"}
                else:
                    from lookalike.pipeline.decode import DecodeLimits, load_image

                    s = engine.settings
                    limits = DecodeLimits(
                        max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels
                    )
                    query = load_image(photo, limits).image
                    w, h = query.size
                    region = (region[0] * w, region[1] * h, region[2] * w, region[3] * h)
            if photo is None:
                result = engine.search_text(text or "", k=k, where=where)
            elif all_objects:
                results = engine.search_objects(photo, k=k, where=where, mode=mode)  # type: ignore[arg-type]
                if as_json:
                    # `search --json`'s object for the most relevant object (what a plain search
                    # answers), and every object's under `objects`.
                    per_object = [_result_json(r) for r in results]
                    print(
                        json.dumps({**per_object[0], "objects": per_object}, indent=2, default=str)
                    )
                else:
                    for r in results:
                        _print_hits(r)
                return
            else:
                result = engine.search(
                    query,
                    k=k,
                    where=where,
                    mode=mode,
                    box=region,
                    text=text,  # type: ignore[arg-type]
                    **units,
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
    with _served(_engine(index, mirror=models_mirror, store=store)) as engine:

        def one(photo: str) -> Any:
            return engine.search(photo, k=k, where=where, mode=mode, text=text)  # type: ignore[arg-type]

        failed = cli_batch.write_outcomes(cli_batch.search_each(queries, one), fmt, _result_json)
    if failed:
        raise cli_batch.failed_error(failed, len(queries))


@app.command()
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
    with errors_to_exit(), _served(_engine(index, mirror=models_mirror, store=store)) as engine:
        if len(item_ids) == 1 and not negative:
            result = engine.similar(item_ids[0], k=k, where=where, mode=mode)  # type: ignore[arg-type]
        else:
            result = engine.recommend(item_ids, negative or [], k=k, where=where, mode=mode)  # type: ignore[arg-type]
        _output(result, as_json)


@app.command()
def facets(
    field_names: Annotated[list[str], typer.Argument(help="Fields to count (see `stats`).")],
    where: WhereOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Values per field.")] = 20,
    index: IndexOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How many items have each value of FIELD (among those matching --where)."""
    with errors_to_exit(), _served(_engine(index, store=store)) as engine:
        counts = {f: engine.facets(f, where=where, limit=limit) for f in field_names}
    if as_json:
        print(
            json.dumps(
                {f: [{"value": v, "count": n} for v, n in c.items()] for f, c in counts.items()},
                indent=2,
                default=str,
            )
        )
        return
    for f, c in counts.items():
        typer.echo(f"{f}:")
        for v, n in c.items():
            typer.echo(f"  {n:6d}  {v}")


@app.command()
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
    with errors_to_exit(), _local_only(_engine(index, store=store), "`duplicates`") as engine:
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
        print(json.dumps([{"items": g.items, "photos": [vars(p) for p in g.photos],
                           "min_similarity": g.min_similarity} for g in groups], indent=2))  # fmt: skip
        return
    for g in groups:
        typer.echo(f"{g.min_similarity:.3f}  {', '.join(g.items)}")
        for ph in g.photos:
            typer.echo(f"        {ph.item_id}: {ph.image}")
    stderr_console().print(
        f"{len(groups)} group(s) at similarity >= {t:.3f}" + (f"; page: {page}" if page else "")
    )


@app.command()
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
    with errors_to_exit(), _local_only(_engine(index, store=store), "`outliers`") as engine:
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
        print(json.dumps([{"item_id": o.photo.item_id, "image": o.photo.image,
                           "similarity": o.similarity} for o in found], indent=2))  # fmt: skip
        return
    for o in found:
        typer.echo(f"{o.similarity:.3f}  {o.photo.item_id}  {o.photo.image}")
    if page:
        stderr_console().print(f"page: {page}")


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


def _output(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_result_json(result), indent=2, default=str))
    else:
        _print_hits(result)


def _result_json(result: Any) -> dict[str, Any]:
    return {
        "mode": result.mode,
        "score": result.score,
        "match": result.match,
        "query_object": (
            {
                "label": result.query_object.label,
                "box": list(result.query_object.box),
                "score": result.query_object.score,
            }
            if result.query_object
            else None
        ),
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "results": [
            {
                "rank": i + 1,
                "item_id": h.item_id,
                "score": round(h.score, 4),
                **({"similarity": h.similarity_percent} if result.score == "cosine" else {}),
                "match": h.match,
                "image": h.image,
                "fields": dict(h.fields),
            }
            for i, h in enumerate(result.hits)
        ],
    }


_MATCH_STYLE = {
    "same product": "[green]same product[/green]",
    "similar": "similar",
    "no close match": "[dim]no close match[/dim]",
}


def _print_hits(result: Any) -> None:
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


@app.command()
def stats(index: IndexOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Items, views, models and size of an index."""
    with errors_to_exit(), _served(_engine(index, store=store)) as engine:
        info = engine.stats()
        if as_json:
            print(json.dumps(info, indent=2))
            return
        for k, v in info.items():
            typer.echo(f"{k:16} {v}")


@app.command()
def delete(
    item_ids: Annotated[list[str], typer.Argument(help="Item ids to remove.")],
    index: IndexOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove items from the index."""
    with errors_to_exit(), _served(_engine(index, store=store)) as engine:
        removed = engine.delete(item_ids)
    missing = [i for i in dict.fromkeys(item_ids) if i not in removed]
    if as_json:
        print(json.dumps({"removed": removed, "not_found": missing}, indent=2))
        return
    stderr_console().print(
        f"removed {len(removed)} item(s)"
        + (f"; not in the index: {', '.join(missing)}" if missing else "")
    )


@app.command(name="eval")
def evaluate(
    catalogue: Annotated[Path, typer.Option("--catalogue", help="Catalogue to index (manifest).")],
    queries: Annotated[Path, typer.Option("--queries", help="CSV `image,item_id` or JSONL.")],
    index: IndexOpt = None,
    store: StoreOpt = None,
    embedder: EmbedderOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write an HTML page of the misses here.")
    ] = None,
    models_mirror: MirrorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recall@1/3/10 and mAP at item level, for both aggregation modes.

    Without --index the catalogue is indexed into a temporary folder, removed afterwards: an
    evaluation must not write into the user's default index (`./lookalike-index`)."""
    with errors_to_exit():
        import tempfile
        from contextlib import ExitStack

        from lookalike.evaluation.run import run_evaluation

        with ExitStack() as scratch:
            if index is None:
                index = Path(
                    scratch.enter_context(tempfile.TemporaryDirectory(prefix="lookalike-eval-"))
                )
                if not as_json:
                    stderr_console().print(
                        "indexing into a temporary index (removed afterwards; --index DIR keeps it)"
                    )
            with (
                _local_only(
                    _engine(index, embedder, models_mirror, store=store), "`eval`"
                ) as engine,
                progress_bar(not as_json) as progress,
            ):
                outcome = run_evaluation(
                    engine, catalogue, queries, report_dir=report, progress=progress
                )
        from lookalike.engine.adapted import ProjectionStatus

        # On stderr in both modes: the --json output stays {mode: metrics}.
        status = ProjectionStatus(**(outcome.projection or {"present": False, "applied": False}))
        stderr_console().print(f"{status.describe()}; query settings {outcome.settings}")
        if as_json:
            print(json.dumps(outcome.metrics, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{outcome.queries} queries, {outcome.items} items")
        for col in ("mode", "recall@1", "recall@3", "recall@10", "mAP"):
            table.add_column(col)
        for mode, m in outcome.metrics.items():
            table.add_row(
                mode,
                *(f"{m[key]:.3f}" for key in ("recall@1", "recall@3", "recall@10", "map")),
            )
        Console().print(table)
        if outcome.report:
            Console().print(f"misses: {outcome.report}")


@app.command()
def tune(
    index: IndexOpt = None,
    holdout: Annotated[
        float, typer.Option("--holdout", help="Share of each item's photos held out to choose.")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out split.")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Apply even if it does not beat no projection.")
    ] = False,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="CSV `image,item_id` of photos in the wild of indexed items (e.g. worn photos): "
            "learn a cross-domain projection from them instead.",
        ),
    ] = None,
    train: Annotated[
        bool,
        typer.Option(
            "--train",
            help="Fine-tune the image network on the index's photos (and --pairs), re-embed the "
            "index with it, then fit the projection on top if that helps (needs the train extra).",
        ),
    ] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Back to the base network (re-embeds the index).")
    ] = False,
    minutes: Annotated[
        float | None,
        typer.Option("--minutes", help="Time budget of a --train run (default 30; 0: none)."),
    ] = None,
    augmentations: Annotated[
        int | None, typer.Option("--augmentations", help="Augmented views per photo (--train).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="At most this many epochs.")
    ] = None,
    projection: Annotated[
        bool,
        typer.Option(
            "--projection/--no-projection",
            help="After --train, fit the projection on top when it beats the trained network alone.",
        ),
    ] = True,
    loss: Annotated[
        str | None,
        typer.Option("--loss", help="normsoftmax, proxy_anchor or arcface (--train)."),
    ] = None,
    tail_blocks: Annotated[
        int | None, typer.Option("--tail-blocks", help="Blocks trained, from the last (--train).")
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help="Also quantise the trained network; used if within 0.01 held-out R@1."
        ),
    ] = False,
    max_memory: Annotated[
        float | None, typer.Option("--max-memory", help="GB a --train run may hold.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Learn a projection that separates the index's items (from its own photos grouped by item),
    store it with the index and search with it. Parameters are chosen on held-out photos.
    --train fine-tunes the network itself; --reset goes back to the base network."""
    rows = None
    if pairs is not None:
        import csv

        with errors_to_exit():
            try:
                with open(pairs, newline="") as fh:
                    rows = [(r["image"], r["item_id"]) for r in csv.DictReader(fh)]
            except (OSError, KeyError) as exc:
                from lookalike.errors import CatalogueError

                raise CatalogueError(f"cannot read pairs {pairs}: {exc}") from exc
    if train or reset:
        from lookalike.api.cli_train import run_reset, run_train

        with errors_to_exit(), _local_only(_engine(index), "`tune`") as engine:
            if reset:
                run_reset(engine, as_json=as_json)
                return
            from lookalike.learn.train import TrainSettings

            asked: dict[str, Any] = {
                "augmentations": augmentations,
                "max_epochs": epochs,
                "max_memory_gb": max_memory,
                "loss": loss,
                "tail_blocks": tail_blocks,
                "int8": int8 or None,
            }
            settings = TrainSettings(
                seed=seed,
                holdout=holdout,
                # --minutes 0: no budget; absent: the default budget
                minutes=(minutes or None) if minutes is not None else TrainSettings.minutes,
                threads=engine.settings.threads,
                **{k: v for k, v in asked.items() if v is not None},
            )
            run_train(
                engine, rows or [], settings, force=force, projection=projection, as_json=as_json
            )
        return
    with (
        errors_to_exit(),
        _local_only(_engine(index), "`tune`") as engine,
        progress_bar(not as_json) as progress,
    ):
        outcome = engine.tune(
            holdout=holdout, seed=seed, force=force, pairs=rows, progress=progress
        )
        r = outcome.result
        choice = {
            "applied": outcome.applied,
            "views": outcome.views,
            "items": outcome.items,
            "dim": r.chosen.dim,
            "lam": r.chosen.lam,
            "held_out": r.chosen.metrics,
            "held_out_without": r.baseline.metrics,
            "split": dict(r.split),
            "sha256": r.projection.sha256 if outcome.applied else None,
            "seconds": round(outcome.seconds, 1),
        }
        if as_json:
            print(json.dumps(choice, indent=2))
            return
        typer.echo(r.table())
        typer.echo("")
        for line in tune_summary(outcome, pairs=len(rows) if rows is not None else None):
            typer.echo(line)
        if outcome.applied:
            typer.echo(f"applied: {engine.projection_status().describe()}")
        else:
            typer.echo(
                "not applied: it does not beat no projection on the held-out photos "
                "(--force applies it anyway)"
            )


def tune_summary(outcome: Any, *, pairs: int | None = None) -> list[str]:
    """What `tune` learned from and how it did on what it held out, for people. `pairs`: the
    number of --pairs rows (the cross-domain fit holds out items, not photos)."""
    r = outcome.result
    split = r.split
    if pairs is not None:
        lines = [
            f"learned from {pairs} pairs (photo, item) over {outcome.items} indexed items ("
            f"{outcome.views} views); parameters chosen on {split.get('held_out_items', '?')} "
            f"held-out items, mean of {split.get('splits', 1)} draws"
        ]
    else:
        lines = [f"learned from {outcome.views} photos of {outcome.items} items"]
    held = split.get("held_out_scored", split.get("held_out_pairs", "?"))
    for mode in r.baseline.metrics:
        lines.append(
            f"held-out {mode} R@1: {r.baseline.metrics[mode]['recall@1']:.3f} without -> "
            f"{r.chosen.metrics[mode]['recall@1']:.3f} with dim {r.chosen.dim}, "
            f"lam {r.chosen.lam:g} ({held} held-out photos, mean of {split.get('splits', 1)} draws)"
        )
    if not r.baseline.metrics:
        lines.append(f"fitted with dim {r.chosen.dim}, lam {r.chosen.lam:g} (nothing held out)")
    return lines


@app.command()
def sample(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the manifests.")] = Path(
        "sample"
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="LOOKALIKE_SAMPLE_DATA",
            help="A local copy of the Grocery Store Dataset; downloaded from GitHub when absent.",
        ),
    ] = None,
) -> None:
    """Prepare the sample catalogue (Grocery Store Dataset): catalogue.jsonl + queries.csv."""
    with errors_to_exit():
        from lookalike.catalog.sample import fetch_grocery, prepare_grocery

        if data_dir is None:
            with progress_bar(True) as progress:
                data_dir = fetch_grocery(out / "GroceryStoreDataset", progress=progress)
        files = prepare_grocery(data_dir, out)
        stderr_console().print(
            f"{files.items} products, {files.catalogue_images} catalogue photos -> {files.catalogue}; "
            f"{files.queries_count} query photos -> {files.queries}"
        )


def _mount_crawl() -> None:
    from lookalike.api.cli_crawl import crawl  # light: typer + console only

    app.command("crawl")(crawl)


_mount_crawl()


def _mount_isolate() -> None:
    from lookalike.api.cli_isolate import isolate  # light: typer + console only

    app.command()(isolate)


_mount_isolate()


def _mount_models() -> None:
    from lookalike.api.cli_models import app as models_app

    app.add_typer(models_app, name="models")


_mount_models()


def _mount_faces() -> None:
    from lookalike.api.cli_faces import app as faces_app

    app.add_typer(faces_app, name="faces")


_mount_faces()


def _mount_migrate() -> None:
    from lookalike.api.cli_migrate import migrate  # light: typer only; stores load inside

    app.command()(migrate)


_mount_migrate()


def _mount_serve() -> None:
    from lookalike.api.cli_serve import serve  # light: typer only; fastapi/uvicorn load inside

    app.command()(serve)


_mount_serve()


def main() -> None:
    app(prog_name="lookalike")


if __name__ == "__main__":
    sys.exit(main())
