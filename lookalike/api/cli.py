"""`lookalike` command line: a thin layer over `Engine`. Owns progress bars, tables and exit codes.

Heavy modules (numpy, onnxruntime, qdrant) are imported inside commands so `--help` is instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lookalike.api.console import errors_to_exit, progress_bar, stderr_console
from lookalike.api.options import IndexOpt, JsonOpt

if TYPE_CHECKING:
    from lookalike.engine import Engine

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
    typer.Option("--models-mirror", help="Folder of model files tried before cache and network."),
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
    from lookalike.engine import Engine, view_settings

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
    as_json: JsonOpt = False,
) -> None:
    """Index a catalogue. Incremental: only new or changed images are embedded; safe to rerun."""
    with errors_to_exit():
        views = {"detect": detect, "isolate": isolate, "labels": labels}
        engine = _engine(index, embedder, models_mirror, views, store)
        runner = None
        if ray is not None:
            from lookalike.distributed import RayRunner

            runner = RayRunner(address=ray, workers=ray_workers)
        with engine, progress_bar(not as_json) as progress:
            summary = engine.index(catalogue, sync=sync, progress=progress, runner=runner)
        if as_json:
            from dataclasses import asdict

            print(json.dumps(asdict(summary), indent=2))
            return
        con = stderr_console()
        con.print(
            f"[green]indexed[/green] {summary.items} items: {summary.images_embedded} images embedded, "
            f"{summary.images_unchanged} unchanged, {summary.items_removed} items removed, "
            f"{len(summary.skipped)} skipped in {summary.seconds:.1f} s -> {engine.index_dir}"
        )
        for s in summary.skipped[:50]:
            con.print(f"  [yellow]skipped[/yellow] {s.source}: {s.reason}")
        if len(summary.skipped) > 50:
            con.print(f"  ... and {len(summary.skipped) - 50} more (use --json for all)")


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
    photo: Annotated[
        str | None, typer.Argument(help="Query photo: a path or an http(s) URL.")
    ] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help='Words: alone, or with PHOTO ("this, but in red").'),
    ] = None,
    k: KOpt = 5,
    where: WhereOpt = None,
    mode: ModeOpt = None,
    box: Annotated[
        str | None, typer.Option("--box", help="Search with this region: x1,y1,x2,y2 in pixels.")
    ] = None,
    all_objects: Annotated[
        bool, typer.Option("--all-objects", help="Results for every detected object of the photo.")
    ] = False,
    index: IndexOpt = None,
    store: StoreOpt = None,
    models_mirror: MirrorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the products most like PHOTO (and/or matching --text): one result per product."""
    with errors_to_exit():
        from lookalike.errors import QueryError

        if photo is None and not text:
            raise QueryError("give a PHOTO, --text WORDS, or both")
        region = _parse_box(box) if box else None
        with _engine(index, mirror=models_mirror, store=store) as engine:
            if photo is None:
                result = engine.search_text(text or "", k=k, where=where)
            elif all_objects:
                results = engine.search_objects(photo, k=k, where=where, mode=mode)  # type: ignore[arg-type]
                if as_json:
                    print(json.dumps([_result_json(r) for r in results], indent=2, default=str))
                else:
                    for r in results:
                        _print_hits(r)
                return
            else:
                result = engine.search(
                    photo,
                    k=k,
                    where=where,
                    mode=mode,
                    box=region,
                    text=text,  # type: ignore[arg-type]
                )
        _output(result, as_json)


@app.command()
def similar(
    item_id: Annotated[str, typer.Argument(help="An indexed item: find others like it.")],
    k: KOpt = 5,
    where: WhereOpt = None,
    mode: ModeOpt = None,
    index: IndexOpt = None,
    store: StoreOpt = None,
    models_mirror: MirrorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """More like this: the items nearest to ITEM_ID, the item itself excluded."""
    with errors_to_exit(), _engine(index, mirror=models_mirror, store=store) as engine:
        _output(engine.similar(item_id, k=k, where=where, mode=mode), as_json)  # type: ignore[arg-type]


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
    with errors_to_exit(), _engine(index, store=store) as engine:
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
    with errors_to_exit(), _engine(index, store=store) as engine:
        from lookalike.hygiene import DUPLICATE_THRESHOLD, near_duplicates, write_duplicates_page

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
    with errors_to_exit(), _engine(index, store=store) as engine:
        from lookalike.hygiene import outliers as find_outliers
        from lookalike.hygiene import write_outliers_page

        found = find_outliers(engine.store, top=top)
        page = write_outliers_page(html / "index.html", found, engine.store) if html else None
    if as_json:
        print(json.dumps([{"item_id": o.photo.item_id, "image": o.photo.image,
                           "similarity": o.similarity} for o in found], indent=2))  # fmt: skip
        return
    for o in found:
        typer.echo(f"{o.similarity:.3f}  {o.photo.item_id}  {o.photo.image}")
    if page:
        stderr_console().print(f"page: {page}")


def _parse_box(text: str) -> tuple[float, float, float, float]:
    from lookalike.errors import QueryError

    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise QueryError(f"--box wants x1,y1,x2,y2 (four numbers), got {text!r}") from None
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
                **({"similarity": round(h.score, 4)} if result.score == "cosine" else {}),
                "image": h.image,
                "fields": dict(h.fields),
            }
            for i, h in enumerate(result.hits)
        ],
    }


def _print_hits(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    qo = result.query_object
    searched = f"; searched with {qo.label} {[round(c) for c in qo.box]}" if qo else ""
    table = Table(title=f"results ({result.mode}, {result.score}{searched})")
    score_col = "similar" if result.score == "cosine" else result.score
    for col in ("#", "item", score_col, "title", "image"):
        table.add_column(col)
    for i, h in enumerate(result.hits, 1):
        title = str(h.fields.get("title", h.fields.get("name", "")))
        shown = f"{h.similarity_percent:.1f} %" if result.score == "cosine" else f"{h.score:.3f}"
        table.add_row(str(i), h.item_id, shown, title, Path(h.image).name)
    con = Console()
    con.print(table)
    con.print(", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()), style="dim")


@app.command()
def stats(index: IndexOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Items, views, models and size of an index."""
    with errors_to_exit(), _engine(index, store=store) as engine:
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
) -> None:
    """Remove items from the index."""
    with errors_to_exit(), _engine(index, store=store) as engine:
        engine.delete(item_ids)
        stderr_console().print(f"removed {len(item_ids)} item(s)")


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
    """Recall@1/3/10 and mAP at item level, for both aggregation modes."""
    with errors_to_exit():
        from lookalike.evaluate import run_evaluation

        with (
            _engine(index, embedder, models_mirror, store=store) as engine,
            progress_bar(not as_json) as progress,
        ):
            outcome = run_evaluation(
                engine, catalogue, queries, report_dir=report, progress=progress
            )
        from lookalike.index_tune import ProjectionStatus

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

        with errors_to_exit(), _engine(index) as engine:
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
    with errors_to_exit(), _engine(index) as engine, progress_bar(not as_json) as progress:
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
        for mode in r.baseline.metrics:
            typer.echo(
                f"held-out {mode} R@1: {r.baseline.metrics[mode]['recall@1']:.3f} without -> "
                f"{r.chosen.metrics[mode]['recall@1']:.3f} with dim {r.chosen.dim}, "
                f"lam {r.chosen.lam:g} ({r.split.get('held_out_scored', r.split.get('held_out_pairs'))} "
                f"held-out photos, mean of {r.split.get('splits', 1)} draws)"
            )
        if outcome.applied:
            typer.echo(f"applied: {engine.projection_status().describe()}")
        else:
            typer.echo(
                "not applied: it does not beat no projection on the held-out photos "
                "(--force applies it anyway)"
            )


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
        from lookalike.datasets import fetch_grocery, prepare_grocery

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
