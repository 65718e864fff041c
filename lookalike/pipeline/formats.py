"""Which image formats decoding admits, and how a file that is none of them is described.

Only the formats a catalogue may hold are opened (`ALLOWED_FORMATS`), so Pillow's riskier plugins
are never reached; HEIC is registered through pillow-heif only when a HEIC file shows up; a file
Pillow cannot identify gets a reason for people (`unidentified_reason`).
"""

from __future__ import annotations

import functools
import io
import struct
import threading
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

# The formats a catalogue may hold (the folder scanner's extensions). Passed to `Image.open` so that a
# file with a misleading name can never reach another Pillow plugin.
ALLOWED_FORMATS: tuple[str, ...] = (
    "JPEG",  # also opens multi-picture JPEGs from phones (format "MPO"): the first picture
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "TIFF",
    "AVIF",
    "HEIF",  # registered by pillow-heif, only when a HEIC file shows up
    "PPM",  # Netpbm PGM / PPM / PBM / PNM: what scanners and lab cameras write (issue 18)
)

HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})

# Exceptions Pillow's decoders are known to raise on hostile or broken input (its fuzzing suite
# accepts exactly these); anything else is a bug worth a traceback.
PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    ZeroDivisionError,
    Image.DecompressionBombError,
)

# Guards the two moments we touch Pillow's process-wide switches (warning filters, and
# LOAD_TRUNCATED_IMAGES when someone else turned it on), so our own decode threads never interleave
# a save/restore pair and leave a switch changed for good.
PIL_GLOBALS = threading.Lock()


def registered_formats() -> list[str]:
    """ALLOWED_FORMATS that have a Pillow plugin here (naming a missing one is a KeyError)."""
    Image.init()  # loads every plugin once; a no-op afterwards
    return [fmt for fmt in ALLOWED_FORMATS if fmt in Image.OPEN]


def ftyp_brand(data: bytes) -> bytes | None:
    """The major brand of an ISO-BMFF file (HEIC, AVIF ...), None for anything else."""
    return data[8:12].lower() if len(data) >= 12 and data[4:8] == b"ftyp" else None


@functools.cache
def heif_registered() -> bool:
    """Whether Pillow opens HEIC (through pillow-heif, imported only when a HEIC file shows up)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


_SUPPORTED = "JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF, HEIC"

# Leading bytes of things people put in image folders by mistake, for a better reason than "not an image".
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"8BPS", "PSD"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"<!doctype html", "HTML"),
    (b"<html", "HTML"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
)


def unidentified_reason(data: bytes, source: str) -> str:
    head = data[:64].lstrip().lower()
    for magic, name in _MAGIC:
        if head.startswith(magic.lower()):
            if name in ("JPEG", "PNG", "GIF", "TIFF"):
                return f"corrupt {name} image: header cannot be parsed"
            return f"not an image: looks like {name}, supported are {_SUPPORTED}"
    brand = ftyp_brand(data)
    if brand is not None:
        return f"unsupported ISO media file (brand {brand.decode('ascii', 'replace')!r})"
    other = _pillow_format(data)
    if other is not None:
        return f"unsupported image format {other}: supported are {_SUPPORTED}"
    suffix = Path(urlsplit(source).path).suffix.lower() if source else ""
    kind = "a text file" if _looks_like_text(data) else "unrecognised binary data"
    named = f" (named {suffix})" if suffix else ""
    return f"not an image: {kind}{named}"


# What opening a header with any plugin may raise.
_SNIFF_ERRORS: tuple[type[BaseException], ...] = (*PIL_ERRORS, Image.DecompressionBombWarning)


def _pillow_format(data: bytes) -> str | None:
    """The format name if some other Pillow plugin recognises the header (no pixels decoded)."""
    try:
        with warnings.catch_warnings(), PIL_GLOBALS:
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as other:
                return other.format
    except _SNIFF_ERRORS:
        return None


def _looks_like_text(data: bytes) -> bool:
    sample = data[:1024]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in sample
