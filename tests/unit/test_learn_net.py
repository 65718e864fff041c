"""`learn.net`: `onnx_runner` (a frozen module through ONNX Runtime, fed at most `RUN_BATCH` views
at a time: its CPU arena keeps the largest batch's buffers for the session's life) and `footprint`
(what training holds per view, for the memory plan)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; .ci/run installs it

from lookalike.learn import net as nets  # noqa: E402
from lookalike.models import runtime  # noqa: E402


def test_runner_matches_torch_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nets, "RUN_BATCH", 4)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2), torch.nn.ReLU())
    seen: list[int] = []
    real = runtime.open_session

    class Counting:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.session = real(*args, **kwargs)

        def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            seen.append(len(feeds["pixels"]))
            return self.session.run(outputs, feeds)

    monkeypatch.setattr(runtime, "open_session", Counting)
    run = nets.onnx_runner(module, torch.zeros(1, 3, 16, 16), ["act"], threads=1)
    x = np.random.default_rng(0).random((11, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = run(x)
    assert got.shape == want.shape == (11, 5, 7, 7)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert seen == [4, 4, 3]


def test_footprint_measures_without_changing_the_network() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    shallow = nets.footprint(net, nets.split_at(net, "efficientnet-lite0", 1), 64)
    deep = nets.footprint(net, nets.split_at(net, "efficientnet-lite0", 8), 64)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics included
    front, _ = nets.make_modules(net, nets.split_at(net, "efficientnet-lite0", 1))
    with torch.no_grad():
        assert shallow.act_elems == front(torch.zeros(1, 3, 64, 64)).numel()
    # Training more blocks keeps more for the backward pass, and takes activations from earlier
    # (bigger) maps.
    assert 0 < shallow.saved_bytes < deep.saved_bytes
    assert deep.act_elems > shallow.act_elems
