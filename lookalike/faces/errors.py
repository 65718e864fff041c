"""Typed errors of face search. Both are `QueryError`s: exit code 2 on the CLI, 4xx over HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lookalike.errors import QueryError

if TYPE_CHECKING:
    from lookalike.faces.detect import FaceBox


class NoFaceError(QueryError):
    """The query photo shows no face the detector can find."""


class ManyFacesError(QueryError):
    """The query photo shows several faces and none was chosen.

    `faces` lists them in the order `face=N` refers to (largest first), so a caller can offer the
    choice (draw the boxes, let the user click one) and ask again with `face=N`.
    """

    def __init__(self, message: str, faces: Sequence[FaceBox]) -> None:
        super().__init__(message)
        self.faces = tuple(faces)
