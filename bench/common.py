"""Helpers the bench and research scripts share: data set loaders, the plain embedder, fold splits,
scoring and report tables, FLOP counts, face-event loading, training-network pieces.

Scripts run as `python bench/NAME.py` (their folder is on `sys.path`, so `import common` needs no
path manipulation) and use only the package's public API.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lookalike.evaluation.metrics import evaluate
from lookalike.faces.detect import SHAPE_PREDICTOR, model_file, require_dlib
from lookalike.learn.net import part
from lookalike.learn.projection import Projection, TuneResult
from lookalike.learn.tuning import fit_cross_domain, fit_projection, item_rankings
from lookalike.pipeline.isolate import cut_out, pixels, split_garments
from lookalike.types import F32, Box


@dataclass(frozen=True)
class Grocery:
    """Paths and labels of the grocery photos, in the order of the embeddings npz.

    cat_images / cat_items: iconic + train photos and their product ids; query_*: the val photos.
    coarse: product id -> coarse class name; packaged: product ids under `Packages/`.
    """

    cat_images: tuple[str, ...]
    cat_items: tuple[str, ...]
    query_images: tuple[str, ...]
    query_items: tuple[str, ...]
    coarse: dict[str, str]
    names: dict[str, str]
    packaged: frozenset[str]

    def all_images(self) -> list[str]:
        return list(self.cat_images) + list(self.query_images)


def load_grocery(data_dir: Path) -> Grocery:
    """The grocery photos in the npz's order: iconic images (classes.csv order), then train.txt,
    and val.txt for the queries."""
    import csv
    import tempfile

    from lookalike.catalog.sample import prepare_grocery

    with tempfile.TemporaryDirectory() as tmp:
        files = prepare_grocery(data_dir, Path(tmp))
        cat_images: list[str] = []
        cat_items: list[str] = []
        rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()]
        # iconic photos first (one per product), then the train photos in train.txt order
        for row in rows:
            cat_images.append(row["images"][0])
            cat_items.append(row["id"])
        for row in rows:
            for image in row["images"][1:]:
                cat_images.append(image)
                cat_items.append(row["id"])
        with open(files.queries, newline="") as fh:
            queries = list(csv.DictReader(fh))
    coarse, names, packaged = {}, {}, set()
    with open(data_dir / "classes.csv", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for name, class_id, coarse_name, _cid, iconic, _desc in reader:
            coarse[class_id] = coarse_name
            names[class_id] = name
            if "/Packages/" in iconic:
                packaged.add(class_id)
    return Grocery(
        cat_images=tuple(cat_images),
        cat_items=tuple(cat_items),
        query_images=tuple(q["image"] for q in queries),
        query_items=tuple(q["item_id"] for q in queries),
        coarse=coarse,
        names=names,
        packaged=frozenset(packaged),
    )


def load_image(path: str) -> Any:
    from lookalike.pipeline.decode import load_image

    return load_image(path).image


def lite2_embed() -> Callable[[Sequence[Any]], np.ndarray]:
    """The plain EfficientNet-Lite2 embedder (GeM, the engine's default preprocessing)."""
    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.models.catalog import get_spec
    from lookalike.pipeline.clip import load_embedder

    settings = Settings()
    spec = get_spec("efficientnet-lite2")
    model_dir = wiring.model_store(settings).path(spec.name)
    return load_embedder(spec, model_dir).embed_images


KS = (1, 3, 10)


def read_pairs(data_dir: Path) -> list[tuple[str, Path, Path]]:
    """`pairs.csv` rows as (garment_id, product photo, worn photo), paths resolved."""
    with open(data_dir / "pairs.csv", newline="") as fh:
        return [
            (row["garment_id"], data_dir / row["product_image"], data_dir / row["worn_image"])
            for row in csv.DictReader(fh)
        ]


def embed_fashion(
    data_dir: Path,
    cache: Path,
    *,
    embed: Callable[[Sequence[Image.Image]], F32] | None = None,
    batch: int = 8,
) -> dict[str, np.ndarray]:
    """Whole-photo vectors of every pair, read from `cache` when it exists, else computed and saved.

    Returns `product_vectors`, `worn_vectors` (N, D) L2-normalised float32, and `garment_ids` (N,)
    in pairs.csv order. `embed` maps decoded RGB photos to vectors (default: plain Lite2); pass an
    isolating pipeline (and another cache path) to measure on garment crops.
    """
    if cache.exists():
        with np.load(cache) as npz:
            return {key: npz[key] for key in npz.files}
    from lookalike.pipeline.decode import load_image

    embed = embed or lite2_embed()
    pairs = read_pairs(data_dir)
    out: dict[str, list[F32]] = {"product_vectors": [], "worn_vectors": []}
    for key, column in (("product_vectors", 1), ("worn_vectors", 2)):
        for start in range(0, len(pairs), batch):
            chunk = pairs[start : start + batch]
            images = [load_image(str(row[column])).image for row in chunk]
            out[key].append(embed(images))
            print(f"{key}: {start + len(chunk)}/{len(pairs)}", flush=True)
    arrays = {
        "product_vectors": np.concatenate(out["product_vectors"]).astype(np.float32),
        "worn_vectors": np.concatenate(out["worn_vectors"]).astype(np.float32),
        "garment_ids": np.array([row[0] for row in pairs]),
        "product_images": np.array([str(row[1]) for row in pairs]),
        "worn_images": np.array([str(row[2]) for row in pairs]),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def fashion_score(
    gallery: np.ndarray,
    gallery_items: Sequence[str],
    queries: np.ndarray,
    query_items: Sequence[str],
    mode: str,
    projection: Projection | None = None,
) -> dict[str, float]:
    """Item-level metrics (lookalike.evaluation.metrics.evaluate) of queries against a gallery of views.

    With a projection, views and queries are projected (the centroid is then the re-normalised
    mean of the projected views, as the engine would store it).
    """
    if projection is not None:
        gallery, queries = projection.apply(gallery), projection.apply(queries)
    ranked = item_rankings(gallery, gallery_items, queries, mode=mode)  # type: ignore[arg-type]
    return evaluate(ranked, [str(i) for i in query_items], KS)


def row(name: str, metrics: dict[str, float]) -> dict[str, Any]:
    return {"setting": name, **{k: round(float(v), 4) for k, v in metrics.items()}}


def tune_choice(result: TuneResult) -> dict[str, Any]:
    return {
        "dim": result.chosen.dim,
        "lam": result.chosen.lam,
        "held_out": {m: dict(v) for m, v in result.chosen.metrics.items()},
        "held_out_without": {m: dict(v) for m, v in result.baseline.metrics.items()},
        "split": dict(result.split),
        "sha256": result.projection.sha256,
    }


def garment_folds(n: int, fit_garments: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two (fit rows, report rows) folds of the fashion benchmarks: the garments shuffled with
    `seed`, the first `fit_garments` fitted and the rest reported, then the halves swapped."""
    order = np.random.default_rng(seed).permutation(n)
    return [
        (order[:fit_garments], order[fit_garments:]),
        (order[fit_garments:], order[:fit_garments]),
    ]


def fashion_cross_domain(
    product: np.ndarray,
    worn: np.ndarray,
    garment_ids: Sequence[str],
    *,
    fit_garments: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Worn photo -> product shot, split by garment: fit on `fit_garments`, report on the rest.

    product, worn: (N, D) vectors of the same garment per row (whole photos here; pass vectors of
    isolated garment crops to measure the projection on them). The garments are shuffled with
    `seed`; the first `fit_garments` are the only ones the projections see (their parameters chosen
    on a held-out 20 % of those); the others' worn photos search among the others' product shots
    (N - fit_garments candidates). Both halves are also swapped (2-fold) to show the spread.
    """
    ids = np.asarray([str(g) for g in garment_ids])
    folds = garment_folds(len(ids), fit_garments, seed)
    out: dict[str, Any] = {"garments": len(ids), "fit_garments": fit_garments, "folds": []}
    for fold, (fit, rep) in enumerate(folds):
        t = time.perf_counter()
        cross = fit_cross_domain(worn[fit], product[fit], groups=ids[fit], seed=seed)
        seconds = time.perf_counter() - t
        # The within-item fit sees each garment as an item with two photos (worn + product).
        within = fit_projection(
            np.concatenate([worn[fit], product[fit]]),
            np.concatenate([ids[fit], ids[fit]]),
            seed=seed,
        )
        args = (product[rep], ids[rep], worn[rep], ids[rep], "views")
        out["folds"].append(
            {
                "fold": fold,
                "fit_on": len(fit),
                "report_on": len(rep),
                "candidates": len(rep),
                "rows": [
                    row("plain", fashion_score(*args)),
                    row("cross-domain projection", fashion_score(*args, cross.projection)),
                    row("within-item projection", fashion_score(*args, within.projection)),
                ],
                "choice_cross": tune_choice(cross),
                "choice_within": tune_choice(within),
                "grid_cross": cross.table(),
                "fit_seconds": seconds,
            }
        )
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| setting | R@1 | R@3 | R@10 | mAP |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['recall@1']:.3f} | {r['recall@3']:.3f} | "
            f"{r['recall@10']:.3f} | {r['map']:.3f} |"
        )
    return "\n".join(lines)


def tune_markdown(report: dict[str, Any]) -> str:
    parts = []
    if "grocery" in report:
        g = report["grocery"]
        parts += [
            f"## Grocery: {g['catalogue']} catalogue photos, {g['queries']} val queries",
            table([*g["full"]["rows"], *g["full"].get("rows_cross", [])]),
            f"held-out choice: {json.dumps(g['full']['choice'])}",
            g["full"]["grid"],
            "### One photo per item indexed (iconic)",
            table(g["iconic_only"]["rows"]),
            f"train-only choice: {json.dumps(g['iconic_only']['choice_train_only'])}",
            f"cross-domain choice: {json.dumps(g['iconic_only']['choice_cross'])}",
            "### Held-out choice per seed (val figures)",
            "\n".join(
                f"- seed {s['seed']}: dim {s['dim']}, lam {s['lam']:g}: views R@1 "
                f"{s['views']['recall@1']:.3f}, centroid R@1 {s['centroid']['recall@1']:.3f}"
                for s in g["seeds"]
            ),
            "### Hindsight: the grid on val (not used for the choice)",
            "\n".join(
                [
                    "| dim | lambda | held-out score | val views R@1 | val centroid R@1 |",
                    "|---|---|---|---|---|",
                    *(
                        f"| {o['dim']} | {o['lam']:g} | {o['held_out_score']:.3f} | "
                        f"{o['val_views_r1']:.3f} | {o['val_centroid_r1']:.3f} |"
                        for o in g["oracle"]
                    ),
                ]
            ),
            f"timings: {json.dumps({k: round(v, 1) for k, v in g['timings'].items()})}",
        ]
    if "fashion" in report:
        f = report["fashion"]
        for fold in f["folds"]:
            parts += [
                f"## Fashion fold {fold['fold']}: fit on {fold['fit_on']} garments, "
                f"report on {fold['report_on']} (worn -> {fold['candidates']} product shots)",
                table(fold["rows"]),
                f"cross-domain choice: {json.dumps(fold['choice_cross'])}",
                f"within-item choice: {json.dumps(fold['choice_within'])}",
                fold["grid_cross"],
            ]
    return "\n\n".join(parts)


def sgemm_gflops(n: int = 2048, runs: int = 5) -> float:
    """Median GFLOP/s of an n x n float32 product (numpy's BLAS, its default threads)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def graph_flops(model: Path, size: int) -> dict[str, float]:
    """Multiply-accumulates per image of Conv / MatMul / Gemm nodes at input (1, 3, size, size).

    Output shapes come from running the graph once with every Conv / MatMul / Gemm output exposed
    (ONNX shape inference gives up on the exported padding ops, so it cannot be trusted here).
    """
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(model))
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    nodes = [n for n in m.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    have = {o.name for o in m.graph.output}
    for n in nodes:
        if n.output[0] not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n.output[0]))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    x = np.zeros((1, 3, size, size), dtype=np.float32)
    values = dict(zip(names, session.run(names, {session.get_inputs()[0].name: x}), strict=True))
    macs = {"conv": 0.0, "depthwise": 0.0, "matmul": 0.0}
    for n in nodes:
        out = values[n.output[0]].shape
        if n.op_type == "Conv":
            w = inits[n.input[1]]  # (Cout, Cin/group, kh, kw)
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            kind = "depthwise" if group > 1 and group == out[1] else "conv"
            macs[kind] += float(np.prod(out)) * w[1] * w[2] * w[3]
        else:
            b = inits.get(n.input[1]) or list(values[n.input[1]].shape)
            trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
            k = b[-1] if n.op_type == "Gemm" and trans_b else b[-2]
            macs["matmul"] += float(np.prod(out)) * k
    total = sum(macs.values())
    return {**{f"macs_{k}": v for k, v in macs.items()}, "macs": total, "flops": 2 * total}


def jpeg(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def eyes(image: Image.Image, box) -> list[tuple[float, float, float]]:
    """(cx, cy, half-width) of each eye from dlib's 5 landmarks (0-1 one eye, 2-3 the other)."""
    dlib = require_dlib()
    predictor = dlib.shape_predictor(str(model_file(SHAPE_PREDICTOR)))  # type: ignore[attr-defined]
    b = box.detector_box
    rect = dlib.rectangle(round(b.x1), round(b.y1), round(b.x2) - 1, round(b.y2) - 1)  # type: ignore[attr-defined]
    shape = predictor(np.asarray(image), rect)
    pts = [(shape.part(i).x, shape.part(i).y) for i in range(4)]
    out = []
    for a, c in ((pts[0], pts[1]), (pts[2], pts[3])):
        half = max(abs(a[0] - c[0]), 1) * 0.9
        out.append(((a[0] + c[0]) / 2, (a[1] + c[1]) / 2, half))
    return out


def harder(image: Image.Image, face, how: str) -> tuple[Image.Image, float]:
    """The harder photo and the factor from the clean photo's pixels to its pixels."""
    match how:
        case "sunglasses":
            out = image.copy()
            draw = ImageDraw.Draw(out)
            for cx, cy, half in eyes(image, face):
                draw.ellipse(
                    (cx - half, cy - half * 0.75, cx + half, cy + half * 0.75), fill=(15, 15, 20)
                )
            return out, 1.0
        case "blur":
            a = np.asarray(image, dtype=np.float32)
            acc = np.zeros_like(a)
            for dx in range(15):
                acc += np.roll(a, dx - 7, axis=1)
            return jpeg(Image.fromarray((acc / 15).astype(np.uint8))), 1.0
        case "tiny":
            scale = min(1.0, 40.0 / face.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            return jpeg(image.resize(size, Image.Resampling.LANCZOS)), scale
    raise ValueError(how)


GROUP_LABELS = {
    # face number (largest first, default settings) -> identity, by eye (docs/parts/faces.md)
    "couple.jpg": {1: "person01"},
    "selfie-many-people.jpg": {3: "person01"},
}


class Event:
    """Event photos: photo key -> (identities present, face vectors)."""

    def __init__(self) -> None:
        self.people: dict[str, set[str]] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.source: dict[str, str] = {}

    def add(self, key: str, source: str, people: set[str], vectors: np.ndarray) -> None:
        self.people[key], self.vectors[key], self.source[key] = people, vectors, source


def load_event(
    descriptors: Path, data_dir: Path | None, event_variants: set[str] | None = None
) -> tuple[Event, dict[str, np.ndarray], dict]:
    z = np.load(descriptors)
    rows: dict[tuple[str, str], list[int]] = defaultdict(list)
    identity = {}
    for i, (p, v, who) in enumerate(zip(z["photo"], z["variant"], z["identity"], strict=True)):
        rows[(str(p), str(v))].append(i)
        identity[str(p)] = str(who)
    vec, size = z["vector"], z["size"]
    event = Event()
    queries: dict[str, np.ndarray] = {}
    for (photo, variant), ix in rows.items():
        if event_variants is None or variant in event_variants:
            event.add(f"{photo}:{variant}", photo, {identity[photo]}, vec[ix])
        if variant == "photo":
            queries[photo] = vec[max(ix, key=lambda i: size[i])]
    for photo, variant, faces_n in ((str(r[0]), str(r[1]), int(r[2])) for r in z["photo_faces"]):
        # a copy with no face found is an event photo the person is in, never returned
        if faces_n == 0 and (event_variants is None or variant in event_variants):
            event.people.setdefault(f"{photo}:{variant}", {identity.get(photo, "?")})
            event.source.setdefault(f"{photo}:{variant}", photo)
    groups = group_faces(data_dir) if data_dir else {}
    for name, (people, vectors) in groups.items():
        event.add(name, name, people, vectors)
    return event, queries, identity


def group_faces(data_dir: Path) -> dict[str, tuple[set[str], np.ndarray]]:
    from lookalike.faces.index import FaceIndex

    fi = FaceIndex(Path("/nonexistent"))
    out = {}
    for name, labelled in GROUP_LABELS.items():
        faces = fi.faces_in(str(data_dir / "deepface" / name))
        people = {labelled.get(f.number, f"stranger:{name}:{f.number}") for f in faces}
        out[name] = (people, np.stack([f.vector for f in faces]))
    return out


SIZE = 260


SIDE = SIZE / 0.875


GEM_P = 3.0


def engine_view(image: Image.Image) -> np.ndarray:
    """The engine's centre_crop preprocessing (lookalike/pipeline/embed.py), uint8 HWC."""
    w, h = image.size
    scale = SIDE / min(w, h)
    nw, nh = max(SIZE, round(w * scale)), max(SIZE, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - SIZE) // 2, (nh - SIZE) // 2
    return np.asarray(image.crop((left, top, left + SIZE, top + SIZE)), dtype=np.uint8)


def load_net(weights: Path, variant: str):  # type: ignore[no-untyped-def]
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(variant)
    state = torch.load(weights, map_location="cpu")
    state = {k: v.float() for k, v in state.items()}
    missing, _ = net.load_state_dict(state, strict=False)
    assert all(m.startswith("_fc") for m in missing), missing
    return net.eval()


def make_modules(torch):  # type: ignore[no-untyped-def]
    nn = torch.nn
    F = torch.nn.functional

    class Front(nn.Module):
        def __init__(self, net, upto: int) -> None:
            super().__init__()
            self.net, self.upto = net, upto

        def forward(self, x):
            n = self.net
            h = part(n, "_swish")(part(n, "_bn0")(part(n, "_conv_stem")(x)))
            for b in part(n, "_blocks")[: self.upto]:
                h = b(h)
            return h

    class Tail(nn.Module):
        """blocks[start:] + head conv + GeM (+ linear head) + L2; `frozen` blocks run first."""

        def __init__(self, net, cache: int, start: int, head_dim: int, train_head_conv: bool):
            super().__init__()
            self.frozen = nn.ModuleList(part(net, "_blocks")[cache:start])
            self.blocks = nn.ModuleList(part(net, "_blocks")[start:])
            self.conv_head, self.bn1, self.act = (
                part(net, "_conv_head"),
                part(net, "_bn1"),
                part(net, "_swish"),
            )
            self.head = nn.Linear(1280, head_dim, bias=False) if head_dim else None
            if self.head is not None:  # identity start when square: the pretrained space
                if head_dim == 1280:
                    nn.init.eye_(self.head.weight)
                else:
                    nn.init.orthogonal_(self.head.weight)
            for p in self.frozen.parameters():
                p.requires_grad_(False)
            for p in list(self.conv_head.parameters()) + list(self.bn1.parameters()):
                p.requires_grad_(train_head_conv)

        def forward(self, h):
            for b in self.frozen:
                h = b(h)
            for b in self.blocks:
                h = b(h)
            h = self.act(self.bn1(self.conv_head(h)))
            g = h.float().clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            if self.head is not None:
                g = self.head(g)
            return F.normalize(g, dim=1)

    return Front, Tail


def garment_masks(parts: np.ndarray) -> tuple[np.ndarray, ...]:
    p = parts.astype(np.float32) / 255.0
    return p[0], p[1], p[2], p[3]


def variant(name: str, image: Image.Image, box: np.ndarray, parts: np.ndarray) -> Image.Image:
    region = Box(*map(float, box[:4]))
    x1, y1, x2, y2 = pixels(region)
    rgb = np.asarray(image.crop((x1, y1, x2, y2)))
    skin, clothes, hair, sal = garment_masks(parts)
    opts = dict(o.split("=") if "=" in o else (o, "1") for o in name.split("+")[1:])
    base = name.split("+")[0]
    if base == "whole":
        return image
    if base == "crude":
        on = clothes >= 0.5
        rows = np.nonzero(on.any(axis=1))[0]
        alpha = on.astype(np.float32)
        if rows.size:
            cut = rows[0] + int(0.55 * (rows[-1] + 1 - rows[0]))
            alpha[cut:] = 0
        return cut_out(image, alpha, region, margin=0.0).flatten((255, 255, 255))
    alpha = np.clip(clothes - np.maximum(skin, hair), 0.0, 1.0)
    if "nosal" not in opts:
        alpha = alpha * sal
    split_mode = opts.get("split", "colour")
    if split_mode == "colour":  # the first version: part means only
        split = split_garments(alpha, rgb, min_gap=18.0, band=None)
    elif split_mode == "local":  # the library's default: part means, then a colour edge at the row
        split = split_garments(alpha, rgb, band_gap=float(opts.get("gap", 30)))
    elif split_mode == "none":
        split = None
    else:
        split = globals()[f"split_{split_mode}"](alpha, rgb)
    if split is None and "cap" in opts:  # no waistline seen: assume it at this share of the box
        split = int(float(opts["cap"]) * alpha.shape[0])
    if split is not None:
        alpha[split:] = 0.0
    thr = float(opts.get("thr", 0.5))
    alpha = np.where(alpha >= thr, alpha, 0.0).astype(np.float32)
    if "largest" in opts:
        alpha = largest_region(alpha)
    if "fill" in opts:
        image, alpha = fill_region(image, alpha, (x1, y1, x2, y2))
    if (alpha >= 0.5).mean() < 0.01:
        return image.crop((x1, y1, x2, y2))
    aspect = float(opts["aspect"]) if "aspect" in opts else None
    margin = float(opts.get("margin", 0.05))
    bg = tuple(int(v) for v in opts.get("bg", "255,255,255").split(","))
    return cut_out(image, alpha, region, margin=margin, aspect=aspect).flatten(bg)


def largest_region(alpha: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(alpha >= 0.5)
    if n <= 1:
        return alpha
    sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n + 1))
    keep = np.isin(lab, 1 + np.nonzero(sizes >= 0.15 * sizes.max())[0])
    return np.where(keep, alpha, 0.0).astype(np.float32)


def fill_region(image: Image.Image, alpha: np.ndarray, rect: tuple[int, int, int, int]):
    """Holes inside the garment's silhouette (an arm across it) painted over from the cloth around
    them (OpenCV Telea inpainting) and made opaque."""
    import cv2
    from scipy import ndimage

    on = alpha >= 0.5
    holes = ndimage.binary_fill_holes(on) & ~on
    if not holes.any():
        return image, alpha
    x1, y1, x2, y2 = rect
    crop = np.asarray(image.crop(rect)).copy()
    painted = cv2.inpaint(crop, holes.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    full = np.asarray(image).copy()
    full[y1:y2, x1:x2] = painted
    alpha = np.where(holes, 1.0, alpha).astype(np.float32)
    return Image.fromarray(full), alpha


# ---------------------------------------------------------------------------------------------
# Face verification metrics (Face verification metrics and threshold calibration: pure functions over distances)
#
#
# A pair of faces is *accepted* as the same person when its distance is <= the threshold.
# TPR = accepted same-person pairs / same-person pairs; FPR = accepted different-person pairs /
# different-person pairs.
# ---------------------------------------------------------------------------------------------


def pair_distances(
    vectors: np.ndarray, labels: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances of every unordered pair i < j: (same-label pairs, different-label pairs).

    vectors: (N, D) L2-normalised rows; labels: N identities. Rows that are all NaN (no face
    found) are left out of every pair.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if len(v) != len(labels):
        raise ValueError(f"{len(v)} vectors but {len(labels)} labels")
    ok = np.asarray(~np.isnan(v).any(axis=1), dtype=bool)
    v = v[ok]
    lab = np.array([str(x) for x, keep in zip(labels, ok, strict=True) if keep])
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (v @ v.T)))
    i, j = np.triu_indices(len(v), k=1)
    same = lab[i] == lab[j]
    return d[i, j][same], d[i, j][~same]


def rates(positives: np.ndarray, negatives: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) when pairs at distance <= `threshold` are accepted."""
    pos, neg = np.asarray(positives), np.asarray(negatives)
    tpr = float(np.mean(pos <= threshold)) if len(pos) else 0.0
    fpr = float(np.mean(neg <= threshold)) if len(neg) else 0.0
    return tpr, fpr


def threshold_at_fpr(negatives: np.ndarray, fpr: float) -> float:
    """The largest threshold whose FPR on `negatives` is at most `fpr`.

    With n negatives at most floor(fpr * n) of them may be accepted; ties are never split, so
    the threshold stops just below the first negative that would exceed the budget.
    Example: negatives [0.2, 0.4, 0.4, 0.9], fpr 0.5 -> 2 allowed, but both 0.4s come together,
    so the threshold is just below 0.4 (FPR 0.25).
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    neg = np.sort(np.asarray(negatives, dtype=np.float64))
    if len(neg) == 0:
        raise ValueError("threshold_at_fpr needs at least one different-person pair")
    allowed = int(np.floor(fpr * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float("inf")
    return float(np.nextafter(neg[allowed], -np.inf))


def tpr_at_fpr(positives: np.ndarray, negatives: np.ndarray, fpr: float) -> tuple[float, float]:
    """(TPR, threshold) at the largest threshold whose FPR is at most `fpr`."""
    t = threshold_at_fpr(negatives, fpr)
    return rates(positives, negatives, t)[0], t


def best_accuracy_threshold(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) maximising (TPR + 1 - FPR) / 2 over the observed distances."""
    pos, neg = np.asarray(positives), np.asarray(negatives)
    best = (0.0, -1.0)
    for t in np.unique(np.concatenate([pos, neg])):
        tpr, fpr = rates(pos, neg, float(t))
        acc = (tpr + 1.0 - fpr) / 2.0
        if acc > best[1]:
            best = (float(t), acc)
    return best


def search_average_precision(
    distances: Sequence[float] | np.ndarray, relevant: Sequence[bool] | np.ndarray, cut: float
) -> float:
    """Average precision of a search that returns the photos at distance <= `cut`, nearest first.

    distances / relevant: one entry per photo searched (inf for a photo with no face found).
    A relevant photo that is not returned counts as never found: AP = (sum over the relevant
    photos returned of the precision at their rank) / (number of relevant photos). 0 when there
    is no relevant photo. Ties keep the given order.
    Example: distances [0.2, 0.3, 0.5], relevant [True, False, True], cut 0.4 -> only the first
    two are returned; AP = (1/1) / 2 = 0.5; with cut 0.6, AP = (1/1 + 2/3) / 2 = 0.833.
    """
    d = np.asarray(distances, dtype=np.float64)
    rel = np.asarray(relevant, dtype=bool)
    if len(d) != len(rel):
        raise ValueError(f"{len(d)} distances but {len(rel)} relevance flags")
    total = int(rel.sum())
    if total == 0:
        return 0.0
    order = np.argsort(d, kind="stable")
    returned = order[d[order] <= cut]
    hits = rel[returned]
    if not hits.any():
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    precision = np.arange(1, len(ranks) + 1) / ranks
    return float(precision.sum() / total)
