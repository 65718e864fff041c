"""ONNX Runtime sessions: one place that decides threads, spinning and graph optimisation, and
the in-memory graph rewrites (dynamic or resized inputs) some models need before a session opens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lookalike.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort

Optimization = Literal["all", "extended", "basic", "disabled"]
"""ONNX Runtime graph optimisation level: `all` adds layout transforms and the fusions of
`extended` (conv + activation, QDQ -> QLinearConv for int8 models) to the constant folding of
`basic`; `disabled` runs the graph as exported."""


def open_session(
    model_path: Path | bytes,
    *,
    threads: int = 0,
    optimization: Optimization = "all",
    spinning: bool = True,
) -> ort.InferenceSession:
    """An `onnxruntime.InferenceSession` on the CPU, on a model file or on model bytes (a graph
    rebuilt in memory: `dynamic_model_bytes`, `resized_model_bytes`).

    threads: intra-op threads; 0 means one per core. Inter-op stays at 1: our graphs are sequential,
    and extra inter-op threads only contend with the decoding threads.
    optimization: graph optimisation level (see `Optimization`).
    spinning: whether idle intra-op threads busy-wait for the next operator. Spinning shaves the
    wake-up latency between operators but burns the cores that other threads (decoding, during
    indexing) need; indexing turns it off when the settings say so (`Settings.ort_spinning`).
    The maskers turn it off always: the detector, PAN, U^2-NetP and the embedder take turns on the
    same cores, and a finished session's spinning threads slowed the next one down.
    """
    import onnxruntime as ort

    if not isinstance(model_path, bytes) and not Path(model_path).is_file():
        raise ModelError(f"model file not found: {model_path}")
    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    if optimization not in levels:
        raise ModelError(f"unknown graph optimisation {optimization!r}; use one of {list(levels)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.intra_op_num_threads = threads if threads > 0 else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    source, where = (
        (model_path, "") if isinstance(model_path, bytes) else (str(model_path), f" {model_path}")
    )
    try:
        return ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load ONNX model{where}: {exc}") from exc


def dynamic_model_bytes(path: Path) -> bytes | None:
    """The ONNX model at `path` with batch, height and width of its inputs/outputs made symbolic
    (and the anchor count of a detector's (N, anchors, values) output, which follows the side).

    None when the `onnx` package is not installed (then the model runs at its fixed shape). Safe for
    fully convolutional graphs whose resizes take their sizes from `Shape` ops, as U^2-NetP's do.
    """
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "N", "H", "W"
        elif len(dims) == 3:  # else ORT warns on every run that the output's shape differs
            dims[0].dim_param, dims[1].dim_param = "N", "A"
    del model.graph.value_info[:]  # inferred shapes of the fixed graph; ORT re-infers them
    return model.SerializeToString()


def has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def resized_model_bytes(path: Path, size: int) -> bytes:
    """The fixed-size segmentation model at `path` rebuilt for a square input of `size` px.

    For PAN: its input/output sides are fixed, and so are the `sizes` of the resizes in its feature
    pyramid (constants, or constants concatenated after the batch and channel taken from a `Shape`),
    all computed for the native side. Each spatial constant is scaled by size / native (a new
    initializer, the original may be shared); everything else is untouched. `size` must divide like
    the native side does (a multiple of 64 for PAN's 1/64 level). Needs the `onnx` package.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    native = graph.input[0].type.tensor_type.shape.dim[2].dim_value
    if native <= 0 or size <= 0 or size % 64:
        raise ModelError(f"cannot run a {native} px model at {size} px (use a multiple of 64)")
    for value in (graph.input[0], *graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_value, dims[3].dim_value = size, size
    del graph.value_info[:]
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values.update(
        {
            n.output[0]: numpy_helper.to_array(n.attribute[0].t)
            for n in graph.node
            if n.op_type == "Constant"
        }
    )
    producer = {out: node for node in graph.node for out in node.output}
    made: set[str] = set()

    def scaled(name: str, first_spatial: int) -> str:
        new = f"{name}_at{size}"
        if new not in made:
            arr = values[name].copy()
            arr[first_spatial:] = arr[first_spatial:] * size // native
            graph.initializer.append(numpy_helper.from_array(arr, new))
            made.add(new)
        return new

    for node in graph.node:
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        sizes = node.input[3]
        if sizes in values:  # (N, C, H, W) constant
            node.input[3] = scaled(sizes, 2)
        elif sizes in producer and producer[sizes].op_type == "Concat":
            concat = producer[sizes]  # Concat(Shape(x)[:2], H, W)
            for k, name in enumerate(concat.input):
                if k > 0 and name in values:
                    concat.input[k] = scaled(name, 0)
    # The native sizes no node reads any more (else ORT warns about each one when it loads).
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model.SerializeToString()
