"""Face settings: environment variables with the LOOKALIKE_FACES_ prefix; CLI flags override them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_THRESHOLD = 0.36
"""Default "same person" distance, the "you" tier (Euclidean, between L2-normalised dlib
descriptors, 0..2).

The largest distance with a false-accept rate <= 1e-3 on ORL (0.366, rounded down); on colour
photos of varied pose and light (deepface, its photos also shrunk to 64 px faces and lit
unevenly, plus the strangers of two group photos) no stranger is that close to any portrait
(`bench/faces_calibrate.py`, docs/parts/faces.md).
"""

DEFAULT_MAYBE_THRESHOLD = 0.42
"""Default outer distance of the "maybe you" tier (shown only when some photo is in the "you"
tier: `lookalike.faces.values.split_tiers`).

Chosen by `bench/faces_calibrate.py`: the largest distance at which the "maybe you" tier shows
at most one stranger's photo per search on average (simulated event of 185 photos) and no
portrait of a person absent from the photos returns anything. Cross-validated by identity (chosen
on half the people, measured on the other half, 10 folds): mAP 0.9996 from single portraits
(0.981 with the single 0.36 cut), no photo returned for an absent person.
"""


class FaceSettings(BaseSettings):
    """How faces are found, described and matched. Every number here is tunable."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_FACES_", env_file=".env", extra="ignore"
    )

    detector: Literal["hog", "cnn"] = Field(
        default="hog",
        description="hog: dlib's frontal HOG detector (fast on CPU); cnn: dlib's MMOD CNN "
        "(finds more turned faces, ~50x slower on CPU).",
    )
    detect_size: int = Field(
        default=1024,
        ge=160,
        description="Longest side, in pixels, of the copy of the photo detection runs on. HOG "
        "finds faces of ~80 px and larger at that size, i.e. ~8 % of the photo's longest side; "
        "raise it for crowds of small faces (cost grows with its square).",
    )
    max_upscale: float = Field(
        default=4.0,
        ge=1.0,
        description="Small photos are enlarged towards detect_size at most this much.",
    )
    pad: float = Field(
        default=0.2,
        ge=0.0,
        le=0.5,
        description="Border added on each side (fraction of the longest side) so that faces "
        "cut by the frame still fit the detector's window.",
    )
    border: Literal["mirror", "grey"] = Field(
        default="mirror",
        description="mirror: the border reflects the photo, completing faces cut by the frame "
        "(7 of 7 faces in the group selfie against 6 with grey); grey: a plain border.",
    )
    min_inside: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="Fraction of a face box that must lie inside the photo (a mirrored border "
        "can make a face of hair at the edge: such boxes lie mostly in the border).",
    )
    det_threshold: float = Field(
        default=0.0,
        description="HOG score above which a face is kept (dlib's default, 0; -0.6 also finds "
        "faces half cut by the frame, and false ones in ~1 photo of 6).",
    )
    decode_size: int | None = Field(
        default=1024,
        description="Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale, never below this many "
        "pixels on the shorter side; None decodes at full size (sharper small faces, slower).",
    )
    threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        gt=0.0,
        description="'Same person' distance: a face at most this far from the query matches.",
    )
    maybe_threshold: float = Field(
        default=DEFAULT_MAYBE_THRESHOLD,
        ge=0.0,
        le=2.0,
        description="Outer distance of the 'maybe you' tier (shown when some photo is within "
        "threshold); at or below threshold there is no such tier.",
    )
    min_face_size: int | None = Field(
        default=None,
        ge=0,
        description="Faces whose box is smaller than this (longest side, pixels of the photo) "
        "are not indexed: background strangers. None: what the index was built with (0 at "
        "first); a new value re-detects every photo.",
    )
    cluster_threshold: float | None = Field(
        default=None,
        description="Distance that links two faces into one person [default: threshold].",
    )
    batch_size: int = Field(default=16, ge=1, description="Photos per store write.")
