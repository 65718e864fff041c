"""Segmenters: the two maskers isolation uses, each a model with its pre/post-processing here and
its ONNX session from `lookalike.models.runtime`.

- `SalientMasker` (U^2-NetP): the salient object of a crop. Input (N, 3, S, S) RGB divided by the
  crop's maximum, then ImageNet mean/std; output 0 (already sigmoid) is min-max normalised per crop
  and resized back, so masks are float32 (H, W) in [0, 1] at the crop's size. The model ships with a
  fixed 1x3x320x320 input; when the `onnx` package is present the input is made dynamic in memory
  so crops run in batches and at a smaller side (`input_size`), see `SalientMasker`.
- `ClothesMasker` (PAN): skin, clothes and hair of the person in a person box. Input
  (1, 3, S, S) RGB / 255, ImageNet mean/std (the box squashed; S = 512, the model's native side, or
  the box's own longer side rounded up to 64 when smaller, the graph rebuilt for S in memory);
  output sigmoid masks, channel 0 skin, 1 clothes, 2 hair, resized back to the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

import numpy as np
from PIL import Image

from lookalike.models.runtime import (
    dynamic_model_bytes,
    has_onnx,
    open_session,
    resized_model_bytes,
)
from lookalike.pipeline.detect import fit_side

if TYPE_CHECKING:
    import onnxruntime as ort

    from lookalike.models.store import ModelStore

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ClothesOptions(TypedDict, total=False):
    """`ClothesMasker`'s keyword settings, as its `from_store` takes them."""

    input_size: int
    threads: int
    fit_small: bool


class SalientOptions(ClothesOptions, total=False):
    """`SalientMasker`'s keyword settings, as its `from_store` takes them."""

    batch_size: int
    dynamic: bool


# --- U^2-NetP ------------------------------------------------------------------------------------


class SalientMasker:
    """U^2-NetP salient-object masks of crops.

    input_size: side the crops are squashed to. 320 is the model's native size; smaller sides
        (e.g. 192) cost about (side / 320)^2 as much and need the dynamic graph (the `onnx` package).
    batch_size: crops per inference call (needs the dynamic graph too).
    fit_small: a crop whose longer side is below `input_size` runs at that side rounded up to a
        multiple of 32 instead of being upscaled (object crops of 348 px grocery photos are
        100-250 px: 1.6-10x cheaper); crops of one side are batched together.
    Without `onnx`, the model runs at 320 one crop at a time whatever is asked.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        input_size: int = 320,
        batch_size: int = 4,
        threads: int = 0,
        dynamic: bool = True,
        fit_small: bool = False,
    ) -> None:
        wanted = dynamic and (input_size != 320 or batch_size > 1 or fit_small)
        data = dynamic_model_bytes(Path(model_path)) if wanted else None
        fixed = data is None
        model = data if data is not None else Path(model_path)
        self.input_size = 320 if fixed else int(input_size)
        self.batch_size = 1 if fixed else max(1, int(batch_size))
        self.fit_small = fit_small and not fixed
        self._session = open_session(model, threads=threads, spinning=False)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    @classmethod
    def from_store(
        cls, models: ModelStore, name: str = "u2netp", **options: Unpack[SalientOptions]
    ) -> SalientMasker:
        spec = models.spec(name)
        options.setdefault("input_size", int(spec.extra.get("input_size", 320)))
        return cls(models.path(name) / spec.files[0].filename, **options)

    def size_for(self, crop_size: tuple[int, int]) -> int:
        """The network side (px) a crop of `crop_size` = (w, h) runs at."""
        return fit_side(crop_size, self.input_size, 32) if self.fit_small else self.input_size

    def tensor(self, crops: Sequence[Image.Image], side: int | None = None) -> np.ndarray:
        """Crops -> (N, 3, S, S) float32: squashed, divided by each crop's max, ImageNet mean/std."""
        s = side or self.input_size
        batch = np.empty((len(crops), 3, s, s), dtype=np.float32)
        for i, crop in enumerate(crops):
            arr = np.asarray(crop.convert("RGB").resize((s, s), Image.Resampling.BILINEAR))
            arr = arr.astype(np.float32) / max(1.0, float(arr.max()))
            batch[i] = ((arr - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)
        return batch

    def masks(self, crops: Sequence[Image.Image]) -> list[np.ndarray]:
        """One float32 (h, w) mask in [0, 1] per crop, at the crop's own size."""
        out: dict[int, np.ndarray] = {}
        by_side: dict[int, list[int]] = {}
        for i, crop in enumerate(crops):
            by_side.setdefault(self.size_for(crop.size), []).append(i)
        for side, indices in by_side.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                tensor = self.tensor([crops[i] for i in chunk], side)
                (pred,) = self._session.run([self._output], {self._input: tensor})
                for i, p in zip(chunk, pred[:, 0], strict=True):
                    lo, hi = float(p.min()), float(p.max())
                    p = (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)
                    out[i] = _resize_mask(p, crops[i].size)
        return [out[i] for i in range(len(crops))]


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 (h, w) mask -> (size[1], size[0]), bilinear, clipped to [0, 1]."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask.astype(np.float32, copy=False)
    img = Image.fromarray(mask.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


# --- PAN clothes / skin / hair -------------------------------------------------------------------


class ClothesMasker:
    """PAN (MobileNetV3) skin / clothes / hair masks of a person crop."""

    NATIVE_SIZE = 512

    def __init__(
        self, model_path: Path, *, input_size: int = 512, threads: int = 0, fit_small: bool = True
    ) -> None:
        """input_size: the side crops are squashed to (at most, with `fit_small`); anything but the
        native 512 runs a graph rebuilt for that side (`lookalike.models.runtime.resized_model_bytes`, a multiple of 64;
        needs `onnx`).
        fit_small: a crop whose longer side is below `input_size` runs at that side rounded up to a
        multiple of 64 (`fit_side`) instead of being upscaled: the person crops of 192x256 worn
        photos run at 256 px, ~4x cheaper than 512 and as good (docs/parts/isolation.md, "Speed").
        One session per side used, built on first use.
        """
        self.input_size = int(input_size)
        self.fit_small = fit_small and has_onnx()  # other sides need the graph rebuilt
        self._path = Path(model_path)
        self._threads = threads
        self._sessions: dict[int, ort.InferenceSession] = {}
        self._session_for(self.input_size)  # fail now on a bad file or side, not on first crop

    def size_for(self, crop_size: tuple[int, int]) -> int:
        """The network side (px) a crop of `crop_size` = (w, h) runs at."""
        return fit_side(crop_size, self.input_size, 64) if self.fit_small else self.input_size

    def _session_for(self, size: int) -> ort.InferenceSession:
        if size not in self._sessions:
            model: Path | bytes = self._path
            if size != self.NATIVE_SIZE:
                model = resized_model_bytes(self._path, size)
            self._sessions[size] = open_session(model, threads=self._threads, spinning=False)
        return self._sessions[size]

    @classmethod
    def from_store(
        cls,
        models: ModelStore,
        name: str = "pan-clothes-skin-hair",
        **options: Unpack[ClothesOptions],
    ) -> ClothesMasker:
        spec = models.spec(name)
        if spec.preprocess is not None:
            options.setdefault("input_size", spec.preprocess.size)
        return cls(models.path(name) / spec.files[0].filename, **options)

    def parts(self, crop: Image.Image) -> np.ndarray:
        """(3, h, w) float32 in [0, 1] at the crop's size: skin, clothes, hair."""
        s = self.size_for(crop.size)
        session = self._session_for(s)
        arr = np.asarray(crop.convert("RGB").resize((s, s), Image.Resampling.BILINEAR))
        x = ((arr.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)
        (pred,) = session.run(None, {session.get_inputs()[0].name: x[None]})
        return np.stack([_resize_mask(np.clip(c, 0, 1), crop.size) for c in pred[0]])
