"""What the crawler refuses, whatever a page or a URL list says.

- Schemes: only `http` and `https` (no `file:`, `ftp:`, `data:`, `javascript:` ...).
- Addresses: every connection goes through `GuardedBackend`, which resolves the host name itself,
  refuses the connection unless *every* address is public (not private, loopback, link-local,
  carrier-grade NAT, multicast, reserved or unspecified, IPv4-mapped and NAT64 forms included), and
  then connects to the very address it checked. So a redirect, a CDN host name or a DNS answer that
  changes between check and use (DNS rebinding) cannot reach an internal service. `allow_private`
  lifts the rule (tests, intranet shops).
- Sizes and types: pages must be HTML and at most `max_page_bytes`; images must be one of the
  raster formats the indexer decodes, recognised by their first bytes (not by their name or the
  server's word), and at most `max_image_bytes`.
- Files: every name written under SHOP/ is built by `slug` from letters, digits and `-` only, and
  `safe_join` checks the result stays inside its root; nothing a page contains becomes a path.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from lookalike.errors import CrawlError, UnsafeURLError

MiB = 1024 * 1024

ALLOWED_SCHEMES = ("http", "https")

PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
"""Content types accepted for product and listing pages (a missing header is accepted too)."""

IMAGE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/avif",
        "image/bmp",
        "image/tiff",
        "image/heic",
        "image/heif",
        # Mislabelled but common on CDNs; the first bytes decide (see `sniff_image`).
        "application/octet-stream",
        "binary/octet-stream",
    }
)
"""Content types accepted for images before sniffing. SVG is refused: it is a document, not a photo."""

# NAT64 well-known prefix: the last 32 bits are an IPv4 address that must be checked as such.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class SafetyLimits:
    """The safety rules of one crawl (see the module docstring).

    allow_private: connect to private, loopback and link-local addresses too.
    max_page_bytes / max_image_bytes / max_asset_bytes: largest body accepted for an HTML page, an
        image, and anything else a browser page loads (scripts, styles, JSON), after content
        decoding, in bytes.
    """

    allow_private: bool = False
    max_page_bytes: int = 8 * MiB
    max_image_bytes: int = 20 * MiB
    max_asset_bytes: int = 8 * MiB
    page_types: frozenset[str] = field(default=PAGE_TYPES)
    image_types: frozenset[str] = field(default=IMAGE_TYPES)


def check_url(url: str) -> str:
    """`url` normalised, or UnsafeURLError when it is not an absolute http(s) URL with a host.

    Normalised: scheme and host lower case, default port dropped, empty path -> `/`, fragment
    dropped (it never reaches the server), query kept as is.
    """
    text = url.strip()
    if any(ord(c) < 0x20 or c in " \x7f" for c in text):
        raise UnsafeURLError(f"URL contains spaces or control characters: {text!r}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"malformed URL {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURLError(
            f"only http(s) URLs are crawled, not {scheme + ':' if scheme else 'a relative URL'} "
            f"({text!r})"
        )
    after = parts.netloc.rsplit("]", 1)[1] if "]" in parts.netloc else ""
    if after and not after.startswith(":"):  # urlsplit drops it silently
        raise UnsafeURLError(f"malformed URL {text!r}: text after the IPv6 address")
    host = canonical_host(parts.hostname or "", text)
    default = 443 if scheme == "https" else 80
    netloc = host if port in (None, default) else f"{host}:{port}"
    if parts.username is not None:
        auth = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{auth}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def checked_or_none(url: str) -> str | None:
    """`check_url(url)`, or None when it refuses the URL."""
    try:
        return check_url(url)
    except UnsafeURLError:
        return None


def canonical_host(hostname: str, url: str = "") -> str:
    """The host of a URL as the crawler uses it everywhere: a lower-case name without its final
    dot, an IPv4 address in dotted decimal, or an IPv6 address compressed and in brackets.

    IPv4 addresses are read as browsers and the C resolver read them (WHATWG URL standard):
    `0177.0.0.1` (octal), `0x7f.1` (hex, short form) and `2130706433` are all `127.0.0.1`, so the
    address check sees what a connection would reach and no later parser (httpx, Chromium) reads
    the host differently. A host that ends in a number but is no valid address, an IPv6 literal
    that does not parse, or one with a zone id (`fe80::1%eth0`: a local interface) raises
    UnsafeURLError. `hostname` is `urlsplit(url).hostname` (IPv6 without brackets); `url` is
    only quoted in the message.
    """
    host = hostname.lower()
    if ":" in host:
        if "%" in host:
            raise UnsafeURLError(f"IPv6 zone ids are not crawled: {url!r}")
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise UnsafeURLError(f"malformed IPv6 address in {url!r}") from None
    host = host.rstrip(".")
    if not host:
        raise UnsafeURLError(f"URL has no host: {url!r}")
    labels = host.split(".")
    if _NUMBER.fullmatch(labels[-1]):
        address = _ipv4_number(labels)
        if address is None:
            raise UnsafeURLError(f"{host} is neither a host name nor an IPv4 address: {url!r}")
        return str(ipaddress.IPv4Address(address))
    return host


_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def _ipv4_number(labels: list[str]) -> int | None:
    """The 32-bit value of `a.b.c.d`, `a.b.c`, `a.b` or `a` with each part in decimal, octal
    (leading 0) or hex (0x), the last part filling the remaining bytes; None when invalid."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if not _NUMBER.fullmatch(label):
            return None
        if label[:2] in ("0x", "0X"):
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label[0] == "0":
            if any(c in "89" for c in label):
                return None
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    return last + sum(n << (8 * (3 - i)) for i, n in enumerate(head))


def host_key(url: str) -> str:
    """`scheme://host:port` of a (checked) URL: the unit of rate limits and of robots.txt."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal goes back into brackets (`http://[::1]:80`)
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def is_public_address(address: str) -> bool:
    """True when `address` (an IPv4 or IPv6 literal) is globally routable and not multicast."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(str(ip.ipv4_mapped))
        if ip in _NAT64:
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not ip.is_multicast


def check_addresses(host: str, addresses: Iterable[str], allow_private: bool) -> None:
    """UnsafeURLError unless every address is public (or `allow_private`)."""
    if allow_private:
        return
    for address in addresses:
        if not is_public_address(address):
            raise UnsafeURLError(
                f"{host} resolves to the non-public address {address}: refused "
                "(pass --allow-private to crawl private, loopback or link-local hosts)"
            )


async def resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of `host` (IP literals are returned as they are), in resolver order."""
    literal = host.strip("[]")
    try:
        ipaddress.ip_address(literal.split("%", 1)[0])
        return [literal]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout
        )
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"DNS lookup of {host} timed out") from None
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that checks the resolved address before it connects.

    It resolves the host itself and connects to the checked address, so check and use cannot
    disagree. TLS still verifies the certificate against the host name (httpcore passes the name,
    not the address, as SNI). `check(host, addresses)` raises UnsafeURLError to refuse (the
    crawler's: `check_addresses` with --allow-private; the server's image fetches: its allow-list).
    """

    def __init__(self, check: Callable[[str, list[str]], None]) -> None:
        self._check = check
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port, timeout)
        self._check(host, addresses)
        error: Exception | None = None
        for address in addresses:  # happy-eyeballs light: the first address that answers
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeURLError("unix sockets are never used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool built on `GuardedBackend`."""

    def __init__(
        self, check: Callable[[str, list[str]], None], max_connections: int, keepalive: bool = True
    ) -> None:
        super().__init__(trust_env=False)
        # httpx has no public hook for the network backend; the pool it would build is replaced
        # by one with the same settings plus the guard (checked by the safety tests).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections if keepalive else None,
            keepalive_expiry=5.0 if keepalive else None,
            network_backend=GuardedBackend(check),
        )


def media_type(content_type: str | None) -> str:
    """`text/html; charset=utf-8` -> `text/html`; missing -> ``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def sniff_image(data: bytes) -> str | None:
    """File extension (`jpg`, `png`, `webp`, `gif`, `bmp`, `tif`, `avif`, `heic`) from the first
    bytes of `data`, or None when they are not one of the raster formats the indexer decodes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and len(data) > 26:
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tif"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "heic"
    return None


_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_SAFE_PART = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def slug(text: str, max_len: int = 48) -> str:
    """`text` as lower-case ASCII letters, digits and single `-` (accents folded), at most
    `max_len` characters; empty when nothing is left. `../Été 2024!` -> `ete-2024`."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("-", folded.lower()).strip("-")[:max_len].strip("-")


def safe_join(root: Path, *parts: str) -> Path:
    """`root/part/...`, refusing any part that is not a plain generated name.

    Each part must match `[a-z0-9][a-z0-9._-]*` and not be `.`-only, so `..`, `/`, `\\`, NUL,
    drive letters and absolute paths are impossible; the joined path is checked to lie under
    `root` all the same. Raises CrawlError (a bug, never a page's doing: names come from `slug`).
    """
    for part in parts:
        if not _SAFE_PART.fullmatch(part) or set(part) <= {"."}:
            raise CrawlError(f"refusing unsafe file name {part!r}")
    base = os.path.abspath(root)
    path = os.path.abspath(os.path.join(base, *parts))
    if os.path.commonpath([base, path]) != base:
        raise CrawlError(f"refusing to write outside {base}: {path}")
    return Path(path)
