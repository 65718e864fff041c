"""Who may write through the HTTP API: one decision, `WriteAccess.check`, for every write endpoint.

Writes (adding, replacing and deleting items) are off unless the operator configured a credential:
a server started without `--api-key` answers every write 403 with how to turn writes on, so a
server reachable by others (or by any web page its operator visits) cannot be changed by them.

A credential travels in a request header (`X-API-Key`), never in a cookie or the URL: a cross-site
form cannot set a header, and a cross-site `fetch` that sets one needs a CORS preflight this server
never grants (it sends no `Access-Control-Allow-*` headers). So with writes on, a web page the
operator visits cannot forge a write either (the multipart POST of issue 14 is answered 401).

The CLI of the server's own machine writes through it with the local secret `lookalike serve` leaves
in `<index>/server.json` (readable by the index's owner only; `lookalike.api.server_file`): it is
accepted like an API key, and on its own it turns writes on for that CLI alone. `check` is the one
place that decides.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header
from starlette.exceptions import HTTPException

KEY_HEADER = "X-API-Key"
KeyHeader = Annotated[str | None, Header()]
"""A route's `x_api_key: KeyHeader = None` parameter: the X-API-Key header, passed to `check`."""


@dataclass(frozen=True)
class WriteAccess:
    """The credentials that allow writes.

    keys: API keys (`--api-key`): writes are on for whoever sends one.
    local: secrets of the server's own machine (`server.json`), accepted like keys; with no API
        key, everyone else is answered 403 ("writes are off").
    read_only: no write is allowed at all, whatever is sent.
    """

    keys: tuple[str, ...] = ()
    read_only: bool = False
    local: tuple[str, ...] = ()

    @classmethod
    def from_keys(
        cls,
        keys: Iterable[str | None],
        *,
        read_only: bool = False,
        local: Iterable[str | None] = (),
    ) -> WriteAccess:
        """Empty and missing keys are dropped (an empty key would let an empty header write)."""
        return cls(tuple(k for k in keys if k), read_only, tuple(k for k in local if k))

    @property
    def enabled(self) -> bool:
        """Whether clients other than this machine's CLI may write (an API key is set)."""
        return bool(self.keys) and not self.read_only

    def check(self, given: str | None) -> None:
        """Return when a request carrying header value `given` may write; else HTTPException:
        403 when writes are off on this server (for this client), 401 when the key is missing or
        wrong.

        Every configured credential is compared in constant time, whether or not an earlier one
        matched.
        """
        if self.read_only:
            raise HTTPException(
                403, "this server is read-only (started with --read-only): it takes no writes"
            )
        ok = False
        for key in (*self.keys, *self.local):
            if given is not None and hmac.compare_digest(given.encode(), key.encode()):
                ok = True
        if ok:
            return
        if not self.keys:
            raise HTTPException(
                403,
                "writes are off on this server: start it with --api-key KEY (or set "
                f"LOOKALIKE_API_KEY) and send the header {KEY_HEADER}: KEY to add or delete items",
            )
        raise HTTPException(
            401,
            f"this server needs the header {KEY_HEADER} to add or delete items",
            headers={"WWW-Authenticate": KEY_HEADER},
        )
