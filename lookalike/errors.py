"""Typed exceptions. Library code raises these; the CLI maps them to exit codes and HTTP to status codes."""

from __future__ import annotations


class LookalikeError(Exception):
    """Base class of every error lookalike raises on purpose."""

    exit_code = 1


class DecodeError(LookalikeError):
    """A file is not an image we can safely decode (corrupt, truncated, too large, wrong format)."""

    exit_code = 3


class CatalogueError(LookalikeError):
    """The catalogue (folder, JSONL or CSV manifest) cannot be read."""

    exit_code = 4


class ModelError(LookalikeError):
    """A model cannot be resolved, fetched, verified or loaded."""

    exit_code = 5


class ChecksumError(ModelError):
    """A model file's sha256 does not match the catalogue."""


class IndexMismatchError(LookalikeError):
    """The index was built with other models or settings than the ones asked for now."""

    exit_code = 6


class StoreError(LookalikeError):
    """The vector store failed (cannot open, locked, backend unreachable)."""

    exit_code = 7


class QueryError(LookalikeError):
    """A search request is malformed (bad filter expression, bad box, unknown item)."""

    exit_code = 2


class FilterFieldError(QueryError):
    """A filter names a field the index does not have, or compares one with a value of another
    type: it could only match nothing. The message lists the fields there are."""


class FilterValueError(QueryError):
    """A filter's value matches no item at all; the message suggests the field's close values."""


class IndexDamagedError(StoreError):
    """An index's files differ from what its last write recorded (overwritten, truncated, lost),
    or it holds vectors other than those written: its answers cannot be trusted."""

    exit_code = 8


class TrainingError(LookalikeError):
    """A `tune --train` run cannot be done as asked (too little data or memory, a network that
    cannot be trained); refused before anything in the index changes."""

    exit_code = 9


# The crawler's: `CrawlError` stops a whole crawl (unreadable URL list, SHOP/ locked by another
# crawl, no browser); a `FetchError` concerns one URL only, recorded as `Skipped(url, reason)`.


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


BY_NAME: dict[str, type[LookalikeError]] = {
    cls.__name__: cls
    for cls in (CatalogueError, DecodeError, IndexMismatchError, ModelError, QueryError, StoreError)
}
"""The errors a served index names in its answers, by class name: the CLI raises the same again."""
