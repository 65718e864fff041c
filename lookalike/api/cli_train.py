"""`lookalike tune --train` / `--reset`: the CLI side of `lookalike.learn` (progress, output).

Called by the `tune` command; light at import (typer only), the engine and torch load inside.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from lookalike.api.console import print_json, stage_bars, stderr_console

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.learn.train import TrainProgress, TrainSettings


@contextmanager
def train_progress(enabled: bool) -> Iterator[Callable[[TrainProgress], None]]:
    """A `TrainProgress` callback drawing one rich bar per stage on stderr, with the epoch's
    loss and the held-out Recall@1 while training; a no-op when not `enabled`."""
    if not enabled:
        yield lambda p: None
        return
    from rich.progress import TextColumn

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
            f"{r.views} views, {r.wild} pair photos; stopped: {r.stopped}; {r.device}; "
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
