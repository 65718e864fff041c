"""What one `FaceIndex.index` run reads and writes: which photos it looks at (a folder's photos, and
the photo-like files it cannot read), photos read, hashed and decoded ahead on worker threads, and
the points of their faces."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from lookalike.catalog.folder import is_image_name
from lookalike.engine.photos import read_ahead
from lookalike.errors import CatalogueError, DecodeError
from lookalike.faces.detect import FaceBox
from lookalike.pipeline.decode import DecodeLimits, content_hash, decode_image, is_url, read_source
from lookalike.store.base import Condition, Filter, PointRecord, Store, point_id
from lookalike.types import F32, JSONValue, Skipped


def scan_photos(photos: Path | str | Iterable[Path | str]) -> tuple[list[str], list[Skipped]]:
    """Absolute paths (or URLs) of the photos to index, sorted and unique, and what was skipped.

    A folder is searched recursively (hidden files and folders ignored, folder symlinks not
    followed); a file is one photo. Raises CatalogueError when a folder cannot be listed.
    """
    items = [photos] if isinstance(photos, str | Path) else list(photos)
    found: list[str] = []
    skipped: list[Skipped] = []
    for item in items:
        text = str(item)
        if is_url(text):
            found.append(text)
            continue
        path = Path(os.path.abspath(text))
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise CatalogueError(f"cannot list photo folder {path}")
            for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for n in filenames:
                    if is_image_name(n):
                        found.append(os.path.join(dirpath, n))
                    elif (why := unsupported_photo(n)) is not None:
                        skipped.append(Skipped(os.path.join(dirpath, n), why))
        elif path.is_file():
            found.append(str(path))
        else:
            skipped.append(Skipped(str(path), "file not found"))
    return sorted(dict.fromkeys(found)), skipped


RAW_SUFFIXES = frozenset(
    [
        ".3fr",
        ".arw",
        ".cr2",
        ".cr3",
        ".crw",
        ".dcr",
        ".dng",
        ".erf",
        ".kdc",
        ".mef",
        ".mos",
        ".mrw",
        ".nef",
        ".nrw",
        ".orf",
        ".pef",
        ".raf",
        ".raw",
        ".rw2",
        ".rwl",
        ".sr2",
        ".srf",
        ".srw",
        ".x3f",
    ]
)
"""Camera RAW files: photos, but no decoder here reads them."""


def unsupported_photo(name: str) -> str | None:
    """Why a file that looks like a photo (a camera RAW or another image suffix Pillow knows)
    is not indexed, or None for other files (sidecars, videos, notes: not photos at all).

    Such files are reported as skipped rather than passed over in silence, so a photographer
    learns that those photos were not searched.
    """
    if name.startswith("."):
        return None
    suffix = os.path.splitext(name)[1].lower()
    if suffix in RAW_SUFFIXES:
        return f"camera RAW ({suffix}) is not read: export the photos as JPEG or TIFF"
    if suffix in Image.registered_extensions() and suffix not in (".pdf", ".ps", ".eps"):
        return f"{suffix} images are not read (formats read: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF, PGM/PPM)"
    return None


def normalise(photo: str) -> str:
    """How a photo is keyed in the index: a URL as given, a file by its absolute path."""
    return photo if is_url(photo) else os.path.abspath(photo)


_LOOKAHEAD = 8


@dataclass(frozen=True)
class Loaded:
    photo: str
    sha256: str | None = None
    image: Image.Image | None = None
    original_size: tuple[int, int] | None = None
    decoded_size: tuple[int, int] | None = None
    skipped: Skipped | None = None
    unchanged: bool = False
    faces: tuple[tuple[int, FaceBox], ...] = ()
    """(number, face) of the faces kept (`big_enough`), once found."""
    vectors: F32 | None = None
    """Their descriptors, in order."""


def load_photos(
    photos: Sequence[str], existing: Mapping[str, str], limits: DecodeLimits
) -> Iterator[Loaded]:
    """Read, hash and decode on two worker threads, in order, a bounded number ahead."""

    def load(photo: str) -> Loaded:
        try:
            data = read_source(photo, limits)
            sha = content_hash(data)
            if existing.get(photo) == sha:
                return Loaded(photo, sha, unchanged=True)
            image, original = _decode_with_size(data, photo, limits)
            return Loaded(photo, sha, image=image, original_size=original)
        except DecodeError as exc:
            return Loaded(photo, skipped=Skipped(photo, str(exc)))
        except OSError as exc:
            return Loaded(photo, skipped=Skipped(photo, f"cannot read: {exc}"))

    return read_ahead(load, photos, _LOOKAHEAD, "faces-decode")


def write_faces(store: Store, batch: Sequence[Loaded]) -> None:
    """Replace the faces of these photos, then record the photos as done (in that order)."""
    if not batch:
        return
    photos = tuple(loaded.photo for loaded in batch)
    # A changed photo may have fewer faces than before: its old points must not linger.
    store.delete_where(Filter((Condition("photo", "in", photos), Condition("kind", "eq", "face"))))
    points: list[PointRecord] = []
    markers: list[PointRecord] = []
    for loaded in batch:
        assert loaded.original_size is not None and loaded.sha256 is not None
        points.extend(_face_points(loaded))
        size = list(loaded.original_size)
        markers.append(
            photo_marker(
                loaded.photo, loaded.sha256, len(loaded.faces), image_size=size, forgotten=False
            )
        )
    store.upsert(points)
    store.upsert(markers)


def photo_marker(photo: str, content_hash: str, faces: int, **more: JSONValue) -> PointRecord:
    """The vector-less point recording that `photo` (these bytes) is done, with its number of
    faces and further fields (`image_size`; `forgotten`: a tombstone)."""
    payload = {"kind": "photo", "photo": photo, "content_hash": content_hash, "faces": faces}
    return PointRecord(point_id("photo", photo), {}, {**payload, **more})


def _decode_with_size(
    data: bytes, source: str, limits: DecodeLimits
) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded photo (maybe draft-reduced) and its full (width, height) after EXIF rotation."""
    from lookalike.pipeline.decode import load_image

    if limits.draft_size is None or is_url(source):
        # Full size: the original size is the decoded one (and a URL is not fetched twice).
        image = decode_image(data, source, replace(limits, draft_size=None))
        return image, image.size
    # load_image reports the original size next to the draft-reduced image; it reads the file
    # again (from the page cache), which costs far less than decoding it.
    decoded = load_image(source, limits)
    return decoded.image, decoded.original_size


def _face_points(loaded: Loaded) -> list[PointRecord]:
    """Points of the faces kept, each numbered as found (before the size filter), so a face
    keeps its id whatever the minimum size."""
    assert loaded.decoded_size is not None and loaded.original_size is not None
    if not loaded.faces:
        return []
    assert loaded.vectors is not None
    sx = loaded.original_size[0] / loaded.decoded_size[0]
    sy = loaded.original_size[1] / loaded.decoded_size[1]
    points = []
    for (n, b), v in zip(loaded.faces, loaded.vectors, strict=True):
        face = b.scaled(sx, sy)
        points.append(
            PointRecord(
                point_id("face", loaded.photo, str(loaded.sha256), str(n)),
                {"face": v},
                {
                    "kind": "face",
                    "photo": loaded.photo,
                    "box": [round(x, 1) for x in face.box.as_list()],
                    "det_score": round(face.score, 4),
                    "face_size": round(face.size, 1),
                    "face_no": n,
                    "content_hash": loaded.sha256,
                    "image_size": list(loaded.original_size),
                },
            )
        )
    return points


def big_enough(
    faces: Sequence[FaceBox], loaded: Loaded, min_size: float
) -> list[tuple[int, FaceBox]]:
    """(number, face) of the faces whose longest side, in pixels of the photo as stored, is at
    least `min_size`; numbers count every face found, so ids do not move with the minimum."""
    assert loaded.image is not None and loaded.original_size is not None
    scale = loaded.original_size[0] / loaded.image.size[0]
    return [(n, f) for n, f in enumerate(faces) if f.size * scale >= min_size]


def with_faces(loaded: Loaded, faces: Sequence[tuple[int, FaceBox]], vectors: F32) -> Loaded:
    """What the write needs: the faces found and their descriptors; the pixels are dropped."""
    assert loaded.image is not None
    return replace(
        loaded, image=None, decoded_size=loaded.image.size, faces=tuple(faces), vectors=vectors
    )
