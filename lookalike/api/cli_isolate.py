"""`lookalike isolate PHOTO -o OUT.png`: the cut-out the engine would embed, and a debug picture of
boxes and masks over the photo. Mounted in `api/cli.py` as a command; heavy imports inside."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from lookalike.api.console import errors_to_exit, print_json, stderr_console
from lookalike.api.options import JsonOpt
from lookalike.errors import QueryError

if TYPE_CHECKING:
    from lookalike.pipeline.detect import Detection
    from lookalike.pipeline.isolate import Garment
    from lookalike.pipeline.isolate import Mode as IsolateMode


def isolate(
    photo: Annotated[str, typer.Argument(help="A photo: a path or an http(s) URL.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the cut-out (PNG keeps alpha).")
    ],
    mode: Annotated[
        str, typer.Option("--isolate", help="salient, garment or none (the plain box crop).")
    ] = "salient",
    box: Annotated[
        str | None,
        typer.Option("--box", help="Cut out this region instead: x1,y1,x2,y2 in pixels."),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Objects that may be chosen: a preset (fashion, grocery ...) or labels.",
        ),
    ] = None,
    garment: Annotated[
        str, typer.Option("--garment", help="With --isolate garment: upper, lower or all.")
    ] = "upper",
    background: Annotated[
        str | None,
        typer.Option(
            "--background",
            help="Flatten on this colour (r,g,b or white/black); default: transparent.",
        ),
    ] = None,
    detect: Annotated[
        bool, typer.Option("--detect/--no-detect", help="Find the object with the detector.")
    ] = True,
    debug: Annotated[
        Path | None,
        typer.Option("--debug", help="Also write the photo with boxes, labels, scores and mask."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cut the most relevant object out of PHOTO (or --box) and write it as RGBA."""
    from lookalike.engine import wiring

    with errors_to_exit():
        from lookalike.config import Settings
        from lookalike.pipeline.decode import load_image
        from lookalike.pipeline.detect import YoloxDetector, parse_labels
        from lookalike.pipeline.isolate import Isolator, parse_box
        from lookalike.pipeline.views import draw_overlay, isolate_photo

        if mode not in ("none", "salient", "garment"):
            raise QueryError(f"--isolate must be none, salient or garment, got {mode!r}")
        if garment not in ("upper", "lower", "all"):
            raise QueryError(f"--garment must be upper, lower or all, got {garment!r}")
        colour = _colour(background) if background else None
        region = parse_box(box) if box else None
        wanted = parse_labels(labels) if labels else None
        settings = Settings()
        limits = wiring.limits(settings, draft_size=None)  # --box is in the file's own pixels
        image = load_image(photo, limits).image
        models = wiring.model_store(settings)
        detector = (
            YoloxDetector.from_store(models, threads=settings.models.threads)
            if detect and region is None
            else None
        )
        isolate_mode = cast("IsolateMode", mode)  # one of the three: checked above
        isolator = Isolator.from_store(
            models,
            (isolate_mode,) if isolate_mode != "none" else (),
            threads=settings.models.threads,
            batch_size=1,
        )
        result = isolate_photo(
            image,
            detector,
            isolator,
            mode=isolate_mode,
            labels=wanted,
            garment=cast("Garment", garment),  # checked above
            box=region,
        )
        cut = result.cutout
        written = cut.flatten(colour) if colour is not None else cut.image
        if written.mode == "RGBA" and output.suffix.lower() in (".jpg", ".jpeg"):
            written = cut.flatten((255, 255, 255))  # JPEG has no alpha
        output.parent.mkdir(parents=True, exist_ok=True)
        written.save(output)
        if debug is not None:
            debug.parent.mkdir(parents=True, exist_ok=True)
            draw_overlay(image, result).save(debug)
        whole = {"label": "image", "score": 1.0, "box": [0, 0, *image.size]}
        info: dict[str, Any] = {  # the --json payload
            "output": str(output),
            "debug": str(debug) if debug else None,
            "isolate": mode,
            "object": _detection_json(result.chosen) if result.chosen else whole,
            "region": cut.box.as_list(),
            "coverage": round(cut.coverage, 4),
            "size": list(written.size),
            "detections": [_detection_json(d) for d in result.detections],
        }
        if as_json:
            print_json(info)
            return
        obj = info["object"]
        stderr_console().print(
            f"[green]wrote[/green] {output} ({written.size[0]}x{written.size[1]}): "
            f"{obj['label']} {obj['score']:.2f}, mask covers {cut.coverage:.0%} of its region"
            + (f"; debug picture {debug}" if debug else "")
        )


def _colour(text: str) -> tuple[int, int, int]:
    named = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128)}
    if text.lower() in named:
        return named[text.lower()]
    try:
        r, g, b = (int(v) for v in text.split(","))
    except ValueError:
        raise QueryError(f"--background wants r,g,b or white/black/grey, got {text!r}") from None
    if not all(0 <= v <= 255 for v in (r, g, b)):
        raise QueryError(f"--background values must be 0-255, got {text!r}")
    return r, g, b


def _detection_json(d: Detection) -> dict[str, Any]:
    return {"label": d.label, "score": round(d.score, 4), "box": d.box.as_list()}
