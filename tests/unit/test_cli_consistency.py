"""The CLI's shapes and spellings agree with one another (issue 17): one similarity scale, one
JSON shape for `search` with or without `--all-objects`, `--mirror` / `--models-mirror` both
accepted, `delete --json`, `stats` counting bytes on disk, `faces forget --person` asking first,
`tune --pairs` summarised. In-process, on an index of generated photos and a fake embedder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lookalike.api import cli, cli_catalogue, cli_index, cli_tune
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.store.qdrant_common import folder_bytes
from tests.fakes import TinyEmbedder, noisy_copy, small_catalogue

runner = CliRunner()


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", tta="none")
    with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine:
        engine.index(small_catalogue(tmp_path, n_items=4))

    def fake_engine(index: Path | None, *args: Any, **kwargs: Any) -> Engine:
        return Engine(index or settings.index, settings=settings, image_embedder=TinyEmbedder())

    for module in (cli, cli_index, cli_catalogue, cli_tune):
        monkeypatch.setattr(module, "open_engine", fake_engine)
    return settings.index


def _json(*args: str) -> Any:
    out = runner.invoke(cli.app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_search_json_one_scale_and_one_shape(index: Path, tmp_path: Path) -> None:
    query = noisy_copy(tmp_path / "img" / "p2_0.jpg", tmp_path / "q.jpg", seed=3)
    plain = _json("search", str(query), "--index", str(index), "-k", "2")
    top = plain["results"][0]
    # similarity in percent, as over HTTP; the raw cosine stays in `score`
    assert top["similarity"] == round(max(0.0, top["score"]) * 100, 1) and top["similarity"] > 1
    objects = _json("search", str(query), "--index", str(index), "-k", "2", "--all-objects")
    assert isinstance(objects, dict) and set(plain) <= set(objects)
    assert objects["results"] == plain["results"]  # the whole photo: the same scores
    assert [o["results"] for o in objects["objects"]] == [plain["results"]]


def test_delete_json_names_what_was_not_there(index: Path) -> None:
    assert _json("delete", "p1", "nope", "p1", "--index", str(index)) == {
        "removed": ["p1"],
        "not_found": ["nope"],
    }
    assert _json("stats", "--index", str(index))["items"] == 3


def test_stats_counts_bytes_on_disk_not_sparse_sizes(index: Path, tmp_path: Path) -> None:
    sparse = tmp_path / "sparse" / "page_0.dat"
    sparse.parent.mkdir()
    with open(sparse, "wb") as fh:  # as Qdrant preallocates its pages: 32 MB, nearly all holes
        fh.truncate(32 * 2**20)
        fh.write(b"x" * 10)
    assert folder_bytes(sparse.parent) < 2**20
    disk = _json("stats", "--index", str(index))["disk_bytes"]
    apparent = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
    assert 0 < disk <= apparent


def test_both_spellings_of_the_mirror_option(tmp_path: Path) -> None:
    for args in (["models", "list"], ["search", "--text", "x", "--index", str(tmp_path / "no")]):
        for flag in ("--mirror", "--models-mirror"):
            out = runner.invoke(cli.app, [*args, flag, str(tmp_path)])
            assert "No such option" not in out.output, (args, flag, out.output)


def test_forgetting_a_person_asks_first(tmp_path: Path) -> None:
    out = runner.invoke(cli.app, ["faces", "forget", "--person", "3", "--index", str(tmp_path)])
    assert out.exit_code == 2 and "--yes" in out.output
    out = runner.invoke(
        cli.app, ["faces", "forget", "--person", "3", "--index", str(tmp_path)], input="n\n"
    )
    assert out.exit_code != 0


def test_tune_with_pairs_prints_a_summary(tmp_path: Path) -> None:
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", tta="none")
    manifest = small_catalogue(tmp_path, n_items=6)
    pairs = [
        (str(noisy_copy(tmp_path / "img" / f"p{i}_0.jpg", tmp_path / f"w{i}.jpg", i)), f"p{i}")
        for i in range(6)
    ]
    with Engine(settings.index, settings=settings, image_embedder=TinyEmbedder()) as engine:
        engine.index(manifest)
        outcome = engine.tune(pairs=pairs, dims=(8,), lambdas=(1.0,), force=True)
    lines = cli_tune.tune_summary(outcome, pairs=len(pairs))
    assert lines[0].startswith("learned from 6 pairs") and "held-out items" in lines[0]
    assert any("R@1" in line for line in lines[1:])


def test_box_in_pixels_or_fractions_as_over_http(index: Path, tmp_path: Path) -> None:
    query = noisy_copy(tmp_path / "img" / "p2_0.jpg", tmp_path / "q.jpg", seed=3)  # 64 x 48
    px = _json("search", str(query), "--index", str(index), "--box", "32,0,64,48")
    frac = _json(
        "search", str(query), "--index", str(index), "--box", "0.5,0,1,1", "--box-units", "fraction"
    )
    assert frac["results"] == px["results"] and frac["query_object"]["box"] == [32, 0, 64, 48]
    out = runner.invoke(
        cli.app, ["search", str(query), "--index", str(index), "--box", "0,0,2,1",
                  "--box-units", "fraction"],
    )  # fmt: skip
    assert out.exit_code == 2 and "0 to 1" in out.output
