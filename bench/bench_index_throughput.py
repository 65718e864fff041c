"""End-to-end indexing throughput: `lookalike index` on the grocery catalogue, before and after.

    .venv/bin/python bench/bench_index_throughput.py [--rounds 3] [--before ecff954]
        [--variants before,after,after-int8] [--out /work/cache/ray/index_throughput.json]

Each variant is one real `lookalike index CATALOGUE --index FRESH --json` process (a fresh index
folder every run, so every photo is decoded and embedded): `before` runs the package as it was at
git revision `--before` (extracted with `git archive`, nothing in the checkout changes), the
others run this checkout. Variants run one after the other in each round, their order rotated
from round to round, so a busy spell of the (shared) machine hits each about equally; the report
gives per-variant medians and the ratios of the medians.

images/s = photos embedded / the engine's own seconds (`IndexSummary.seconds`: model loading,
decoding, embedding, writing, centroids); `wall_s` adds the process start and imports.

Then, in the same process, the machine's limit: numpy sgemm GFLOP/s and the embedder's FLOPs per
image counted from its ONNX graph (`bench/bench_throughput.py`), so achieved GFLOP/s (images/s x
FLOPs per image) can be compared with what the machine's matrix multiply reaches in the same
minutes. The int8 model counts the same (float-equivalent) FLOPs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (tree: "before" or "after", extra CLI arguments, extra environment)
VARIANTS: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "before": ("before", [], {}),
    "after": ("after", [], {}),
    "after-spin": ("after", [], {"LOOKALIKE_ORT_SPINNING": "true"}),
    "after-nospin": ("after", [], {"LOOKALIKE_ORT_SPINNING": "false"}),
    "after-int8": ("after", ["--embedder", "efficientnet-lite2-int8"], {}),
}


def extract_tree(rev: str, dest: Path) -> Path:
    """The `lookalike` package as of git revision `rev`, under `dest` (read from git, no checkout)."""
    if (dest / "lookalike" / "engine.py").is_file():
        return dest
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "lookalike"],
        check=True,
        capture_output=True,
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_index(tree: Path, catalogue: Path, index: Path, args: list[str], env: dict[str, str]):
    """One `lookalike index` process on a fresh `index`; its summary, wall seconds, load average."""
    import shutil

    shutil.rmtree(index, ignore_errors=True)
    full_env = {**os.environ, "PYTHONPATH": str(tree), **env}
    load = loadavg()
    started = time.perf_counter()
    command = [sys.executable, "-m", "lookalike.api.cli", "index", str(catalogue)]
    done = subprocess.run(
        [*command, "--index", str(index), "--json", *args],
        env=full_env,
        capture_output=True,
        text=True,
        cwd=tree,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"index failed ({tree}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    shutil.rmtree(index, ignore_errors=True)
    return {
        "images_embedded": summary["images_embedded"],
        "skipped": len(summary["skipped"]),
        "seconds": summary["seconds"],
        "images_per_s": summary["images_embedded"] / summary["seconds"],
        "wall_s": wall,
        "load_before": load,
        "load_after": loadavg(),
    }


def machine_limit(embedder: str) -> dict[str, float]:
    """sgemm GFLOP/s (all cores) and FLOPs per image of `embedder` at its input size."""
    from common import graph_flops, sgemm_gflops

    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.models.catalog import get_spec

    settings = Settings()
    spec = get_spec(embedder)
    store = wiring.model_store(settings)
    model = store.path(spec.name) / spec.files[0].filename
    assert spec.preprocess is not None
    flops = graph_flops(model, spec.preprocess.size)
    return {"gflop_per_image": flops["flops"] / 1e9, "sgemm_gflops": sgemm_gflops()}


def draft_timings(folder: Path, sizes: tuple[int | None, ...] = (None, 1024, 298), reps: int = 3):
    """Median ms to decode each JPEG under `folder` at each draft size (None: full size), sizes
    alternated within each repetition; and the decoded pixel counts."""
    from lookalike.pipeline.decode import DecodeLimits, decode_image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    blobs = [(str(p), p.read_bytes()) for p in files]
    times: dict[str, list[float]] = {str(s): [] for s in sizes}
    pixels: dict[str, int] = {str(s): 0 for s in sizes}
    for rep in range(reps):
        for size in sizes:
            limits = DecodeLimits(draft_size=size)
            started = time.perf_counter()
            for name, data in blobs:
                image = decode_image(data, name, limits)
                if rep == 0:
                    pixels[str(size)] += image.width * image.height
            times[str(size)].append((time.perf_counter() - started) * 1e3 / len(blobs))
    return {
        "photos": len(blobs),
        "source_megapixels_median": statistics.median(
            _jpeg_pixels(data) / 1e6 for _, data in blobs
        ),
        "ms_per_photo": {k: statistics.median(v) for k, v in times.items()},
        "decoded_megapixels_mean": {k: v / len(blobs) / 1e6 for k, v in pixels.items()},
    }


def _jpeg_pixels(data: bytes) -> int:
    from PIL import Image

    with Image.open(BytesIO(data)) as im:
        return im.width * im.height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("LOOKALIKE_DATA_DIR", "")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", default="ecff954", help="git revision of the `before` package")
    ap.add_argument("--variants", default="before,after,after-int8")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-index")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "index_throughput.json")
    ap.add_argument(
        "--draft", type=Path, help="only time JPEG decoding at draft sizes on this photo folder"
    )
    args = ap.parse_args()
    if args.draft is not None:
        print(json.dumps(draft_timings(args.draft), indent=2))
        return

    from lookalike.catalog.sample import prepare_grocery

    names = [v for v in args.variants.split(",") if v]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    files = prepare_grocery(args.data / "grocery", args.work / "sample")
    trees = {"after": ROOT, "before": extract_tree(args.before, args.work / f"tree-{args.before}")}
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            tree, extra, env = VARIANTS[name]
            result = run_index(trees[tree], files.catalogue, args.work / "index", extra, env)
            runs[name].append(result)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"partial": True, "runs": runs}, indent=2))
            print(
                f"round {r + 1} {name:13s} {result['images_per_s']:6.1f} images/s "
                f"({result['images_embedded']} in {result['seconds']:.1f} s, wall "
                f"{result['wall_s']:.1f} s, load {result['load_before']:.1f})",
                flush=True,
            )
    limit = machine_limit("efficientnet-lite2")
    report: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), **limit},
        "before_rev": args.before,
        "catalogue": str(files.catalogue),
        "runs": runs,
        "median_images_per_s": {
            n: statistics.median(x["images_per_s"] for x in runs[n]) for n in names
        },
    }
    medians = report["median_images_per_s"]
    assert isinstance(medians, dict)
    print(
        f"\nsgemm {limit['sgemm_gflops']:.1f} GFLOP/s; {limit['gflop_per_image']:.2f} GFLOP/image"
    )
    for n in names:
        achieved = medians[n] * limit["gflop_per_image"]
        ratio = medians[n] / medians[names[0]]
        print(
            f"{n:13s} median {medians[n]:6.1f} images/s = {achieved:5.1f} GFLOP/s "
            f"({achieved / limit['sgemm_gflops']:.0%} of sgemm), x{ratio:.2f} vs {names[0]}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
