"""Safe image loading: bytes from a path or an http(s) URL -> one RGB `PIL.Image.Image`.

Every way a file can be bad ends in a `DecodeError` whose message is a short reason for people
(the caller records it as `Skipped(source, reason)`), never in a crash or a silently broken image:

- size: more than `DecodeLimits.max_bytes` bytes is refused before it is read (or while streaming);
- decompression bombs: the pixel count from the header is checked against `max_pixels` before any
  pixel is decoded, and Pillow's own `DecompressionBombWarning`/`Error` are turned into the same error;
- formats: only the formats a catalogue may hold (JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF, HEIC, Netpbm) are
  opened, so Pillow's riskier plugins (EPS runs Ghostscript, for one) are never reached;
- truncated or corrupt files: the pixels are loaded in full and truncation is an error, whatever the
  process-wide `ImageFile.LOAD_TRUNCATED_IMAGES` says; a Huffman-coded JPEG too short to hold one
  bit per 8x8 block of the size its header claims is refused before decoding (libjpeg would paint
  the missing blocks grey and report nothing);
- memory: what decoding will allocate (pixels x bytes per pixel of the decoded mode) is checked
  against `max_decoded_bytes` before any pixel is decoded; the image is brought to 8 bits and reduced
  before it is converted, and the full-size pixels are released before the next step, so a small file
  of many pixels (a 16-bit PNG of 64 megapixels is 142 KB) costs a bounded, predictable amount.

What comes out is ready for the models: EXIF orientation applied, first frame of an animation,
alpha composited over white, 16-bit and CMYK brought to 8-bit RGB, and large images decoded at a
reduced size: JPEGs through `Image.draft` (the DCT scales by 1/2, 1/4 or 1/8 almost for free),
other formats by an integer `Image.reduce` right after decoding. High-depth images are converted to
8 bits a band of rows at a time, so no full-size float copy is ever made.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from lookalike.errors import DecodeError
from lookalike.pipeline.formats import (
    AVIF_BRANDS,
    HEIF_BRANDS,
    PIL_ERRORS,
    PIL_GLOBALS,
    ftyp_brand,
    heif_registered,
    registered_formats,
    unidentified_reason,
)

MiB = 1024 * 1024


@dataclass(frozen=True)
class DecodeLimits:
    """What a single image may cost.

    max_bytes: largest file (or download, counted after content decoding) accepted, in bytes.
    max_pixels: largest width * height accepted, checked from the header before decoding.
    draft_size: images whose shorter side is at least twice this are reduced by an integer factor
        (JPEGs at 1/2, 1/4 or 1/8 scale while decoding, other formats right after), never below
        `draft_size` on either side; None decodes at full size.
    timeout_s: connect/read timeout for http(s) sources, in seconds.
    max_decoded_bytes: largest pixel buffer decoding may allocate (pixels x bytes per pixel of the
        decoded mode, as Pillow stores it: 1 for L/P, 2 for 16-bit, 4 for RGB/RGBA/32-bit), checked
        before decoding. The default admits every image of `max_pixels` in any mode (64 M x 4 bytes),
        so it bounds memory without refusing what the pixel limit allows.
    """

    max_bytes: int = 50 * MiB
    max_pixels: int = 64_000_000
    draft_size: int | None = 1024
    timeout_s: float = 30.0
    max_decoded_bytes: int = 256 * MiB


@dataclass(frozen=True)
class Decoded:
    """One decoded image.

    image: RGB, EXIF-rotated, possibly draft-reduced; boxes are in its pixel coordinates.
    source: the path or URL it was read from, as given.
    sha256: hex digest of the raw file bytes (change detection for incremental indexing).
    original_size: (width, height) as stored in the file, after EXIF rotation, before draft reduction.
    """

    image: Image.Image
    source: str
    sha256: str
    original_size: tuple[int, int]


def content_hash(data: bytes) -> str:
    """sha256 of `data` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


def is_url(source: str) -> bool:
    """True for http(s) URLs, the only remote sources `read_source` fetches."""
    return urlsplit(source).scheme.lower() in ("http", "https")


def read_source(source: str, limits: DecodeLimits | None = None) -> bytes:
    """The raw bytes of a local path or an http(s) URL.

    Raises DecodeError when the file is missing or unreadable, larger than `limits.max_bytes`, the
    server answers other than 2xx (the status is in the message), the transfer fails or times out,
    or the source has another scheme (file:, ftp:, data: ... are refused on purpose: catalogues come
    from outside, and a manifest must not make us read through other channels).
    """
    limits = limits or DecodeLimits()
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_url(source, limits)
    # One letter is a Windows drive ("C:\photos\a.jpg"), not a scheme.
    if len(scheme) > 1:
        raise DecodeError(f"unsupported source scheme {scheme!r}: use a local path or http(s) URL")
    return _read_file(Path(source), limits)


def _read_file(path: Path, limits: DecodeLimits) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise DecodeError("not a regular file")
        if size > limits.max_bytes:
            raise DecodeError(_too_large(size, limits))
        with open(path, "rb") as fh:
            # Read one byte past the cap: the file may have grown since stat().
            data = fh.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:
        raise DecodeError(_too_large(len(data), limits))
    return data


def _fetch_url(url: str, limits: DecodeLimits) -> bytes:
    import httpx  # lazily: only catalogues with URLs pay for it

    buf = bytearray()
    try:
        with httpx.stream(
            "GET",
            url,
            timeout=limits.timeout_s,
            follow_redirects=True,  # httpx only follows to http(s), never to file: or others
            headers={"User-Agent": "lookalike (image indexer)", "Accept": "image/*"},
        ) as response:
            if not response.is_success:
                raise DecodeError(f"HTTP {response.status_code} {response.reason_phrase}".strip())
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limits.max_bytes:
                raise DecodeError(_too_large(int(declared), limits))
            # Counted after content decoding, so a gzip bomb stops at the cap too.
            for chunk in response.iter_bytes():
                buf += chunk
                if len(buf) > limits.max_bytes:
                    raise DecodeError(f"download larger than limit of {limits.max_bytes} bytes")
    except httpx.TimeoutException:
        raise DecodeError(f"download timed out after {limits.timeout_s:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DecodeError(f"download failed: {type(exc).__name__}: {exc}") from None
    return bytes(buf)


def _too_large(size: int, limits: DecodeLimits) -> str:
    return f"file too large: {size} bytes > limit of {limits.max_bytes} bytes"


def decode_image(data: bytes, source: str = "", limits: DecodeLimits | None = None) -> Image.Image:
    """Decode `data` into a fresh RGB image (see the module docstring for every rule applied).

    `source` is used only to make messages more helpful. Raises DecodeError with the reason.
    """
    return _decode(data, source, limits or DecodeLimits())[0]


def decode_query(query: Path | str | bytes | Image.Image, limits: DecodeLimits) -> Image.Image:
    """A query photo (path, URL, bytes or an image already decoded) as RGB under `limits`;
    DecodeError naming the photo."""
    if isinstance(query, Image.Image):
        return query.convert("RGB")
    if isinstance(query, bytes):
        return decode_image(query, "query", limits)
    source = str(query)
    try:
        return decode_image(read_source(source, limits), source, limits)
    except DecodeError as exc:
        raise DecodeError(f"query photo {source}: {exc}") from exc


def load_image(source: str, limits: DecodeLimits | None = None) -> Decoded:
    """Read and decode one path or http(s) URL. Raises DecodeError with the reason."""
    limits = limits or DecodeLimits()
    data = read_source(source, limits)
    image, original_size = _decode(data, source, limits)
    return Decoded(image, source, content_hash(data), original_size)


def _decode(data: bytes, source: str, limits: DecodeLimits) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded RGB image and the oriented (width, height) stored in the file."""
    if not data:
        raise DecodeError("empty file")
    if len(data) > limits.max_bytes:
        raise DecodeError(_too_large(len(data), limits))
    img = _open(data, source, limits)
    try:
        fmt = img.format or "image"
        width, height = img.size
        _check_pixels(width, height, limits)
        if fmt in ("JPEG", "MPO"):
            _check_jpeg_length(data, width, height)
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale when the image is at least twice
            # `draft_size`: Pillow picks the largest power-of-two reduction that keeps both sides
            # >= `draft_size`, so the models (which want a few hundred pixels) never see less.
            if limits.draft_size and min(img.size) >= 2 * limits.draft_size:
                img.draft("RGB", (limits.draft_size, limits.draft_size))
        _check_memory(img, limits)
        _load_fully(img, fmt)
        # A GIF frame may be larger than the header's screen size; check what was really decoded.
        _check_pixels(*img.size, limits)
        orientation = _orientation(img)
        # 8 bits and reduced first, so that turning and converting work on the small image.
        small = shrink(img, limits.draft_size)
    finally:
        img.close()  # the full-size pixels go now, not when the caller's image does
    turned = transpose(small, orientation)
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    return to_rgb(turned), (width, height)


def _open(data: bytes, source: str, limits: DecodeLimits) -> ImageFile.ImageFile:
    """Parse the header only (no pixels), refusing formats outside ALLOWED_FORMATS."""
    brand = ftyp_brand(data)
    if brand in HEIF_BRANDS and not heif_registered():
        raise DecodeError("HEIC needs pillow-heif (pip install pillow-heif)")
    elif brand in AVIF_BRANDS and "AVIF" not in Image.OPEN:
        Image.init()
        if "AVIF" not in Image.OPEN:
            raise DecodeError("AVIF needs a Pillow built with AVIF support (Pillow >= 11.3 wheels)")
    try:
        with PIL_GLOBALS, warnings.catch_warnings():
            # Our own max_pixels check is the policy. When it is at most Pillow's warning threshold,
            # a warning means the image breaks our limit too, so fail at once; otherwise the warning
            # is noise about a size the caller has allowed.
            threshold = Image.MAX_IMAGE_PIXELS
            strict = threshold is not None and limits.max_pixels <= threshold
            action: Literal["error", "ignore"] = "error" if strict else "ignore"
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=registered_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise DecodeError(unidentified_reason(data, source)) from None
    except PIL_ERRORS as exc:
        raise DecodeError(f"corrupt image header: {_describe(exc)}") from None
    assert isinstance(img, ImageFile.ImageFile)
    return img


def _check_pixels(width: int, height: int, limits: DecodeLimits) -> None:
    pixels = width * height
    if pixels > limits.max_pixels:
        raise DecodeError(
            f"decompression bomb: {width}x{height} = {pixels} pixels "
            f"exceeds limit of {limits.max_pixels}"
        )
    if pixels <= 0:
        raise DecodeError(f"image has no pixels ({width}x{height})")


def _load_fully(img: ImageFile.ImageFile, fmt: str) -> None:
    """Decode every pixel; a truncated or corrupt file is a DecodeError.

    Pillow pads truncated files with grey when the process-wide `ImageFile.LOAD_TRUNCATED_IMAGES`
    is on. We never turn it on; if some other code has, it is switched off for this one load and
    restored at once, so our answer does not depend on a neighbour's setting.
    """
    try:
        if not ImageFile.LOAD_TRUNCATED_IMAGES:
            img.load()
        else:
            with PIL_GLOBALS:
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                try:
                    img.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = True
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb: {exc}") from None
    except MemoryError:
        raise DecodeError(f"out of memory decoding {fmt} image") from None
    except PIL_ERRORS as exc:
        raise DecodeError(f"truncated or corrupt {fmt} image: {_describe(exc)}") from None


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 to 8; 1 = as stored). Malformed EXIF counts as 1: the pixels are
    still good, only the rotation is unknown."""
    try:
        value = img.getexif().get(0x0112, 1)  # 0x0112: Orientation
    except PIL_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_memory(img: Image.Image, limits: DecodeLimits) -> None:
    """Refuse before decoding when the pixel buffer would exceed `limits.max_decoded_bytes`."""
    width, height = img.size
    # Bytes per pixel of Pillow's in-memory storage: 8-bit single band, 16-bit, else 32 bits per
    # pixel (RGB is stored as 4 bytes too).
    per_pixel = 1 if img.mode in ("1", "L", "P") else 2 if img.mode.startswith("I;16") else 4
    need = width * height * per_pixel
    if need > limits.max_decoded_bytes:
        raise DecodeError(
            f"image too large to decode: {width}x{height} {img.mode} needs {need // MiB} MiB "
            f"> limit of {limits.max_decoded_bytes // MiB} MiB"
        )


def _check_jpeg_length(data: bytes, width: int, height: int) -> None:
    """Refuse a Huffman-coded JPEG whose file cannot hold the picture its header claims.

    Every 8x8 luma block of a baseline or progressive JPEG costs at least one bit (its DC
    difference is a Huffman code of one bit or more), so fewer than blocks / 8 bytes means the scan
    data is missing: libjpeg would fill the rest with flat grey and only warn. Arithmetic-coded
    JPEGs (rare) can go below one bit per block and are left to the decoder.
    """
    if _jpeg_sof(data) not in (0xC0, 0xC1, 0xC2):
        return
    blocks = -(-width // 8) * -(-height // 8)
    if len(data) * 8 < blocks:
        raise DecodeError(
            f"truncated JPEG image: {len(data)} bytes cannot hold the {width}x{height} "
            "pixels its header claims"
        )


def _jpeg_sof(data: bytes) -> int | None:
    """The start-of-frame marker (0xC0 baseline, 0xC2 progressive ...) of a JPEG, None if not found
    before the first scan."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# --- decoded pixels brought to what the models take: turned as the camera meant, 8 bits, reduced,
# RGB with transparency on white ---------------------------------------------------------------------

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def transpose(img: Image.Image, orientation: int) -> Image.Image:
    """Pixels turned the way the camera meant them (as `ImageOps.exif_transpose`, applied to the
    already reduced image, which no longer carries the file's EXIF)."""
    method = _TRANSPOSE.get(orientation)
    return img.transpose(method) if method is not None else img


def shrink(img: Image.Image, draft_size: int | None) -> Image.Image:
    """A new 8-bit image, reduced by an integer factor when its shorter side is at least twice
    `draft_size` (never below `draft_size`); `img` is left for the caller to close.

    High-depth pixels are brought to 8 bits first (band by band of rows, so no full-size float
    copy is ever made), and modes `Image.reduce` cannot take (palette, 1-bit) are converted first.
    """
    base = img
    if img.mode.startswith("I") or img.mode == "F":
        base = _high_depth_to_l(img)
    elif img.mode in ("P", "PA"):
        base = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode == "1":
        base = img.convert("L")
    if draft_size and min(base.size) >= 2 * draft_size:
        try:
            return base.reduce(min(base.size) // draft_size)
        except ValueError:  # a mode Pillow cannot reduce (YCbCr, LAB, HSV ...): keep it whole
            pass
    return base if base is not img else img.copy()


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB, whatever the mode; transparency is composited over white (product shots are)."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    # Alpha channels, and palette or colour-key transparency (`info["transparency"]`): through RGBA,
    # so transparent pixels land on white rather than on whatever colour they happen to hold.
    if img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    # 1, L, P, CMYK (Pillow undoes Adobe's inverted CMYK JPEGs on load), YCbCr, LAB, HSV.
    return img if img.mode == "RGB" else img.convert("RGB")


_ROWS = 256  # rows converted at a time: bounds the temporary arrays of a high-depth conversion


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale -> 8-bit greyscale.

    Pillow's own `convert("L")` clips I;16 at 255 (a near-white image), so scale instead: 16-bit
    modes by 1/257 (0..65535 -> 0..255); 32-bit and float by their value range when it leaves 0..255.
    Done a band of rows at a time, so the temporaries stay small whatever the image's size.
    """
    width, height = img.size
    sixteen = img.mode.startswith("I;16")
    lo = 0.0
    scale = 1.0
    if not sixteen:
        low, high = img.getextrema()  # no copy of the pixels
        lo, hi = float(low), float(high)  # type: ignore[arg-type]  # one band: two numbers
        if math.isnan(lo) or math.isnan(hi):
            lo, hi = _finite_range(img)
        if lo < 0.0 or hi > 255.0:
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
        else:
            lo = 0.0
    grey = np.empty((height, width), dtype=np.uint8)
    for top in range(0, height, _ROWS):
        # A band cropped out of the image: a full-size numpy copy of the pixels is never made.
        band = np.asarray(img.crop((0, top, width, min(top + _ROWS, height))))
        if sixteen:
            # round(x / 257) in integers: x * 255 / 65535, rounded half up.
            grey[top : top + _ROWS] = (band.astype(np.uint32) * 255 + 32767) // 65535
        else:
            values = (band.astype(np.float32) - lo) * scale
            grey[top : top + _ROWS] = np.nan_to_num(values).clip(0, 255).round()
    return Image.fromarray(grey, "L")


def _finite_range(img: Image.Image) -> tuple[float, float]:
    """(min, max) of a float image's finite values, band by band; (0, 0) when there are none."""
    width, height = img.size
    lo, hi = math.inf, -math.inf
    for top in range(0, height, _ROWS):
        band = np.asarray(img.crop((0, top, width, min(top + _ROWS, height))))
        finite = band[np.isfinite(band)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)
