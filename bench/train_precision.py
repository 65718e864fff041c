"""Time one training step of the tail in float32 and in bfloat16 (`lookalike.learn.precision`),
side by side in one process:

    python bench/train_precision.py --weights PATH/efficientnet-lite2-9656183e.pth [--tail-blocks 5]

Steps on random activations of the front's shape (what the step costs does not depend on the
values), batch 128, channels-last, the product's loss-free pass: forward, backward, AdamW step.
Three arms, each warmed up, then `--repeat` steps in turn (ABCABC...), medians reported:
float32; bfloat16 with the depthwise convolutions kept in float32 (what `tune --train` runs);
bfloat16 everywhere (why the depthwise ones are kept out).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from lookalike.learn import net as nets
from lookalike.learn import precision


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--variant", default="efficientnet-lite2")
    ap.add_argument("--size", type=int, default=260)
    ap.add_argument("--tail-blocks", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    net = nets.load_network(a.variant, a.weights)
    split = nets.split_at(net, a.variant, a.tail_blocks)
    front, tail = nets.make_modules(net, split)
    params = nets.trainable_parameters(net, split)
    net.eval()
    with torch.no_grad():
        shape = front(torch.zeros(1, 3, a.size, a.size)).shape[1:]
    x = torch.randn(a.batch, *shape).contiguous(memory_format=torch.channels_last)
    net.to(memory_format=torch.channels_last)
    optim = torch.optim.AdamW(params, lr=1e-6)
    convs = nets.depthwise_convs(net, split)
    cpu = torch.device("cpu")

    def step(arm: str) -> float:
        nets.tail_mode(net, True)
        keep = precision.depthwise_float32(convs) if arm == "bf16" else contextlib.nullcontext()
        t0 = time.perf_counter()
        with keep, precision.autocast("float32" if arm == "fp32" else "bfloat16", cpu):
            gem, _, _ = tail(x)
        loss = torch.nn.functional.normalize(gem.float(), dim=1).sum(0).pow(2).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return time.perf_counter() - t0

    arms = ("fp32", "bf16", "bf16-all")
    for arm in arms:
        step(arm)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(a.repeat):
        for arm in arms:
            times[arm].append(step(arm))
    print(
        f"{a.variant} from block {split.first_trained} at {a.size} px, batch {a.batch}, "
        f"activations {tuple(shape)}, {torch.get_num_threads()} threads, {platform.processor()}"
    )
    base = statistics.median(times["fp32"])
    for arm in arms:
        m = statistics.median(times[arm])
        print(f"{arm:9s} median {m:.3f} s/step  ({base / m:.2f}x float32)")


if __name__ == "__main__":
    main()
