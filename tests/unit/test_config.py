"""The settings tree: groups, flat environment variable names, flat keyword arguments, replace()."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from lookalike.config import FLAT, GROUPS, Settings


def test_environment_variables_keep_their_flat_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_EMBEDDER", "efficientnet-lite1")
    monkeypatch.setenv("LOOKALIKE_TTA", "flip")
    monkeypatch.setenv("LOOKALIKE_MAX_IMAGE_PIXELS", "1000")
    monkeypatch.setenv("LOOKALIKE_FACES_DETECTOR", "cnn")
    monkeypatch.setenv("LOOKALIKE_CHROMIUM", "/opt/chrome")
    s = Settings()
    assert s.models.embedder == "efficientnet-lite1"
    assert s.search.tta == "flip"
    assert s.decode.max_image_pixels == 1000
    assert s.faces.detector == "cnn"
    assert s.crawl.chromium == "/opt/chrome"


def test_third_party_variable_names_are_read_in_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "secret-1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/hf")
    s = Settings()
    assert s.vectors.qdrant_api_key is not None
    assert s.vectors.qdrant_api_key.get_secret_value() == "secret-1"
    assert "secret-1" not in repr(s)
    assert s.models.hf_endpoint == "http://127.0.0.1:9/hf"


def test_flat_keywords_go_to_their_group_and_the_environment_fills_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOKALIKE_THREADS", "3")
    s = Settings(embedder="efficientnet-lite1", index=Path("/tmp/i"), detect=True)
    assert s.models.embedder == "efficientnet-lite1"
    assert s.models.threads == 3
    assert s.views.detect is True
    assert s.index == Path("/tmp/i")


def test_flat_reads_warn_and_answer_from_the_group() -> None:
    s = Settings(tta="none")
    with pytest.warns(DeprecationWarning, match="search.tta"):
        assert s.tta == "none"  # type: ignore[attr-defined]  # the deprecated 0.x spelling
    with pytest.raises(AttributeError):
        _ = s.no_such_setting  # type: ignore[attr-defined]  # proves unknown names still fail


def test_replace_validates_and_leaves_the_original_alone() -> None:
    s = Settings(tta="none", store="memory")
    t = s.replace(tta="flip", threads=2)
    assert (t.search.tta, t.models.threads, t.vectors.store) == ("flip", 2, "memory")
    assert s.search.tta == "none"
    with pytest.raises(ValidationError):
        s.replace(tta="sideways")


def test_every_flat_name_belongs_to_exactly_one_group() -> None:
    seen: dict[str, str] = {}
    for group, cls in GROUPS.items():
        for name in cls.model_fields:
            assert name not in seen, f"{name} in {seen.get(name)} and {group}"
            seen[name] = group
    assert seen == FLAT
    # the package itself never uses the deprecated spelling
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        Settings().models.embedder  # noqa: B018
