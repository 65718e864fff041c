"""Safe decoding: every bad file ends in a DecodeError with a reason, every good one in RGB."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import struct
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from lookalike.errors import DecodeError
from lookalike.pipeline import formats
from lookalike.pipeline.decode import (
    Decoded,
    DecodeLimits,
    content_hash,
    decode_image,
    load_image,
    read_source,
)

RED = (255, 0, 0)


def _save(img: Image.Image, path: Path, fmt: str | None = None, **params: object) -> str:
    img.save(path, fmt, **params)
    return str(path)


def _jpeg_bytes(
    size: tuple[int, int], color: tuple[int, int, int] = RED, **params: object
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90, **params)
    return buf.getvalue()


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG built row by row: huge declared size, tiny file."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    return _bilevel_png(30_000, 30_000)


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel buffer is decoded (i.e. if a bomb got past the header check)."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"pixels of a {self.size} image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# --- good files ----------------------------------------------------------------------------------


def _make_jpeg(p: Path) -> str:
    return _save(Image.new("RGB", (64, 48), RED), p / "a.jpg", quality=95)


def _make_png(p: Path) -> str:
    return _save(Image.new("RGB", (64, 48), RED), p / "a.png")


def _make_webp(p: Path) -> str:
    return _save(Image.new("RGB", (64, 48), RED), p / "a.webp", quality=95)


def _make_bmp(p: Path) -> str:
    return _save(Image.new("RGB", (64, 48), RED), p / "a.bmp")


def _make_tiff(p: Path) -> str:
    return _save(Image.new("RGB", (64, 48), RED), p / "a.tiff", compression="tiff_lzw")


def _make_animated_gif(p: Path) -> str:
    frames = [Image.new("RGB", (64, 48), c) for c in (RED, (0, 0, 255), (0, 255, 0))]
    path = p / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return str(path)


def _make_cmyk_jpeg(p: Path) -> str:
    return _save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), p / "cmyk.jpg", quality=95)


@pytest.mark.parametrize(
    "make",
    [
        _make_jpeg,
        _make_png,
        _make_webp,
        _make_bmp,
        _make_tiff,
        _make_animated_gif,
        _make_cmyk_jpeg,
    ],
)
def test_formats_decode_to_rgb(tmp_path: Path, make) -> None:
    path = make(tmp_path)
    decoded = load_image(path)
    assert isinstance(decoded, Decoded)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (64, 48) == decoded.original_size
    # Red everywhere; for the animated GIF this proves the first frame was taken.
    assert _close(decoded.image.getpixel((32, 24)), RED, tol=20)
    assert decoded.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert decoded.source == path


def test_greyscale_becomes_rgb(tmp_path: Path) -> None:
    path = _save(Image.new("L", (20, 10), 100), tmp_path / "grey.png")
    img = load_image(path).image
    assert img.mode == "RGB"
    assert img.getpixel((5, 5)) == (100, 100, 100)


def test_one_bit_becomes_rgb(tmp_path: Path) -> None:
    path = _save(Image.new("1", (20, 10), 1), tmp_path / "bits.png")
    assert load_image(path).image.getpixel((0, 0)) == (255, 255, 255)


def test_alpha_is_composited_over_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (20, 10), (0, 0, 0, 0))  # transparent black
    img.paste((255, 0, 0, 255), (0, 0, 10, 10))  # opaque red on the left half
    out = load_image(_save(img, tmp_path / "rgba.png")).image
    assert out.mode == "RGB"
    assert out.getpixel((15, 5)) == (255, 255, 255)
    assert out.getpixel((5, 5)) == RED


def test_grey_with_alpha_is_composited_over_white(tmp_path: Path) -> None:
    out = load_image(_save(Image.new("LA", (8, 8), (0, 0)), tmp_path / "la.png")).image
    assert out.getpixel((1, 1)) == (255, 255, 255)


def test_palette_transparency_is_composited_over_white(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))
    path = _save(img, tmp_path / "pal.png", transparency=0)
    out = load_image(path).image
    assert out.getpixel((6, 4)) == (255, 255, 255)  # transparent index -> white, not black
    assert out.getpixel((1, 4)) == RED


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.full((10, 12), 32896, dtype=np.uint16)  # 0x8080: mid grey in 16 bits
    path = _save(Image.fromarray(arr), tmp_path / "grey16.png")
    assert Image.open(path).mode.startswith("I")  # the file really is high depth
    out = load_image(path).image
    assert out.mode == "RGB" and out.size == (12, 10)
    assert out.getpixel((3, 3)) == (128, 128, 128)


def test_float_image_with_nan_is_scaled_over_its_finite_range(tmp_path: Path) -> None:
    arr = np.linspace(-100.0, 900.0, 600, dtype=np.float32).reshape(20, 30)
    arr[0, 0] = np.nan
    path = _save(Image.fromarray(arr, "F"), tmp_path / "float.tiff")
    out = np.asarray(load_image(path).image)[:, :, 0]
    assert out[0, 0] == 0  # NaN -> the bottom of the range
    assert out[0, 1] < 2 and out[-1, -1] == 255  # -100 .. 900 spread over 0 .. 255
    assert 120 < out[10, 0] < 135


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), RED)
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(img, tmp_path / "rotated.jpg", quality=95, exif=exif.tobytes())
    decoded = load_image(path)
    assert decoded.image.size == (20, 40)
    assert decoded.original_size == (20, 40)
    # Rotating clockwise moves the stored left strip to the top.
    assert _close(decoded.image.getpixel((10, 2)), (0, 0, 255), tol=40)
    assert _close(decoded.image.getpixel((10, 35)), RED, tol=40)


def test_large_jpeg_is_decoded_through_draft(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg_bytes((2400, 2200)))
    decoded = load_image(str(path), DecodeLimits())  # draft_size 1024
    img = decoded.image
    assert img.mode == "RGB"
    assert img.width < 2400 and img.height < 2200
    assert min(img.size) >= 1024  # power-of-two reduction never goes below the draft size
    assert img.size == (1200, 1100)
    assert decoded.original_size == (2400, 2200)


def test_draft_can_be_disabled_and_skips_small_jpegs() -> None:
    data = _jpeg_bytes((2400, 2200))
    assert decode_image(data, "big.jpg", DecodeLimits(draft_size=None)).size == (2400, 2200)
    small = _jpeg_bytes((1500, 1200))  # shorter side < 2 * 1024: nothing to gain
    assert decode_image(small, "small.jpg").size == (1500, 1200)


def test_large_png_is_reduced_like_a_jpeg_draft(tmp_path: Path) -> None:
    img = Image.new("RGB", (2500, 2100), RED)
    path = _save(img, tmp_path / "big.png")
    decoded = load_image(path)
    assert decoded.image.size == (1250, 1050)  # 2100 // 1024 = 2: never below the draft size
    assert decoded.original_size == (2500, 2100)
    assert decoded.image.getpixel((600, 500)) == RED
    assert decode_image(Path(path).read_bytes(), "", DecodeLimits(draft_size=None)).size == (
        2500,
        2100,
    )


def test_exif_orientation_survives_the_reduction(tmp_path: Path) -> None:
    img = Image.new("RGB", (2400, 2200), RED)
    img.paste((0, 0, 255), (0, 0, 600, 2200))  # blue strip on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(img, tmp_path / "rotated.png", exif=exif.tobytes())
    decoded = load_image(path)
    assert decoded.original_size == (2200, 2400)
    assert decoded.image.size == (1100, 1200)
    assert decoded.image.getpixel((550, 20)) == (0, 0, 255)  # the left strip is now on top
    assert decoded.image.getpixel((550, 1100)) == RED


def test_decoded_size_over_the_memory_limit_is_refused_before_decoding(
    tmp_path: Path, no_pixel_decoding: None
) -> None:
    path = _save(Image.new("RGB", (1000, 1000), RED), tmp_path / "rgb.png")
    # 1000 x 1000 RGB is stored as 4 bytes per pixel: 3.8 MiB.
    limits = DecodeLimits(max_decoded_bytes=3 * 1024 * 1024)
    with pytest.raises(DecodeError, match=r"too large to decode: 1000x1000 RGB needs 3 MiB"):
        load_image(path, limits)


_PEAK_RSS = """
import sys
from lookalike.pipeline.decode import load_image
image = load_image(sys.argv[1]).image
print(image.size[0], image.size[1], image.getpixel((5, 5))[0], flush=True)
# VmHWM: this process's own peak. (ru_maxrss would start at the parent's size: Linux carries the
# RSS of the memory a child replaces at exec into it, so a big pytest process would count.)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(hwm.split()[1]) // 1024)
"""


def test_sixteen_bit_png_of_many_pixels_decodes_in_bounded_memory(tmp_path: Path) -> None:
    # The probe's file: 142 KB of 16-bit PNG, 7990 x 7990 pixels. Its pixels alone are 128 MB; a
    # float64 copy of them took a photo search to 2.2 GB. Measured in a fresh process (peak RSS).
    path = tmp_path / "big16.png"
    Image.new("I;16", (7990, 7990), 1000).save(path, optimize=True)
    assert path.stat().st_size < 200_000
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    width, height, grey, peak_mb = (int(v) for v in out)
    assert (width, height) == (1142, 1142)  # reduced by 7990 // 1024 = 7, rounded up
    assert grey == 4  # 1000 / 257, rounded: scaled, not clipped
    # The 128 MB decoded buffer and its 64 MB 8-bit copy, plus the interpreter and numpy (~60 MB).
    assert peak_mb < 350, f"peak RSS {peak_mb} MB"  # was 1,754 MB before bands and reduction


def test_jpeg_header_claiming_more_pixels_than_its_bytes_hold_is_truncated(
    tmp_path: Path,
) -> None:
    # A 40 KB JPEG whose frame header claims 8000 x 8000: libjpeg paints the missing blocks grey
    # and only warns, so it decoded as a flat grey photo and was searched.
    data = bytearray(_jpeg_bytes((300, 200)))
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC2):
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    struct.pack_into(">HH", data, pos + 5, 8000, 8000)
    with pytest.raises(DecodeError, match=r"truncated JPEG image: \d+ bytes cannot hold"):
        decode_image(bytes(data), "fake.jpg")


def test_content_hash_is_sha256_hex() -> None:
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(content_hash(b"")) == 64


# --- bad files -----------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DecodeError, match=r"^empty file$"):
        load_image(str(tmp_path / "empty.jpg"))


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noise.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated or corrupt JPEG"):
        load_image(str(path))


def test_truncated_jpeg_fails_even_if_someone_enabled_truncated_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()[: len(buf.getvalue()) // 2]
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DecodeError, match="truncated"):
        decode_image(data, "cut.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the neighbour's setting is restored


def test_truncated_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(buf, "PNG")
    with pytest.raises(DecodeError, match="truncated or corrupt PNG"):
        decode_image(buf.getvalue()[:5000], "cut.png")


def test_random_bytes_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DecodeError, match=r"not an image: unrecognised binary data \(named .jpg\)"):
        load_image(str(path))


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not the pixels you are looking for\n" * 10)
    with pytest.raises(DecodeError, match="not an image: a text file"):
        load_image(str(path))


def test_pdf_is_named(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="looks like PDF"):
        decode_image(b"%PDF-1.7\n" + b"\x00" * 100, "doc.jpg")


def test_other_pillow_formats_are_refused_with_their_name() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(buf, "PCX")
    with pytest.raises(DecodeError, match="unsupported image format PCX"):
        decode_image(buf.getvalue(), "a.pcx")


@pytest.mark.parametrize("mode", ["L", "RGB", "1"])
def test_netpbm_is_read(mode: str) -> None:
    buf = io.BytesIO()
    Image.new(mode, (8, 6), 255 if mode != "RGB" else RED).save(buf, "PPM")
    image = decode_image(buf.getvalue(), "a.pgm")
    assert image.mode == "RGB" and image.size == (8, 6)


def test_heic_without_pillow_heif(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail
    formats.heif_registered.cache_clear()
    try:
        fake_heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00" * 16 + b"junk" * 10
        with pytest.raises(DecodeError, match="HEIC needs pillow-heif"):
            decode_image(fake_heic, "photo.heic")
    finally:
        formats.heif_registered.cache_clear()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="file not found"):
        load_image(str(tmp_path / "nope.jpg"))


def test_file_over_max_bytes_is_refused_before_reading(tmp_path: Path) -> None:
    path = _make_png(tmp_path)
    size = os.path.getsize(path)
    limits = DecodeLimits(max_bytes=size - 1)
    with pytest.raises(DecodeError, match="file too large"):
        read_source(path, limits)
    with pytest.raises(DecodeError, match="file too large"):
        decode_image(Path(path).read_bytes(), path, limits)
    assert read_source(path, DecodeLimits(max_bytes=size)) == Path(path).read_bytes()


@pytest.mark.parametrize(
    "source",
    ["file:///etc/passwd", "ftp://example.com/a.jpg", "data:image/png;base64,iVBORw0KGgo="],
)
def test_unsupported_schemes(source: str) -> None:
    with pytest.raises(DecodeError, match="unsupported source scheme"):
        read_source(source, DecodeLimits())


# --- decompression bombs -------------------------------------------------------------------------


def test_bomb_is_rejected_fast_without_decoding(bomb_png: bytes, no_pixel_decoding: None) -> None:
    assert len(bomb_png) < 1_000_000  # 900 megapixels in a file this small
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(bomb_png, "bomb.png")
    assert time.perf_counter() - start < 1.0


def test_bomb_is_rejected_by_our_check_when_pillow_guard_is_off(
    bomb_png: bytes, no_pixel_decoding: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(DecodeError, match=r"30000x30000 = 900000000 pixels exceeds limit"):
        decode_image(bomb_png, "bomb.png")


def test_pillow_bomb_error_is_a_decode_error_even_with_a_generous_limit(
    bomb_png: bytes, no_pixel_decoding: None
) -> None:
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(bomb_png, "bomb.png", DecodeLimits(max_pixels=10**12))


def test_pillow_warning_band_is_rejected_without_warning(no_pixel_decoding: None) -> None:
    # 100 Mpx: over Pillow's warning threshold (89 Mpx), under its error threshold, over our 64 Mpx.
    data = _bilevel_png(10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DecodeError, match="decompression bomb"):
            decode_image(data, "big.png")


def test_pillow_warning_is_silenced_when_our_limit_allows_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        Image, "MAX_IMAGE_PIXELS", 1000
    )  # 40x40 = 1600 px is in Pillow's warning band
    data = _bilevel_png(40, 40)
    filters_before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image(data, "ok.png").size == (40, 40)
        with pytest.raises(DecodeError, match="decompression bomb"):
            decode_image(data, "small-limit.png", DecodeLimits(max_pixels=1000))
    assert warnings.filters == filters_before


# --- http(s) -------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/stream":
            return super().do_GET()
        # No Content-Length (HTTP/1.0, ends at close): only the streaming cap can stop it.
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"\xff" * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up at its cap, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder) of a loopback HTTP server serving `folder`."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_image(served: tuple[str, Path]) -> None:
    base, root = served
    path = _make_png(root)
    decoded = load_image(f"{base}/a.png")
    assert decoded.image.size == (64, 48)
    assert decoded.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert decoded.source == f"{base}/a.png"


def test_http_404(served: tuple[str, Path]) -> None:
    base, _ = served
    with pytest.raises(DecodeError, match="HTTP 404"):
        load_image(f"{base}/missing.jpg")


def test_http_download_over_max_bytes(served: tuple[str, Path]) -> None:
    base, root = served
    (root / "big.bin").write_bytes(b"\x00" * 100_000)
    limits = DecodeLimits(max_bytes=10_000)
    with pytest.raises(DecodeError, match="file too large: 100000 bytes"):  # Content-Length
        read_source(f"{base}/big.bin", limits)
    with pytest.raises(DecodeError, match="download larger than limit"):  # counted while streaming
        read_source(f"{base}/stream", limits)


def test_http_connection_refused() -> None:
    # Bind then close a port so nothing listens on it.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DecodeError, match="download failed"):
        read_source(f"http://127.0.0.1:{port}/a.jpg", DecodeLimits(timeout_s=2))
