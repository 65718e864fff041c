"""Photos the HTTP server keeps for items: `<index>/uploads/<2 hex>/<sha256>.<ext>`.

Uploaded photos and the images of item URLs (downloaded once, see `remote_images`) are saved
here, named by their content, and indexed from here. A file is kept while a view of the index
records it: `prune` removes the ones no view records any more (after a delete, after a replace
that dropped a photo, after an add that failed), so uploads never pile up orphaned.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from lookalike.api.served_files import norm, under

_SUFFIX_FOR_FORMAT = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tiff",
    "AVIF": ".avif",
    "HEIF": ".heic",
}


class Uploads:
    """The uploads folder of one index. Blocking methods (disk)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(norm(str(folder)))

    def save(self, data: bytes) -> tuple[str, bool]:
        """(path, created): `data` kept under its sha256 (an already kept photo is reused).

        The caller has checked that `data` decodes. Written atomically: a half-written photo is
        never indexed.
        """
        digest = hashlib.sha256(data).hexdigest()
        folder = self.folder / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}{_suffix(data)}"
        if path.exists():
            return str(path), False
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return str(path), True

    def owns(self, path: str) -> bool:
        return under(norm(path), str(self.folder))

    def prune(self, paths: Iterable[str], in_use: Callable[[str], bool]) -> list[str]:
        """Remove those of `paths` that lie here and that `in_use` says no view records."""
        removed = []
        for path in dict.fromkeys(paths):
            if not self.owns(path) or in_use(path):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            removed.append(path)
            with contextlib.suppress(OSError):  # the 2-hex folder, when this was its last photo
                os.rmdir(os.path.dirname(path))
        return removed


def _suffix(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return _SUFFIX_FOR_FORMAT.get(img.format or "", ".img")
    except Exception:  # the caller decoded it already; a name is all that is at stake
        return ".img"
