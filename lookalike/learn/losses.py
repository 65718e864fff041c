"""Metric-learning objectives for `tune --train`, all proxy-based (one or a few learned vectors per
item), which suits catalogues with few photos per item: every view has a positive in every batch.

- `normsoftmax`: cross-entropy over cosines to unit proxies at a low temperature (Zhai & Wu 2019).
- `proxy_anchor`: Proxy Anchor (Kim et al. 2020), alpha 32, delta 0.1; each proxy pulls its
  item's views and pushes the rest, weighting hard examples.
- `arcface`: sub-centre ArcFace (Deng et al. 2020), 3 centres per item, scale 30, margin 0.2;
  sub-centres absorb an item's distinct looks (a shelf photo and a product shot).

Proxies start at each item's base centroid (sub-centres: the centroid plus small noise), so
training starts from the index as it is. torch is imported inside (the `train` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LOSSES = ("normsoftmax", "proxy_anchor", "arcface")


def make_loss(
    name: str,
    centroids: torch.Tensor,
    *,
    temperature: float = 0.05,
    alpha: float = 32.0,
    delta: float = 0.1,
    scale: float = 30.0,
    margin: float = 0.2,
    subcentres: int = 3,
    seed: int = 0,
) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.nn.Parameter]:
    """(loss(z, y), proxies parameter) for unit embeddings z (B, D) and item indices y (B,).
    centroids: (items, D) unit base centroids, on the training device."""
    import torch

    F = torch.nn.functional
    if name == "normsoftmax":
        proxies = torch.nn.Parameter(centroids.clone())

        def normsoftmax(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(z @ F.normalize(proxies, dim=1).T / temperature, y)

        return normsoftmax, proxies
    if name == "proxy_anchor":
        proxies = torch.nn.Parameter(centroids.clone())

        def proxy_anchor(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            cos = z @ F.normalize(proxies, dim=1).T
            pos = F.one_hot(y, proxies.shape[0]).bool()
            with_pos = pos.any(0)
            zero = torch.zeros_like(cos)
            pos_term = torch.where(pos, torch.exp(-alpha * (cos - delta)), zero).sum(0)
            neg_term = torch.where(~pos, torch.exp(alpha * (cos + delta)), zero).sum(0)
            return (
                torch.log1p(pos_term[with_pos]).sum() / with_pos.sum().clamp(min=1)
                + torch.log1p(neg_term).sum() / proxies.shape[0]
            )

        return proxy_anchor, proxies
    if name == "arcface":
        gen = torch.Generator().manual_seed(seed)
        noise = 0.01 * torch.randn(
            centroids.shape[0], subcentres, centroids.shape[1], generator=gen
        ).to(centroids.device)
        centres = torch.nn.Parameter(
            (centroids[:, None, :] + noise).reshape(-1, centroids.shape[1])
        )

        def arcface(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            cos = (z @ F.normalize(centres, dim=1).T).view(z.shape[0], -1, subcentres).amax(-1)
            cos = cos.clamp(-1 + 1e-6, 1 - 1e-6)
            target = torch.cos(torch.acos(cos.gather(1, y[:, None])) + margin)
            return F.cross_entropy(scale * cos.scatter(1, y[:, None], target), y)

        return arcface, centres
    from lookalike.errors import TrainingError

    raise TrainingError(f"unknown training loss {name!r}; use one of {list(LOSSES)}")
