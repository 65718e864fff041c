"""ONNX Runtime sessions: one place that decides threads, spinning and graph optimisation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from lookalike.errors import ModelError

Optimization = Literal["all", "extended", "basic", "disabled"]
"""ONNX Runtime graph optimisation level: `all` adds layout transforms and the fusions of
`extended` (conv + activation, QDQ -> QLinearConv for int8 models) to the constant folding of
`basic`; `disabled` runs the graph as exported."""


def open_session(
    model_path: Path,
    *,
    threads: int = 0,
    optimization: Optimization = "all",
    spinning: bool = True,
) -> Any:
    """An `onnxruntime.InferenceSession` on the CPU.

    threads: intra-op threads; 0 means one per core. Inter-op stays at 1: our graphs are sequential,
    and extra inter-op threads only contend with the decoding threads.
    optimization: graph optimisation level (see `Optimization`).
    spinning: whether idle intra-op threads busy-wait for the next operator. Spinning shaves the
    wake-up latency between operators but burns the cores that other threads (decoding, during
    indexing) need; indexing turns it off when the settings say so (`Settings.ort_spinning`).
    """
    import onnxruntime as ort

    if not Path(model_path).is_file():
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
    try:
        return ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load ONNX model {model_path}: {exc}") from exc
