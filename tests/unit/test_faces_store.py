"""Faces follow `--store`: dlib's real models on a few real photos, indexed, searched and forgotten
in the `memory` and `qdrant+local://` stores; faces.json records the store and an existing face
index refuses another one. Missing data or models FAIL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.errors import IndexMismatchError
from lookalike.faces.index import FaceIndex
from lookalike.faces.settings import FaceSettings

PHOTOS = {"person01": ("img2.jpg", "img4.jpg"), "person02": ("img3.jpg",)}
"""Two photos of person01 (the selfie is img1.jpg, not indexed) and one of person02."""


@pytest.fixture(scope="module")
def album(deepface: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("album")
    for who, files in PHOTOS.items():
        for name in files:
            shutil.copy(deepface / name, root / f"{who}-{name}")
    return root


def _spec(kind: str, tmp_path: Path) -> str:
    return "memory" if kind == "memory" else f"qdrant+local://{tmp_path / 'qdrant'}#shop"


def _names(fi: FaceIndex, selfie: Path) -> list[str]:
    return [Path(m.photo).name for m in fi.search(selfie).matches]


@pytest.mark.parametrize("kind", ["memory", "qdrant-local"])
def test_index_search_forget_on_another_store(
    kind: str, album: Path, deepface: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "idx"
    selfie = deepface / "img1.jpg"
    with FaceIndex(index_dir, store_spec=_spec(kind, tmp_path)) as fi:
        summary = fi.index(album)
        assert summary.photos_indexed == 3 and summary.faces_written == 3
        assert fi.store_record()["kind"] == kind
        assert not (index_dir / "faces").exists()  # nothing in the embedded shard's folder
        recorded = json.loads((index_dir / "faces.json").read_text())["store"]
        assert recorded["kind"] == kind
        if kind == "qdrant-local":
            assert recorded["collection"] == "shop-faces"  # beside the product collection
            assert fi.store.disk_bytes() > 0
        assert sorted(_names(fi, selfie)) == ["person01-img2.jpg", "person01-img4.jpg"]

        gone = fi.faces(str(album / "person01-img2.jpg"))
        assert len(gone) == 1
        done = fi.forget_photo(album / "person01-img2.jpg")
        assert done.faces_deleted == 1
        assert _names(fi, selfie) == ["person01-img4.jpg"]
        # The point is deleted from the store, vector and all (the guarantee on these stores).
        assert fi.store.retrieve([gone[0].face_id], with_vectors=True) == []
        ids = {r.id for r in fi.store.scroll(with_vectors=True)}
        assert gone[0].face_id not in ids
        # Indexing again does not bring the forgotten face back.
        assert fi.index(album).photos_unchanged == 3
        assert fi.faces(str(album / "person01-img2.jpg")) == []

        people = fi.clusters()
        person02 = next(p for p in people if any("person02" in x for x in p.photos))
        assert fi.forget_person(person02.person_id).faces_deleted == 1
        assert {f.photo for f in fi.faces()} == {str(album / "person01-img4.jpg")}

    if kind == "qdrant-local":  # persisted: reopened from what faces.json records, no spec given
        with FaceIndex(index_dir) as fi:
            assert fi.store_record()["collection"] == "shop-faces"
            assert _names(fi, selfie) == ["person01-img4.jpg"]


def test_existing_face_index_refuses_another_store(album: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    with FaceIndex(index_dir) as fi:  # the default: edge, recorded by leaving the store out
        fi.index([])
        assert "store" not in json.loads((index_dir / "faces.json").read_text())
        assert fi.store_record()["kind"] == "edge"
    for spec in ("memory", f"qdrant+local://{tmp_path / 'q'}"):
        with (
            FaceIndex(index_dir, store_spec=spec) as fi,
            pytest.raises(IndexMismatchError, match="keeps its faces in edge"),
        ):
            fi.index(album)
    with FaceIndex(index_dir, store_spec="edge") as fi:  # the same store, named: fine
        assert fi.index([]).photos_seen == 0

    other = tmp_path / "other"
    with FaceIndex(other, store_spec="memory") as fi:
        fi.index([])
    with (
        FaceIndex(other, store_spec="edge") as fi,
        pytest.raises(IndexMismatchError, match="keeps its faces in memory, not edge"),
    ):
        fi.faces()


def test_env_store_does_not_move_faces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOOKALIKE_STORE", "memory")
    with FaceIndex(tmp_path / "idx", face_settings=FaceSettings()) as fi:
        fi.index([])
        assert fi.store_record()["kind"] == "edge"
        assert (tmp_path / "idx" / "faces").is_dir()


def test_cli_index_store_reaches_faces(album: Path, deepface: Path, tmp_path: Path) -> None:
    from lookalike.api.cli_faces import app

    runner = CliRunner()
    idx = str(tmp_path / "idx")
    spec = f"qdrant+local://{tmp_path / 'qdrant'}"
    few = tmp_path / "few"
    few.mkdir()
    shutil.copy(album / "person02-img3.jpg", few / "person02-img3.jpg")
    r = runner.invoke(app, ["index", str(few), "--index", idx, "--store", spec, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["faces_written"] == 1
    record = json.loads((tmp_path / "idx" / "faces.json").read_text())["store"]
    assert record["collection"] == "idx-faces"  # the index folder's name, then -faces
    r = runner.invoke(app, ["search", str(few / "person02-img3.jpg"), "--index", idx, "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["index", str(few), "--index", idx, "--store", "edge"])
    assert r.exit_code == IndexMismatchError.exit_code
    assert "keeps its faces in" in r.output and "new folder" in r.output


def test_serve_opens_products_and_faces_in_one_local_folder(
    album: Path, deepface: Path, tmp_path: Path
) -> None:
    """`--store qdrant+local://PATH#shop` for both: collections shop and shop-faces, one server."""
    from fastapi.testclient import TestClient

    from lookalike.api.http import create_app
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from tests.fakes import TinyEmbedder, photo

    spec = f"qdrant+local://{tmp_path / 'qdrant'}#shop"
    rows = [
        {"id": f"p{i}", "images": [str(photo(tmp_path / f"p{i}.jpg", seed=i))]} for i in range(3)
    ]
    catalogue = tmp_path / "cat.jsonl"
    catalogue.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = Settings(index=tmp_path / "index", cache_dir=tmp_path / "cache", batch_size=2)
    with Engine(
        settings.index, settings=settings, image_embedder=TinyEmbedder(), store_spec=spec
    ) as engine:
        engine.index(catalogue)
    with FaceIndex(settings.index, settings, store_spec=spec) as fi:
        fi.index(album / "person02-img3.jpg")
    engine = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    try:
        assert engine.stats()["items"] == 3  # the product store is open ...
        with TestClient(create_app(engine, catalogue_root=tmp_path)) as client:
            selfie = (deepface / "img53.jpg").read_bytes()  # person02, another photo
            r = client.post("/api/faces/search", files={"photo": ("s.jpg", selfie, "image/jpeg")})
            assert r.status_code == 200, r.text  # ... and the faces open beside it
            assert [m["name"] for m in r.json()["matches"]] == ["person02-img3.jpg"]
            assert engine.stats()["items"] == 3
    finally:
        engine.close()
