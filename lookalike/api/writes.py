"""Writes through the HTTP API: one at a time, and never one whose request is gone.

The engine's file lock refuses a second writer even in-process, so writes (add, replace,
delete) take turns under one lock. The slow parts of an add (reading uploads, downloading URLs,
decoding) happen before, outside the lock; under it only the index update runs.

A write waits for its turn at most `wait_s`, then answers 503 and changes nothing. While it
waits, its client may give up (a timeout, a closed tab): the request's disconnection is watched,
and a write whose client is gone is dropped before it starts, so no change lands after its
request failed. Once started, a write finishes (a half-applied item would be worse).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request

T = TypeVar("T")
Args = TypeVarTuple("Args")

_POLL_S = 0.1


class WriteAbandoned(Exception):
    """The client went away before its write started: nothing was written."""


class WriteGate:
    """Serialises writes (see the module docstring). `lock` is also held by in-process code that
    must not overlap a write."""

    def __init__(self, wait_s: float = 300.0, threads: int = 4) -> None:
        self.lock = threading.Lock()
        self.wait_s = wait_s
        # Writes waiting for the lock hold a worker thread each: a few at most, so a burst of
        # writes cannot take the threads that searches and reads run on. The rest queue here.
        self._threads = max(1, threads)
        self._limiter: anyio.CapacityLimiter | None = None  # made on the event loop, on first use

    async def run(self, request: Request | None, fn: Callable[[*Args], T], *args: *Args) -> T:
        """`fn(*args)` on a worker thread, holding the lock, unless `request`'s client has gone
        first (HTTPException 499, nothing written) or the lock stays busy past `wait_s` (503)."""
        gone = threading.Event()
        if request is not None and await request.is_disconnected():
            raise _abandoned()

        deadline = time.monotonic() + self.wait_s  # queueing for a thread counts too

        def guarded() -> T:
            while not self.lock.acquire(timeout=_POLL_S):
                if gone.is_set():
                    raise WriteAbandoned
                if time.monotonic() > deadline:
                    raise HTTPException(
                        503,
                        f"the server is busy with other writes (waited {self.wait_s:g} s); "
                        "nothing was written, try again",
                        headers={"Retry-After": "5"},
                    )
            try:
                if gone.is_set():
                    raise WriteAbandoned
                return fn(*args)
            finally:
                self.lock.release()

        async def watch() -> None:
            while request is not None:
                if await request.is_disconnected():
                    gone.set()
                    return
                await anyio.sleep(_POLL_S)

        outcome: list[T | BaseException] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:  # kept, raised after the group: a task group would wrap it in a group
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(self._threads)
                outcome.append(await anyio.to_thread.run_sync(guarded, limiter=self._limiter))
            except BaseException as exc:
                outcome.append(exc)
            finally:
                tg.cancel_scope.cancel()
        if isinstance(outcome[0], WriteAbandoned):
            raise _abandoned()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]


def _abandoned() -> HTTPException:
    return HTTPException(499, "the client closed the request before its write: nothing written")
