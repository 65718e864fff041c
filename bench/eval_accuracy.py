"""Measure reading the packaging (OCR + text fusion) and re-ranking on the grocery photos.

Reproduces the ablation of docs/quality.md ("Accuracy"); `eval --project` runs every configuration
in the learned-projection space (`project_splits`):

    export LOOKALIKE_MODELS_MIRROR=../shared/models LOOKALIKE_CACHE_DIR=$PWD/.cache/lookalike
    P=.venv/bin/python; D=../shared/data/grocery; C=/work/cache
    $P bench/eval_accuracy.py gate --data $D --cache $C            # text gate on every photo
    $P bench/eval_accuracy.py ocr --data $D --cache $C --subset packages --det-side 736
    $P bench/eval_accuracy.py ocr --data $D --cache $C --subset gated --det-side 736
    $P bench/eval_accuracy.py features --data $D --cache $C        # local features, every photo
    $P bench/eval_accuracy.py eval --data $D --cache $C --embeddings $C/grocery_lite2_gem.npz

Catalogue = iconic + train photos per product; queries = val photos. `--embeddings` is an npz of
plain EfficientNet-Lite2 GeM vectors (`cat_vectors`, `cat_items`, `cat_images`, `query_vectors`,
`query_items`, `query_images`); when the file is missing it is computed (and saved there).
OCR results, gate decisions and local features are cached as JSON / npz under `--cache`
(`ocr_<settings>.json`, `ocr_gate_<side>.json`, `orb_<settings>.npz`) so reruns are cheap.

Every weight and threshold is chosen on a held-out split of the *catalogue* photos (`train/`
photos with an odd number in their product's sorted list are queries against the iconic photo and
the other train photos; see `holdout_split`); val is only read to report figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import Grocery, lite2_embed, load_grocery, load_image

from lookalike.evaluation.metrics import evaluate

KS = (1, 3, 10)

# ---------------------------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------------------------


def _progress(stage: str, done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        print(f"\r{stage}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr)


def _save_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Caches: gate, OCR, local features
# ---------------------------------------------------------------------------------------------


def gate_cache_path(cache: Path, side: int) -> Path:
    return cache / f"ocr_gate_{side}.json"


def ocr_cache_path(cache: Path, key: str) -> Path:
    return cache / f"ocr_{key}.json"


def run_gate(images: Sequence[str], cache: Path, side: int) -> dict[str, dict[str, float]]:
    """Text-detector gate on every photo: {path: {"area": .., "boxes": .., "ms": ..}}, cached."""
    from lookalike.pipeline.ocr import GateSettings, TextReader

    path = gate_cache_path(cache, side)
    done: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
    todo = [p for p in images if p not in done]
    reader = TextReader(gate=GateSettings(side=side))
    for n, image in enumerate(todo, start=1):
        g = reader.detect(load_image(image))
        done[image] = {"area": g.area, "boxes": g.boxes, "ms": g.ms, "box_areas": g.box_areas}
        _progress(f"gate {side}", n, len(todo))
        if n % 100 == 0:
            _save_json(path, done)
    _save_json(path, done)
    return done


def run_ocr(
    images: Sequence[str], cache: Path, det_side: int, need_boxes: bool = False
) -> dict[str, dict[str, Any]]:
    """Full OCR of `images`: {path: {"text", "scores", "ms"}}, cached per settings."""
    from lookalike.pipeline.ocr import OcrSettings, TextReader

    settings = OcrSettings(det_side=det_side)
    path = ocr_cache_path(cache, settings.key())
    done: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    # Entries cached before boxes were kept are read again when `boxes` are asked for.
    todo = [p for p in images if p not in done or (need_boxes and "boxes" not in done[p])]
    reader = TextReader(settings)
    for n, image in enumerate(todo, start=1):
        r = reader.read(load_image(image))
        done[image] = {
            "text": r.text,
            "scores": list(r.scores),
            "ms": r.ms,
            "boxes": [[list(pt) for pt in quad] for quad in r.boxes],
        }
        _progress(f"ocr {settings.key()}", n, len(todo))
        if n % 25 == 0:
            _save_json(path, done)
    _save_json(path, done)
    return done


def select_images(
    g: Grocery, subset: str, cache: Path, gate_side: int, min_area: float
) -> list[str]:
    match subset:
        case "packages":
            return [p for p in g.all_images() if "/Packages/" in p]
        case "all":
            return g.all_images()
        case "packaged-queries":  # val and held-out queries of packaged products
            emb = {"cat_images": np.array(g.cat_images), "cat_items": np.array(g.cat_items)}
            emb |= {"cat_vectors": np.zeros((len(g.cat_images), 1))}
            held = [str(p) for p in holdout_split(emb).q_images]
            return [p for p in held + list(g.query_images) if "/Packages/" in p]
        case "gated":
            gate = json.loads(gate_cache_path(cache, gate_side).read_text())
            return [
                p for p in g.all_images() if gate[p]["area"] >= min_area and gate[p]["boxes"] >= 1
            ]
    raise SystemExit(f"unknown subset {subset!r}: packages, all, gated")


def run_features(images: Sequence[str], cache: Path, settings: Any) -> Any:
    """Local features of every photo, cached in `orb_<settings>.npz` (see `FeatureCache`)."""
    from rerank import FeatureCache

    fc = FeatureCache(cache / f"local_{settings.key()}.npz", settings, loader=load_image)
    todo = [p for p in images if p not in fc]
    for n, image in enumerate(todo, start=1):
        fc.get(image)
        _progress(f"features {settings.key()}", n, len(todo))
    if todo:
        fc.save()
    return fc


# ---------------------------------------------------------------------------------------------
# Embeddings and splits
# ---------------------------------------------------------------------------------------------


def load_embeddings(path: Path, g: Grocery) -> dict[str, np.ndarray]:
    """The npz of plain embeddings; computed with Lite2 (and saved to `path`) when missing."""
    if not path.exists():
        embed = lite2_embed()

        def vectors(images: Sequence[str]) -> np.ndarray:
            out = []
            for start in range(0, len(images), 8):
                out.append(embed([load_image(p) for p in images[start : start + 8]]))
                _progress("embed", min(start + 8, len(images)), len(images))
            return np.concatenate(out)

        np.savez(
            path,
            cat_vectors=vectors(g.cat_images),
            cat_items=np.array(g.cat_items),
            cat_images=np.array(g.cat_images),
            query_vectors=vectors(g.query_images),
            query_items=np.array(g.query_items),
            query_images=np.array(g.query_images),
        )
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@dataclass(frozen=True)
class Split:
    """Queries against a catalogue, as arrays.

    cat_vectors (M, D), cat_items (M,), cat_images (M,); q_vectors (Q, D), q_items, q_images.
    """

    name: str
    cat_vectors: np.ndarray
    cat_items: np.ndarray
    cat_images: np.ndarray
    q_vectors: np.ndarray
    q_items: np.ndarray
    q_images: np.ndarray
    projection: Any = None
    """The learned projection the vectors went through (`--project`); TTA query vectors (raw,
    from the cache) are averaged then projected with it, as the engine does."""

    def subset(self, mask: np.ndarray, name: str) -> Split:
        return Split(
            name, self.cat_vectors, self.cat_items, self.cat_images,
            self.q_vectors[mask], self.q_items[mask], self.q_images[mask], self.projection,
        )  # fmt: skip


def val_split(emb: dict[str, np.ndarray]) -> Split:
    return Split(
        "val", emb["cat_vectors"], emb["cat_items"], emb["cat_images"],
        emb["query_vectors"], emb["query_items"], emb["query_images"],
    )  # fmt: skip


def holdout_split(emb: dict[str, np.ndarray], share: float = 0.3) -> Split:
    """Tuning split from the catalogue photos only: per product, the last `share` of its train
    photos (by file name: consecutive shots of one shop visit stay together) are queries against
    the iconic photo and the remaining train photos. Val photos are not touched."""
    images, items = emb["cat_images"], emb["cat_items"]
    is_query = np.zeros(len(images), dtype=bool)
    for item in np.unique(items):
        train = sorted(
            (str(images[i]), i) for i in np.nonzero(items == item)[0] if "/train/" in str(images[i])
        )
        n_query = round(len(train) * share)
        for _, i in train[len(train) - n_query :]:
            is_query[i] = True
    keep = ~is_query
    return Split(
        "holdout", emb["cat_vectors"][keep], items[keep], images[keep],
        emb["cat_vectors"][is_query], items[is_query], images[is_query],
    )  # fmt: skip


def run_tta(images: Sequence[str], cache: Path, crop: float = 0.8) -> dict[str, np.ndarray]:
    """Lite2 vectors of each photo's `tta_images(..., "flip+crops")` variants: (N, 4, D) in the
    order original, centre crop, mirror, mirrored crop; cached in `grocery_tta.npz`."""
    from lookalike.pipeline.embed import tta_images

    path = cache / f"grocery_tta_c{crop:g}.npz"
    done: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as data:
            done = dict(zip(data["images"].tolist(), data["vectors"], strict=True))
    todo = [p for p in images if p not in done]
    if todo:
        embed = lite2_embed()
        for n, image in enumerate(todo, start=1):
            done[image] = embed(tta_images(load_image(image), "flip+crops", crop))
            _progress("tta", n, len(todo))
        np.savez(path, images=np.array(list(done)), vectors=np.stack(list(done.values())))
    return done


def centroids(split: Split) -> tuple[list[str], np.ndarray]:
    """Item ids (sorted numerically) and their centroids (mean of views, renormalised)."""
    items = sorted(set(split.cat_items.tolist()), key=lambda x: (len(x), x))
    c = np.stack([split.cat_vectors[split.cat_items == i].mean(0) for i in items])
    return items, c / np.linalg.norm(c, axis=1, keepdims=True)


def metrics(ranked: Sequence[Sequence[str]], relevant: Sequence[str]) -> dict[str, float]:
    return evaluate(ranked, list(relevant), KS)


# ---------------------------------------------------------------------------------------------
# The configurations compared
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One row of the ablation table.

    tta: query test-time augmentation mode; text: text fusion settings (None = off);
    read: which queries are OCR'd: "always", "detector" (the text gate on the query photo) or
    "candidates" (`ItemTextIndex.should_read` on the top-5 image candidates); geo: geometric
    re-ranking (None = off); qe: alpha query expansion with the top `n` catalogue views, (n, alpha).
    """

    name: str
    tta: str = "none"
    text: Any = None
    read: str = "always"
    geo: Any = None
    qe: tuple[int, float] | None = None


_TTA_INDEX = {"none": [0], "flip": [0, 2], "crops": [0, 1], "flip+crops": [0, 1, 2, 3]}


class Evidence:
    """Everything cached that a configuration reads: TTA vectors, OCR tokens, gate, features."""

    def __init__(
        self,
        tta: dict[str, np.ndarray],
        ocr: dict[str, dict[str, Any]],
        gate: dict[str, dict[str, float]],
        features: Any,
        gate_area: float,
        inliers_path: Path | None = None,
    ) -> None:
        from lookalike.pipeline.ocr import normalise_tokens

        self.tta = tta
        self.tokens = {p: normalise_tokens(r["text"]) for p, r in ocr.items()}
        self.ocr = ocr
        self._weights: dict[tuple[str, float], dict[str, float] | None] = {}
        self.gate = gate
        self.features = features
        self.gate_area = gate_area
        self.inliers_path = inliers_path
        self._inliers: dict[str, int] = {}
        if inliers_path is not None and inliers_path.exists():
            self._inliers = json.loads(inliers_path.read_text())

    def weights(self, image: str, power: float) -> dict[str, float] | None:
        """Query words weighted by letter size (`token_weights`), where the OCR cache kept boxes."""
        from lookalike.pipeline.ocr import token_weights

        key = (image, power)
        if key not in self._weights:
            r = self.ocr.get(image)
            if power == 0 or r is None or "boxes" not in r:
                self._weights[key] = None
            else:
                lines = r["text"].split("\n") if r["text"] else []
                self._weights[key] = token_weights(lines, r["boxes"], power)
        return self._weights[key]

    def save(self) -> None:
        if self.inliers_path is not None:
            _save_json(self.inliers_path, self._inliers)

    def gated(self, image: str) -> bool:
        g = self.gate.get(image)
        return g is not None and g["boxes"] >= 1 and g["area"] >= self.gate_area

    def inliers(self, query: str, image: str, geometry: Any) -> int:
        from rerank import count_inliers

        key = f"{query}|{image}|{geometry.ratio:g}|{geometry.ransac_px:g}"
        if key not in self._inliers:
            q, c = self.features.get(query), self.features.get(image)
            self._inliers[key] = 0 if q is None or c is None else count_inliers(q, c, geometry)
        return self._inliers[key]


def text_index(split: Split, ev: Evidence, catalogue_ocr: Callable[[str], bool]) -> Any:
    """Item text index of the split's catalogue: every photo, with the words OCR read on it when
    the indexing rule OCR'd it (none otherwise)."""
    from lookalike.pipeline.text_match import ItemTextIndex

    return ItemTextIndex.from_photos(
        (str(item), ev.tokens.get(str(image), ()) if catalogue_ocr(str(image)) else ())
        for item, image in zip(split.cat_items, split.cat_images, strict=True)
    )


def rank(
    split: Split, cfg: Config, ev: Evidence, index: Any
) -> tuple[list[list[str]], dict[str, float]]:
    """Ranked item ids per query under `cfg`, and how often each optional stage ran."""
    from rerank import (
        Candidate,
        GeometricReranker,
        expand_query,
    )

    from lookalike.pipeline.text_match import fuse

    items, cents = centroids(split)
    if cfg.tta == "none":
        queries = split.q_vectors
    else:
        idx = _TTA_INDEX[cfg.tta]
        queries = np.stack([ev.tta[str(p)][idx].mean(0) for p in split.q_images])
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        if split.projection is not None:
            queries = split.projection.apply(queries)
    if cfg.qe is not None:
        n, alpha = cfg.qe
        sims = queries @ split.cat_vectors.T
        top = np.argsort(-sims, axis=1)[:, :n]
        queries = np.concatenate(
            [
                expand_query(q, split.cat_vectors[t], s[t], alpha)[None]
                for q, s, t in zip(queries, sims, top, strict=True)
            ]
        )
    scores = queries @ cents.T
    view_scores = queries @ split.cat_vectors.T
    by_item = {i: np.nonzero(split.cat_items == i)[0] for i in items}
    ranked, read, verified = [], 0, 0
    for qi, row in enumerate(scores):
        order = np.argsort(-row, kind="stable")
        cands = [(items[j], float(row[j])) for j in order]
        image = str(split.q_images[qi])
        if cfg.text is not None:
            match cfg.read:
                case "always":
                    go = True
                case "detector":
                    go = ev.gated(image)
                case "candidates":
                    go = index.should_read([c for c, _ in cands[:5]])
                case other:
                    raise ValueError(other)
            if go:
                read += 1
                tokens = ev.tokens.get(image, ())
                head = [c for c, _ in cands[: cfg.text.top_n]]
                weights = ev.weights(image, cfg.text.size_power)
                cands = fuse(cands, index.score(tokens, head, cfg.text, weights), cfg.text)
        if cfg.geo is not None:
            geo = cfg.geo
            head = []
            for item, score in cands[: geo.top_k]:
                views = by_item[item][np.argsort(-view_scores[qi, by_item[item]])][
                    : geo.photos_per_item
                ]
                head.append(
                    Candidate(item, score, tuple((str(split.cat_images[v]), 0.0) for v in views))
                )

            out = GeometricReranker(ev.features, geo).rerank_with(
                lambda photo, _q=image, _g=geo.geometry: ev.inliers(_q, photo, _g), head
            )
            verified += 1
            cands = [(r.item_id, r.score) for r in out] + cands[geo.top_k :]
        ranked.append([c for c, _ in cands])
    n = max(len(ranked), 1)
    return ranked, {"read": read / n, "verified": verified / n}


def _score(split: Split, cfg: Config, ev: Evidence, index: Any) -> dict[str, float]:
    ranked, ran = rank(split, cfg, ev, index)
    return {**metrics(ranked, split.q_items), **ran}


def _best(
    split: Split, configs: Iterable[Config], ev: Evidence, index: Any
) -> tuple[Config, dict[str, float]]:
    """The configuration with the best Recall@1 (then mAP) on `split`."""
    best: tuple[Config, dict[str, float]] | None = None
    for cfg in configs:
        m = _score(split, cfg, ev, index)
        if best is None or (m["recall@1"], m["map"]) > (best[1]["recall@1"], best[1]["map"]):
            best = (cfg, m)
    assert best is not None
    return best


def tune(holdout: Split, ev: Evidence, index: Any, read: str) -> dict[str, Config]:
    """Choose each component's parameters on the held-out catalogue split (never on val)."""
    import itertools

    from rerank import RerankSettings

    from lookalike.pipeline.text_match import TextMatchSettings

    chosen: dict[str, Config] = {}
    chosen["tta"], _ = _best(
        holdout, (Config(f"tta {m}", tta=m) for m in ("flip", "crops", "flip+crops")), ev, index
    )
    texts = (
        Config(
            "text",
            text=TextMatchSettings(
                fuzzy=f, saturation=sat, coverage=cov, size_power=sz, weight=w, top_n=n
            ),
            read=read,
        )
        for f, sat, cov, sz, w, n in itertools.product(
            (1.0, 0.7), (0.3, 1.0), (0.0, 0.5, 0.7), (0.0, 1.0), (0.1, 0.2, 0.3), (10, 30)
        )
    )
    chosen["text"], _ = _best(holdout, texts, ev, index)
    geos = (
        Config(
            "geo", geo=RerankSettings(top_k=k, photos_per_item=p, min_inliers=mi, cap=cap, weight=w)
        )
        for k, p, mi, cap, w in itertools.product(
            (3, 5), (1, 2, 3), (8, 15, 25), (30, 60, 120), (0.05, 0.1, 0.2)
        )
    )
    chosen["geo"], _ = _best(holdout, geos, ev, index)
    qes = (Config("qe", qe=(n, a)) for n, a in itertools.product((1, 2, 3, 5), (1.0, 3.0, 10.0)))
    chosen["qe"], _ = _best(holdout, qes, ev, index)
    return chosen


def ablation(
    splits: Sequence[Split],
    holdout: Split,
    ev: Evidence,
    catalogue_ocr: Callable[[str], bool],
    read: str,
) -> tuple[list[dict[str, Any]], dict[str, Config]]:
    """Rows of the ablation table: each component alone, the chosen combination, all together."""
    from dataclasses import replace

    hold_index = text_index(holdout, ev, catalogue_ocr)
    chosen = tune(holdout, ev, hold_index, read)
    tta, text, geo, qe = chosen["tta"].tta, chosen["text"].text, chosen["geo"].geo, chosen["qe"].qe
    configs = [
        Config("image only (centroid)"),
        Config(f"+ TTA {tta}", tta=tta),
        Config(f"+ text (OCR on {read})", text=text, read=read),
        Config("+ text (OCR every query)", text=text, read="always"),
        Config("+ text (OCR when the query's text detector fires)", text=text, read="detector"),
        Config("+ geometric (ORB + RANSAC)", geo=geo),
        Config(f"+ query expansion (views n={qe[0]}, alpha={qe[1]:g})", qe=qe),
        Config(f"TTA + text ({read})", tta=tta, text=text, read=read),
        Config("TTA + text + geometric", tta=tta, text=text, read=read, geo=geo),
        Config("TTA + text + QE", tta=tta, text=text, read=read, qe=qe),
        Config("text + geometric", text=text, read=read, geo=geo),
        Config("all: TTA + text + geometric + QE", tta=tta, text=text, read=read, geo=geo, qe=qe),
    ]
    rows = []
    indexes = {s.name: text_index(s, ev, catalogue_ocr) for s in splits}
    indexes[holdout.name] = hold_index
    for cfg in configs:
        row: dict[str, Any] = {"name": cfg.name}
        for split in [*splits, holdout]:
            row[split.name] = _score(split, cfg, ev, indexes[split.name])
        rows.append(row)
        print(
            f"{cfg.name}: "
            + ", ".join(f"{k} R@1 {v['recall@1']:.3f}" for k, v in row.items() if k != "name"),
            file=sys.stderr,
        )
    return rows, {k: replace(v) for k, v in chosen.items()}


def misses_report(
    split: Split, base: Config, final: Config, ev: Evidence, index: Any, g: Grocery
) -> str:
    """Per coarse class: queries and R@1 before / after; then the final configuration's confusions."""
    from collections import Counter

    before, _ = rank(split, base, ev, index)
    after, _ = rank(split, final, ev, index)
    classes: dict[str, list[tuple[bool, bool]]] = {}
    confusions: Counter[tuple[str, str]] = Counter()
    ranks_of_misses: Counter[str] = Counter()
    for b, a, right in zip(before, after, split.q_items, strict=True):
        classes.setdefault(g.coarse[str(right)], []).append((b[0] == right, a[0] == right))
        if a[0] != right:
            confusions[(g.names[str(right)], g.names[a[0]])] += 1
            r = a.index(right) + 1
            ranks_of_misses["2-3" if r <= 3 else "4-10" if r <= 10 else ">10"] += 1
    lines = [
        f"| coarse class | queries | R@1 {base.name} | R@1 {final.name} |",
        "|---|---|---|---|",
    ]
    for name, hits in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        b = sum(h[0] for h in hits) / len(hits)
        a = sum(h[1] for h in hits) / len(hits)
        lines.append(f"| {name} | {len(hits)} | {b:.2f} | {a:.2f} |")
    lines += ["", f"Rank of the right item in the misses: {dict(ranks_of_misses)}", ""]
    lines += ["| right item | ranked first instead | times |", "|---|---|---|"]
    lines += [f"| {r} | {w} | {n} |" for (r, w), n in confusions.most_common(15)]
    return "\n".join(lines)


def markdown(rows: Sequence[dict[str, Any]], split_names: Sequence[str]) -> str:
    head = (
        "| configuration | "
        + " | ".join(f"{n} R@1 | R@3 | R@10 | mAP" for n in split_names)
        + " | OCR'd queries |"
    )
    sep = "|---|" + "---|" * (4 * len(split_names) + 1)
    lines = [head, sep]
    for row in rows:
        cells = []
        for n in split_names:
            m = row[n]
            cells += [
                f"{m['recall@1']:.3f}",
                f"{m['recall@3']:.3f}",
                f"{m['recall@10']:.3f}",
                f"{m['map']:.3f}",
            ]
        lines.append(
            f"| {row['name']} | " + " | ".join(cells) + f" | {row[split_names[0]]['read']:.0%} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def run_eval(args: argparse.Namespace, g: Grocery) -> None:
    from rerank import FeatureCache, LocalFeatureSettings

    from lookalike.pipeline.ocr import OcrSettings

    emb = load_embeddings(args.embeddings, g)
    ocr = json.loads(
        ocr_cache_path(args.cache, OcrSettings(det_side=args.det_side).key()).read_text()
    )
    gate_path = gate_cache_path(args.cache, args.gate_side)
    gate = json.loads(gate_path.read_text()) if gate_path.exists() else {}
    features = FeatureCache(
        args.cache / f"local_{LocalFeatureSettings().key()}.npz",
        LocalFeatureSettings(),
        loader=load_image,
    )
    holdout, val = holdout_split(emb), val_split(emb)
    tta = run_tta([str(p) for p in holdout.q_images] + [str(p) for p in val.q_images], args.cache)
    if args.project:
        holdout, val, tta = project_splits(holdout, val, tta)
    inliers = args.cache / f"inliers_{LocalFeatureSettings().key()}.json"
    ev = Evidence(tta, ocr, gate, features, args.gate_area, inliers)
    if args.subset == "packages":
        # Packaged products only: every packaged photo OCR'd, queries = packaged photos.
        def catalogue_ocr(image: str) -> bool:
            return "/Packages/" in image

        def only_packages(split: Split) -> Split:
            mask = np.array(["/Packages/" in str(p) for p in split.q_images])
            return split.subset(mask, f"{split.name} packaged")

        holdout, splits, read = only_packages(holdout), [only_packages(val)], "always"
    else:
        catalogue_ocr = ev.gated
        splits, read = (
            [
                val,
                val.subset(
                    np.array(["/Packages/" in str(p) for p in val.q_images]), "val packaged"
                ),
            ],
            args.read,
        )
    missing = [
        p
        for p in [*holdout.cat_images, *holdout.q_images, *val.q_images]
        if catalogue_ocr(str(p)) and str(p) not in ocr
    ]
    if missing:
        raise SystemExit(
            f"{len(missing)} photos the rule OCRs are not in the OCR cache: run `ocr` first"
        )
    rows, chosen = ablation(splits, holdout, ev, catalogue_ocr, read)
    names = [s.name for s in splits] + [holdout.name]
    print(markdown(rows, names))
    print()
    for name, cfg in chosen.items():
        print(f"- chosen on {holdout.name}: {name}: {cfg}")
    final = Config("TTA + text", tta=chosen["tta"].tta, text=chosen["text"].text, read=read)
    print()
    print(
        misses_report(
            splits[0], Config("image only"), final, ev, text_index(splits[0], ev, catalogue_ocr), g
        )
    )
    features.save()
    ev.save()
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "chosen": {k: repr(v) for k, v in chosen.items()}}, indent=1)
        )


def project_splits(
    holdout: Split, val: Split, tta: dict[str, np.ndarray]
) -> tuple[Split, Split, dict[str, np.ndarray]]:
    """Learned whitening (`lookalike.learn.tuning.fit_projection`, its parameters chosen on its own
    held-out photos) applied to both splits: the held-out split's projection is fitted on that
    split's catalogue part only, val's on the whole catalogue; queries and their TTA variants are
    projected with their split's projection (TTA variants: averaged raw, then projected, in
    `rank`). Val photos are never fitted."""
    from lookalike.learn.tuning import fit_projection

    out = []
    tta = dict(tta)
    for split in (holdout, val):
        result = fit_projection(split.cat_vectors, [str(i) for i in split.cat_items])
        p = result.projection
        print(
            f"projection for {split.name}: dim {p.params['dim']}, lam {p.params['lam']}, "
            f"held-out R@1 {result.baseline.score:.3f} -> {result.chosen.score:.3f}",
            file=sys.stderr,
        )
        out.append(
            Split(
                split.name,
                p.apply(split.cat_vectors),
                split.cat_items,
                split.cat_images,
                p.apply(split.q_vectors),
                split.q_items,
                split.q_images,
                p,
            )
        )
    return out[0], out[1], tta


def run_latency(args: argparse.Namespace, g: Grocery) -> None:
    """Added query latency of each component, measured live on a sample of val photos, side by side
    in one process (the same photos through every stage). Prints p50/p95 in milliseconds."""
    from rerank import (
        Candidate,
        FeatureCache,
        GeometricReranker,
        LocalFeatureSettings,
        RerankSettings,
        expand_query,
        tta_embed,
    )

    from lookalike.pipeline.ocr import OcrSettings, TextReader
    from lookalike.pipeline.text_match import TextMatchSettings, fuse

    emb = load_embeddings(args.embeddings, g)
    val = val_split(emb)
    items, cents = centroids(val)
    ocr = json.loads(
        ocr_cache_path(args.cache, OcrSettings(det_side=args.det_side).key()).read_text()
    )
    gate = json.loads(gate_cache_path(args.cache, args.gate_side).read_text())
    ev = Evidence({}, ocr, gate, None, args.gate_area)
    index = text_index(val, ev, ev.gated)
    features = FeatureCache(
        args.cache / f"local_{LocalFeatureSettings().key()}.npz", LocalFeatureSettings()
    )
    embed = lite2_embed()
    reader = TextReader(OcrSettings(det_side=args.det_side))
    from lookalike.pipeline.ocr import GateSettings

    reader.gate = GateSettings(side=args.gate_side, min_area=args.gate_area)
    reranker = GeometricReranker(features, RerankSettings())
    text = TextMatchSettings()
    rng = np.random.default_rng(0)
    sample = sorted(
        rng.choice(len(val.q_images), size=min(args.queries, len(val.q_images)), replace=False)
    )
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append((time.perf_counter() - start) * 1000.0)
        return out

    for warm in sample[:2]:  # load every model once before timing
        image = load_image(str(val.q_images[warm]))
        embed([image]), reader.read(image), reader.detect(image)
    times.clear()
    for n, qi in enumerate(sample, start=1):
        path = str(val.q_images[qi])
        image = timed("decode", lambda p=path: load_image(p))
        q = timed("embed (1 image)", lambda im=image: embed([im]))
        timed(
            "embed TTA flip+crops (4 images)", lambda im=image: tta_embed(embed, im, "flip+crops")
        )
        row = (q @ cents.T)[0]
        order = np.argsort(-row)
        cands = [(items[j], float(row[j])) for j in order]
        read = timed(
            "gate: candidates carry text", lambda c=cands: index.should_read([i for i, _ in c[:5]])
        )
        timed("gate: text detector", lambda im=image: reader.detect(im))
        result = timed(f"OCR read (det side {args.det_side})", lambda im=image: reader.read(im))
        if read:  # the photos the final configuration OCRs
            times.setdefault("OCR read, queries the candidates gate reads", []).append(result.ms)
        timed(
            "text score + fuse",
            lambda c=cands, r=result: fuse(
                c, index.score(r.words, [i for i, _ in c[: text.top_n]], text), text
            ),
        )
        by_item = {i: np.nonzero(val.cat_items == i)[0] for i, _ in cands[:5]}
        vs = (q @ val.cat_vectors.T)[0]
        head = [
            Candidate(
                i,
                s,
                tuple(
                    (str(val.cat_images[v]), float(vs[v]))
                    for v in by_item[i][np.argsort(-vs[by_item[i]])]
                ),
            )
            for i, s in cands[:5]
        ]
        geo = reranker.settings
        timed(
            f"geometric re-rank (ORB, top {geo.top_k} x {geo.photos_per_item} photos)",
            lambda im=image, h=head: reranker.rerank(im, h),
        )
        timed(
            "query expansion",
            lambda q=q, vs=vs: (
                expand_query(q, val.cat_vectors[np.argsort(-vs)[:1]], np.sort(vs)[::-1][:1], 3.0)
                @ cents.T
            ),
        )
        _progress("latency", n, len(sample))
    print(f"| stage | p50 ms | p95 ms | photos (of {len(sample)} val photos) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        p50, p95 = np.percentile(values, 50), np.percentile(values, 95)
        print(f"| {name} | {p50:.0f} | {p95:.0f} | {len(values)} |")
    if args.json:
        args.json.write_text(json.dumps(times))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["gate", "ocr", "features", "tta", "eval", "latency"])
    parser.add_argument("--data", type=Path, required=True, help="grocery data folder")
    parser.add_argument("--cache", type=Path, required=True, help="folder for cached results")
    parser.add_argument("--subset", default="packages", help="packages | gated | all (ocr)")
    parser.add_argument("--det-side", type=int, default=736)
    parser.add_argument("--gate-side", type=int, default=224)
    parser.add_argument("--gate-area", type=float, default=0.004)
    parser.add_argument("--embeddings", type=Path)
    parser.add_argument("--queries", type=int, default=40, help="photos timed (latency)")
    parser.add_argument("--read", default="candidates", help="which queries are OCR'd (eval)")
    parser.add_argument("--json", type=Path, help="write the eval figures here")
    parser.add_argument(
        "--project", action="store_true", help="learned whitening on both splits (eval)"
    )
    parser.add_argument("--method", default="orb", help="local features: orb | sift")
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--n-features", type=int, default=500)
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    g = load_grocery(args.data)
    match args.command:
        case "gate":
            run_gate(g.all_images(), args.cache, args.gate_side)
        case "ocr":
            images = select_images(g, args.subset, args.cache, args.gate_side, args.gate_area)
            run_ocr(images, args.cache, args.det_side, need_boxes=args.subset == "packaged-queries")
        case "features":
            from rerank import LocalFeatureSettings

            settings = LocalFeatureSettings(
                method=args.method, max_side=args.max_side, n_features=args.n_features
            )
            run_features(g.all_images(), args.cache, settings)
        case "tta":
            emb = load_embeddings(args.embeddings, g)
            queries = [str(p) for p in holdout_split(emb).q_images] + list(g.query_images)
            run_tta(queries, args.cache)
        case "eval":
            run_eval(args, g)
        case "latency":
            run_latency(args, g)


if __name__ == "__main__":
    main()
