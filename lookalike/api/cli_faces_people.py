"""`lookalike faces people ...`: list, name, merge, split, hide people; their photos. And
`open_faces`, how every `lookalike faces ...` command opens the face index (`cli_faces` imports it
from here). Light at import: the face index loads inside.

A thin layer over `lookalike.faces.people`. Person ids are stable (kept in the index's
faces-book.json); `faces forget --person ID` takes the ids of the last listing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lookalike.api import results
from lookalike.api.console import errors_to_exit, print_json, stderr_console, table_of
from lookalike.api.options import IndexOpt, JsonOpt
from lookalike.api.remote import naming_server
from lookalike.errors import QueryError

if TYPE_CHECKING:
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.people import PersonView

app = typer.Typer(
    help="People in the face index: list, name, merge, split a wrong face out, hide.",
    no_args_is_help=True,
)


def open_faces(
    index: Path | None,
    *,
    store: str | None = None,
    **overrides: Any,  # Any: flags pydantic checks
) -> FaceIndex:
    """The face index at `index` with these FaceSettings overrides (None: not given); `store`:
    its `--store` (None: what the index records, else edge)."""
    from pydantic import ValidationError

    from lookalike.config import Settings
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.settings import FaceSettings

    settings = Settings()
    try:
        face_settings = FaceSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # A bad flag is the user's error (exit 2), not a traceback.
        problems = "; ".join(f"--{'-'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise QueryError(problems.replace("_", "-")) from None
    return FaceIndex(index or settings.index, settings, face_settings, store_spec=store)


PersonArg = Annotated[str, typer.Argument(help="A person id (from `faces people list`).")]


@contextmanager
def open_faces_for(index: Path | None, command: str) -> Iterator[FaceIndex]:
    """The face index for `command`; a locked store names the running server that has it open
    (`command` cannot run through it)."""
    with open_faces(index) as faces, naming_server(faces.index_dir, command):
        yield faces


def person_json(p: PersonView) -> dict[str, Any]:
    return {
        **results.person_json(p),
        "cover": {"photo": p.cover.photo, "box": list(p.cover.box), "face_id": p.cover.face_id},
        "face_ids": [f.face_id for f in p.faces],
    }


@app.command("list")
def list_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Hidden people too.")] = False,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The people of the face index, most faces first, with their names."""
    with errors_to_exit(), open_faces_for(index, "`faces people`") as faces:
        from lookalike.faces.people import list_people

        people = list_people(faces, include_hidden=all_)
        if as_json:
            print_json({"people": [person_json(p) for p in people]})
            return
        columns = ("person", "name", "faces", "photos (first 3)")
        with table_of(f"{len(people)} people", *columns) as table:
            for p in people:
                shown = ", ".join(Path(x).name for x in p.photos[:3])
                name = (p.name or "") + (" (hidden)" if p.hidden else "")
                table.add_row(p.person_id, name, str(len(p.faces)), shown)


@app.command("photos")
def photos_cmd(person: PersonArg, index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """The photos PERSON is in (with the face's box)."""
    with errors_to_exit(), open_faces_for(index, "`faces people`") as faces:
        from lookalike.faces.people import list_people

        found = [p for p in list_people(faces, include_hidden=True) if p.person_id == person]
        if not found:
            raise QueryError(f"no person {person} with faces in {faces.index_dir}")
        p = found[0]
        if as_json:
            print_json(
                {
                    **person_json(p),
                    "photos": [{"photo": f.photo, "box": list(f.box)} for f in p.faces],
                }
            )
            return
        for f in p.faces:
            typer.echo(f"{f.photo}\t{[round(v) for v in f.box]}")


def _change(index: Path | None, change: str, *args: object, **kw: object) -> object:
    """`lookalike.faces.people.<change>(*args, **kw)` applied to the face index's book."""
    with errors_to_exit(), open_faces_for(index, "`faces people`") as faces:
        from lookalike.faces import people as pp

        return pp.change_book(faces, getattr(pp, change), *args, **kw)


def _changed(what: str, data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        stderr_console().print(f"[green]{what}[/green]")


@app.command("name")
def name_cmd(
    person: PersonArg,
    name: Annotated[str, typer.Argument(help="The name; an empty string removes it.")],
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Name PERSON (kept across re-indexing)."""
    _change(index, "rename", person, name)
    _changed(f"person {person} is now {name!r}", {"person": person, "name": name or None}, as_json)


@app.command("merge")
def merge_cmd(
    into: Annotated[str, typer.Argument(help="The person who stays.")],
    others: Annotated[list[str], typer.Argument(help="People who are the same person.")],
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge OTHERS into INTO: one person from now on."""
    _change(index, "merge", into, others)
    _changed(f"merged {', '.join(others)} into {into}", {"person": into, "merged": others}, as_json)


@app.command("split")
def split_cmd(
    face_ids: Annotated[list[str], typer.Argument(help="Face ids (from `people list --json`).")],
    name: Annotated[str | None, typer.Option("--name", help="Name the new person.")] = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take wrongly grouped faces out of their person: they become a new person."""
    new = _change(index, "split", face_ids, name=name)
    _changed(f"new person {new}", {"person": new, "faces": face_ids, "name": name}, as_json)


@app.command("hide")
def hide_cmd(
    person: PersonArg,
    unhide: Annotated[bool, typer.Option("--unhide", help="Show the person again.")] = False,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hide PERSON from the people list (their faces stay searchable; `forget` deletes them)."""
    _change(index, "hide", person, not unhide)
    state = "shown" if unhide else "hidden"
    _changed(f"person {person} {state}", {"person": person, "hidden": not unhide}, as_json)
