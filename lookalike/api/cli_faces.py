"""`lookalike faces ...`: index the faces of photos, find a person from a selfie, group people, forget.

A thin layer over `lookalike.faces.index.FaceIndex`. Heavy modules (numpy, dlib, PIL, qdrant) are
imported inside the commands so that `lookalike --help` stays instant.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lookalike.api.cli_faces_people import app as people_app
from lookalike.api.cli_faces_people import open_faces, open_faces_for
from lookalike.api.console import errors_to_exit, print_json, progress_bar, stderr_console, table_of
from lookalike.api.options import IndexOpt, JsonOpt, StoreOpt
from lookalike.api.remote import find_server, naming_server
from lookalike.errors import QueryError

if TYPE_CHECKING:
    from lookalike.faces.values import QueryFace

app = typer.Typer(
    help="Find people: index the faces of photos, search them with a selfie, group them, forget.",
    no_args_is_help=True,
)
app.add_typer(people_app, name="people")

DetectorOpt = Annotated[
    str | None,
    typer.Option(
        "--detector",
        help="hog (fast, default) or cnn (dlib's MMOD CNN: more turned faces, ~100x slower on a "
        "CPU) [default: $LOOKALIKE_FACES_DETECTOR or hog].",
    ),
]

ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="'Same person' distance, 0..2: the 'you' tier [default: "
        "$LOOKALIKE_FACES_THRESHOLD or 0.36; no stranger that close in the calibration photos].",
    ),
]

MaybeThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--maybe-threshold",
        help="Outer distance of the 'maybe you' tier, shown when some photo is in the 'you' "
        "tier; at or below --threshold there is none [default: "
        "$LOOKALIKE_FACES_MAYBE_THRESHOLD or 0.42].",
    ),
]


@app.command("index")
def index_cmd(
    photos: Annotated[
        list[Path], typer.Argument(help="Folders (searched recursively) or photo files.")
    ],
    index: IndexOpt = None,
    sync: Annotated[
        bool, typer.Option("--sync", help="Remove photos that are no longer listed.")
    ] = False,
    detect_size: Annotated[
        int | None,
        typer.Option(
            "--detect-size",
            help="Longest side the detector sees, px [default 1024]; larger finds smaller faces "
            "(small photos are enlarged up to 4x towards it: the upsampling for small faces).",
        ),
    ] = None,
    detector: DetectorOpt = None,
    min_face_size: Annotated[
        int | None,
        typer.Option(
            "--min-face-size",
            help="Faces smaller than this (px, longest side) are not indexed: background "
            "strangers. Kept by the index for later runs [default: as last time, else 0].",
        ),
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index every face of PHOTOS. Incremental: unchanged photos are skipped; safe to rerun.

    --store is where a new face index keeps its faces (default edge, in INDEX/faces); an existing
    one keeps the store it was built with.
    """
    with errors_to_exit():
        with (
            open_faces(
                index,
                store=store,
                detect_size=detect_size,
                detector=detector,
                min_face_size=min_face_size,
            ) as faces,
            naming_server(faces.index_dir, "`faces index`"),
            progress_bar(not as_json) as progress,
        ):
            summary = faces.index(photos, progress, sync=sync)
        if as_json:
            print_json(asdict(summary))
            return
        con = stderr_console()
        con.print(
            f"[green]indexed[/green] {summary.photos_indexed} photos ({summary.faces_written} faces, "
            f"{summary.photos_without_faces} without a face), {summary.photos_unchanged} unchanged, "
            f"{summary.photos_removed} removed, {len(summary.skipped)} skipped in "
            f"{summary.seconds:.1f} s -> {faces.index_dir}"
        )
        for s in summary.skipped[:50]:
            con.print(f"  [yellow]skipped[/yellow] {s.source}: {s.reason}")


@app.command("search")
def search_cmd(
    selfies: Annotated[
        list[str],
        typer.Argument(
            help="Photos of the person: paths or http(s) URLs. Several portraits: a photo "
            "matches when its face is near any of them.",
            metavar="SELFIE...",
        ),
    ],
    face: Annotated[
        int | None,
        typer.Option(
            "--face", help="Which face of each SELFIE, 0 = largest (needed when it has several)."
        ),
    ] = None,
    threshold: ThresholdOpt = None,
    maybe_threshold: MaybeThresholdOpt = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Most photos to return.")] = 50,
    combine: Annotated[
        str,
        typer.Option(
            "--combine",
            help="Several portraits: 'best' (nearest to any; default) or 'mean' (their mean "
            "descriptor: finds more hard photos, but look-alikes get closer too).",
        ),
    ] = "best",
    detector: DetectorOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The photos that contain the person in SELFIE, best first, with the matching face's box:
    "you" (distance <= --threshold), then "maybe you" (<= --maybe-threshold)."""
    with errors_to_exit(), open_faces(index, detector=detector) as faces:
        asked: dict[str, Any] = {
            "face": face,
            "threshold": threshold,
            "k": k,
            "maybe_threshold": maybe_threshold,
        }
        served = find_server(faces.index_dir)  # its server may have the face index open
        if served is not None:
            if combine != "best":
                raise QueryError(
                    f"--combine {combine} needs the face index itself: {served.describe()} has it "
                    "open (search one portrait through it, or stop it)"
                )
            with served:
                result = served.faces_search(selfies, **asked)
        else:
            result = faces.search_many(selfies, combine=combine, **asked)
        if as_json:
            print_json(
                {
                    "threshold": result.threshold,
                    "maybe_threshold": result.maybe_threshold,
                    "tiers": {"you": len(result.you), "maybe": len(result.maybe)},
                    "portraits": result.portraits,
                    "query_face": _query_face_json(result.query_face),
                    "query_faces": [_query_face_json(f) for f in result.query_faces],
                    "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
                    "results": [  # tier first, as it always was
                        {"rank": i + 1, "tier": m.tier, **asdict(m), "box": list(m.box)}
                        for i, m in enumerate(result.matches)
                    ],
                }
            )
            return
        title = (
            f"photos with this person (you: distance <= {result.threshold:g}; "
            f"maybe you: <= {result.maybe_threshold:g})"
        )
        with table_of(title, "#", "tier", "photo", "distance", "face box") as table:
            for i, m in enumerate(result.matches, 1):
                tier = "you" if m.tier == "you" else "maybe you"
                box = str([round(v) for v in m.box])
                table.add_row(str(i), tier, m.photo, f"{m.distance:.3f}", box)
        if not result.matches:
            from rich.console import Console

            Console().print("no photo of this person in the index", style="yellow")


def _query_face_json(f: QueryFace) -> dict[str, Any]:
    return {"face": f.number, "box": list(f.box), "det_score": f.det_score, "size": f.face_size}


@app.command("detect")
def detect_cmd(
    photo: Annotated[str, typer.Argument(help="A photo: path or http(s) URL.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the photo with numbered boxes (JPEG).")
    ] = None,
    detector: DetectorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The faces found in PHOTO, largest first (the numbers `search --face` takes)."""
    with errors_to_exit(), open_faces(None, detector=detector) as faces:
        found = faces.faces_in(photo)
        if out is not None:
            from lookalike.faces.report import save_boxes_picture

            save_boxes_picture(photo, [f.box for f in found], out)
        if as_json:
            print_json([_query_face_json(f) for f in found])
            return
        for f in found:
            typer.echo(f"{f.number}: box {[round(v) for v in f.box]}, score {f.det_score:.2f}")
        stderr_console().print(f"{len(found)} face(s)" + (f" -> {out}" if out else ""))


@app.command("clusters")
def clusters_cmd(
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a page of the people with face thumbnails.")
    ] = None,
    threshold: ThresholdOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Group the indexed faces into people (ids for `forget --person`), largest first."""
    with errors_to_exit(), open_faces_for(index, "`faces clusters`") as faces:
        people = faces.clusters(threshold)
        page = None
        if html is not None:
            from lookalike.faces.report import write_people_page

            page = write_people_page(html, people, title=f"People in {faces.index_dir}")
        if as_json:
            print_json(
                {
                    "people": [
                        {
                            "person": p.person_id,
                            "faces": [
                                {"face_id": f.face_id, "photo": f.photo, "box": list(f.box)}
                                for f in p.faces
                            ],
                            "photos": list(p.photos),
                        }
                        for p in people
                    ],
                    "html": str(page) if page else None,
                }
            )
            return
        with table_of(f"{len(people)} people", "person", "faces", "photos (first 3)") as table:
            for p in people:
                names = ", ".join(Path(x).name for x in p.photos[:3])
                table.add_row(str(p.person_id), str(len(p.faces)), names)
        if page:
            stderr_console().print(f"page: {page}")


@app.command("forget")
def forget_cmd(
    photo: Annotated[str | None, typer.Argument(help="Forget every face of this photo.")] = None,
    person: Annotated[
        int | None,
        typer.Option("--person", help="Forget every face of this person (an id from `clusters`)."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before forgetting a --person.")
    ] = False,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete face vectors of a PHOTO or a --person, and compact the index so they leave the disk."""
    with errors_to_exit():
        if (photo is None) == (person is None):
            raise QueryError("name exactly one: a PHOTO or --person ID")
        if person is not None and not yes:
            # Every photo of a person, for good: asked first, as `rm -i` would.
            if not sys.stdin.isatty():
                raise QueryError(f"forgetting person {person} cannot be undone: add --yes")
            if not typer.confirm(f"Forget every face of person {person}? This cannot be undone"):
                raise typer.Exit(1)
        with open_faces_for(index, "`faces forget`") as faces:
            done = faces.forget_photo(photo) if photo is not None else faces.forget_person(person)  # type: ignore[arg-type]  # person is given: exactly one is (checked above)
        if as_json:
            print_json(asdict(done))
            return
        stderr_console().print(
            f"[green]forgot[/green] {done.faces_deleted} face(s) in {len(done.photos)} photo(s); "
            f"index compacted ({done.disk_bytes / 1e6:.1f} MB)"
        )


@app.command("stats")
def stats_cmd(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Photos, faces and size of the face index."""
    with errors_to_exit(), open_faces_for(index, "`faces stats`") as faces:
        info = faces.stats()
        if as_json:
            print_json(info)
            return
        for k, v in info.items():
            typer.echo(f"{k:12} {v}")
