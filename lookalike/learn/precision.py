"""Mixed precision for training the tail on a CPU: bfloat16 where the CPU has the units for it.

On CPUs with AMX or AVX-512 BF16 units, oneDNN runs the tail's 1x1 convolutions (most of its
arithmetic) several times faster in bfloat16 than in float32; on others bfloat16 is emulated and
slower. The depthwise convolutions are the exception everywhere we measured: their backward pass
is 2-4x slower in bfloat16 than in float32 with channels-last tensors, so they stay in float32.
Which one a machine gets is measured, not guessed from CPU flags: `choose` times a training step
both ways on the run's own activations. `bench/train_precision.py` on the 2-core machine (AMX):
Lite2 from block 16, 128 views a step, 2.91 s float32, 2.25 s bfloat16 (1.29x), 3.15 s with the
depthwise convolutions in bfloat16 too; from block 11, 64 views, 3.27 s, 2.03 s (1.61x), 4.44 s.

Only the training steps run under autocast: the weights, the optimiser's state, the pooled
features and the loss stay float32, the held-out checks and the export run in float32.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from lookalike.errors import TrainingError

if TYPE_CHECKING:
    import torch
    from torch import nn

PRECISIONS = ("auto", "float32", "bfloat16")
"""`TrainSettings.precision`: `auto` measures (`choose`), the others are used as given."""

SPEED_UP = 1.25
"""bfloat16 is chosen when a step is at least this much faster: below it, rounding is not
worth the measurement noise of a shared machine."""


def check(setting: str) -> None:
    if setting not in PRECISIONS:
        raise TrainingError(f"precision must be one of {', '.join(PRECISIONS)} (got {setting!r})")


def autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """The context a training step's forward pass runs in."""
    import torch

    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def depthwise_float32(depthwise: list[nn.Module]) -> Iterator[None]:
    """While inside, these convolutions leave autocast and run in float32 (see the module's
    docstring); their modules are unchanged afterwards (the override is an instance attribute,
    deleted on the way out, so the export sees the class's own forward)."""
    import torch

    def float32(conv: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        forward = conv.forward

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(x.device.type, enabled=False):
                out: torch.Tensor = forward(x.float())
                return out

        return run

    for conv in depthwise:
        setattr(conv, "forward", float32(conv))  # noqa: B010  # an instance attribute, on purpose
    try:
        yield
    finally:
        for conv in depthwise:
            delattr(conv, "forward")


def choose(setting: str, device: torch.device, step: Callable[[str], None]) -> str:
    """The precision a run trains in. `step(precision)` runs one forward and backward pass of a
    real batch (no optimiser step: nothing it computes is kept). `auto` on a GPU keeps float32
    (the GPU path is fast enough; its figures were measured in float32)."""
    check(setting)
    if setting != "auto":
        return setting
    if device.type != "cpu":
        return "float32"
    seconds = {}
    for precision in ("float32", "bfloat16", "float32", "bfloat16"):
        t0 = time.perf_counter()
        step(precision)  # the first of each is a warm-up (oneDNN picks its kernels)
        seconds[precision] = time.perf_counter() - t0
    return "bfloat16" if seconds["bfloat16"] * SPEED_UP <= seconds["float32"] else "float32"
