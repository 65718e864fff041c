"""PyTorch -> ONNX exports (the optional `export` extra: torch is needed here and nowhere else),
and int8 versions of those exports (onnx + onnxruntime's quantisation tools, no torch).

Recipes turn downloaded checkpoints into the ONNX files the runtime uses. Each recipe takes its
input files by role and writes one ONNX file; the model store verifies inputs before calling it
and records the output's sha256 after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ModelError
from lookalike.models.catalog import get_spec, weights_role

if TYPE_CHECKING:
    import torch

GEM_P = 3.0
"""GeM pooling exponent (Radenović et al.): p=3 is the standard choice for retrieval."""


def write_embedder_onnx(module: torch.nn.Module, sample: torch.Tensor, path: Path) -> None:
    """`module` (a torch module) as ONNX with the embedder interface every image network here
    has: input `pixels` (n, 3, h, w), outputs `gem`, `avg` (pooled features) and `logits`, the
    batch and image sides dynamic. `sample`: an input tensor to trace with."""
    import torch

    torch.onnx.export(
        module,
        (sample,),
        str(path),
        input_names=["pixels"],
        output_names=["gem", "avg", "logits"],
        dynamic_axes={
            "pixels": {0: "n", 2: "h", 3: "w"},
            "gem": {0: "n"},
            "avg": {0: "n"},
            "logits": {0: "n"},
        },
        opset_version=17,
        dynamo=False,
    )


def pooled(nets: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """`nets`, EfficientNets run on one input, with the outputs `_efficientnet_lite` describes."""
    import torch

    class Pooled(torch.nn.Module):
        """Feature maps -> GeM and average pooled features, plus the first net's logits."""

        def __init__(self, nets: list[torch.nn.Module]) -> None:
            super().__init__()
            self.nets = torch.nn.ModuleList(nets)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            gems, avgs = [], []
            for net in self.nets:
                fmap = net.extract_features(x)  # type: ignore[operator]  # EfficientNet's method, typed as nn.Module's __getattr__
                avgs.append(fmap.mean(dim=(2, 3)))
                gems.append(fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P))
            logits = self.nets[0].get_submodule("_fc")(avgs[0])
            if len(gems) == 1:
                return gems[0], avgs[0], logits
            unit = torch.nn.functional.normalize
            return (
                torch.cat([unit(g) for g in gems], 1),
                torch.cat([unit(a) for a in avgs], 1),
                logits,
            )

    return Pooled(list(nets))


def _efficientnet_lite(*variants: str) -> Callable[[Mapping[str, Path], Path], None]:
    """Export one EfficientNet-Lite, or several run side by side on the same input (an ensemble).

    Inputs: `weights` (the first variant's .pth), then `weights_<variant>` for each further one.
    One variant: outputs `gem`, `avg` (its pooled features) and `logits`. Several: `gem` / `avg`
    are the concatenation of each network's L2-normalised pooled features (each network weighs
    the same in a cosine), `logits` the first network's.
    """

    def export(inputs: Mapping[str, Path], dest: Path) -> None:
        try:
            import torch
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ModelError(
                "exporting EfficientNet-Lite needs the export extra: "
                "pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 onnx"
            ) from exc

        nets = [
            EfficientNet.from_pretrained(v, weights_path=str(inputs[weights_role(v, variants)]))
            for v in variants
        ]

        # The ensemble's input is the first network's (its size and crop): the others see the same
        # pixels, a little larger than their own training size (260 vs 240 px for Lite1).
        size = EfficientNet.get_image_size(variants[0])
        sample = torch.zeros(1, 3, size, size)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".onnx.part")
        write_embedder_onnx(pooled(nets).eval(), sample, tmp)
        tmp.replace(dest)

    return export


def _static_int8(variant: str) -> Callable[[Mapping[str, Path], Path], None]:
    """Static QDQ int8 of the float export `inputs["float"]`, calibrated on catalogue photos
    (`lookalike.models.quantize.calibration_photos`: never query photos)."""

    def export(inputs: Mapping[str, Path], dest: Path) -> None:
        try:
            import onnx  # noqa: F401  (quant_pre_process needs it)
        except ImportError as exc:
            raise ModelError("quantising needs the export extra: pip install onnx") from exc
        from lookalike.models.quantize import calibration_photos, quantize_static_int8

        preprocess = get_spec(variant).image_preprocess
        quantize_static_int8(inputs["float"], dest, calibration_photos(), preprocess)

    return export


RECIPES: dict[str, Callable[[Mapping[str, Path], Path], None]] = {
    "efficientnet-lite0": _efficientnet_lite("efficientnet-lite0"),
    "efficientnet-lite2": _efficientnet_lite("efficientnet-lite2"),
    "efficientnet-lite2-int8": _static_int8("efficientnet-lite2"),
    "efficientnet-lite1": _efficientnet_lite("efficientnet-lite1"),
    "efficientnet-lite2+lite1": _efficientnet_lite("efficientnet-lite2", "efficientnet-lite1"),
}


def run_recipe(recipe: str, inputs: Mapping[str, Path], dest: Path) -> None:
    """Run export recipe `recipe` on verified input files, writing the ONNX model to `dest`."""
    try:
        fn = RECIPES[recipe]
    except KeyError:
        raise ModelError(f"unknown export recipe {recipe!r}; known: {sorted(RECIPES)}") from None
    fn(inputs, dest)
