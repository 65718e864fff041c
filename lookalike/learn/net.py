"""The network `lookalike tune --train` adapts: an EfficientNet-Lite cut in two.

The front (stem and early blocks) stays frozen: its activations of augmented views are computed
once and cached, so each training epoch only runs the tail (the last blocks, the head conv and GeM
pooling) — what makes training affordable on a laptop CPU. Exported whole, the adapted network has
the base export's contract (`lookalike.models.export`): input `pixels` (N, 3, H, W) preprocessed
like the base model, outputs `gem`, `avg` (pooled features, normalised by the embedder) and
`logits` (the ImageNet classifier on the adapted features, for the automatic attributes).

torch is imported inside the functions: it is the optional `train` extra.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import ModelError
from lookalike.models.export import GEM_P, pooled, write_embedder_onnx

if TYPE_CHECKING:
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from torch import nn

TRAINABLE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
"""Networks `tune --train` can adapt (PyTorch weights in the catalogue): alone, or an ensemble of
them (`efficientnet-lite2+lite1`), whose first network trains while the others stay frozen."""


def members(embedder: str) -> tuple[str, ...]:
    """The networks of the index's embedder, the trained one first; ModelError when it is not
    made of `TRAINABLE` networks."""
    from lookalike.models.catalog import ensemble_members

    variants = ensemble_members(embedder)
    if not all(v in TRAINABLE for v in variants):
        raise ModelError(
            f"tune --train adapts {', '.join(TRAINABLE)} and their ensembles; this index was built "
            f"with {embedder} (index with one of those to train)"
        )
    return variants


def require_torch() -> None:
    """A ModelError, when torch is missing, saying how to install the `train` extra."""
    try:
        import torch  # noqa: F401
        from efficientnet_lite_pytorch import EfficientNet  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            "training the network needs the train extra: pip install 'lookalike[train]' "
            "(torch==2.13.0, efficientnet-lite-pytorch==0.1.0, onnx)"
        ) from exc


def device() -> torch.device:
    """The device training runs on: the GPU when torch sees one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Split:
    """Where the network is cut: blocks [0, first_trained) are frozen, the rest train."""

    variant: str
    blocks: int
    first_trained: int


def load_network(variant: str, weights: Path) -> EfficientNet:
    """The ImageNet EfficientNet-Lite `variant` from its PyTorch weights file."""
    if variant not in TRAINABLE:
        raise ModelError(
            f"tune --train adapts {', '.join(TRAINABLE)}; this index was built with {variant} "
            "(index with one of those to train)"
        )
    require_torch()
    import contextlib
    import io

    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained(variant, weights_path=str(weights))


def part(net: EfficientNet, name: str) -> nn.Module:
    """The child module `name` of `net` (EfficientNet names its parts `_blocks`, `_conv_stem`,
    `_bn0`, `_swish`, `_conv_head`, `_bn1`, `_fc`), through torch's public
    `Module.get_submodule`."""
    return net.get_submodule(name)


def blocks(net: EfficientNet) -> nn.ModuleList:
    """The network's blocks, in order (`_blocks`, see `part`)."""
    return net.get_submodule("_blocks")


def split_at(net: EfficientNet, variant: str, tail_blocks: int) -> Split:
    count = len(blocks(net))
    tail_blocks = max(0, min(tail_blocks, count))
    return Split(variant, count, count - tail_blocks)


def make_modules(net: EfficientNet, split: Split) -> tuple[nn.Module, nn.Module]:
    """(front, tail) torch modules sharing `net`'s weights: front(pixels) -> activations;
    tail(activations) -> (gem, avg, logits)."""
    import torch
    from torch import nn

    # Not a module: its hyper-parameters (a namedtuple) have no public accessor.
    params = getattr(net, "_global_params")  # noqa: B009  # a string, not a private attribute read
    drop = float(params.drop_connect_rate or 0.0)

    class Front(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            stem = part(self.net, "_conv_stem")
            x = part(self.net, "_swish")(part(self.net, "_bn0")(stem(x)))
            for block in blocks(self.net)[: split.first_trained]:
                x = block(x)  # frozen: eval mode, no drop-connect
            return x

    class Tail(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            for idx in range(split.first_trained, split.blocks):
                # Drop-connect as the network was trained with it (scaled by depth); off in eval.
                block = blocks(self.net)[idx]
                x = block(x, drop_connect_rate=drop * idx / split.blocks)
            head = part(self.net, "_conv_head")
            fmap = part(self.net, "_swish")(part(self.net, "_bn1")(head(x)))
            if fmap.dtype != torch.float32:  # trained in bfloat16: pool and compare in float32
                fmap = fmap.float()
            avg = fmap.mean(dim=(2, 3))
            gem = fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            return gem, avg, part(self.net, "_fc")(avg)

    return Front(), Tail()


def depthwise_convs(net: EfficientNet, split: Split) -> list[nn.Module]:
    """The tail's depthwise convolutions (`lookalike.learn.precision` keeps them in float32)."""
    return [b.get_submodule("_depthwise_conv") for b in blocks(net)[split.first_trained :]]


@dataclass(frozen=True)
class Footprint:
    """What training holds per view: `act_elems` numbers in one cached activation (the front's
    output), `saved_bytes` the tail keeps for the backward pass of one view in a batch."""

    act_elems: int
    saved_bytes: int


def footprint(net: EfficientNet, split: Split, size: int) -> Footprint:
    """Measured on zero inputs (the weights stay as they are; the tail's parameters are set to
    train, as `trainable_parameters`): one front pass, and the tensors
    autograd saves in the tail's forward for one view and for two (the difference: what one more
    view in a batch costs; the weights, saved once, cancel). Counts a tensor saved by two layers
    twice, but not the gradients the backward pass holds beside them: Lite2 from block 16 at
    260 px measured 24.8 MB a view on one machine (the grocery run peaked below the plan) and
    16.6 MB on another (it peaked 0.4-0.7 GB above: docs/training.md, "Memory")."""
    import torch

    front, tail = make_modules(net, split)
    trainable_parameters(net, split)  # a frozen layer saves less: only what input gradients need
    net.eval()
    with torch.no_grad():
        acts = front(torch.zeros(2, 3, size, size))
    saved = []
    for n in (1, 2):
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        tail_mode(net, True)  # batch norms stay in eval mode: nothing in the network changes
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            tail(acts[:n].clone().requires_grad_(True))
        saved.append(total)
    net.eval()
    return Footprint(int(acts[0].numel()), max(0, saved[1] - saved[0]))


def trainable_parameters(net: EfficientNet, split: Split) -> list[nn.Parameter]:
    """The tail's parameters (blocks from the cut, head conv and its batch norm); everything else
    is frozen (`requires_grad` off)."""
    for p in net.parameters():
        p.requires_grad_(False)
    params = []
    tail = [*blocks(net)[split.first_trained :], part(net, "_conv_head")]
    for module in [*tail, part(net, "_bn1")]:
        for p in module.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def tail_mode(net: EfficientNet, training: bool) -> None:
    """Train mode for drop-connect, but every batch norm keeps its ImageNet statistics: batches of
    a few items' views would pull them off (their affine weights still train)."""
    import torch

    net.train(training)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def export_onnx(networks: Sequence[EfficientNet], size: int, dest: Path) -> None:
    """The whole adapted network (with the ensemble's frozen networks beside it, as the base
    export runs them) as ONNX with the base export's inputs and outputs."""
    import torch

    for net in networks:
        net.eval().to("cpu")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with warnings.catch_warnings():  # the exporter's notes on constant folding
        warnings.simplefilter("ignore")
        write_embedder_onnx(pooled(networks).eval(), torch.zeros(1, 3, size, size), tmp)
    tmp.replace(dest)


RUN_BATCH = 32
"""Most views `onnx_runner` passes to ONNX Runtime at once (its memory grows with the batch)."""


def onnx_runner(
    module: nn.Module, sample: torch.Tensor, outputs: Sequence[str], threads: int
) -> Callable[[np.ndarray], np.ndarray]:
    """`module` (frozen) exported to ONNX Runtime: (N, ...) float32 inputs -> its first output.
    Several times faster than torch's CPU convolutions here; the weights are frozen, so exact."""
    import tempfile

    import torch

    from lookalike.models.runtime import open_session

    with tempfile.TemporaryDirectory(prefix="lookalike-frozen-") as tmp:
        path = Path(tmp) / "module.onnx"
        with warnings.catch_warnings():  # the exporter's notes on constant folding
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                (sample,),
                str(path),
                input_names=["pixels"],
                output_names=list(outputs),
                dynamic_axes={"pixels": {0: "n"}, **{o: {0: "n"} for o in outputs}},
                opset_version=17,
                dynamo=False,
            )
        session = open_session(path, threads=threads)

    def run(x: np.ndarray) -> np.ndarray:
        # ONNX Runtime's CPU arena keeps its largest batch's buffers for the session's life: a
        # 128-view batch at 260 px held 3 GB per session, a 32-view one 0.9 GB, as fast per view.
        parts = [
            np.asarray(session.run([outputs[0]], {"pixels": x[i : i + RUN_BATCH]})[0])
            for i in range(0, len(x), RUN_BATCH)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    return run
