"""The values of a training run (`lookalike tune --train`): its settings, progress reports and
report. No torch: the CLI and the run's planning read them without the `train` extra."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lookalike.learn.augment import AugmentSettings


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: stage, done of total, and while training the epoch's mean loss and
    the held-out Recall@1 so far (None before the first measurement)."""

    stage: str
    done: int
    total: int
    loss: float | None = None
    recall: float | None = None


ProgressFn = Callable[[TrainProgress], None]


PAIRS_MINUTES = 30.0
"""`tune --train --pairs`'s default budget: photos in the wild teach a second domain, which takes
the whole schedule (garments, 600 products + 300 worn photos: 60 epochs in 26 minutes on 2 CPU
cores; the issue's garment budget is 30 minutes, grocery's 20)."""


@dataclass(frozen=True)
class TrainSettings:
    tail_blocks: int = 5
    """Blocks trained, counted from the last (5: from block 16 of Lite2's 21, research recipe)."""
    augmentations: int = 8
    """Cached copies per view: the clean one's augmented variants (research: 8 > 4 > 2)."""
    max_epochs: int = 60
    """Length of the cosine schedule (shortened to fit `minutes`)."""
    patience: int = 3
    """Epochs without improvement before stopping (selection `best` only)."""
    batch_size: int = 128
    """Views per step: batch_size / 2 items x 2 views (two photos, or two copies of one)."""
    lr: float = 3e-4
    proxy_lr_mult: float = 100.0
    selection: str = "last"
    """`last`: the schedule's end, held-out recall only guards (research recipe: the held-out
    draw saturates on catalogues of near-duplicate photos); `best`: the best held-out epoch."""
    guard: float = 0.05
    """Stop and restore the best state when held-out R@1 falls this far below its best (or more:
    two held-out queries, two standard errors of the draw's base recall)."""
    int8: bool = False
    """Also quantise the adapted network (`lookalike.learn.run`); used if within 0.01 R@1."""
    loss: str = "proxy_anchor"
    """`lookalike.learn.losses.LOSSES`: normsoftmax, proxy_anchor or arcface."""
    weight_decay: float = 1e-4
    temperature: float = 0.05
    holdout: float = 0.2
    minutes: float | None = 20.0
    """Budget of the whole run (reading, caching, training, export, re-embedding and the
    projection after it, these last from estimates); None: no limit. Augmented copies are fewer
    and the schedule shorter to fit it. 20: grocery's 2,721 photos fit; `PAIRS_MINUTES` is the
    CLI's default when pairs are given."""
    max_memory_gb: float = 8.0
    seed: int = 0
    precision: str = "float32"
    """`lookalike.learn.precision.PRECISIONS`; `auto`: the tail's training steps in bfloat16
    where that measures faster (CPUs with bfloat16 units). float32 by default until its effect on
    garments is measured on a quiet machine (docs/training.md)."""
    threads: int = 0
    augment: AugmentSettings = field(default_factory=AugmentSettings)

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("threads")
        return out


@dataclass(frozen=True)
class TrainReport:
    base_recall: float
    recall: float
    base_margin: float
    margin: float
    """Mean held-out margin (true item's cosine minus the best other's), before and after."""
    best_epoch: int
    epochs: int
    history: tuple[tuple[int, float, float], ...]
    """(epoch, mean training loss, held-out Recall@1) per epoch."""
    instance: bool
    items: int
    views: int
    wild: int
    held_out: int
    samples: int
    seconds: float
    device: str
    stopped: str
    """Why training stopped: `patience`, `max_epochs` or `time`."""
    precision: str = "float32"
    """What the training steps ran in (`TrainSettings.precision` resolved)."""

    @property
    def improves(self) -> bool:
        return (self.recall, self.margin) > (self.base_recall, self.base_margin)
