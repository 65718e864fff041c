"""Opening the face index for the `lookalike faces ...` commands (`faces` and `faces people`
both use it). Light at import: the face index loads inside."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.faces.index import FaceIndex


def open_faces(index: Path | None, *, store: str | None = None, **overrides: Any) -> FaceIndex:
    """The face index at `index` with these FaceSettings overrides (None: not given); `store`:
    its `--store` (None: what the index records, else edge)."""
    from pydantic import ValidationError

    from lookalike.config import Settings
    from lookalike.errors import QueryError
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.settings import FaceSettings

    settings = Settings()
    try:
        face_settings = FaceSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # A bad flag is the user's error (exit 2), not a traceback.
        problems = "; ".join(f"--{'-'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise QueryError(problems.replace("_", "-")) from None
    return FaceIndex(index or settings.index, settings, face_settings, store_spec=store)
