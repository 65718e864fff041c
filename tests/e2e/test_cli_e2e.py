"""The real CLI, in subprocesses, on real grocery photos with the real default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.api.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=600,
    )


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from lookalike.api.cli import app; "
        "heavy = {'numpy', 'onnxruntime', 'qdrant_edge', 'PIL', 'torch'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert _cli("--help").returncode == 0


def _small_grocery(
    data_dir: Path, dest: Path, products: int = 8, photos: int = 6
) -> tuple[Path, list]:
    from lookalike.catalog.sample import prepare_grocery

    files = prepare_grocery(data_dir / "grocery", dest)
    rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()]
    chosen = rows[:: max(1, len(rows) // products)][:products]
    for row in chosen:
        row["images"] = row["images"][:photos]
    manifest = dest / "small.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    ids = {r["id"] for r in chosen}
    import csv

    with open(files.queries) as fh:
        queries = [r for r in csv.DictReader(fh) if r["item_id"] in ids]
    return manifest, queries


def test_index_search_and_eval_through_the_cli(
    tmp_path: Path, data_dir: Path, lite2_dir: Path
) -> None:
    manifest, queries = _small_grocery(data_dir, tmp_path / "sample")
    index = tmp_path / "index"
    out = _cli("index", str(manifest), "--index", str(index), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["items"] == 8 and summary["images_embedded"] == 48 and not summary["skipped"]

    again = json.loads(_cli("index", str(manifest), "--index", str(index), "--json").stdout)
    assert again["images_embedded"] == 0 and again["images_unchanged"] == 48

    query = queries[0]
    out = _cli("search", query["image"], "--index", str(index), "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    ids = [r["item_id"] for r in result["results"]]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert query["item_id"] in ids

    category = json.loads(manifest.read_text().splitlines()[0])["category"]
    out = _cli(
        "search", query["image"], "--index", str(index), "-k", "8", "--json",
        "--where", f"category = '{category}'",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    cats = {r["fields"]["category"] for r in json.loads(out.stdout)["results"]}
    assert cats == {category}

    title = json.loads(manifest.read_text().splitlines()[2])["title"]
    out = _cli("search", "--text", title, "--index", str(index), "--json")
    assert out.returncode == 0, out.stderr
    texted = json.loads(out.stdout)
    assert texted["score"] == "bm25" and texted["results"][0]["fields"]["title"] == title

    out = _cli("search", query["image"], "--text", title, "--index", str(index), "--json")
    assert json.loads(out.stdout)["score"] == "rrf"

    first = ids[0]
    out = _cli("similar", first, "--index", str(index), "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    assert first not in [r["item_id"] for r in json.loads(out.stdout)["results"]]

    out = _cli("facets", "category", "colours", "--index", str(index), "--json")
    counts = json.loads(out.stdout)
    assert sum(v["count"] for v in counts["category"]) == 8 and counts["colours"]

    out = _cli(
        "outliers", "--index", str(index), "--top", "3", "--html", str(tmp_path / "odd"), "--json"
    )
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 3
    assert (tmp_path / "odd" / "index.html").exists()
    out = _cli("duplicates", "--index", str(index), "--json")
    assert out.returncode == 0 and isinstance(json.loads(out.stdout), list)

    qfile = tmp_path / "queries.csv"
    qfile.write_text("image,item_id\n" + "".join(f"{q['image']},{q['item_id']}\n" for q in queries))
    report = tmp_path / "report"
    out = _cli(
        "eval", "--catalogue", str(manifest), "--queries", str(qfile), "--index", str(index),
        "--report", str(report), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert set(metrics) == {"views", "centroid"}
    for m in metrics.values():
        assert m["queries"] == len(queries)
        assert 0.5 <= m["recall@3"] <= m["recall@10"] <= 1.0
    assert (report / "index.html").exists()


def test_eval_without_index_leaves_the_default_index_alone(
    tmp_path: Path, data_dir: Path, lite2_dir: Path
) -> None:
    manifest, queries = _small_grocery(data_dir, tmp_path / "sample", products=2, photos=2)
    qfile = tmp_path / "queries.csv"
    qfile.write_text(
        "image,item_id\n" + "".join(f"{q['image']},{q['item_id']}\n" for q in queries[:4])
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_INDEX"}
    out = subprocess.run(
        [sys.executable, "-m", "lookalike.api.cli", "eval", "--catalogue", str(manifest),
         "--queries", str(qfile), "--json"],
        capture_output=True, text=True, cwd=work, env={**env, "PYTHONPATH": str(ROOT)}, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["centroid"]["queries"] == 4
    assert list(work.iterdir()) == []  # no ./lookalike-index


def test_cli_errors_are_clear(tmp_path: Path, data_dir: Path) -> None:
    out = _cli("search", str(tmp_path / "nope.jpg"), "--index", str(tmp_path / "none"))
    assert out.returncode != 0
    assert "no index" in out.stderr and "Traceback" not in out.stderr
    index = tmp_path / "index"
    (tmp_path / "empty").mkdir()
    out = _cli("index", str(tmp_path / "empty"), "--index", str(index))  # an empty catalogue
    assert out.returncode == 4 and "no items in" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not index.exists()
    one = data_dir / "grocery" / "iconic-images-and-descriptions" / "Fruit" / "Apple" / "Pink-Lady"
    (tmp_path / "shop" / "pink-lady").mkdir(parents=True)
    (tmp_path / "shop" / "pink-lady" / "a.jpg").write_bytes(
        (one / "Pink-Lady_Iconic.jpg").read_bytes()
    )
    assert _cli("index", str(tmp_path / "shop"), "--index", str(index)).returncode == 0
    out = _cli("search", str(tmp_path / "nope.jpg"), "--index", str(index))
    assert out.returncode == 3 and "nope.jpg" in out.stderr and "Traceback" not in out.stderr
