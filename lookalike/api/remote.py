"""The CLI's way to an index: an `Engine` with the command line's settings (`open_engine`), or the
running `lookalike serve` that has the index open (`through_server`). Light at import.

The embedded store admits one process, so while a server has an index open the CLI cannot open
it. `find_server` reads the `<index>/server.json` the server left (`lookalike.api.server_file`)
and checks the server is alive and is the one that wrote it (it must answer `GET /api/server`
given the secret): a file left by a killed server is ignored, and the CLI opens the index itself.

`ServedIndex` answers the CLI's calls (`stats`, `search`, `search_text`, `similar`, `facets`,
`delete`, `index`) through the server's HTTP API with the same values `Engine` returns, so the
commands print the same output. `index` runs as a job in the server (`lookalike.api.jobs`) and
reports its progress through the usual callback. Errors are the typed errors the engine raises
(the server names them in its answers); what cannot go through a server is a StoreError naming it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from lookalike.api.server_file import ServerRecord, process_alive, read_record
from lookalike.errors import (
    BY_NAME,
    CatalogueError,
    DecodeError,
    LookalikeError,
    QueryError,
    StoreError,
)

if TYPE_CHECKING:
    import httpx

    from lookalike.engine.core import Engine
    from lookalike.engine.records import IndexRunner, Progress, SearchResult
    from lookalike.faces.values import FaceSearchResult
    from lookalike.types import IndexSummary, JSONValue

KEY_HEADER = "X-API-Key"
"""The header carrying the secret: the one the API key travels in (one write decision)."""
_CHECK_TIMEOUT_S = 3.0
_POLL_S = 0.3


def find_server(index_dir: Path) -> ServedIndex | None:
    """The live server that has `index_dir` open, or None (no file, or a stale one: its process
    is gone, nothing answers at its URL, or what answers does not know its secret)."""
    record = read_record(index_dir)
    if record is None or not process_alive(record.pid):
        return None
    if Path(record.index) != Path(index_dir).resolve():
        return None  # a copied index folder: the server serves the original
    import httpx

    client = httpx.Client(
        base_url=record.url, headers={KEY_HEADER: record.secret}, timeout=_CHECK_TIMEOUT_S
    )
    try:
        answer = client.get("/api/server")
        ok = answer.status_code == 200 and answer.json().get("index") == record.index
    except (httpx.HTTPError, ValueError):
        ok = False
    if not ok:
        client.close()
        return None
    client.timeout = httpx.Timeout(600.0, connect=_CHECK_TIMEOUT_S)
    return ServedIndex(Path(index_dir), record, client)


@contextmanager
def naming_server(index_dir: Path, command: str) -> Iterator[None]:
    """A StoreError in the block (e.g. the store is locked) names the live server that has
    `index_dir` open, if there is one, and says that `command` cannot run through it."""
    try:
        yield
    except StoreError as exc:
        served = find_server(index_dir)
        if served is None:
            raise
        served.close()
        raise StoreError(f"{exc}\n{served.cannot(command)}") from exc


def refuse_if_served(index_dir: Path, command: str) -> None:
    """StoreError naming the server when a live one has `index_dir` open and `command` cannot
    go through it (instead of the store's own "cannot open ... WouldBlock")."""
    served = find_server(index_dir)
    if served is not None:
        served.close()
        raise StoreError(served.cannot(command))


def open_engine(
    index: Path | None,
    embedder: str | None = None,
    mirror: Path | None = None,
    views: dict[str, Any] | None = None,
    store: str | None = None,
) -> Engine:
    """An engine on `index`. `views`: view settings given on the command line (detect, isolate,
    labels); for an existing index they must match what built it."""
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.engine.wiring import view_settings

    overrides: dict[str, Any] = {k: v for k, v in (views or {}).items() if v is not None}
    if mirror is not None:
        overrides["models_mirror"] = mirror
    settings = Settings(**overrides)
    asked = view_settings(settings) if any(v is not None for v in (views or {}).values()) else None
    return Engine(
        index or settings.index,
        settings=settings,
        embedder=embedder,
        views=asked,
        store_spec=store,
    )


def through_server(engine: Engine) -> Engine | ServedIndex:
    """The running `lookalike serve` that has the engine's index open (the CLI then goes
    through it: the embedded store admits one process), else the engine itself."""
    if engine.manifest is not None:
        engine.store_record()  # a --store other than the index's is an error here too
    served = find_server(engine.index_dir)
    if served is None:
        return engine
    engine.close()
    return served


def local_only(engine: Engine, command: str) -> Engine:
    """`engine`, or a StoreError naming the server that has its embedded store open (`command`
    does not go through a server)."""
    if engine.manifest is not None and engine.store_record()["kind"] in ("edge", "qdrant-local"):
        refuse_if_served(engine.index_dir, command)
    return engine


class ServedIndex:
    """An index as a running server serves it; the `Engine` calls the CLI makes."""

    def __init__(self, index_dir: Path, record: ServerRecord, client: httpx.Client) -> None:
        self.index_dir = index_dir
        self.record = record
        self._client = client

    def describe(self) -> str:
        return f"`lookalike serve` (pid {self.record.pid}) at {self.record.url}"

    def cannot(self, what: str) -> str:
        return (
            f"{what} cannot run while {self.describe()} has the index {self.index_dir} open: "
            "stop that server, then run it again"
        )

    # -- plumbing --------------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> JSONValue:  # Any: httpx's kwargs
        """The JSON answer; typed errors for error answers and lost connections."""
        import httpx

        try:
            answer = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"{self.describe()} did not answer: {exc}") from None
        if answer.status_code >= 400:
            raise self._error(answer)
        return answer.json()

    def _error(self, answer: httpx.Response) -> LookalikeError:
        try:
            body = answer.json()
            detail, kind = str(body["detail"]), str(body.get("error", ""))
        except (ValueError, KeyError, TypeError):
            detail, kind = answer.text[:200], ""
        return error_from(answer.status_code, detail, kind, self.describe())

    # -- reads -----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        info = self._call("GET", "/api/server/stats")  # the engine's own, not /api/stats
        return {**info, "index": str(self.index_dir)}  # as the user named it, as the CLI does

    def facets(
        self, field: str, *, where: str | None = None, limit: int = 20
    ) -> dict[JSONValue, int]:
        params = {"field": field, "limit": limit, **_given(where=where)}
        out = self._call("GET", "/api/facets", params=params)
        return {v["value"]: int(v["count"]) for v in out["values"]}

    def search(
        self,
        photo: str,
        *,
        k: int = 5,
        where: str | None = None,
        mode: str | None = None,
        box: tuple[float, float, float, float] | None = None,
        text: str | None = None,
        box_units: str = "px",
    ) -> SearchResult:
        """The photo is read here (path or URL, with the engine's limits) and uploaded; `box` in
        pixels of the photo, or fractions of its sides (`box_units="fraction"`)."""
        data = self._read_photo(photo)
        form: dict[str, Any] = {"k": str(k), **_given(where=where, mode=mode, text=text)}
        if box is not None:
            form.update(box=",".join(str(v) for v in box), box_units=box_units)
        try:
            out = self._call(
                "POST",
                "/api/search",
                data=form,
                files={"photo": (Path(photo).name or "photo", data)},
            )
        except DecodeError as exc:
            raise DecodeError(f"query photo {photo}: {exc}") from exc
        return _search_result(out)

    def search_text(self, text: str, *, k: int = 5, where: str | None = None) -> SearchResult:
        body = {"text": text, "k": k, **_given(where=where)}
        return _search_result(self._call("POST", "/api/search/text", json=body))

    def search_objects(self, *args: object, **kwargs: object) -> NoReturn:
        raise StoreError(self.cannot("`search --all-objects`"))

    def similar(
        self, item_id: str, *, k: int = 5, where: str | None = None, mode: str | None = None
    ) -> SearchResult:
        params = {"k": k, **_given(where=where, mode=mode)}
        return _search_result(
            self._call("GET", f"/api/similar/{quote(item_id, safe='')}", params=params)
        )

    def recommend(
        self,
        positive: list[str],
        negative: list[str],
        *,
        k: int = 5,
        where: str | None = None,
        mode: str | None = None,
    ) -> SearchResult:
        body = {
            "positive": positive,
            "negative": negative,
            "k": k,
            **_given(where=where, mode=mode),
        }
        return _search_result(self._call("POST", "/api/recommend", json=body))

    def faces_search(
        self,
        selfies: Sequence[str],
        *,
        face: int | None = None,
        threshold: float | None = None,
        k: int = 50,
        maybe_threshold: float | None = None,
    ) -> FaceSearchResult:
        """`FaceIndex.search_many` through the server (`POST /api/faces/search`): one portrait
        (the endpoint takes one photo; several are refused with what to do)."""
        from lookalike.faces.values import FaceMatch, FaceSearchResult, QueryFace

        if len(selfies) != 1:
            raise QueryError(
                f"the server at {self.record.url} has this index open and searches one portrait at a "
                "time: pass one SELFIE, or stop the server to search with several"
            )
        selfie = selfies[0]
        given = {"face": face, "threshold": threshold, "maybe_threshold": maybe_threshold}
        form = {"k": str(k), **{name: str(v) for name, v in given.items() if v is not None}}
        data = self._read_photo(selfie)
        out = self._call(
            "POST", "/api/faces/search", data=form, files={"photo": (Path(selfie).name, data)}
        )

        def query_face(f: dict[str, Any]) -> QueryFace:
            box = tuple(f["box"])
            return QueryFace(f["number"], box, f["det_score"], f["face_size"], None)  # type: ignore[arg-type]  # the answer has no vector (None), box is 4 floats

        names = [f.name for f in dataclasses.fields(FaceMatch)]  # "tier" may be absent: "you"
        matches = tuple(
            FaceMatch(**{**{n: m[n] for n in names if n in m}, "box": tuple(m["box"])})
            for m in out["matches"]
        )
        return FaceSearchResult(
            matches=matches,
            query_face=query_face(out["query"]["face"]),
            query_faces=tuple(query_face(f) for f in out["query"]["faces"]),
            threshold=float(out["threshold"]),
            timings_ms={k: v for k, v in out["timings_ms"].items() if k != "total"},
            maybe_threshold=float(out.get("maybe_threshold", out["threshold"])),
        )

    def _read_photo(self, source: str) -> bytes:
        """A query photo's bytes (path or URL) with the engine's limits, to upload."""
        from lookalike.config import Settings
        from lookalike.engine import wiring
        from lookalike.pipeline.decode import read_source

        try:
            return read_source(source, wiring.limits(Settings()))
        except DecodeError as exc:
            raise DecodeError(f"query photo {source}: {exc}") from exc

    # -- writes ----------------------------------------------------------------------------------

    def delete(self, item_ids: list[str]) -> list[str]:
        """As `Engine.delete`: the ids that were removed; an id that is not indexed is no error."""
        removed: list[str] = []
        for item_id in dict.fromkeys(item_ids):
            try:
                self._call("DELETE", f"/api/items/{quote(item_id, safe='')}")
            except QueryError as exc:
                if "no item" not in str(exc):
                    raise
            else:
                removed.append(item_id)
        return removed

    def index(
        self,
        catalogue: Path,
        *,
        sync: bool = False,
        progress: Progress | None = None,
        runner: IndexRunner | None = None,
        repair: bool = False,
    ) -> IndexSummary:
        """Index `catalogue` (a path on this machine, which is the server's) as a job of the
        server; polls it, reporting its stages to `progress`, until it ends."""
        if runner is not None:
            raise StoreError(self.cannot("`index --ray`"))
        if repair:
            raise StoreError(self.cannot("`index --repair`"))
        path = Path(catalogue).expanduser()
        if not path.exists():
            raise CatalogueError(f"catalogue not found: {path}")
        job = self._call(
            "POST", "/api/jobs/index", json={"catalogue": str(path.resolve()), "sync": sync}
        )
        notify = progress or (lambda stage, done, total: None)
        shown: dict[str, tuple[int, int]] = {}
        try:
            while True:
                for stage, counts in job["stages"].items():
                    now = (int(counts["done"]), int(counts["total"]))
                    if shown.get(stage) != now:
                        notify(stage, *now)
                        shown[stage] = now
                if job["state"] in ("done", "failed"):
                    break
                time.sleep(_POLL_S)
                try:
                    job = self._call("GET", f"/api/jobs/{job['id']}")
                except StoreError as exc:
                    raise StoreError(
                        f"{exc}; if the server stopped, so did the index job: run the same "
                        "`lookalike index` again to finish it"
                    ) from None
        except KeyboardInterrupt:
            raise StoreError(
                f"stopped waiting; the index job goes on in {self.describe()}: "
                f"see {self.record.url}/api/jobs/{job['id']}"
            ) from None
        if job["state"] == "failed":
            error = job.get("error") or {}
            raise error_from(
                500, str(error.get("detail", "failed")), str(error.get("error", "")), ""
            )
        return summary_from(job["summary"])


def summary_from(data: dict[str, Any]) -> IndexSummary:
    """The `IndexSummary` a job reports (`dataclasses.asdict` of it) as the engine returns it:
    every field it carries, whatever fields the summary has gained."""
    from lookalike.types import IndexSummary, Skipped

    values: dict[str, Any] = {}
    for f in dataclasses.fields(IndexSummary):
        if f.name not in data:
            continue  # a server of another version: the field's default
        value = data[f.name]
        if f.name == "skipped":
            value = tuple(Skipped(x["source"], x["reason"]) for x in value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return IndexSummary(**values)


def error_from(status: int, detail: str, kind: str, server: str) -> LookalikeError:
    """The typed error a server's answer names (`error`: the exception type), else by status."""
    cls = BY_NAME.get(kind)
    if cls is None and kind in ("NoFaceError", "ManyFacesError"):
        cls = QueryError
    if cls is not None:
        return cls(detail)
    if status in (401, 403):
        return StoreError(f"{server} refused: {detail}" if server else detail)
    if status in (404, 413, 415, 422):
        return QueryError(detail)
    return StoreError(f"{server}: {detail}" if server else detail)


def _given(**values: object) -> dict[str, object]:
    """The optional parameters that are set: a request leaves the others out."""
    return {name: value for name, value in values.items() if value}


def _search_result(out: dict[str, Any]) -> SearchResult:
    """The server's search answer as the `SearchResult` the engine returns."""
    from lookalike.engine.records import QueryObject, SearchResult
    from lookalike.types import ProductHit

    hits = tuple(
        ProductHit(
            item_id=h["item_id"],
            score=float(h["score"]),
            image=h["image"],
            fields=h["fields"],
            box=tuple(h["box"]) if h.get("box") else None,
            match=h.get("match"),
        )
        for h in out["results"]
    )
    qo = out.get("query_object")
    timings = {k: v for k, v in out.get("timings_ms", {}).items() if k != "total"}
    return SearchResult(
        hits=hits,
        timings_ms=timings,
        mode=out["mode"],
        score=out["score_kind"],
        query_object=QueryObject(qo["label"], tuple(qo["box"]), qo["score"]) if qo else None,
    )
