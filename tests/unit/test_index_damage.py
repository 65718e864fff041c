"""A damaged index is detected (cheaply at open, fully by `verify`), reported as a typed error, and
rebuilt from the catalogue by `index --repair`: never wrong answers without a word (issue 14)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lookalike.store.edge as edge_module
from lookalike.api.cli import app as cli
from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.engine.integrity import SEAL_FILE, repair_manifest
from lookalike.errors import IndexDamagedError
from tests.fakes import TinyEmbedder, small_catalogue


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Path]:
    """12 items x 4 photos, optimised into an HNSW segment (`matrix.dat`, graph links) as large
    indexes are: Qdrant's graph threshold is lowered so that tiny data gets one."""
    monkeypatch.setattr(
        edge_module,
        "EdgeParams",
        functools.partial(edge_module.EdgeParams, indexing_threshold_kb=1),
    )
    catalogue = small_catalogue(tmp_path / "cat", n_items=12, views=4)
    settings = Settings(
        index=tmp_path / "index", cache_dir=tmp_path / "cache", batch_size=8, tta="none",
        optimize_threshold=1,
    )  # fmt: skip
    with _engine(settings) as engine:
        engine.index(catalogue)
        assert engine.store.info()["indexed_vectors"] > 0  # type: ignore[attr-defined]
    return settings, catalogue


def _engine(settings: Settings) -> Engine:
    return Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())


def _answers(settings: Settings) -> list[list[str]]:
    """Every item's neighbours in both modes: 24 result lists."""
    with _engine(settings) as engine:
        out = []
        for i in range(12):
            vec = engine.item_vector(f"p{i}")
            for mode in ("views", "centroid"):
                out.append([h.item_id for h in engine.search_vector(vec, k=5, mode=mode)])  # type: ignore[arg-type]
        return out


def _largest_vector_file(index: Path) -> Path:
    files = [p for p in (index / "shard").rglob("matrix.dat")]
    assert files, "no optimised segment"
    return max(files, key=lambda p: p.stat().st_size)


def _zero_block(path: Path, keep_time: bool = False) -> None:
    st = path.stat()
    size = st.st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 3)
        fh.write(b"\0" * min(4096, size // 3))
    if keep_time:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def test_a_clean_index_opens_and_verifies_after_many_opens(built: tuple[Settings, Path]) -> None:
    settings, catalogue = built
    first = _answers(settings)
    assert _answers(settings) == first  # opening, searching, closing changed nothing sealed
    with _engine(settings) as engine:
        report = engine.verify()
        assert report.ok, report.damage
        assert report.state == "sealed" and report.files_checked > 5
        assert report.points_checked == 12 * 4 + 12
        again = engine.index(catalogue)  # a rerun re-seals; still clean
        assert again.repaired == ()
    with _engine(settings) as engine:
        assert engine.verify().ok
    out = CliRunner().invoke(cli, ["verify", "--index", str(settings.index)])
    assert out.exit_code == 0 and "60 points" in out.output, out.output


def test_a_delete_then_many_opens_is_not_damage(
    built: tuple[Settings, Path], tmp_path: Path
) -> None:
    """A delete leaves tracker journals that the next open of the shard applies, rewriting the
    segment's id-tracker versions: opening again must not call that damage (an optimised index
    and a small one whose points are all in the appendable segment)."""
    small = Settings(index=tmp_path / "small", cache_dir=tmp_path / "cache", tta="none")
    with _engine(small) as engine:
        engine.index(small_catalogue(tmp_path / "cat-small", n_items=3, views=2))
    for settings in (built[0], small):
        with _engine(settings) as engine:
            engine.delete(["p0"])
        for _ in range(3):
            with _engine(settings) as engine:
                assert engine.store.count() > 0
        with _engine(settings) as engine:
            assert engine.verify().ok, engine.verify().damage


def test_zeroed_block_in_the_largest_vector_file(built: tuple[Settings, Path]) -> None:
    settings, catalogue = built
    before = _answers(settings)
    matrix = _largest_vector_file(settings.index)
    _zero_block(matrix)
    with _engine(settings) as engine, pytest.raises(IndexDamagedError) as err:
        engine.stats()
    assert "matrix.dat" in str(err.value) and "--repair" in str(err.value)
    # The CLI: a clear message and exit code 8, no traceback.
    out = CliRunner().invoke(cli, ["stats", "--index", str(settings.index)])
    assert out.exit_code == 8 and "damaged" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(cli, ["verify", "--index", str(settings.index), "--json"])
    assert out.exit_code == 8, out.output
    report = json.loads(out.stdout)
    assert not report["ok"] and any("matrix.dat" in d for d in report["damage"])
    # A rerun without --repair refuses to write into it; --repair rebuilds it from the catalogue.
    with _engine(settings) as engine, pytest.raises(IndexDamagedError):
        engine.index(catalogue)
    with _engine(settings) as engine:
        summary = engine.index(catalogue, repair=True)
        assert any("matrix.dat" in r for r in summary.repaired)
        assert summary.images_embedded == 48  # rebuilt from the catalogue
        assert engine.verify().ok
    assert _answers(settings) == before


def test_damage_that_keeps_size_and_time_is_found_by_verify(built: tuple[Settings, Path]) -> None:
    settings, catalogue = built
    _zero_block(_largest_vector_file(settings.index), keep_time=True)
    with _engine(settings) as engine:
        report = engine.verify()
    assert not report.ok
    found = " ".join(str(d) for d in report.damage)
    assert "matrix.dat: its bytes changed" in found
    assert "vector length 0.0" in found  # the vectors read back show it too
    with _engine(settings) as engine:
        assert engine.index(catalogue, repair=True).repaired
        assert engine.verify().ok


@pytest.mark.parametrize("target", ["matrix.dat", "payload_storage/page_0.dat"])
def test_truncated_file(built: tuple[Settings, Path], target: str) -> None:
    settings, catalogue = built
    before = _answers(settings)
    path = max(
        (p for p in (settings.index / "shard").rglob("*") if p.as_posix().endswith(target)),
        key=lambda p: p.stat().st_size,
    )
    _truncate(path)
    with _engine(settings) as engine, pytest.raises(IndexDamagedError, match="truncated"):
        engine.search_vector(np.ones(48, np.float32), k=3)
    with _engine(settings) as engine:
        assert engine.index(catalogue, repair=True).repaired
    assert _answers(settings) == before


def test_truncated_or_garbled_manifest(built: tuple[Settings, Path]) -> None:
    settings, catalogue = built
    before = _answers(settings)
    manifest = settings.index / "lookalike.json"
    good = manifest.read_text()
    for damaged in (good[: len(good) // 2], "\x00" * 40, "[1, 2]", '{"format": 1}'):
        manifest.write_text(damaged)
        with pytest.raises(IndexDamagedError, match=r"lookalike\.json is damaged"):
            _engine(settings)
        out = CliRunner().invoke(cli, ["stats", "--index", str(settings.index)])
        assert out.exit_code == 8 and "Traceback" not in out.output, out.output
        # --repair puts back the copy the last write sealed.
        assert (
            repair_manifest(settings.index) == "lookalike.json: restored from the last write's copy"
        )
        assert json.loads(manifest.read_text()) == json.loads(good)
    assert _answers(settings) == before
    # No usable copy either: the index is rebuilt from the catalogue.
    manifest.write_text(good[:10])
    (settings.index / SEAL_FILE).write_text("{")
    assert "rebuilt" in str(repair_manifest(settings.index))
    with _engine(settings) as engine:
        assert engine.index(catalogue, repair=True).images_embedded == 48
    assert _answers(settings) == before


def test_an_interrupted_write_is_not_called_damage(built: tuple[Settings, Path]) -> None:
    """While a write runs (or after it was killed) the files legitimately differ from the seal:
    opening is allowed (the write-ahead log keeps the shard consistent) and a rerun re-seals."""
    settings, catalogue = built
    seal = json.loads((settings.index / SEAL_FILE).read_text())
    (settings.index / SEAL_FILE).write_text(json.dumps({**seal, "state": "writing"}))
    _zero_block(_largest_vector_file(settings.index))  # as a killed optimisation might leave it
    with _engine(settings) as engine:
        engine.stats()
        engine.index(catalogue)
    assert json.loads((settings.index / SEAL_FILE).read_text())["state"] == "sealed"


def test_a_write_that_fails_before_writing_keeps_the_check(
    built: tuple[Settings, Path], tmp_path: Path
) -> None:
    from lookalike.errors import IndexMismatchError

    settings, _ = built
    other = Engine(settings.index, settings=settings, image_embedder=_Other())
    with other, pytest.raises(IndexMismatchError):
        other.index(small_catalogue(tmp_path / "cat2", n_items=1, views=1))
    assert json.loads((settings.index / SEAL_FILE).read_text())["state"] == "sealed"
    _zero_block(_largest_vector_file(settings.index))
    with _engine(settings) as engine, pytest.raises(IndexDamagedError):
        engine.stats()


class _Other(TinyEmbedder):
    name = "another-embedder"


def test_repair_leaves_a_shard_another_process_holds(built: tuple[Settings, Path]) -> None:
    """A server holding the shard makes it unopenable here: that is no damage to set aside."""
    from lookalike.errors import StoreError
    from lookalike.store.edge import EdgeStore

    settings, catalogue = built
    held = EdgeStore(settings.index / "shard", {"image": 48})
    try:
        with _engine(settings) as engine, pytest.raises(StoreError, match="cannot open"):
            engine.index(catalogue, repair=True)
        assert not (settings.index / "shard.damaged").exists()
        assert held.count() == 60
    finally:
        held.close()
    with _engine(settings) as engine:
        assert engine.verify().ok


def test_a_copied_index_is_hashed_once_not_at_every_open(
    built: tuple[Settings, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cp -r` gives every file a new time: the first open hashes them (same bytes: no damage)
    and records the new times, so later opens cost a `stat` per file again."""
    import shutil

    import lookalike.engine.integrity as integrity

    settings, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(settings.index, copy)  # copies times too: make them new, as `cp -r` does
    for path in integrity.data_files(copy / "shard"):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    hashed: list[Path] = []
    real = integrity.file_digest
    monkeypatch.setattr(integrity, "file_digest", lambda p: hashed.append(p) or real(p))
    integrity.check_open(copy)
    assert len(hashed) > 5
    hashed.clear()
    integrity.check_open(copy)
    assert hashed == []
    _zero_block(_largest_vector_file(copy))  # and damage is still found
    with pytest.raises(IndexDamagedError):
        integrity.check_open(copy)
