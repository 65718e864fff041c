"""What one `FaceIndex.index` run reads and writes: photos read, hashed and decoded ahead on worker
threads, and the points of their faces."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from PIL import Image

from lookalike.errors import DecodeError
from lookalike.faces.detect import FaceBox
from lookalike.pipeline.decode import DecodeLimits, content_hash, decode_image, is_url, read_source
from lookalike.store.base import Condition, Filter, PointRecord, Store, point_id
from lookalike.types import F32, Skipped

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

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="faces-decode") as pool:
        queue: list[Future[Loaded]] = []
        for photo in photos:
            queue.append(pool.submit(load, photo))
            if len(queue) >= _LOOKAHEAD:
                yield queue.pop(0).result()
        for fut in queue:
            yield fut.result()


def write_faces(
    store: Store, batch: Sequence[tuple[Loaded, list[tuple[int, FaceBox]], F32]]
) -> None:
    """Replace the faces of these photos, then record the photos as done (in that order)."""
    if not batch:
        return
    photos = tuple(loaded.photo for loaded, _, _ in batch)
    # A changed photo may have fewer faces than before: its old points must not linger.
    store.delete_where(Filter((Condition("photo", "in", photos), Condition("kind", "eq", "face"))))
    points: list[PointRecord] = []
    markers: list[PointRecord] = []
    for loaded, boxes, vectors in batch:
        assert loaded.original_size is not None and loaded.sha256 is not None
        points.extend(_face_points(loaded, boxes, vectors))
        markers.append(
            PointRecord(
                point_id("photo", loaded.photo),
                {},
                {
                    "kind": "photo",
                    "photo": loaded.photo,
                    "content_hash": loaded.sha256,
                    "faces": len(boxes),
                    "image_size": list(loaded.original_size),
                    "forgotten": False,
                },
            )
        )
    store.upsert(points)
    store.upsert(markers)


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


def _face_points(
    loaded: Loaded, boxes: Sequence[tuple[int, FaceBox]], vectors: F32
) -> list[PointRecord]:
    """Points of the faces kept, each numbered as found (before the size filter), so a face
    keeps its id whatever the minimum size."""
    assert loaded.decoded_size is not None and loaded.original_size is not None
    sx = loaded.original_size[0] / loaded.decoded_size[0]
    sy = loaded.original_size[1] / loaded.decoded_size[1]
    points = []
    for (n, b), v in zip(boxes, vectors, strict=True):
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


def strip_image(loaded: Loaded) -> Loaded:
    """What the write needs: the pixels are dropped once the faces are found."""
    assert loaded.image is not None
    return replace(loaded, image=None, decoded_size=loaded.image.size)
