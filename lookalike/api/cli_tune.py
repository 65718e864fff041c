"""`lookalike eval` and `tune`: measure an index on labelled queries, learn a projection (or, with
--train, fine-tune the network: `run_train`, `run_reset`, the CLI side of `lookalike.learn`).

Registered on the app by `lookalike.api.cli`. Light at import (typer and the console only): the
engine loads inside the commands.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lookalike.api.console import errors_to_exit, print_json, progress_bar, stderr_console, table_of
from lookalike.api.options import EmbedderOpt, IndexOpt, JsonOpt, MirrorOpt, StoreOpt
from lookalike.api.remote import local_only, open_engine
from lookalike.errors import CatalogueError

if TYPE_CHECKING:
    from lookalike.engine.adapted import TuneOutcome
    from lookalike.engine.core import Engine
    from lookalike.learn.settings import TrainProgress, TrainSettings


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
                local_only(
                    open_engine(index, embedder, models_mirror, store=store), "`eval`"
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
            print_json(outcome.metrics)
            return
        title = f"{outcome.queries} queries, {outcome.items} items"
        keys = ("recall@1", "recall@3", "recall@10", "map")
        with table_of(title, "mode", "recall@1", "recall@3", "recall@10", "mAP") as table:
            for mode, m in outcome.metrics.items():
                table.add_row(mode, *(f"{m[key]:.3f}" for key in keys))
        if outcome.report:
            from rich.console import Console

            Console().print(f"misses: {outcome.report}")


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
        typer.Option(
            "--minutes", help="Time budget of a --train run (default 20, 30 with --pairs; 0: none)."
        ),
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
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Views per training step (--train; memory grows with it)."
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="float32 (default), bfloat16 or auto: the training steps' arithmetic (--train; "
            "auto: bfloat16 where it measures faster, on CPUs with bfloat16 units).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Learn a projection that separates the index's items (from its own photos grouped by item),
    store it with the index and search with it. Parameters are chosen on held-out photos.
    --train fine-tunes the network itself; --reset goes back to the base network."""
    rows = None
    if pairs is not None:
        with errors_to_exit():
            try:
                with open(pairs, newline="") as fh:
                    rows = [(r["image"], r["item_id"]) for r in csv.DictReader(fh)]
            except (OSError, KeyError) as exc:
                raise CatalogueError(f"cannot read pairs {pairs}: {exc}") from exc
    if train or reset:
        with errors_to_exit(), local_only(open_engine(index), "`tune`") as engine:
            if reset:
                run_reset(engine, as_json=as_json)
                return
            from lookalike.learn.settings import PAIRS_MINUTES, TrainSettings

            asked: dict[str, Any] = {
                "augmentations": augmentations,
                "max_epochs": epochs,
                "max_memory_gb": max_memory,
                "batch_size": batch_size,
                "loss": loss,
                "tail_blocks": tail_blocks,
                "int8": int8 or None,
                "precision": precision,
            }
            settings = TrainSettings(
                seed=seed,
                holdout=holdout,
                # --minutes 0: no budget; absent: the default budget (longer with pairs)
                minutes=(minutes or None)
                if minutes is not None
                else (PAIRS_MINUTES if rows else TrainSettings.minutes),
                threads=engine.settings.models.threads,
                **{k: v for k, v in asked.items() if v is not None},
            )
            run_train(
                engine, rows or [], settings, force=force, projection=projection, as_json=as_json
            )
        return
    with (
        errors_to_exit(),
        local_only(open_engine(index), "`tune`") as engine,
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
            print_json(choice)
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


def tune_summary(outcome: TuneOutcome, *, pairs: int | None = None) -> list[str]:
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


@contextmanager
def train_progress(enabled: bool) -> Iterator[Callable[[TrainProgress], None]]:
    """A `TrainProgress` callback drawing one rich bar per stage on stderr, with the epoch's
    loss and the held-out Recall@1 while training; a no-op when not `enabled`."""
    if not enabled:
        yield lambda p: None
        return
    from rich.progress import TextColumn

    from lookalike.api.console import stage_bars

    with stage_bars(16, TextColumn("{task.fields[metrics]}")) as bar:

        def update(p: TrainProgress) -> None:
            metrics = ""
            if p.loss is not None:
                metrics = f"loss {p.loss:.3f}"
            if p.recall is not None:
                metrics += f"  held-out R@1 {p.recall:.3f}"
            bar(p.stage, p.done, p.total, metrics=metrics)

        yield update


def run_train(
    engine: Engine,
    pairs: Sequence[tuple[str, str]],
    settings: TrainSettings,
    *,
    force: bool,
    projection: bool,
    as_json: bool,
) -> None:
    """Train, re-embed and swap; then fit the projection on top when it measures better."""
    from lookalike.learn.run import train_index

    with train_progress(not as_json) as progress:
        outcome = train_index(
            engine, pairs=pairs, settings=settings, force=force, progress=progress
        )
    r = outcome.report
    summary: dict[str, Any] = {
        "applied": outcome.applied,
        "sha256": outcome.sha256,
        "items": r.items,
        "views": r.views,
        "pair_photos": r.wild,
        "instance_views": r.instance,
        "held_out": r.held_out,
        "held_out_recall@1_before": round(r.base_recall, 4),
        "held_out_recall@1_after": round(r.recall, 4),
        "best_epoch": r.best_epoch,
        "epochs": r.epochs,
        "stopped": r.stopped,
        "samples": r.samples,
        "device": r.device,
        "precision": r.precision,
        "skipped": [{"source": s.source, "reason": s.reason} for s in outcome.skipped],
        "dropped_points": outcome.dropped,
        "seconds": round(outcome.seconds, 1),
        "projection": None,
    }
    err = stderr_console()
    if not as_json:
        for s in outcome.skipped:
            err.print(f"skipped {s.source}: {s.reason}", markup=False)
        if r.instance:
            err.print(
                "no item has two photos and no pairs were given: trained on instance views "
                "(augmented copies of each photo); pairs (--pairs) or more photos per item teach more"
            )
        typer.echo(
            f"held-out R@1 {r.base_recall:.3f} (base network) -> {r.recall:.3f} after "
            f"{r.best_epoch} epoch(s) ({r.held_out} held-out photos, {r.items} items, "
            f"{r.views} views, {r.wild} pair photos; stopped: {r.stopped}; {r.device}, {r.precision}; "
            f"{outcome.seconds:.0f} s)"
        )
        if outcome.applied:
            typer.echo(f"applied: {engine.network_status().describe()}")
        else:
            typer.echo(
                "not applied: the trained network does not beat the base one on the held-out "
                "photos (--force applies it anyway); the index is unchanged"
            )
    if outcome.applied and projection:
        tuned = engine.tune(pairs=list(pairs) or None, seed=settings.seed)
        summary["projection"] = {
            "applied": tuned.applied,
            "sha256": tuned.result.projection.sha256 if tuned.applied else None,
        }
        if not as_json:
            typer.echo(
                f"projection on top: {engine.projection_status().describe()}"
                if tuned.applied
                else "projection on top: not applied (it does not beat the trained network alone "
                "on held-out photos)"
            )
    if as_json:
        print_json(summary)


def run_reset(engine: Engine, *, as_json: bool) -> None:
    from lookalike.learn.run import reset_index

    with train_progress(not as_json) as progress:
        dropped, skipped = reset_index(engine, progress=progress)
    if as_json:
        print(json.dumps({"reset": True, "dropped_points": dropped, "skipped": len(skipped)}))
        return
    for s in skipped:
        stderr_console().print(f"skipped {s.source}: {s.reason}", markup=False)
    typer.echo(
        f"reset: {engine.network_status().describe()}; re-embedded with the base network "
        "(a projection fitted on the adapted vectors was dropped: run `lookalike tune` to fit one)"
    )
