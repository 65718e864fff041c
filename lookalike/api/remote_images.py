"""Image URLs of items added through the HTTP API, downloaded by the server itself, safely.

The rules (the crawler's, `lookalike.catalog.crawl.safety`, plus a deadline):

- Only http(s) URLs with a host (`check_url`); redirects are followed by hand, at most
  `max_redirects`, and every hop is checked again.
- Every connection resolves the host itself and refuses it unless *every* address is public
  (`is_public_address`: not private, loopback, link-local, CGNAT, multicast, reserved ...), then
  connects to the very address it checked: a redirect or a DNS answer that changes between check
  and use cannot reach an internal service. `allow` names networks let through all the same
  (an intranet shop; the tests' own server on 127.0.0.1); empty by default.
- A whole-download deadline, `deadline_s`, redirects included: a server that sends one byte a
  second is cut off at the deadline, not after minutes of per-read timeouts.
- At most `max_bytes`, counted after content decoding; the first bytes must be an image format
  the indexer decodes (`sniff_image`).
- Errors say that the URL could not be used and why in general terms (refused address, or not
  downloadable as an image), never what is behind it ("Connection refused", "a text file", the
  status): the reason goes to the server log.

Downloads run on the event loop (httpx, async) outside the write lock, so a slow URL holds up
nobody but its own request.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx

from lookalike.catalog.crawl.safety import (
    GuardedTransport,
    check_url,
    is_public_address,
    sniff_image,
)
from lookalike.errors import DecodeError, UnsafeURLError

log = logging.getLogger("lookalike.http")

MiB = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"User-Agent": "lookalike (item images)", "Accept": "image/*"}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ImageURLError(DecodeError):
    """An item's image URL could not be used. The message is for the client: it never tells
    what the URL leads to."""


@dataclass(frozen=True)
class FetchPolicy:
    """How the server downloads image URLs (see the module docstring).

    deadline_s: whole download of one URL, redirects included, in seconds.
    max_bytes: largest image accepted.
    allow: networks (`10.0.0.0/8`, `127.0.0.1`) let through although not public.
    parallel: URLs of one item downloaded at once.
    """

    deadline_s: float = 30.0
    max_bytes: int = 20 * MiB
    max_redirects: int = 5
    allow: tuple[Network, ...] = field(default=())
    parallel: int = 4

    @classmethod
    def allowing(cls, networks: Iterable[str], **kw: Any) -> FetchPolicy:  # Any: other fields
        """A policy letting `networks` through. ValueError names a malformed one."""
        return cls(allow=tuple(ipaddress.ip_network(n, strict=False) for n in networks), **kw)

    def permits(self, address: str) -> bool:
        if is_public_address(address):
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in net for net in self.allow if net.version == ip.version)


def _checker(policy: FetchPolicy) -> Callable[[str, list[str]], None]:
    """The server's address check: every resolved address public or on the policy's allow-list."""

    def check(host: str, addresses: list[str]) -> None:
        for address in addresses:
            if not policy.permits(address):
                raise UnsafeURLError(f"{host} resolves to the non-public address {address}")

    return check


async def fetch_image(url: str, policy: FetchPolicy) -> bytes:
    """The bytes of the image at `url`. ImageURLError (generic message) for anything else."""
    try:
        current = check_url(url)
    except UnsafeURLError:
        raise ImageURLError(f"image URL {url!r} is not an http(s) URL with a host") from None
    try:
        with anyio.fail_after(policy.deadline_s):
            async with httpx.AsyncClient(
                transport=GuardedTransport(
                    _checker(policy), max_connections=policy.parallel, keepalive=False
                ),
                follow_redirects=False,
                trust_env=False,
                timeout=policy.deadline_s,
            ) as client:
                return await _download(client, current, policy)
    except UnsafeURLError as exc:
        log.info("image URL %s refused: %s", url, exc)
        raise ImageURLError(
            f"image URL {url!r} refused: it leads to a non-public address"
        ) from None
    except TimeoutError:
        log.info("image URL %s: no whole image within %g s", url, policy.deadline_s)
        raise ImageURLError(
            f"image URL {url!r}: no image downloaded within {policy.deadline_s:g} s"
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, _Unusable) as exc:
        log.info("image URL %s unusable: %s", url, exc)
        raise ImageURLError(f"image URL {url!r} could not be downloaded as an image") from None


class _Unusable(Exception):
    """The URL answered, but not with a usable image (the reason is for the log only)."""


async def _download(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> bytes:
    for _ in range(policy.max_redirects + 1):
        async with client.stream("GET", url, headers=_HEADERS) as response:
            if response.status_code in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise _Unusable(f"HTTP {response.status_code} without Location")
                url = check_url(urljoin(url, location))  # UnsafeURLError for file:, no host
                continue
            if not response.is_success:
                raise _Unusable(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > policy.max_bytes:
                raise _Unusable(f"declares {declared} bytes")
            buf = bytearray()
            async for chunk in response.aiter_bytes():
                buf += chunk
                if len(buf) > policy.max_bytes:
                    raise _Unusable(f"more than {policy.max_bytes} bytes")
            if sniff_image(bytes(buf[:32])) is None:
                raise _Unusable("not an image format the indexer decodes")
            return bytes(buf)
    raise _Unusable(f"more than {policy.max_redirects} redirects")


async def fetch_images(urls: Sequence[str], policy: FetchPolicy) -> list[bytes | ImageURLError]:
    """Each URL's bytes, or its error, in order; at most `policy.parallel` downloads at once."""
    out: list[bytes | ImageURLError] = [ImageURLError("not fetched")] * len(urls)
    limiter = anyio.CapacityLimiter(max(1, policy.parallel))

    async def one(i: int, url: str) -> None:
        async with limiter:
            try:
                out[i] = await fetch_image(url, policy)
            except ImageURLError as exc:
                out[i] = exc

    async with anyio.create_task_group() as tg:
        for i, url in enumerate(urls):
            tg.start_soon(one, i, url)
    return out
