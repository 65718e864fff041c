"""`lookalike migrate`: move an index's points to another store (embedded shard -> Qdrant cluster,
and back). Mounted in `api/cli.py` as a command. Light at import: typer and the console only."""

from __future__ import annotations

from typing import Annotated

import typer

from lookalike.api.console import errors_to_exit, print_json, stderr_console
from lookalike.api.options import IndexOpt, JsonOpt


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
        import dataclasses

        from lookalike.api.console import progress_bar
        from lookalike.config import Settings
        from lookalike.engine.core import Engine
        from lookalike.errors import StoreError
        from lookalike.store.migrate import migrate as copy_points
        from lookalike.store.registry import same_store, store_record

        settings = Settings()
        engine = Engine(index or settings.index, settings=settings)
        if engine.manifest is None:
            raise StoreError(f"no index at {engine.index_dir}: nothing to migrate")
        from lookalike.api.remote import refuse_if_served

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
