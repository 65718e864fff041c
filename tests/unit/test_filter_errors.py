"""Filters that can only match nothing are errors that say why (issue 14, issue 17 item 2):
an unknown field, a value of another type, a text value no item has (with close values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.errors import FilterFieldError, FilterValueError, QueryError
from lookalike.store.base import Condition, Filter
from lookalike.store.filter_check import check_filter, field_kinds
from tests.fakes import TinyEmbedder, photo


def _catalogue(root: Path) -> Path:
    rows = []
    for i in range(6):
        rows.append(
            {
                "id": f"p{i}",
                "images": [
                    str(photo(root / "img" / f"p{i}_{j}.jpg", seed=i * 10 + j)) for j in (0, 1)
                ],
                "title": f"product {i}",
                "category": "Milk" if i % 2 else "Juice",
                "price": 10.0 * i,
                "stock": i,  # integers
                "in_stock": i % 3 != 0,
                "tags": ["organic"] if i < 2 else [],
                "specs": {"colour": "red" if i < 3 else "blue"},
                "note": None,
            }
        )
    manifest = root / "catalogue.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("filters")
    settings = Settings(index=root / "index", cache_dir=root / "cache", batch_size=8, tta="none")
    e = Engine(settings.index, settings=settings, image_embedder=TinyEmbedder())
    e.index(_catalogue(root))
    yield e  # type: ignore[misc]
    e.close()


def _ids(engine: Engine, where: str | Filter, mode: str = "centroid") -> set[str]:
    vec = engine.item_vector("p0")
    return {h.item_id for h in engine.search_vector(vec, k=10, where=where, mode=mode)}  # type: ignore[arg-type]


def test_every_payload_type_filters_through_the_engine(engine: Engine) -> None:
    for mode in ("centroid", "views"):
        assert _ids(engine, "in_stock = true", mode) == {"p1", "p2", "p4", "p5"}
        assert _ids(engine, "in_stock != true", mode) == {"p0", "p3"}
        assert _ids(engine, "stock = 2", mode) == {"p2"}
        assert _ids(engine, "stock >= 4 and price < 45", mode) == {"p4"}
        assert _ids(engine, "tags = 'organic'", mode) == {"p0", "p1"}
        assert _ids(engine, "specs.colour = 'blue'", mode) == {"p3", "p4", "p5"}
        assert _ids(engine, Filter((Condition("in_stock", "eq", False),)), mode) == {"p0", "p3"}


def test_unknown_field_names_it_and_lists_the_fields(engine: Engine) -> None:
    with pytest.raises(FilterFieldError) as err:
        _ids(engine, "categry = 'Milk'")
    text = str(err.value)
    assert "'categry'" in text and "did you mean category" in text
    for name in ("category", "price", "in_stock", "tags", "title"):
        assert name in text
    assert isinstance(err.value, QueryError)  # exit code 2, HTTP 422
    with pytest.raises(FilterFieldError, match="'weight'"):
        engine.search_text("product", where="weight < 2")
    with pytest.raises(FilterFieldError, match="'size'"):
        engine.facets("category", where="size = 'L'")
    with pytest.raises(FilterFieldError, match="facets"):
        engine.facets("categry")


def test_wrong_value_type_is_an_error(engine: Engine) -> None:
    with pytest.raises(FilterFieldError, match="in_stock holds true/false, not 1"):
        _ids(engine, "in_stock = 1")
    with pytest.raises(FilterFieldError, match="price holds numbers"):
        _ids(engine, "price = 'cheap'")
    with pytest.raises(FilterFieldError, match="category holds text"):
        _ids(engine, "category = 3")
    with pytest.raises(FilterFieldError, match="category holds text"):
        _ids(engine, Filter((Condition("category", "range", lt=3.0),)))
    with pytest.raises(FilterFieldError, match="in_stock holds true/false"):
        _ids(engine, "in_stock in (true, 'yes')")
    # Loose kinds take any value: lists, nested objects' sub-fields.
    assert _ids(engine, "tags = 3") == set()
    assert _ids(engine, "specs.size = 3") == set()


def test_a_text_value_no_item_has_suggests_close_ones(engine: Engine) -> None:
    with pytest.raises(FilterValueError, match="category = 'milk'; did you mean 'Milk'"):
        _ids(engine, "category = 'milk'")
    with pytest.raises(FilterValueError, match=r"values it has: (Juice, Milk|Milk, Juice)"):
        _ids(engine, "category in ('Bread', 'Cheese')")
    assert _ids(engine, "category in ('Milk', 'Bread')") == {"p1", "p3", "p5"}  # one value exists
    # A combination that matches nothing is a plain empty answer: each condition matches items.
    assert _ids(engine, "category = 'Milk' and price < 5") == set()


def test_check_filter_unit() -> None:
    kinds = field_kinds(
        [{"a": 1, "b": "x", "c": True, "d": [1], "e": {"f": 1}, "g": 1}, {"g": "y"}]
    )
    assert kinds == {
        "a": "number",
        "b": "text",
        "c": "bool",
        "d": "list",
        "e": "object",
        "g": "mixed",
    }
    check_filter(Filter((Condition("a", "eq", 2.5), Condition("e.f", "eq", "z"))), kinds)
    check_filter(Filter((Condition("g", "eq", True),)), kinds)  # mixed: not checked
    with pytest.raises(FilterFieldError):
        check_filter(Filter((Condition("a", "eq", True),)), kinds)
    with pytest.raises(FilterFieldError):
        check_filter(Filter((Condition("x.f", "eq", 1),)), kinds)


def test_http_and_cli_report_the_field(engine: Engine) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from lookalike.api.cli import app as cli
    from lookalike.api.http import create_app

    with TestClient(create_app(engine, api_key="k", catalogue_root=engine.index_dir)) as c:
        r = c.get("/api/similar/p0", params={"where": "categry = 'Milk'"})
        assert r.status_code == 422 and "'categry'" in r.json()["detail"], r.text
        r = c.get("/api/similar/p0", params={"filters": '{"in_stock": 1}'})
        assert r.status_code == 422 and "true/false" in r.json()["detail"], r.text
        r = c.get("/api/similar/p0", params={"filters": '{"in_stock": true}'})
        assert r.status_code == 200
        assert {h["item_id"] for h in r.json()["results"]} == {"p1", "p2", "p4", "p5"}
    engine.close()  # the CLI opens the index itself (the engine reopens it when next used)
    runner = CliRunner()
    index = str(engine.index_dir)
    out = runner.invoke(cli, ["similar", "p0", "--where", "categry = 'Milk'", "--index", index])
    assert out.exit_code == 2 and "categry" in out.output, out.output
    out = runner.invoke(cli, ["similar", "p0", "--where", "category = 'milk'", "--index", index])
    assert out.exit_code == 2 and "'Milk'" in out.output, out.output
    out = runner.invoke(cli, ["similar", "p0", "--where", "in_stock = true", "--index", index])
    assert out.exit_code == 0, out.output
