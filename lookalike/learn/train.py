"""Fine-tuning the image network on a catalogue: the training loop of `lookalike tune --train`.

Objective (`lookalike.learn.losses`): proxy-based, one learned vector (or a few) per item, which
suits few photos per item (a pair-based loss needs several positives in a batch; a proxy is a
positive for every view) and, with one photo per item, is instance discrimination over augmented
views. Proxies start at the items' base centroids, so training starts from the index as it is.

What trains: the last `tail_blocks` blocks, the head conv and its batch norm (affine weights; the
statistics stay ImageNet's). The frozen front's activations of `augmentations` augmented views per
view are computed once and cached in float16, so an epoch only runs the tail.

Schedule (the training research's recipe v1, /docs/training.md): batches of P items x 2 views,
AdamW with a one-epoch warm-up and cosine decay over `max_epochs` (shortened to fit `minutes`).
Held-out draws of the catalogue itself (`holdout_split`, never a query set) are measured after each
epoch: they guard the schedule (a fall of `guard` below the best epoch, or a diverging loss,
restores the best state and stops; falls count only after the first quarter of the schedule,
`heldout.grace_epochs`) and decide whether the result applies at all; with selection
`best` they choose the epoch (early stopping with `patience`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import TrainingError
from lookalike.learn import net as nets
from lookalike.learn import precision as precisions
from lookalike.learn.augment import augment
from lookalike.learn.data import (
    PairBatches,
    TrainData,
    TrainView,
    fit_epochs,
    holdout_split,
    schedule,
)
from lookalike.learn.heldout import Guard, centroid_recall, grace_epochs, guard_width
from lookalike.learn.losses import make_loss
from lookalike.learn.settings import ProgressFn, TrainProgress, TrainReport, TrainSettings
from lookalike.models.catalog import Preprocess
from lookalike.pipeline.embed import normalise

if TYPE_CHECKING:
    import torch
    from efficientnet_lite_pytorch import EfficientNet


class Trainer:
    """One training run over collected data; `net` (an EfficientNet-Lite) is trained in place."""

    def __init__(
        self,
        net: EfficientNet,
        cut: nets.Split,
        pp: Preprocess,
        settings: TrainSettings,
        progress: ProgressFn | None = None,
        started: float | None = None,
        background: tuple[int, int, int] | None = None,
        frozen: Sequence[EfficientNet] = (),
    ) -> None:
        """background: the plain colour cut-outs were pasted on (their backdrop is swapped);
        frozen: an ensemble's other networks, which only take part in the held-out measure."""
        import torch

        self.net, self.cut, self.pp, self.s = net, cut, pp, settings
        self.device = nets.device()
        self.notify = progress or (lambda p: None)
        self.background = background
        self.deadline: float | None = None
        """perf_counter() time training must stop by (`settings.minutes`), set once timed."""
        self.started = started if started is not None else time.perf_counter()
        torch.manual_seed(settings.seed)
        torch.set_num_threads(settings.threads or os.cpu_count() or 1)
        self.net.to(self.device)
        self.front, self.tail = nets.make_modules(self.net, cut)
        self._front: Callable[[np.ndarray], torch.Tensor] | None = None
        self.params = nets.trainable_parameters(self.net, cut)
        self.frozen = list(frozen)
        self._frozen_runs: list[Callable[[np.ndarray], np.ndarray]] | None = None
        self._extra: tuple[np.ndarray, np.ndarray] | None = None
        """The frozen networks' features of the held-out gallery and queries (an ensemble)."""

    def _activations(
        self, batches: Iterable[np.ndarray], stage: str, total: int, done: int = 0
    ) -> tuple[torch.Tensor, int]:
        import torch

        outs = []
        self.net.eval()
        front = self._front_runner()
        with torch.no_grad():
            for pixels in batches:
                outs.append(front(normalise(pixels, self.pp)))
                done += len(pixels)
                self.notify(TrainProgress(stage, done, total))
        return torch.cat(outs), done

    def _front_runner(self) -> Callable[[np.ndarray], torch.Tensor]:
        """(N, 3, s, s) inputs -> float16 CPU activations of the frozen front: torch on a GPU,
        ONNX Runtime on the CPU (`net.onnx_runner`)."""
        import torch

        if self._front is not None:
            return self._front
        if self.device.type != "cpu":

            def run_torch(x: np.ndarray) -> torch.Tensor:
                return self.front(torch.from_numpy(x).to(self.device)).to("cpu", torch.float16)

            self._front = run_torch
            return run_torch
        size = self.pp.size
        run = nets.onnx_runner(self.front, torch.zeros(1, 3, size, size), ["act"], self.s.threads)
        self._front = lambda x: torch.from_numpy(run(x)).to(torch.float16)
        return self._front

    def _frozen_features(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """The ensemble's frozen networks on `pixels`: each one's unit GeM vector, side by side
        (as the ensemble's export lays them out after the trained network's)."""
        import torch

        from lookalike.models.export import pooled

        size = self.pp.size
        if self._frozen_runs is None:  # exported once, on the CPU even when training on a GPU
            sample, names = torch.zeros(1, 3, size, size), ["gem", "avg", "logits"]
            self._frozen_runs = [
                nets.onnx_runner(pooled([m.to("cpu")]), sample, names, self.s.threads)
                for m in self.frozen
            ]
        parts = []
        for run in self._frozen_runs:
            gem = np.concatenate([run(normalise(b, self.pp)) for b in self._batched(pixels)])
            parts.append(gem / np.maximum(np.linalg.norm(gem, axis=1, keepdims=True), 1e-12))
        return np.hstack(parts).astype(np.float32)

    def _batched(self, pixels: Sequence[np.ndarray]) -> list[np.ndarray]:
        b = max(1, self.s.batch_size)
        return [np.stack(pixels[i : i + b]) for i in range(0, len(pixels), b)]

    def _embed(self, acts: torch.Tensor) -> torch.Tensor:
        """Normalised GeM embeddings (on the CPU) of cached activations, in eval mode."""
        import torch

        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(acts), 128):
                gem, _, _ = self.tail(acts[i : i + 128].to(self.device, torch.float32))
                out.append(torch.nn.functional.normalize(gem, dim=1).cpu())
        return torch.cat(out)

    def _recall(
        self, gallery: torch.Tensor, g_items: np.ndarray, queries: torch.Tensor, q_items: np.ndarray
    ) -> tuple[float, float]:
        """`centroid_recall` of the held-out queries with the network as it is now."""
        g, q = self._embed(gallery).numpy(), self._embed(queries).numpy()
        if self._extra is not None:  # an ensemble: the frozen networks' part of each vector
            g, q = np.hstack([g, self._extra[0]]), np.hstack([q, self._extra[1]])
        return centroid_recall(g, g_items.tolist(), q, q_items.tolist())

    def run(self, data: TrainData) -> TrainReport:
        precisions.check(self.s.precision)
        with precisions.depthwise_float32(nets.depthwise_convs(self.net, self.cut)):
            return self._run(data)

    def _loss(
        self, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable[..., torch.Tensor], precision: str
    ) -> torch.Tensor:
        """The loss of one batch of cached activations (train mode: drop-connect on)."""
        import torch

        nets.tail_mode(self.net, True)
        if self.device.type == "cpu":  # measured ~30% faster for these convolutions
            x = x.contiguous(memory_format=torch.channels_last)
        with precisions.autocast(precision, self.device):
            gem, _, _ = self.tail(x)
        return loss_fn(torch.nn.functional.normalize(gem.float(), dim=1), y)

    def _run(self, data: TrainData) -> TrainReport:
        import torch

        s = self.s
        rng = np.random.default_rng(s.seed)
        items = data.items
        if len(items) < 2:
            raise TrainingError(
                f"training needs at least 2 indexed items with readable photos (found {len(items)})"
            )
        split = holdout_split(data, s.holdout, s.seed)
        views, wild = data.views, data.wild
        # Clean activations of every view and pair photo: the held-out gallery and queries.
        total = len(views) + len(wild)
        t_clean = time.perf_counter()
        clean, done = self._activations(
            self._batched([v.pixels for v in views]), "cache clean", total
        )
        clean_wild, _ = (
            self._activations(self._batched([w.pixels for w in wild]), "cache clean", total, done)
            if wild
            else (None, done)
        )
        per_view = (time.perf_counter() - t_clean) / max(1, total)  # one front pass
        train_views: list[TrainView] = [views[i] for i in split.train] + [
            wild[i] for i in split.train_wild
        ]
        augmentations = s.augmentations
        self.deadline = None
        if s.minutes is not None:
            # The budget covers re-embedding too (the whole network on every view, about 1.5
            # front passes each, plus the export); augmented copies get at most half of what is
            # left, at least one each; training stops at the deadline.
            # An ensemble's frozen networks re-embed too (Lite1 costs about 0.9 of Lite2).
            # 60 s: the export and the projection fitted after training (grocery: 30 s over a
            # 30-minute budget with 20 s).
            reserve = len(views) * per_view * 1.5 * (1 + 0.9 * len(self.frozen)) + 60
            self.deadline = self.started + s.minutes * 60 - reserve
            left = (self.deadline - time.perf_counter()) * 0.5
            per_copy = max(per_view * 1.1, 1e-3) * max(1, len(train_views))  # + augmenting
            augmentations = max(1, min(augmentations, int(left / per_copy)))
        labels = [v.item_id for v in train_views for _ in range(augmentations)]

        def augmented() -> Iterator[np.ndarray]:
            # Streamed batch by batch: only the float16 activations are kept.
            batch: list[np.ndarray] = []
            for v in train_views:
                for copy in range(augmentations):
                    bg = self.background if v.cutout else None
                    # With several copies the first is the clean view, as the index embeds it.
                    clean_copy = copy == 0 and augmentations > 1
                    pixels = (
                        v.pixels if clean_copy else augment(v.pixels, rng, s.augment, background=bg)
                    )
                    batch.append(pixels)
                    if len(batch) == s.batch_size:
                        yield np.stack(batch)
                        batch = []
            if batch:
                yield np.stack(batch)

        cached, _ = self._activations(augmented(), "cache augmented", len(labels))
        # Held-out gallery/queries.
        g_rows = list(split.train)
        if split.instance:
            q_pixels = [augment(views[i].pixels, rng, s.augment) for i in split.queries]
            q_source = q_pixels
            q_acts, _ = self._activations(self._batched(q_pixels), "cache held-out", len(q_pixels))
            q_items = np.array([views[i].item_id for i in split.queries])
        else:
            parts, q_list = [], []
            q_source = [views[i].pixels for i in split.queries]
            q_source += [wild[i].pixels for i in split.query_wild]
            if split.queries:
                parts.append(clean[list(split.queries)])
                q_list += [views[i].item_id for i in split.queries]
            if split.query_wild:
                assert clean_wild is not None
                parts.append(clean_wild[list(split.query_wild)])
                q_list += [wild[i].item_id for i in split.query_wild]
            q_acts = torch.cat(parts)
            q_items = np.array(q_list)
        gallery = clean[g_rows]
        g_items = np.array([views[i].item_id for i in g_rows])
        # Every front pass is done: its ONNX Runtime session's buffers go before the next ones.
        self._front = None
        if self.frozen:
            self.notify(TrainProgress("frozen networks", 0, 1))
            g_extra = self._frozen_features([views[i].pixels for i in g_rows])
            self._extra = (g_extra, self._frozen_features(q_source))
            self.notify(TrainProgress("frozen networks", 1, 1))
            self._frozen_runs = None  # likewise, before training's own buffers

        t_eval = time.perf_counter()
        base_score = self._recall(gallery, g_items, q_acts, q_items)
        base = base_score[0]
        eval_seconds = time.perf_counter() - t_eval
        trained_since_eval = 0.0
        # Proxies start at each item's base centroid over all its clean views.
        pos = {n: i for i, n in enumerate(items)}
        with torch.no_grad():
            emb = self._embed(clean)
            cents = torch.zeros(len(items), emb.shape[1])
            cents.index_add_(0, torch.tensor([pos[v.item_id] for v in views]), emb)
        loss_fn, proxies = make_loss(
            s.loss,
            torch.nn.functional.normalize(cents, dim=1).to(self.device),
            temperature=s.temperature,
            seed=s.seed,
        )
        y = torch.tensor([pos[item] for item in labels])
        optim = torch.optim.AdamW(
            [
                {"params": self.params, "lr": s.lr, "weight_decay": s.weight_decay},
                {"params": [proxies], "lr": s.lr * s.proxy_lr_mult, "weight_decay": 0.0},
            ]
        )
        if self.device.type == "cpu":
            self.net.to(memory_format=torch.channels_last)
        batches = PairBatches(
            [pos[v.item_id] for v in train_views], augmentations, max(2, s.batch_size), rng
        )

        def trial(precision: str) -> None:  # one step's passes, nothing kept (not the RNGs)
            with torch.random.fork_rng(devices=[]):
                x0 = cached[: s.batch_size].to(self.device, torch.float32)
                self._loss(x0, y[: s.batch_size].to(self.device), loss_fn, precision).backward()
            optim.zero_grad(set_to_none=True)

        precision = precisions.choose(s.precision, self.device, trial)
        steps = batches.steps_per_epoch
        planned = s.max_epochs  # the cosine schedule's length; shortened to fit the budget
        best_state: list[torch.Tensor] = self._state()
        best_score, best_epoch, history, stopped = (-1.0, -np.inf), 0, [], "max_epochs"
        last_score = best_score
        epoch_seconds = train_seconds = 0.0
        step = 0
        width = guard_width(s.guard, base, len(q_items))
        for epoch in range(1, s.max_epochs + 1):
            if epoch > planned or (
                epoch > 1
                and self.deadline is not None
                and time.perf_counter() + epoch_seconds > self.deadline
            ):
                stopped = "time"
                break
            t0 = time.perf_counter()
            losses: list[float] = []
            for k in range(steps):
                if k and self.deadline is not None and time.perf_counter() > self.deadline:
                    stopped = "time"  # out of budget mid-epoch: measure what was learnt, stop
                    break
                for group, base_lr in zip(
                    optim.param_groups, (s.lr, s.lr * s.proxy_lr_mult), strict=True
                ):
                    group["lr"] = base_lr * schedule(step, steps, planned * steps)
                step += 1
                idx = torch.from_numpy(batches.draw())
                x = cached[idx].to(self.device, torch.float32)
                # Feature-space flip (as the research sweep): close to the map of the mirrored view.
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(self.device)
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
                loss = self._loss(x, y[idx].to(self.device), loss_fn, precision)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                losses.append(float(loss.detach()))
                self.notify(
                    TrainProgress(
                        f"epoch {epoch}",
                        k + 1,
                        steps,
                        float(np.mean(losses)),
                        max(best_score[0], base),
                    )
                )
            mean_loss = float(np.mean(losses)) if losses else float("nan")
            trained_since_eval += time.perf_counter() - t0
            train_seconds += time.perf_counter() - t0
            last = epoch >= min(planned, s.max_epochs) or stopped == "time"
            if self.deadline is not None:  # the cosine fitted to what is left, checks included
                left = self.deadline - time.perf_counter()
                planned = fit_epochs(epoch, s.max_epochs, left, train_seconds / epoch, eval_seconds)
                last = last or planned == epoch
            # Held-out checks cost a pass over the gallery: on a big catalogue they would cost
            # more than the epochs; run them when at least twice their cost was trained since.
            if not (last or trained_since_eval >= 2 * eval_seconds) and np.isfinite(mean_loss):
                history.append((epoch, mean_loss, float("nan")))
                self.notify(TrainProgress(f"epoch {epoch}", steps, steps, mean_loss, None))
                epoch_seconds = time.perf_counter() - t0
                continue
            t_eval = time.perf_counter()
            score = self._recall(gallery, g_items, q_acts, q_items)
            eval_seconds, trained_since_eval = time.perf_counter() - t_eval, 0.0
            history.append((epoch, mean_loss, score[0]))
            self.notify(TrainProgress(f"epoch {epoch}", steps, steps, mean_loss, score[0]))
            epoch_seconds = time.perf_counter() - t0
            guard = Guard(width, grace_epochs(planned))
            if guard.stops(epoch, mean_loss, score[0], best_score[0]):
                # Diverged, or held-out recall fell well below its best: back to the best state.
                stopped = "guard"
                last_score = best_score
                break
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch, self._state()
            last_score = score
            if s.selection == "best" and epoch - best_epoch >= s.patience:
                stopped = "patience"
                break
            if stopped == "time":
                break
        if history and np.isnan(history[-1][2]) and stopped != "guard":
            # Stopped (by the clock) after an epoch whose check was skipped: check the end state.
            last_score = self._recall(gallery, g_items, q_acts, q_items)
            history[-1] = (history[-1][0], history[-1][1], last_score[0])
            if last_score > best_score:
                best_score, best_epoch, best_state = last_score, len(history), self._state()
        if s.selection == "best" or stopped == "guard" or not np.isfinite(last_score[1]):
            self._load(best_state)
        else:  # the fixed schedule's end (research recipe: held-out only guards it)
            best_score, best_epoch = last_score, len(history)
        self.net.eval()
        self.net.to(memory_format=torch.contiguous_format)
        return TrainReport(
            base_recall=base,
            recall=best_score[0],
            base_margin=base_score[1],
            margin=best_score[1],
            best_epoch=best_epoch,
            epochs=len(history),
            history=tuple(history),
            instance=split.instance,
            items=len(items),
            views=len(views),
            wild=len(wild),
            held_out=len(q_items),
            samples=len(cached),
            seconds=time.perf_counter() - self.started,
            device=str(self.device),
            stopped=stopped,
            precision=precision,
        )

    def _state(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def _load(self, state: list[torch.Tensor]) -> None:
        import torch

        with torch.no_grad():
            for p, v in zip(self.params, state, strict=True):
                p.copy_(v)
