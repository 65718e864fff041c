"""Catalogue loading: folders, JSONL and CSV manifests, bad lines, field names, the grocery data."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from lookalike.catalog import RESERVED_KEYS, Catalogue, load_catalogue
from lookalike.catalog.manifest import parse_number, safe_key
from lookalike.errors import CatalogueError
from lookalike.pipeline.decode import load_image

REPO_ROOT = Path(__file__).resolve().parents[2]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # the loader never opens images; decoding happens later
    return path


def _by_id(catalogue: Catalogue) -> dict[str, object]:
    return {item.id: item for item in catalogue.items}


# --- folder --------------------------------------------------------------------------------------


def test_folder_layout(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    front = _touch(shop / "red-dress" / "front.jpg")
    detail = _touch(shop / "red-dress" / "back" / "detail.PNG")
    _touch(shop / "red-dress" / "notes.txt")
    _touch(shop / "red-dress" / ".hidden.jpg")
    _touch(shop / "red-dress" / ".thumbs" / "t.jpg")
    shirt = _touch(shop / "blue-shirt.jpg")
    _touch(shop / "README.md")
    _touch(shop / ".DS_Store")
    _touch(shop / ".git" / "x.jpg")
    _touch(shop / "empty" / "readme.txt")

    cat = load_catalogue(shop)
    assert [item.id for item in cat.items] == ["blue-shirt", "red-dress"]
    items = _by_id(cat)
    # Sorted by path relative to the item folder: "back/detail.PNG" < "front.jpg".
    assert items["red-dress"].images == (str(detail), str(front))
    assert items["red-dress"].fields == {"title": "red-dress"}
    assert items["blue-shirt"].images == (str(shirt),)
    assert items["blue-shirt"].fields == {"title": "blue-shirt"}
    assert [s.source for s in cat.skipped] == [str(shop / "empty")]
    assert cat.root == shop and cat.source == str(shop)
    assert all(os.path.isabs(p) for item in cat.items for p in item.images)


def test_folder_items_carry_their_fields_in_item_json(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    _touch(shop / "viton_000240" / "front.jpg")
    (shop / "viton_000240" / "item.json").write_text(
        json.dumps({"title": "Linen shirt, iPhone-blue", "price": 39.9, "Brand name": "Aco",
                    "id": "ignored", "images": ["x.jpg"], "label": "kept, renamed"})
    )  # fmt: skip
    _touch(shop / "broken" / "a.jpg")
    (shop / "broken" / "item.json").write_text("{not json")
    _touch(shop / "list" / "a.jpg")
    (shop / "list" / "item.json").write_text("[1, 2]")
    cat = load_catalogue(shop)
    items = _by_id(cat)
    assert items["viton_000240"].fields == {
        "title": "Linen shirt, iPhone-blue", "price": 39.9, "Brand_name": "Aco",
        "field_label": "kept, renamed",
    }  # fmt: skip
    assert items["viton_000240"].images == (str(shop / "viton_000240" / "front.jpg"),)
    # a bad item.json does not lose the item: it keeps its folder name, the file is reported
    assert items["broken"].fields == {"title": "broken"} and items["list"].fields == {
        "title": "list"
    }
    reasons = {Path(s.source).parent.name: s.reason for s in cat.skipped}
    assert "invalid JSON" in reasons["broken"] and "JSON object" in reasons["list"]


def test_folder_names_with_the_same_id_merge(tmp_path: Path) -> None:
    a_dir = _touch(tmp_path / "a" / "1.jpg")
    a_file = _touch(tmp_path / "a.webp")
    cat = load_catalogue(tmp_path)
    assert [(i.id, i.images) for i in cat.items] == [("a", (str(a_dir), str(a_file)))]


# --- JSONL ---------------------------------------------------------------------------------------


def _write_jsonl(path: Path, lines: list[object]) -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n")
    return path


def test_jsonl_paths_urls_and_broken_lines(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    manifest = _write_jsonl(
        folder / "catalogue.jsonl",
        [
            {"id": "dress", "images": ["img/a.jpg", "https://cdn.example/b.jpg"], "price": 49.9},
            "",  # blank: ignored
            '{"id": "broken", "images": [',  # 3: invalid JSON
            {"images": ["x.jpg"]},  # 4: no id
            {"id": "bare"},  # 5: no images
            {"id": True, "image": "t.jpg"},  # 6: bool id
            {"id": 42, "image": "../other/c.png", "title": "numbered"},
            {"id": "abs", "image": "/data/photos/d.jpg", "colour": None},
            {"id": "mixed", "images": ["ok.jpg", "file:///etc/passwd"]},  # 9: one bad image
            '["not", "an", "object"]',  # 10
            {"id": "dress", "images": ["img/a.jpg", "img/c.jpg"], "price": 10, "brand": "X"},
        ],
    )
    cat = load_catalogue(manifest)
    items = _by_id(cat)
    assert list(items) == ["dress", "42", "abs", "mixed"]
    # Duplicate id: images merged in order without repeats; the first line's price wins,
    # a field only the later line has is added.
    assert items["dress"].images == (
        str(folder / "img" / "a.jpg"),
        "https://cdn.example/b.jpg",
        str(folder / "img" / "c.jpg"),
    )
    assert items["dress"].fields == {"price": 49.9, "brand": "X"}
    assert items["42"].images == (str(tmp_path / "other" / "c.png"),)
    assert items["42"].fields == {"title": "numbered"}
    assert items["abs"].images == ("/data/photos/d.jpg",)
    assert items["abs"].fields == {}  # null values dropped
    assert items["mixed"].images == (str(folder / "ok.jpg"),)

    reasons = {s.source.rsplit(":", 1)[1]: s.reason for s in cat.skipped}
    assert set(reasons) == {"3", "4", "5", "6", "9", "10"}
    assert reasons["3"].startswith("invalid JSON")
    assert reasons["4"] == "missing id"
    assert "no images" in reasons["5"]
    assert "string or a number" in reasons["6"]
    assert "http(s)" in reasons["9"]
    assert "JSON object" in reasons["10"]
    assert all(s.source.startswith(f"{manifest}:") for s in cat.skipped)
    assert cat.root == folder


def test_jsonl_reserved_keys_are_renamed(tmp_path: Path) -> None:
    line = {"id": "a", "image": "a.jpg", "title": "A", "Price (EUR)": 3}
    line |= {key: f"v-{key}" for key in RESERVED_KEYS - {"image"}}
    cat = load_catalogue(_write_jsonl(tmp_path / "c.jsonl", [line]))
    fields = cat.items[0].fields
    assert not (RESERVED_KEYS & set(fields))
    assert fields["field_label"] == "v-label"
    assert fields["field_item_id"] == "v-item_id"
    assert fields["field_kind"] == "v-kind"
    assert fields["Price_EUR"] == 3
    assert fields["title"] == "A"


def test_safe_key() -> None:
    assert safe_key("title") == "title"
    assert safe_key("views") == "field_views"
    assert safe_key("a.b[0]") == "a_b_0"
    assert safe_key("2nd colour") == "field_2nd_colour"
    assert safe_key("  ") is None
    assert safe_key("colour", taken={"colour"}) == "colour_2"


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_merges_rows_and_converts_numbers(tmp_path: Path) -> None:
    manifest = tmp_path / "c.csv"
    manifest.write_text(
        "id,image,title,price,stock,sku,label\n"
        "d1,photos/a.jpg,Red dress,49.90,3,007,dress\n"
        "d1,photos/b.jpg,,,,,\n"
        "\n"
        "s1,https://cdn.example/s.jpg,Shirt,1e2,-4,12a,\n"
        ",photos/x.jpg,No id,1,1,1,\n"
        "s2,,No image,1,1,1,\n"
        "s3,photos/s3.jpg,Too many,1,1,1,x,extra\n"
    )
    cat = load_catalogue(manifest)
    items = _by_id(cat)
    assert list(items) == ["d1", "s1"]
    d1 = items["d1"]
    assert d1.images == (str(tmp_path / "photos" / "a.jpg"), str(tmp_path / "photos" / "b.jpg"))
    assert d1.fields == {
        "title": "Red dress",
        "price": 49.9,
        "stock": 3,
        "sku": "007",  # leading zero: kept as text
        "field_label": "dress",  # reserved key renamed
    }
    assert isinstance(d1.fields["stock"], int) and isinstance(d1.fields["price"], float)
    assert d1.fields["price"] < 100  # what `--where "price < 100"` relies on
    assert items["s1"].images == ("https://cdn.example/s.jpg",)
    assert items["s1"].fields == {"title": "Shirt", "price": 100.0, "stock": -4, "sku": "12a"}
    reasons = {s.source.rsplit(":", 1)[1]: s.reason for s in cat.skipped}
    assert reasons == {
        "6": "missing id",
        "7": "item 's2': missing image",
        "8": "8 cells but the header has 7 columns",
    }


def test_csv_semicolon_and_bom(tmp_path: Path) -> None:
    manifest = tmp_path / "c.csv"
    manifest.write_bytes("\ufeffID;Image;Prix\nx;x.jpg;3,5\n".encode())
    cat = load_catalogue(manifest)
    assert cat.items[0].id == "x"
    assert cat.items[0].fields == {"Prix": "3,5"}  # decimal comma is not a number here


def test_csv_without_required_columns(tmp_path: Path) -> None:
    manifest = tmp_path / "c.csv"
    manifest.write_text("sku,photo\n1,a.jpg\n")
    with pytest.raises(CatalogueError, match="needs an `id` and an `image` column"):
        load_catalogue(manifest)


def test_csv_not_utf8(tmp_path: Path) -> None:
    manifest = tmp_path / "c.csv"
    manifest.write_bytes("id,image,title\n1,a.jpg,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(CatalogueError, match="not UTF-8"):
        load_catalogue(manifest)


def test_parse_number() -> None:
    assert parse_number("12") == 12
    assert parse_number(" -3.5 ") == -3.5
    assert parse_number("1e3") == 1000.0
    assert parse_number(".5") == 0.5
    for text in ("007", "1,000", "nan", "inf", "12a", "0x10", "1_000", "3,5"):
        assert isinstance(parse_number(text), str), text


# --- dispatch ------------------------------------------------------------------------------------


def test_missing_catalogue(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="catalogue not found"):
        load_catalogue(tmp_path / "nope.jsonl")


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "items.txt"
    path.write_text("a.jpg\n")
    with pytest.raises(CatalogueError, match=r"unknown catalogue type '\.txt'"):
        load_catalogue(path)


# --- the real grocery data -----------------------------------------------------------------------


def _grocery_dir() -> Path:
    data = Path(os.environ.get("LOOKALIKE_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
    grocery = data / "grocery"
    if not (grocery / "classes.csv").is_file() or not (grocery / "train.txt").is_file():
        pytest.fail(
            f"Grocery Store Dataset not found at {grocery} (need classes.csv and train.txt). "
            "Set LOOKALIKE_DATA_DIR to the folder that holds `grocery/`."
        )
    return grocery


def test_grocery_catalogue(tmp_path: Path) -> None:
    grocery = _grocery_dir()
    items: dict[str, dict[str, object]] = {}
    with open(grocery / "classes.csv", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for name, class_id, coarse, _coarse_id, iconic, _description in reader:
            items[class_id] = {
                "id": int(class_id),  # a JSON number: ids must come back as strings
                "title": name.replace("-", " "),
                "category": coarse,
                "images": [str(grocery / iconic.lstrip("/"))],  # absolute
            }
    for line in (grocery / "train.txt").read_text().splitlines():
        path, class_id, _ = (part.strip() for part in line.split(","))
        # Relative to the manifest's folder, so resolution through `..` is exercised too.
        items[class_id]["images"].append(os.path.relpath(grocery / path, tmp_path))
    manifest = _write_jsonl(tmp_path / "grocery.jsonl", list(items.values()))

    cat = load_catalogue(manifest)
    assert cat.skipped == ()
    assert len(cat.items) == 81
    assert 2_600 <= cat.image_count <= 2_800
    assert cat.image_count == sum(len(item["images"]) for item in items.values())
    assert all(isinstance(item.id, str) for item in cat.items)
    assert all(os.path.isfile(p) for item in cat.items for p in item.images)
    first = _by_id(cat)["0"]
    assert first.fields == {"title": "Golden Delicious", "category": "Apple"}
    # And the real photos decode.
    for item in cat.items[::20]:
        decoded = load_image(item.images[-1])
        assert decoded.image.mode == "RGB" and min(decoded.image.size) > 0
