"""`learn.precision`: the training steps' arithmetic is measured per machine (`choose`), the
depthwise convolutions stay float32 under bfloat16 autocast and are left as they were, and the
tail pools in float32 whatever its convolutions ran in."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")  # the `train` extra; .ci/run installs it

from lookalike.errors import TrainingError  # noqa: E402
from lookalike.learn import net as nets  # noqa: E402
from lookalike.learn import precision  # noqa: E402

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("f32", "bf16", "want"),
    [
        ((3.4, 3.4), (9.0, 2.0), "bfloat16"),  # a slow first step (warm-up) does not count
        ((3.4, 3.4), (2.0, 3.0), "float32"),  # nor a fast one: 3.0 is not clearly faster
        ((2.0, 2.0), (6.0, 6.0), "float32"),  # emulated bfloat16
    ],
)
def test_auto_picks_bfloat16_only_when_clearly_faster(
    f32: tuple[float, float],
    bf16: tuple[float, float],
    want: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    times = {"float32": list(f32), "bfloat16": list(bf16)}

    def step(p: str) -> None:  # a fake clock: each step takes its next time
        now[0] += times[p].pop(0)

    monkeypatch.setattr(precision.time, "perf_counter", lambda: now[0])
    assert precision.choose("auto", CPU, step) == want
    assert times == {"float32": [], "bfloat16": []}  # two steps each: a warm-up, a measure


def test_given_precisions_are_used_without_measuring() -> None:
    def never(p: str) -> None:
        raise AssertionError("measured")

    assert precision.choose("float32", CPU, never) == "float32"
    assert precision.choose("bfloat16", CPU, never) == "bfloat16"
    assert precision.choose("auto", torch.device("cuda"), never) == "float32"
    with pytest.raises(TrainingError, match="precision must be one of"):
        precision.choose("fp16", CPU, never)


def test_depthwise_stays_float32_and_the_tail_pools_in_float32() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0").eval()
    split = nets.split_at(net, "efficientnet-lite0", 3)
    front, tail = nets.make_modules(net, split)
    convs = nets.depthwise_convs(net, split)
    assert len(convs) == 3
    assert all(isinstance(c, torch.nn.Conv2d) and c.groups == c.in_channels for c in convs)
    with torch.no_grad():
        acts = front(torch.rand(2, 3, 64, 64))
        want, _, _ = tail(acts)
    dtypes: list[object] = []
    hooks = [c.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype)) for c in convs]
    with torch.no_grad(), precision.depthwise_float32(convs):
        with precision.autocast("bfloat16", CPU):
            gem, _, _ = tail(acts)
        assert all(c.forward.__name__ == "run" for c in convs)
    for h in hooks:
        h.remove()
    assert dtypes == [torch.float32] * 3
    assert gem.dtype == torch.float32
    torch.testing.assert_close(gem, want, rtol=0.05, atol=0.05)  # bfloat16's rounding, no more
    # Left as they were: the class's own forward, the same parameters.
    assert all("forward" not in vars(c) for c in convs)
    assert all(getattr(c.forward, "__func__", None) is type(c).forward for c in convs)
