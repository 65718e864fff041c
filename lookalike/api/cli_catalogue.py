"""`lookalike facets`, `duplicates`, `outliers`, `sample`: what a catalogue holds and its hygiene;
`lookalike crawl URLS.txt -o SHOP/`: a catalogue from a shop, a thin layer over
`lookalike.catalog.crawl`.

Registered on the app by `lookalike.api.cli`. Light at import (typer and the console only): the
engine loads inside the commands.

`crawl` turns flags into `CrawlOptions`, draws a rich progress bar fed by the crawler's progress
callback, prints the summary (or JSON with `--json`) and maps errors to exit codes: a
`LookalikeError` to its code, Ctrl-C to 130 (the crawl is resumable: the same command continues
it), an empty catalogue to 8. Heavy modules (httpx, selectolax, Playwright) are imported inside
the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from lookalike.api.console import capped, errors_to_exit, print_json, progress_bar, stderr_console
from lookalike.api.options import IndexOpt, JsonOpt, StoreOpt, WhereOpt
from lookalike.api.remote import local_only, open_engine, through_server

if TYPE_CHECKING:
    from lookalike.catalog.crawl.options import CrawlOptions, CrawlSummary


def facets(
    field_names: Annotated[list[str], typer.Argument(help="Fields to count (see `stats`).")],
    where: WhereOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Values per field.")] = 20,
    index: IndexOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How many items have each value of FIELD (among those matching --where)."""
    with errors_to_exit(), through_server(open_engine(index, store=store)) as engine:
        counts = {f: engine.facets(f, where=where, limit=limit) for f in field_names}
    if as_json:
        print_json({f: [{"value": v, "count": n} for v, n in c.items()] for f, c in counts.items()})
        return
    for f, c in counts.items():
        typer.echo(f"{f}:")
        for v, n in c.items():
            typer.echo(f"  {n:6d}  {v}")


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
    with errors_to_exit(), local_only(open_engine(index, store=store), "`duplicates`") as engine:
        from lookalike.evaluation.hygiene import (
            DUPLICATE_THRESHOLD,
            near_duplicates,
            write_duplicates_page,
        )

        t = DUPLICATE_THRESHOLD if threshold is None else threshold
        with progress_bar(not as_json) as progress:
            groups = near_duplicates(engine.store, threshold=t, progress=progress)
        page = write_duplicates_page(html / "index.html", groups, t) if html else None
    if as_json:
        print_json([{"items": g.items, "photos": [vars(p) for p in g.photos],
                     "min_similarity": g.min_similarity} for g in groups])  # fmt: skip
        return
    for g in groups:
        typer.echo(f"{g.min_similarity:.3f}  {', '.join(g.items)}")
        for ph in g.photos:
            typer.echo(f"        {ph.item_id}: {ph.image}")
    stderr_console().print(
        f"{len(groups)} group(s) at similarity >= {t:.3f}" + (f"; page: {page}" if page else "")
    )


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
    with errors_to_exit(), local_only(open_engine(index, store=store), "`outliers`") as engine:
        from lookalike.evaluation.hygiene import outliers as find_outliers
        from lookalike.evaluation.hygiene import why_no_outliers, write_outliers_page

        found = find_outliers(engine.store, top=top)
        why = None if found else why_no_outliers(engine.store)
        page = (
            write_outliers_page(html / "index.html", found, engine.store, note=why)
            if html
            else None
        )
    if why:
        stderr_console().print(f"[yellow]no outliers:[/yellow] {why}")
    if as_json:
        print_json([{"item_id": o.photo.item_id, "image": o.photo.image,
                     "similarity": o.similarity} for o in found])  # fmt: skip
        return
    for o in found:
        typer.echo(f"{o.similarity:.3f}  {o.photo.item_id}  {o.photo.image}")
    if page:
        stderr_console().print(f"page: {page}")


def sample(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the manifests.")] = Path(
        "sample"
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="A local copy of the Grocery Store Dataset; default: the setting sample_data "
            "(env LOOKALIKE_SAMPLE_DATA), else downloaded from GitHub.",
        ),
    ] = None,
) -> None:
    """Prepare the sample catalogue (Grocery Store Dataset): catalogue.jsonl + queries.csv."""
    with errors_to_exit():
        from lookalike.catalog.sample import fetch_grocery, prepare_grocery
        from lookalike.config import Settings

        data_dir = data_dir or Settings().sample_data
        if data_dir is None:
            with progress_bar(True) as progress:
                data_dir = fetch_grocery(out / "GroceryStoreDataset", progress=progress)
        files = prepare_grocery(data_dir, out)
        stderr_console().print(
            f"{files.items} products, {files.catalogue_images} catalogue photos -> {files.catalogue}; "
            f"{files.queries_count} query photos -> {files.queries}"
        )


_SHOWN_FAILURES = 30


def crawl(
    urls_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="URLS.txt",
            help="Text file with one product or listing URL per line (# starts a comment); "
            "sitemap URLs (.xml) are read as sitemaps.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder: images/, catalogue.jsonl and the resumable state."
        ),
    ] = None,
    render: Annotated[
        Literal["auto", "static", "browser"],
        typer.Option(
            "--render",
            help="auto: use Chromium only when the static HTML has no product images or links; "
            "static: never; browser: always.",
        ),
    ] = "auto",
    max_pages: Annotated[
        int, typer.Option("--max-pages", min=1, help="Listing pages to follow, at most.")
    ] = 50,
    max_products: Annotated[
        int, typer.Option("--max-products", min=1, help="Product pages to crawl, at most.")
    ] = 1000,
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private",
            help="Also crawl private, loopback and link-local addresses (intranet, tests).",
        ),
    ] = False,
    ignore_robots: Annotated[
        bool,
        typer.Option(
            "--ignore-robots",
            help="Do not read robots.txt (only for sites you own or have permission to crawl).",
        ),
    ] = False,
    rate: Annotated[
        float, typer.Option("--rate", min=0.001, help="Requests per second per host.")
    ] = 1.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Requests in flight per host.")
    ] = 2,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Network timeout per step, in seconds.")
    ] = 20.0,
    selectors: Annotated[
        Path | None,
        typer.Option(
            "--selectors",
            help='JSON file of CSS selectors, e.g. {"images": [".zoom img"], "price": ".amount"}.',
        ),
    ] = None,
    user_agent: Annotated[
        str | None,
        typer.Option(
            "--user-agent", help="User-Agent header [default: lookalike-crawler/VERSION ...]."
        ),
    ] = None,
    sitemap: Annotated[
        bool,
        typer.Option(
            "--sitemap",
            help="Also crawl the product pages of the sitemaps robots.txt names (else "
            "/sitemap.xml) for each host in URLS.txt.",
        ),
    ] = False,
    explain: Annotated[
        str | None,
        typer.Option(
            "--explain",
            metavar="URL",
            help="Fetch this one page as the crawl would and print what each field was taken "
            "from (and why each image was kept or refused); writes nothing.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Crawl a shop: product pages -> SHOP/images/ + SHOP/catalogue.jsonl, ready for `lookalike index`.

    Polite by default (robots.txt, 1 request/s and 2 at once per host, retries with backoff) and
    resumable: interrupted, the same command continues; run again later, it updates changed items.
    """
    with errors_to_exit():
        from lookalike.catalog.crawl.crawler import crawl as run_crawl
        from lookalike.catalog.crawl.css import Selectors
        from lookalike.catalog.crawl.options import CrawlOptions, read_url_list
        from lookalike.catalog.crawl.politeness import DEFAULT_USER_AGENT, Politeness
        from lookalike.catalog.crawl.safety import SafetyLimits

        if explain is None and (urls_file is None or out is None):
            raise typer.BadParameter("give URLS.txt and --out SHOP/ (or --explain URL)")
        options = CrawlOptions(
            render=render,
            max_pages=max_pages,
            max_products=max_products,
            politeness=Politeness(
                user_agent=user_agent or DEFAULT_USER_AGENT,
                rate=rate,
                concurrency=concurrency,
                timeout_s=timeout,
                obey_robots=not ignore_robots,
            ),
            safety=SafetyLimits(allow_private=allow_private),
            selectors=Selectors.from_file(selectors) if selectors else Selectors(),
            sitemaps=sitemap,
        )
        if explain is not None:
            _explain(explain, options, as_json)
            return
        assert urls_file is not None and out is not None
        urls = read_url_list(urls_file)
        try:
            with progress_bar(not as_json) as progress:
                summary = run_crawl(urls, out, options, progress=progress)
        except KeyboardInterrupt:
            stderr_console().print(
                f"[yellow]interrupted[/yellow]: what was finished is in {out / 'catalogue.jsonl'}; "
                "run the same command again to resume"
            )
            raise typer.Exit(130) from None
        if as_json:
            print(json.dumps(summary_json(summary), indent=2, ensure_ascii=False))
        else:
            _print_summary(summary)
        if summary.items == 0:
            raise typer.Exit(8)


def _explain(url: str, options: CrawlOptions, as_json: bool) -> None:
    from lookalike.catalog.crawl.explain import explain, render_text

    explanation = explain(url, options)
    if as_json:
        print(json.dumps(explanation.as_json(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(render_text(explanation)))


def summary_json(summary: CrawlSummary) -> dict[str, Any]:
    """The summary as plain JSON types (paths as strings, failures as objects)."""
    from dataclasses import asdict

    data = asdict(summary)
    data["catalogue"] = str(summary.catalogue)
    data["seconds"] = round(summary.seconds, 3)
    data["failures"] = [{"url": f.source, "reason": f.reason} for f in summary.failures]
    return data


def _print_summary(summary: CrawlSummary) -> None:
    from rich.markup import escape

    con = stderr_console()
    state = "resumed an interrupted crawl" if summary.resumed else f"crawl #{summary.generation}"
    con.print(
        f"[green]{summary.items} items[/green] in {escape(str(summary.catalogue))} ({state}): "
        f"{summary.products_new} new, {summary.products_updated} updated, "
        f"{summary.products_unchanged} unchanged, {summary.products_resumed} already done, "
        f"{summary.products_gone} removed; {summary.listing_pages} listing pages, "
        f"{summary.images_downloaded} images downloaded, {summary.images_reused} reused, "
        f"{summary.pages_rendered} pages rendered, {summary.requests} requests "
        f"in {summary.seconds:.1f} s"
    )
    if summary.limit_reached:
        con.print("[yellow]stopped at --max-pages / --max-products[/yellow]")
    failures = [f"{escape(f.source)}: {escape(f.reason)}" for f in summary.failures]
    capped(con, [f"  [yellow]skipped[/yellow] {f}" for f in failures], _SHOWN_FAILURES)
    if summary.items:
        con.print(f"next: lookalike index {escape(str(summary.catalogue))}", style="dim")
