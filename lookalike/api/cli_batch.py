"""`lookalike search FOLDER` / several photos: every photo searched in one command, one row each.

Formats (`--format`):
- `table`: one row per photo with its best item (similarity, match, title); failures in red.
- `json`: JSON Lines, one object per photo, written as each photo is searched: `photo`,
  `error` (null, or why the photo could not be searched) and, when it was, the fields of
  `search PHOTO --json` (`results`, `match`, `mode` ...).
- `csv`: a header, then one row per result: `photo, rank, item_id, similarity, match, title,
  error` (`-k 1`: one row per photo); a photo that failed has one row with only `error`.
- `paths`: the best item's image path (or URL), one line per searched photo, nothing else on
  stdout, so `lookalike search shots/ --format paths | xargs ...` works; failures go to stderr.

A photo that cannot be decoded (or read) is reported with its reason and the others are still
searched; the exit code is then DecodeError's (3), after all output, so scripts notice.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import DecodeError, LookalikeError, QueryError

if TYPE_CHECKING:
    from lookalike.engine.results import SearchResult
    from lookalike.types import ProductHit

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
    from lookalike.api.results import result_json

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
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"best item for each of {len(rows)} photos")
    for col in ("photo", "item", "similar", "match", "title"):
        table.add_column(col, overflow="fold")  # whole paths, wrapped, even in 80 columns
    for out in rows:
        if out.result is None:
            table.add_row(escape(out.photo), f"[red]{escape(out.error or '')}[/red]", "", "", "")
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
    Console().print(table)


def failed_error(failed: int, total: int) -> LookalikeError:
    """The error the command ends with when photos failed (after all output)."""
    return DecodeError(f"{failed} of {total} photos could not be searched (see above)")
