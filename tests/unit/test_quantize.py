"""int8 quantisation: the recipes produce models that run and agree with the float model, and the
Recall@1 used to accept or refuse them is right on a hand-checked case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.quantcheck import QuantCheck, centroid_recall_at_1, embed_files
from lookalike.errors import ModelError
from lookalike.models.catalog import Preprocess
from lookalike.models.quantize import quantize_dynamic_int8, quantize_static_int8

SIZE = 32
PRE = Preprocess(size=SIZE, resize="squash", mean=(127.0,) * 3, std=(128.0,) * 3)


def _tiny_cnn(path: Path) -> Path:
    """pixels (N, 3, 32, 32) -> Conv 3x3 (16) -> Relu -> Conv 3x3 (32) -> Relu -> GAP -> gem (N, 32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (32, 16, 3, 3)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.normal(0, 0.1, 32).astype(np.float32), "b2")
    nodes = [
        helper.make_node("Conv", ["pixels", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["gem"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("gem", TensorProto.FLOAT, ["n", 32])],
        [w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _photos(folder: Path, n: int) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        # Smooth colour fields with a bright square: image-like statistics, not white noise.
        base = np.ones((48, 48, 3)) * rng.uniform(0, 255, 3)
        x, y = rng.integers(0, 32, 2)
        base[y : y + 16, x : x + 16] = rng.uniform(0, 255, 3)
        path = folder / f"p{i}.png"
        Image.fromarray(base.astype(np.uint8)).save(path)
        out.append(str(path))
    return out


@pytest.mark.parametrize("recipe", ["dynamic", "static"])
def test_int8_model_agrees_with_the_float_model(recipe: str, tmp_path: Path) -> None:
    import onnx

    src = _tiny_cnn(tmp_path / "tiny.onnx")
    photos = _photos(tmp_path / "photos", 24)
    dest = tmp_path / f"tiny-{recipe}.onnx"
    if recipe == "dynamic":
        quantize_dynamic_int8(src, dest)
        wanted_op = "ConvInteger"
    else:
        calls: list[tuple[str, int, int]] = []
        quantize_static_int8(src, dest, photos[:16], PRE, progress=lambda *a: calls.append(a))
        assert calls and calls[-1] == ("calibrate", 16, 16)
        wanted_op = "QuantizeLinear"
    ops = {n.op_type for n in onnx.load(str(dest)).graph.node}
    assert wanted_op in ops, ops  # really quantised, not a copy
    assert not (tmp_path / f"tiny-{recipe}.prep.onnx").exists()  # temporary file cleaned up
    f32, _ = embed_files(src, PRE, photos[16:], batch=4)
    i8, ms = embed_files(dest, PRE, photos[16:], batch=4)
    assert f32.shape == i8.shape == (8, 32) and ms > 0
    np.testing.assert_allclose(np.linalg.norm(i8, axis=1), 1.0, atol=1e-5)
    cosine = (f32 * i8).sum(axis=1)
    assert cosine.min() > 0.98, cosine


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        quantize_dynamic_int8(tmp_path / "nope.onnx", tmp_path / "out.onnx")
    with pytest.raises(ModelError, match="calibration"):
        quantize_static_int8(_tiny_cnn(tmp_path / "t.onnx"), tmp_path / "o.onnx", [], PRE)


def test_centroid_recall_at_1_hand_checked() -> None:
    e = np.eye(3, dtype=np.float32)
    # Item a: views e0 and e1 (centroid between them); item b: view e2.
    cat = np.stack([e[0], e[1], e[2]])
    items = ["a", "a", "b"]
    queries = np.stack([e[0], e[2], (e[1] + e[2]) / np.sqrt(2), e[2] * 0.9 + e[0] * 0.1])
    truth = ["a", "b", "a", "a"]
    # q3 is equally close to e1 and e2 but the centroid of a is (e0+e1)/sqrt2: a scores 0.5, b 0.71.
    # q4 is mostly e2: b. So queries 1 and 2 are right, 3 and 4 wrong.
    assert centroid_recall_at_1(cat, items, queries, truth) == pytest.approx(0.5)


def test_keep_rule() -> None:
    def check(f: float, i: float) -> QuantCheck:
        return QuantCheck("static", f, i, 0.01, 12.0, 5.0, 100, 30, 296, 2721)

    assert check(0.740, 0.743).keep and check(0.740, 0.731).keep
    assert not check(0.740, 0.729).keep
    assert check(0.740, 0.743).delta == pytest.approx(0.003)
