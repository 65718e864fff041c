"""int8 quantisation of an ONNX image embedder, kept only when retrieval quality holds.

Two recipes from `onnxruntime.quantization`:

- `dynamic`: weights stored as int8, activations quantised on the fly per batch (no calibration).
  For convolutions ONNX Runtime emits `ConvInteger`, which its CPU provider runs without the
  optimised kernels of float convolutions, so this recipe shrinks the file but is rarely faster.
- `static`: weights and activations int8 in QDQ format, activation ranges calibrated on real photos
  (`calibration` images, never the evaluation queries). The CPU provider fuses QDQ pairs into
  `QLinearConv`, the recipe that can be faster.

Whether a quantised model is good enough is measured outside the package: `bench/quantcheck.py`
(Recall@1 of the grocery protocol, float against int8) for the shipped models; for an adapted
network, `lookalike tune --train --int8` compares both on the index's own held-out draws.

Heavy imports (onnx, onnxruntime, numpy, PIL) stay inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ModelError

if TYPE_CHECKING:
    from lookalike.models.catalog import Preprocess
    from lookalike.types import F32

Progress = Callable[[str, int, int], None]


def quantize_dynamic_int8(src: Path, dest: Path) -> Path:
    """Weights to int8 (per channel), activations quantised at run time. Returns `dest`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _check_model(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True)
    return dest


def quantize_static_int8(
    src: Path,
    dest: Path,
    calibration: Sequence[str],
    preprocess: Preprocess,
    *,
    batch: int = 8,
    progress: Progress | None = None,
) -> Path:
    """QDQ int8 weights (per channel) and activations, ranges calibrated on `calibration` photos.

    calibration: image paths decoded like indexing does; 64-200 photos of the target domain.
    Returns `dest`. Calibration runs the float model once per photo (slow on 2 cores: ~1 s per 8).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _check_model(src)
    if not calibration:
        raise ModelError("static quantisation needs calibration photos")
    notify = progress or (lambda stage, done, total: None)
    input_name = _input_name(src)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = tensor_batches(calibration, preprocess, batch)
            self._done = 0

        def get_next(self) -> dict[str, F32] | None:
            tensor = next(self._batches, None)
            if tensor is None:
                return None
            self._done += len(tensor)
            notify("calibrate", self._done, len(calibration))
            return {input_name: tensor}

    dest.parent.mkdir(parents=True, exist_ok=True)
    prepared = dest.with_suffix(".prep.onnx")
    # Shape inference + graph clean-up first, as onnxruntime recommends before quantising.
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared),
            str(dest),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return dest


def grocery_protocol(
    grocery_dir: Path, work_dir: Path
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(image, item id) pairs of the grocery catalogue (iconic + train) and of the val queries,
    exactly as `lookalike eval` reads them from `prepare_grocery`'s files."""
    import csv
    import json

    from lookalike.catalog.sample import prepare_grocery

    files = prepare_grocery(grocery_dir, work_dir)
    catalogue: list[tuple[str, str]] = []
    for line in files.catalogue.read_text().splitlines():
        row = json.loads(line)
        catalogue.extend((image, str(row["id"])) for image in dict.fromkeys(row["images"]))
    with open(files.queries, newline="") as fh:
        queries = [(r["image"], str(r["item_id"])) for r in csv.DictReader(fh)]
    return catalogue, queries


CALIBRATION_ENV = "LOOKALIKE_CALIBRATION_DIR"
"""A folder of the user's own catalogue photos to calibrate int8 models on (searched recursively)."""
SAMPLE_ENV = "LOOKALIKE_SAMPLE_DATA"
"""The Grocery Store Dataset (as for `lookalike sample`): its catalogue photos are the default."""
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def calibration_photos(count: int = 128) -> list[str]:
    """`count` catalogue photos, spread evenly, to calibrate activation ranges on.

    From the setting models.calibration_dir (`$LOOKALIKE_CALIBRATION_DIR`, any folder of catalogue
    photos) when set, else the grocery catalogue (iconic + train photos, never the val queries) of
    the setting sample_data (`$LOOKALIKE_SAMPLE_DATA`): every
    k-th photo in manifest order, the set `bench/bench_throughput.py` measured recall with.
    Raises ModelError when neither is set or they hold no photos.
    """
    import tempfile

    from lookalike.config import Settings

    settings = Settings()
    own = settings.models.calibration_dir
    if own:
        root = Path(own).expanduser()
        files = sorted(
            str(p) for p in root.rglob("*") if p.suffix.lower() in _PHOTO_SUFFIXES and p.is_file()
        )
    elif settings.sample_data:
        with tempfile.TemporaryDirectory(prefix="lookalike-calib-") as tmp:
            catalogue, _queries = grocery_protocol(settings.sample_data, Path(tmp))
        files = [path for path, _ in catalogue]
    else:
        raise ModelError(
            f"int8 calibration needs catalogue photos: set {CALIBRATION_ENV} to a folder of your "
            f"catalogue's photos, or {SAMPLE_ENV} to the Grocery Store Dataset"
        )
    if not files:
        raise ModelError(f"no calibration photos found ({CALIBRATION_ENV}={own!r})")
    step = max(1, len(files) // count)
    return files[::step][:count]


# -- helpers ------------------------------------------------------------------------------------


def _check_model(src: Path) -> None:
    if not Path(src).is_file():
        raise ModelError(f"model file not found: {src}")


def _input_name(model: Path) -> str:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    initialisers = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initialisers)


def tensor_batches(files: Sequence[str], preprocess: Preprocess, batch: int) -> Iterator[F32]:
    """(n, 3, size, size) float32 batches of `files`, decoded on two threads ahead of the caller."""
    from concurrent.futures import ThreadPoolExecutor

    from lookalike.pipeline.decode import load_image
    from lookalike.pipeline.embed import to_tensor

    def tensor(chunk: Sequence[str]) -> F32:
        return to_tensor([load_image(f).image for f in chunk], preprocess)

    chunks = [files[i : i + batch] for i in range(0, len(files), batch)]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="quant-decode") as pool:
        pending = []
        for chunk in chunks:
            pending.append(pool.submit(tensor, chunk))
            if len(pending) > 2:  # bounded look-ahead: memory stays at a few batches
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()
