"""`--store` specs: every valid form opens the right backend; every bad one is a clear StoreError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.errors import IndexMismatchError, StoreError
from lookalike.store.base import PointRecord, point_id
from lookalike.store.registry import (
    StoreSpec,
    open_store,
    parse_store_spec,
    same_store,
    store_record,
)


def test_default_is_edge_in_the_index_folder(tmp_path: Path) -> None:
    from lookalike.store.edge import EdgeStore

    assert parse_store_spec(None, tmp_path) == StoreSpec("edge")
    assert parse_store_spec("  ", tmp_path) == StoreSpec("edge")
    store = open_store(None, tmp_path / "idx", {"image": 4})
    try:
        assert isinstance(store, EdgeStore)
        assert store.path == tmp_path / "idx" / "shard"
        assert (tmp_path / "idx" / "shard" / "edge_config.json").exists()
    finally:
        store.close()


def test_memory(tmp_path: Path) -> None:
    from lookalike.store.memory import MemoryStore

    assert isinstance(open_store("memory", tmp_path, {"image": 4}), MemoryStore)


@pytest.mark.parametrize(
    ("spec", "location", "collection"),
    [
        ("qdrant://localhost:6333/shop", "http://localhost:6333", "shop"),
        ("qdrant://db.example.org", "http://db.example.org:6333", "my-index"),
        ("qdrants://db.example.org:443/shop/", "https://db.example.org:443", "shop"),
        ("qdrant://[::1]:6334/a_b.c", "http://[::1]:6334", "a_b.c"),
    ],
)
def test_server_specs(spec: str, location: str, collection: str, tmp_path: Path) -> None:
    parsed = parse_store_spec(spec, tmp_path / "my-index")
    assert (parsed.kind, parsed.location, parsed.collection) == ("qdrant", location, collection)


def test_cluster_layout_parameters(tmp_path: Path) -> None:
    parsed = parse_store_spec(
        "qdrant://node1:6333/shop?shards=6&replication=2&timeout=60", tmp_path
    )
    assert (parsed.shards, parsed.replication, parsed.timeout) == (6, 2, 60.0)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("faiss://x", "valid stores are edge"),
        ("qdrant://", "give a host"),
        ("qdrant://user:secret@host:6333/x", "QDRANT_API_KEY"),
        ("qdrant://host:notaport/x", "bad port"),
        ("qdrant://host:6333/bad name!", "collection name"),
        ("qdrant://host:6333/x?shards=zero", "whole number"),
        ("qdrant://host:6333/x?replication=0", "at least 1"),
        ("qdrant+local://", "give a folder"),
    ],
)
def test_bad_specs_are_clear_errors(spec: str, needle: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=needle):
        parse_store_spec(spec, tmp_path)


def test_unknown_scheme_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        open_store("postgres://db/x", tmp_path, {"image": 4})
    for form in ("edge", "memory", "qdrant://", "qdrant+local://"):
        assert form in str(info.value)


def _point(i: int) -> PointRecord:
    v = np.zeros(4, np.float32)
    v[i % 4] = 1.0
    return PointRecord(point_id(str(i)), {"image": v}, {"item_id": str(i)})


def test_qdrant_local_persists_points_and_indexes(tmp_path: Path) -> None:
    from lookalike.store.qdrant import QdrantStore

    spec = f"qdrant+local://{tmp_path / 'q'}#shop"
    store = open_store(spec, tmp_path / "index", {"image": 4})
    assert isinstance(store, QdrantStore) and store.collection == "shop"
    store.upsert([_point(i) for i in range(10)])
    store.ensure_index("item_id", "keyword")
    store.ensure_index("title", "text")
    store.close()
    again = open_store(spec, tmp_path / "index", {"image": 4})
    try:
        assert again.count() == 10
        assert again.payload_schema() == {"item_id": "keyword", "title": "text"}
        assert again.disk_bytes() > 0
    finally:
        again.close()


def test_qdrant_local_collection_defaults_to_the_index_folder_name(tmp_path: Path) -> None:
    store = open_store(f"qdrant+local://{tmp_path / 'q'}", tmp_path / "groceries", {"image": 4})
    try:
        assert store.collection == "groceries"  # type: ignore[attr-defined]
    finally:
        store.close()


def test_shard_names_the_edge_folder(tmp_path: Path) -> None:
    from lookalike.store.edge import EdgeStore

    store = open_store("edge", tmp_path / "idx", {"face": 4}, shard="faces")
    try:
        assert isinstance(store, EdgeStore) and store.path == tmp_path / "idx" / "faces"
        assert not (tmp_path / "idx" / "shard").exists()
    finally:
        store.close()


@pytest.mark.parametrize("shard", ["", ".", "..", "a/b", "/abs"])
def test_shard_must_be_a_folder_name(shard: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="folder name"):
        open_store("edge", tmp_path, {"face": 4}, shard=shard)


@pytest.mark.parametrize(
    ("spec", "collection"),
    [
        ("qdrant://localhost:6333/shop", "shop-faces"),
        ("qdrant://localhost:6333", "groceries-faces"),
        ("qdrant+local://q#shop", "shop-faces"),
        ("qdrant+local://q", "groceries-faces"),
    ],
)
def test_suffix_keeps_a_second_collection_apart(spec: str, collection: str, tmp_path: Path) -> None:
    index = tmp_path / "groceries"
    assert parse_store_spec(spec, index, suffix="-faces").collection == collection
    plain, faces = store_record(spec, index), store_record(spec, index, suffix="-faces")
    assert faces["collection"] == collection and not same_store(plain, faces)
    # The recorded spec already names the suffixed collection: reopened without a suffix.
    assert store_record(faces["spec"], index) == faces


def test_suffix_leaves_edge_and_memory_alone(tmp_path: Path) -> None:
    assert parse_store_spec("edge", tmp_path, suffix="-faces") == StoreSpec("edge")
    assert store_record("memory", tmp_path, suffix="-faces")["spec"] == "memory"


def test_qdrant_local_suffix_opens_its_own_collection(tmp_path: Path) -> None:
    spec = f"qdrant+local://{tmp_path / 'q'}#shop"
    store = open_store(spec, tmp_path, {"face": 4}, suffix="-faces")
    try:
        assert store.collection == "shop-faces"  # type: ignore[attr-defined]
    finally:
        store.close()


def test_qdrant_local_folder_is_shared_by_two_stores_in_one_process(tmp_path: Path) -> None:
    """A product index and its faces in one local folder: both open in one process (serve)."""
    spec = f"qdrant+local://{tmp_path / 'q'}#shop"
    products = open_store(spec, tmp_path, {"image": 4})
    faces = open_store(spec, tmp_path, {"face": 4}, suffix="-faces")
    try:
        products.upsert([_point(i) for i in range(3)])
        faces.close()  # the folder stays open for the other store
        assert products.count() == 3
        again = open_store(spec, tmp_path, {"face": 4}, suffix="-faces")
        assert again.count() == 0
        again.close()
    finally:
        products.close()
    products.close()  # twice: nothing happens
    reopened = open_store(spec, tmp_path, {"image": 4})  # every store closed: opened anew
    try:
        assert reopened.count() == 3
    finally:
        reopened.close()


def test_existing_collection_with_other_vectors_is_refused(tmp_path: Path) -> None:
    spec = f"qdrant+local://{tmp_path / 'q'}#shop"
    open_store(spec, tmp_path, {"image": 4}).close()
    with pytest.raises(IndexMismatchError, match="use another collection name"):
        open_store(spec, tmp_path, {"image": 8})


def test_unreachable_server_names_the_url_and_what_to_do(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port on loopback that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as info:
        open_store(f"qdrant://127.0.0.1:{port}/shop?timeout=2", tmp_path, {"image": 4})
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message
    assert "docker run" in message and "--store edge" in message


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_api_key_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key reaches the server as the `api-key` header (checked on a loopback HTTP server)."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("api-key"))
            self.send_response(403)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": {"error": "forbidden"}}')

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("QDRANT_API_KEY", "s3cret")
        port = server.server_address[1]
        with pytest.raises(StoreError, match="API key"):
            open_store(f"qdrant://127.0.0.1:{port}/shop", tmp_path, {"image": 4})
    finally:
        server.shutdown()
        server.server_close()
    assert seen and seen[0] == "s3cret"
