"""ONNX Runtime sessions: one place that decides threads and graph optimisation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lookalike.errors import ModelError


def open_session(model_path: Path, *, threads: int = 0) -> Any:
    """An `onnxruntime.InferenceSession` on the CPU.

    threads: intra-op threads; 0 means one per core. Inter-op stays at 1: our graphs are sequential,
    and extra inter-op threads only contend with the decoding threads.
    """
    import onnxruntime as ort

    if not Path(model_path).is_file():
        raise ModelError(f"model file not found: {model_path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads if threads > 0 else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load ONNX model {model_path}: {exc}") from exc
