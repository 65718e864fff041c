"""Index jobs of a running server: `lookalike index CAT --index DIR` while `lookalike serve` has
DIR open runs here, in the server, on the engine it already has open.

    POST /api/jobs/index   {catalogue, sync}: index a catalogue (a folder or a manifest on this
                           machine) in the background; 202 with the job          [write access]
    GET  /api/jobs         recent jobs, newest first
    GET  /api/jobs/{id}    one job: state, stage, progress, and the summary when done
    GET  /api/server       this server's index folder and process id             [local secret]
    GET  /api/server/stats `Engine.stats()` as the CLI prints it                 [local secret]

Contracts:
- Jobs run one at a time on one worker thread, never in a request: the request answers at once
  and the client polls. A job holds the server's write lock (the one `POST /api/items` holds)
  for as long as `Engine.index` runs, so writes are serialised as before; searches go on, and see
  the new items when the job's last step makes them visible (as with any indexing run).
- A job reads files on the server, so it needs write access AND one of: the local secret (a CLI
  on this machine that can read the index folder, see `lookalike.api.server_file`), or a
  catalogue inside the server's `--catalogue-root`. Server paths are shown only to the former.
- On shutdown, a running job stops after its current batch (`Engine.index` is safe to stop at
  any point: rerunning it finishes the work) and queued ones are dropped.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from lookalike.api.http_state import KeyHeader
from lookalike.errors import LookalikeError, QueryError

if TYPE_CHECKING:
    from lookalike.engine.core import Engine

log = logging.getLogger("lookalike.http")

JobState = Literal["queued", "running", "done", "failed"]
_KEEP = 50
"""Finished jobs remembered (the oldest are forgotten first)."""


class JobCancelled(Exception):
    """Raised from a job's progress callback to stop `Engine.index` between batches."""


@dataclass(frozen=True)
class Job:
    """A snapshot of one index job (the runner replaces it as the job advances)."""

    id: str
    catalogue: str
    sync: bool
    local: bool
    """Submitted with the local secret: its answers may show server paths."""
    state: JobState = "queued"
    stage: str | None = None
    done: int = 0
    total: int = 0
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def public(self, *, local: bool) -> dict[str, Any]:
        """The job as the API shows it; server paths only to a caller holding the local secret."""
        out = asdict(self)
        out.pop("local")
        if not local:
            out["catalogue"] = os.path.basename(self.catalogue.rstrip("/")) or self.catalogue
            if self.summary is not None:
                summary = dict(self.summary)
                summary["skipped"] = [
                    {"source": os.path.basename(s["source"]), "reason": s["reason"]}
                    for s in summary.get("skipped", [])
                ]
                out["summary"] = summary
            if self.error is not None and self.local:
                out["error"] = {**self.error, "detail": "the job failed (details: local only)"}
        return out


class IndexJobs:
    """Runs index jobs on `engine`, one at a time, each under `write_lock`.

    on_written: called after each job that changed the index (the server refreshes what it
    caches: the list of catalogue images, its readiness).
    """

    def __init__(
        self,
        engine: Engine,
        write_lock: threading.Lock,
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self._write_lock = write_lock
        self._on_written = on_written
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="index-jobs", daemon=True)
        self._worker.start()

    def submit(self, catalogue: Path, *, sync: bool, local: bool) -> Job:
        if self._stopping.is_set():
            raise HTTPException(503, "the server is shutting down")
        with self._lock:
            job = Job(f"{next(self._ids)}-{os.urandom(3).hex()}", str(catalogue), sync, local)
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished is not None]
            for old in finished[: max(0, len(finished) - _KEEP)]:
                del self._jobs[old.id]
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop: the running job ends after its current batch, queued jobs never start."""
        self._stopping.set()
        self._queue.put(None)
        self._worker.join(timeout_s)

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            self._run(job_id)

    def _update(self, job_id: str, change: Callable[[Job], Job]) -> None:
        with self._lock:
            self._jobs[job_id] = change(self._jobs[job_id])

    def _run(self, job_id: str) -> None:
        job = self.get(job_id)
        assert job is not None
        if self._stopping.is_set():
            self._fail(job_id, "cancelled: the server is shutting down", "cancelled")
            return
        self._update(job_id, lambda j: replace(j, state="running", started=time.time()))

        def progress(stage: str, done: int, total: int) -> None:
            if self._stopping.is_set():
                raise JobCancelled
            with self._lock:
                current = self._jobs[job_id]
                stages = {**current.stages, stage: {"done": done, "total": total}}
                self._jobs[job_id] = replace(
                    current, stage=stage, done=done, total=total, stages=stages
                )

        try:
            with self._write_lock:
                try:
                    summary = self.engine.index(
                        Path(job.catalogue), sync=job.sync, progress=progress
                    )
                finally:
                    self._on_written()  # even a stopped run may have written some items
        except JobCancelled:
            self._fail(job_id, "cancelled: the server is shutting down", "cancelled")
        except LookalikeError as exc:
            self._fail(job_id, str(exc), type(exc).__name__)
        except Exception as exc:  # a bug: keep the worker alive, say where to look
            log.exception("index job %s failed", job_id, exc_info=exc)
            self._fail(
                job_id, f"internal error ({type(exc).__name__}); see the server log", "internal"
            )
        else:
            done = asdict(summary)
            now = time.time()
            self._update(job_id, lambda j: replace(j, state="done", summary=done, finished=now))

    def _fail(self, job_id: str, detail: str, kind: str) -> None:
        error = {"detail": detail, "error": kind}
        now = time.time()
        self._update(job_id, lambda j: replace(j, state="failed", error=error, finished=now))


# -- HTTP ----------------------------------------------------------------------------------------


class IndexJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    catalogue: str = Field(
        min_length=1,
        max_length=4096,
        description="A catalogue on the server: a folder (one sub-folder per item) or a JSONL / "
        "CSV manifest. An absolute path; a relative one is taken under --catalogue-root.",
    )
    sync: bool = Field(default=False, description="Remove items that are not in the catalogue.")


class JobOut(BaseModel):
    id: str
    catalogue: str = Field(description="The catalogue (its name only, unless asked locally).")
    sync: bool
    state: JobState
    stage: str | None = Field(description="embed, centroids, optimize ...")
    done: int
    total: int = Field(description="0: unknown (a stage without a count).")
    stages: dict[str, dict[str, int]]
    summary: dict[str, Any] | None = Field(
        description="When done: what `lookalike index --json` prints."
    )
    error: dict[str, str] | None = Field(description="When failed: {detail, error}.")
    created: float
    started: float | None
    finished: float | None


class ServerOut(BaseModel):
    index: str
    pid: int


def jobs_router(
    jobs: IndexJobs,
    *,
    check_write: Callable[[str | None], None],
    local_secret: str | None,
    catalogue_root: Path | None,
    index_dir: Path,
) -> APIRouter:
    """The routes above. check_write: the server's one write decision (raises 401/403), given the
    `X-API-Key` header, which carries either the API key or the local secret."""
    router = APIRouter(tags=["jobs"])
    root = os.path.realpath(catalogue_root) if catalogue_root is not None else None

    def is_local(given: str | None) -> bool:
        return (
            given is not None
            and local_secret is not None
            and hmac.compare_digest(given.encode(), local_secret.encode())
        )

    def local_only(given: str | None) -> None:
        if not is_local(given):  # the app answers {"detail": ..., "error": "forbidden"}
            raise HTTPException(403, "only for the local CLI")

    @router.post("/api/jobs/index", status_code=202, response_model=JobOut)
    async def start_index(body: IndexJobIn, x_api_key: KeyHeader = None) -> dict[str, Any]:
        """Index a catalogue on the server in the background (as `lookalike index` does);
        answers at once with the job to poll."""
        check_write(x_api_key)
        local = is_local(x_api_key)
        path = Path(body.catalogue)
        if not path.is_absolute():
            if root is None:
                raise QueryError("catalogue must be an absolute path on the server")
            path = Path(root) / path
        resolved = os.path.realpath(path)
        if not local and (root is None or os.path.commonpath([root, resolved]) != root):
            raise HTTPException(
                403,
                "an index job reads files on the server: it needs the local secret (run "
                "`lookalike index` on the server's machine), or a catalogue inside the "
                "server's --catalogue-root",
            )
        if not os.path.exists(resolved):
            shown = str(path) if local else body.catalogue
            raise QueryError(f"no catalogue at {shown} on the server")
        return jobs.submit(Path(resolved), sync=body.sync, local=local).public(local=local)

    @router.get("/api/jobs", response_model=list[JobOut])
    async def list_jobs(x_api_key: KeyHeader = None) -> list[dict[str, Any]]:
        """Recent index jobs, newest first."""
        local = is_local(x_api_key)
        return [j.public(local=local) for j in jobs.all()]

    @router.get(
        "/api/jobs/{job_id}",
        response_model=JobOut,
        responses={404: {"description": "No such job (or forgotten)."}},
    )
    async def get_job(job_id: str, x_api_key: KeyHeader = None) -> dict[str, Any]:
        """One job: its state and progress; its summary once done."""
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} on this server")
        return job.public(local=is_local(x_api_key))

    @router.get("/api/server", response_model=ServerOut, include_in_schema=False)
    async def whoami(x_api_key: KeyHeader = None) -> dict[str, Any]:
        """For the CLI: proves this server is the one that wrote `<index>/server.json`."""
        local_only(x_api_key)
        return {"index": str(index_dir.resolve()), "pid": os.getpid()}

    @router.get("/api/server/stats", include_in_schema=False)
    async def engine_stats(x_api_key: KeyHeader = None) -> dict[str, Any]:
        """For the CLI: `Engine.stats()` as it is (server paths included), so `lookalike stats`
        prints through a server what it prints alone."""
        local_only(x_api_key)
        return await anyio.to_thread.run_sync(jobs.engine.stats)

    return router
