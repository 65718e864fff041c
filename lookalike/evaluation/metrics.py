"""Retrieval evaluation: metrics as pure functions, query-set loading, and an HTML report of the misses.

Everything here works at *item* level: a ranked list holds one entry per catalogue item (views were
already grouped by `item_id`, by best view or by centroid), best first. A query is answered correctly
when one of its relevant items comes first.

The metric functions are pure (no I/O, stdlib only) so they can be checked by hand; `load_queries`
and `write_report` are the only functions that touch the file system.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import CatalogueError
from lookalike.evaluation.report import Thumbs, figure, write_page
from lookalike.evaluation.report import escape as _e
from lookalike.types import ProductHit

Relevant = str | AbstractSet[str]
"""The relevant item(s) of one query: one item id, or a set of ids that all count as correct."""

DEFAULT_KS: tuple[int, ...] = (1, 3, 10)

# ---------------------------------------------------------------------------------------------
# Metrics (pure)
# ---------------------------------------------------------------------------------------------


def _as_set(relevant: Relevant) -> frozenset[str]:
    # A bare string is one id, not a set of characters.
    return frozenset((relevant,) if isinstance(relevant, str) else relevant)


def _check_aligned(ranked: Sequence[Sequence[str]], relevant: Sequence[Relevant]) -> None:
    # A silent zip() over lists of different lengths would score the wrong queries.
    if len(ranked) != len(relevant):
        raise ValueError(
            f"ranked and relevant must have one entry per query: {len(ranked)} != {len(relevant)}"
        )


def rank_of(ranked: Sequence[str], relevant: Relevant) -> int | None:
    """1-based rank of the first relevant item in `ranked`, or None when none was retrieved.

    `ranked` is one query's item ids, best first. `relevant` is one id or a set of ids.
    """
    wanted = _as_set(relevant)
    return next((pos for pos, item_id in enumerate(ranked, start=1) if item_id in wanted), None)


def recall_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[Relevant], k: int) -> float:
    """Fraction of queries with a relevant item among the first `k` entries of their ranked list.

    `ranked[i]` is query i's item ids, best first; `relevant[i]` its relevant id (or set of ids).
    A list shorter than `k` is simply searched in full. Returns a value in [0, 1]; 0.0 when there
    are no queries. Raises ValueError when `k < 1` or the two sequences differ in length.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_aligned(ranked, relevant)
    if not ranked:
        return 0.0
    positions = [rank_of(items, rel) for items, rel in zip(ranked, relevant, strict=True)]
    return sum(1 for p in positions if p is not None and p <= k) / len(ranked)


def average_precision(ranked: Sequence[str], relevant: Relevant) -> float:
    """Average precision of one ranked list: mean over the relevant items of precision at their rank.

    Relevant items that were not retrieved contribute 0, i.e. the sum is divided by `len(relevant)`,
    not by the number retrieved. An item id repeated in `ranked` counts at its first position only
    (item-level lists should not repeat ids; this keeps AP <= 1 if one does). Returns a value in
    [0, 1]. Raises ValueError when `relevant` is empty: AP is undefined without a right answer.

    Example: ranked [x, r1, y, r2] with relevant {r1, r2} -> (1/2 + 2/4) / 2 = 0.5.
    """
    wanted = _as_set(relevant)
    if not wanted:
        raise ValueError("average_precision needs at least one relevant item")
    seen: set[str] = set()  # the relevant items found so far
    total = 0.0
    for position, item_id in enumerate(ranked, start=1):
        if item_id in wanted and item_id not in seen:
            seen.add(item_id)
            total += len(seen) / position
    return total / len(wanted)


def mean_average_precision(ranked: Sequence[Sequence[str]], relevant: Sequence[Relevant]) -> float:
    """Mean of `average_precision` over the queries; 0.0 when there are no queries.

    Raises ValueError when the sequences differ in length or a query has no relevant item.
    """
    _check_aligned(ranked, relevant)
    if not ranked:
        return 0.0
    return sum(
        average_precision(items, rel) for items, rel in zip(ranked, relevant, strict=True)
    ) / len(ranked)


def evaluate(
    ranked: Sequence[Sequence[str]],
    relevant: Sequence[Relevant],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """All metrics for one run: `{"recall@K": ... for K in ks, "map": ..., "queries": N}`.

    Key order is stable (recalls in `ks` order, then map, then queries) so tables line up.
    `queries` is an int count; the other values are in [0, 1].
    """
    metrics: dict[str, float] = {f"recall@{k}": recall_at_k(ranked, relevant, k) for k in ks}
    metrics["map"] = mean_average_precision(ranked, relevant)
    metrics["queries"] = len(ranked)
    return metrics


# ---------------------------------------------------------------------------------------------
# Query sets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One evaluation query: a photo and the catalogue item it shows.

    `image` is an absolute local path or an http(s) URL (resolved by `load_queries`).
    """

    image: str
    item_id: str


def _resolve_image(value: str, base: Path) -> str:
    # Relative paths are relative to the query file, not to the working directory, so a query set
    # can be moved together with its photos.
    if value.lower().startswith(("http://", "https://")):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    return os.path.abspath(path)


def _query_from(image: object, item_id: object, base: Path, where: str) -> Query:
    if not isinstance(image, str) or not image.strip():
        raise CatalogueError(f"{where}: 'image' must be a non-empty string, got {image!r}")
    # JSON ids are sometimes numbers; accept ints (not bools, which are ints too) as their text.
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id.strip():
        raise CatalogueError(f"{where}: 'item_id' must be a non-empty string, got {item_id!r}")
    return Query(image=_resolve_image(image.strip(), base), item_id=item_id.strip())


def _load_csv(path: Path, text: str) -> list[Query]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = {"image", "item_id"} - set(header)
    if missing:
        raise CatalogueError(
            f"{path}, line 1: CSV header must name the columns image,item_id "
            f"(missing {', '.join(sorted(missing))})"
        )
    reader.fieldnames = header  # tolerate "image, item_id"
    queries = []
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        if None in row:  # DictReader puts surplus cells under the key None
            raise CatalogueError(f"{where}: more cells than header columns")
        queries.append(_query_from(row["image"], row["item_id"], path.parent, where))
    return queries


def _load_jsonl(path: Path, text: str) -> list[Query]:
    queries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CatalogueError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise CatalogueError(f"{where}: expected a JSON object with keys image, item_id")
        queries.append(_query_from(record.get("image"), record.get("item_id"), path.parent, where))
    return queries


_LOADERS = {".csv": _load_csv, ".jsonl": _load_jsonl, ".ndjson": _load_jsonl}


def load_queries(path: Path) -> list[Query]:
    """Read a query set: CSV with header `image,item_id`, or JSONL with keys `image`, `item_id`.

    The format follows the suffix (`.csv`, `.jsonl`, `.ndjson`). Relative image paths resolve
    against the file's folder; http(s) URLs are kept as they are. Extra columns or keys are ignored.
    Raises CatalogueError (naming the file and line) for an unreadable file, an unknown suffix,
    a malformed line, or a file without any query.
    """
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise CatalogueError(
            f"{path}: unknown query file type {path.suffix!r}; use one of {', '.join(_LOADERS)}"
        )
    try:
        # utf-8-sig: spreadsheets often save CSV with a byte-order mark that would corrupt "image".
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read query file ({exc})") from exc
    queries = loader(path, text)
    if not queries:
        raise CatalogueError(f"{path}: no queries in file")
    return queries


# ---------------------------------------------------------------------------------------------
# HTML report of the misses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """What one search returned for one query under one aggregation mode.

    `ranked` holds `(item_id, score, image)` per item, best first: `score` is cosine similarity in
    [-1, 1] and `image` the path or URL of the item's best matching view.
    """

    query: Query
    mode: str
    ranked: tuple[tuple[str, float, str], ...]

    @property
    def rank(self) -> int | None:
        """1-based rank of the query's item, or None when it is not in `ranked`."""
        return rank_of([item_id for item_id, _, _ in self.ranked], self.query.item_id)

    @property
    def is_miss(self) -> bool:
        """True when the right item is not first."""
        return self.rank != 1


def _percent(score: float) -> float:
    # One definition of "similarity %" for CLI, HTTP and this report: ProductHit's.
    return ProductHit(item_id="", score=score, image="", fields={}).similarity_percent


def _format_metric(value: float) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.3f}"


def _summary_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    if not metrics:
        return '<p class="muted">No metrics.</p>'
    columns: list[str] = []
    for values in metrics.values():
        columns.extend(name for name in values if name not in columns)
    head = "".join(f"<th>{_e(name)}</th>" for name in columns)
    rows = []
    for mode, values in metrics.items():
        cells = "".join(
            f'<td class="num">{_e(_format_metric(values[name]))}</td>'
            if name in values
            else '<td class="num muted">-</td>'
            for name in columns
        )
        rows.append(f"<tr><th>{_e(mode)}</th>{cells}</tr>")
    return (
        f'<table class="summary"><thead><tr><th>mode</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _miss_row(
    result: QueryResult,
    thumbs: Thumbs,
    item_images: Mapping[str, str],
    max_wrong: int,
    item_titles: Mapping[str, str],
) -> str:
    def label(item_id: str) -> str:
        title = item_titles.get(item_id)
        return f"{_e(item_id)} · {_e(title)}" if title else _e(item_id)

    right_id = result.query.item_id
    rank = result.rank
    query_cell = figure(
        thumbs(result.query.image), result.query.image, _e(Path(result.query.image).name)
    )
    wrong = [entry for entry in result.ranked if entry[0] != right_id][:max_wrong]
    wrong_cells = "".join(
        figure(
            thumbs(image),
            image,
            f"{label(item_id)}<br><span class='muted'>{_percent(score):.1f} %</span>",
            "wrong",
        )
        for item_id, score, image in wrong
    )
    # The catalogue's representative image says "this is what we wanted"; fall back to the view
    # that was retrieved when the catalogue gave none.
    right_image = item_images.get(right_id)
    if right_image is None and rank is not None:
        right_image = result.ranked[rank - 1][2]
    if rank is None:
        where = f"not in top {len(result.ranked)}"
    else:
        where = f"rank {rank} · {_percent(result.ranked[rank - 1][1]):.1f} %"
    right_cell = figure(
        thumbs(right_image),
        right_image or "",
        f"{label(right_id)}<br><span class='rank'>{_e(where)}</span>",
        "right",
    )
    return (
        f"<tr><td>{query_cell}</td><td><div class='cards'>{wrong_cells}</div></td>"
        f"<td>{right_cell}</td></tr>"
    )


def write_report(
    dest_dir: Path,
    results: Sequence[QueryResult],
    metrics: Mapping[str, Mapping[str, float]],
    title: str,
    item_images: Mapping[str, str],
    *,
    max_wrong: int = 3,
    item_titles: Mapping[str, str] | None = None,
) -> Path:
    """Write a self-contained HTML report of an evaluation to `dest_dir/index.html`; return its path.

    `metrics` maps aggregation mode -> metric name -> value (as from `evaluate`). The page shows
    a summary table of those, then, per mode, one row per *missed* query (right item not first):
    the query photo, the first `max_wrong` wrong items (thumbnail, id, similarity %) and the right
    item (its image from `item_images`, its rank or "not in top N"). Hits are not listed.
    Items are labelled "id · title" where `item_titles` has a title.

    Side effects: creates `dest_dir` and `dest_dir/thumbs/` (JPEG thumbnails, longest side
    `THUMB_SIZE` px) and overwrites `index.html`; other files there are left alone. The page uses
    no external resources and never fetches URLs; an image that is a URL, missing or undecodable
    is shown as a placeholder. All text is HTML-escaped.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    thumbs = Thumbs(dest_dir)

    by_mode: dict[str, list[QueryResult]] = {}
    for result in results:
        by_mode.setdefault(result.mode, []).append(result)

    sections = []
    for mode, mode_results in by_mode.items():
        misses = [r for r in mode_results if r.is_miss]
        heading = f"Misses: {mode} ({len(misses)} of {len(mode_results)} queries)"
        if not misses:
            sections.append(f"<h2>{_e(heading)}</h2><p class='muted'>No misses.</p>")
            continue
        rows = "".join(
            _miss_row(r, thumbs, item_images, max_wrong, item_titles or {}) for r in misses
        )
        sections.append(
            f"<h2>{_e(heading)}</h2><table class='misses'><thead><tr><th>query</th>"
            f"<th>top wrong results</th><th>right item</th></tr></thead><tbody>{rows}</tbody></table>"
        )

    body = f"<h2>Summary</h2>{_summary_table(metrics)}{''.join(sections)}"
    return write_page(dest_dir / "index.html", title, body)
