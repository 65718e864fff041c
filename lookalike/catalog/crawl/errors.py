"""Errors of the crawler.

`CrawlError` stops a whole crawl (unreadable URL list, SHOP/ locked by another crawl, no browser);
`FetchError` and its subclasses concern one URL only: the crawler records them as
`Skipped(url, reason)` and goes on.
"""

from __future__ import annotations

from lookalike.errors import LookalikeError


class CrawlError(LookalikeError):
    """The crawl as a whole cannot run."""

    exit_code = 8


class FetchError(CrawlError):
    """One URL could not be fetched (HTTP error, timeout, too large, wrong content type).

    status: the HTTP status when the server answered with an error, else None.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnsafeURLError(FetchError):
    """A URL is refused by the safety rules (scheme, private address)."""


class RobotsDisallowedError(FetchError):
    """robots.txt forbids the URL to our user agent."""
