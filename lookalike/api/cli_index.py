"""`lookalike index`, `verify`, `stats`, `delete`: write, check and describe an index; `migrate`:
move its points to another store (embedded shard -> Qdrant cluster, and back).

Registered on the app by `lookalike.api.cli`. Light at import (typer and the console only): the
engine loads inside the commands.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from lookalike.api.console import capped, errors_to_exit, print_json, progress_bar, stderr_console
from lookalike.api.options import EmbedderOpt, IndexOpt, JsonOpt, MirrorOpt, StoreOpt
from lookalike.api.remote import local_only, open_engine, refuse_if_served, through_server
from lookalike.errors import CatalogueError, IndexDamagedError, StoreError


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
            from lookalike.config import Settings
            from lookalike.engine.integrity import repair_manifest

            index_dir = Path(index or Settings().index)
            refuse_if_served(index_dir, "`index --repair`")
            restored = repair_manifest(index_dir)
        engine = through_server(open_engine(index, embedder, models_mirror, views, store))
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
            print_json(dataclasses.asdict(summary))
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
            capped(
                con, [f"  [yellow]skipped[/yellow] {s.source}: {s.reason}" for s in summary.skipped]
            )
            for what in summary.repaired:
                con.print(f"  [yellow]repaired[/yellow] {what}")
            if missing and not nothing:
                con.print(
                    f"[yellow]warning:[/yellow] {missing} item(s) of the catalogue have no photo "
                    "that could be indexed (see the skipped files above); they cannot be found"
                )
        if nothing:
            raise CatalogueError(
                f"none of the {summary.items_in_catalogue} items of {catalogue} has a photo that "
                "could be indexed" + (" (see the skipped files above)" if not as_json else "")
            )


def verify(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Check an index completely: every file against the digests its last write recorded, and
    every vector read back (finite, unit length, centroids the mean of their views). Exit code 8
    when something is damaged (`lookalike index CATALOGUE --repair` rebuilds it)."""
    from lookalike.engine.integrity import repair_hint

    with errors_to_exit(), local_only(open_engine(index), "`verify`") as engine:
        report = engine.verify()
        if as_json:
            out = dataclasses.asdict(report)
            out["damage"] = [str(d) for d in report.damage]
            print_json({"ok": report.ok, **out})
        else:
            con = stderr_console()
            con.print(
                f"checked {report.files_checked} files and {report.points_checked} points "
                f"({report.state}) in {engine.index_dir}"
            )
            capped(con, [f"  [red]damaged[/red] {d}" for d in report.damage])
        if not report.ok:
            raise IndexDamagedError(
                f"{len(report.damage)} damaged part(s): {repair_hint(engine.index_dir)}"
            )


def stats(index: IndexOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Items, views, models and size of an index."""
    with errors_to_exit(), through_server(open_engine(index, store=store)) as engine:
        info = engine.stats()
        if as_json:
            print_json(info)
            return
        for k, v in info.items():
            typer.echo(f"{k:16} {v}")


def delete(
    item_ids: Annotated[list[str], typer.Argument(help="Item ids to remove.")],
    index: IndexOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove items from the index."""
    with errors_to_exit(), through_server(open_engine(index, store=store)) as engine:
        removed = engine.delete(item_ids)
    missing = [i for i in dict.fromkeys(item_ids) if i not in removed]
    if as_json:
        print_json({"removed": removed, "not_found": missing})
        return
    stderr_console().print(
        f"removed {len(removed)} item(s)"
        + (f"; not in the index: {', '.join(missing)}" if missing else "")
    )


def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Destination store: qdrant://HOST:6333/COLLECTION, qdrants://..., "
            "qdrant+local://PATH#COLLECTION or edge. API key: $LOOKALIKE_QDRANT_API_KEY.",
        ),
    ],
    index: IndexOpt = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Points per write request.")
    ] = 256,
    delete_extra: Annotated[
        bool,
        typer.Option(
            "--delete-extra",
            help="Also delete points the destination has and the index does not (exact copy).",
        ),
    ] = False,
    keep_manifest: Annotated[
        bool,
        typer.Option(
            "--keep-manifest",
            help="Copy only: leave the index pointing at its current store (default: point it at "
            "the destination once the copy is complete).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy every point of an index (vectors, payloads, payload indexes) to the store --to names,
    then record that store in the index so later commands use it. Safe to rerun after a failure:
    point ids are kept, so a rerun converges without duplicates. The source is never modified."""
    with errors_to_exit():
        from lookalike.config import Settings
        from lookalike.engine.core import Engine
        from lookalike.store.migrate import migrate as copy_points
        from lookalike.store.registry import same_store, store_record

        settings = Settings()
        engine = Engine(index or settings.index, settings=settings)
        if engine.manifest is None:
            raise StoreError(f"no index at {engine.index_dir}: nothing to migrate")
        refuse_if_served(engine.index_dir, "`migrate`")  # it would switch the store under it
        source_record = engine.store_record()
        dest_record = store_record(to, engine.index_dir)
        if same_store(source_record, dest_record):
            raise StoreError(f"the index at {engine.index_dir} already lives in {to}")
        with engine, progress_bar(not as_json) as progress:
            source = engine.store
            # Opened as the engine opens stores: its settings give the API key and graph settings.
            dest = engine.open_store_at(dest_record["spec"])
            try:
                summary = copy_points(
                    source,
                    dest,
                    batch_size=batch_size,
                    delete_extra=delete_extra,
                    progress=progress,
                )
                settle = getattr(dest, "settle", None)
                if settle is not None:
                    progress("optimize", 0, 0)
                    settle()
                copied = dest.count()
            finally:
                dest.close()
        if copied < summary.points:
            raise StoreError(
                f"the destination holds {copied} points after copying {summary.points}: "
                "not switching the index to it; rerun the command"
            )
        if not keep_manifest:
            dataclasses.replace(engine.manifest, store=dest_record).save(engine.index_dir)
        out = {
            "index": str(engine.index_dir),
            "from": source_record["spec"],
            "to": dest_record["spec"],
            "points": summary.points,
            "deleted": summary.deleted,
            "indexes": list(summary.indexes),
            "destination_points": copied,
            "index_now_uses": source_record["spec"] if keep_manifest else dest_record["spec"],
        }
        if as_json:
            print_json(out)
            return
        stderr_console().print(
            f"[green]copied[/green] {summary.points} points from {out['from']} to {out['to']} "
            f"({copied} there now); the index now uses {out['index_now_uses']}"
        )
