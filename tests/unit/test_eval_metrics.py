"""Evaluation: metrics checked against hand-computed values, query loading, the misses report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import CatalogueError
from lookalike.evaluation.metrics import (
    Query,
    QueryResult,
    average_precision,
    evaluate,
    load_queries,
    mean_average_precision,
    rank_of,
    recall_at_k,
    write_report,
)
from lookalike.evaluation.report import THUMB_SIZE

# ---------------------------------------------------------------------------------------------
# rank_of
# ---------------------------------------------------------------------------------------------


def test_rank_of_is_one_based() -> None:
    assert rank_of(["a", "b", "c"], "a") == 1
    assert rank_of(["a", "b", "c"], "c") == 3


def test_rank_of_missing_and_empty() -> None:
    assert rank_of(["a", "b"], "z") is None
    assert rank_of([], "a") is None


def test_rank_of_set_takes_first_relevant() -> None:
    # b at 2 and c at 3 are both relevant: the first one found counts.
    assert rank_of(["a", "b", "c"], {"c", "b"}) == 2


def test_rank_of_string_is_one_id_not_characters() -> None:
    # "ab" must not match the items "a" or "b".
    assert rank_of(["a", "b", "ab"], "ab") == 3


# ---------------------------------------------------------------------------------------------
# recall@k
# ---------------------------------------------------------------------------------------------

RANKED = [
    ["r", "x", "y"],  # query 0: right item at rank 1
    ["x", "y", "r"],  # query 1: rank 3
    ["x", "y", "z"],  # query 2: not retrieved
    ["x", "r"],  # query 3: rank 2
]
RELEVANT = ["r", "r", "r", "r"]


def test_recall_at_k_hand_checked() -> None:
    # @1: only q0 -> 1/4. @2: q0, q3 -> 2/4. @3: q0, q1, q3 -> 3/4.
    assert recall_at_k(RANKED, RELEVANT, 1) == pytest.approx(0.25)
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5)
    assert recall_at_k(RANKED, RELEVANT, 3) == pytest.approx(0.75)


def test_recall_k_larger_than_lists() -> None:
    # k = 10 searches each list in full: same as @3 here, q2 still misses.
    assert recall_at_k(RANKED, RELEVANT, 10) == pytest.approx(0.75)


def test_recall_with_sets_of_relevant_items() -> None:
    # q0: a or b relevant, b at rank 2. q1: c relevant, at rank 1. @1 -> 1/2, @2 -> 2/2.
    ranked = [["x", "b", "a"], ["c", "x"]]
    relevant = [{"a", "b"}, "c"]
    assert recall_at_k(ranked, relevant, 1) == pytest.approx(0.5)
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(1.0)


def test_recall_empty_inputs() -> None:
    assert recall_at_k([], [], 1) == 0.0
    # A query whose search returned nothing is a miss, not an error.
    assert recall_at_k([[]], ["a"], 5) == 0.0


def test_recall_rejects_bad_k_and_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(RANKED, RELEVANT, 0)
    with pytest.raises(ValueError, match="one entry per query"):
        recall_at_k(RANKED, RELEVANT[:2], 1)


# ---------------------------------------------------------------------------------------------
# average precision, mAP
# ---------------------------------------------------------------------------------------------


def test_ap_two_relevant_interleaved() -> None:
    # [x, r1, x2, r2], relevant {r1, r2}: precision 1/2 at rank 2, 2/4 at rank 4 -> (0.5+0.5)/2 = 0.5
    assert average_precision(["x", "r1", "x2", "r2"], {"r1", "r2"}) == pytest.approx(0.5)


def test_ap_perfect_and_single() -> None:
    assert average_precision(["a", "b", "x"], {"a", "b"}) == pytest.approx(1.0)
    # One relevant item at rank 3 -> AP = 1/3 (reciprocal rank).
    assert average_precision(["x", "y", "a"], "a") == pytest.approx(1 / 3)


def test_ap_relevant_not_retrieved_counts_as_miss() -> None:
    # Only r1 retrieved, at rank 1: (1/1 + 0) / 2 = 0.5, not 1.0.
    assert average_precision(["r1", "x"], {"r1", "r2"}) == pytest.approx(0.5)
    # Nothing relevant retrieved at all.
    assert average_precision(["x", "y"], {"r"}) == 0.0
    assert average_precision([], {"r"}) == 0.0


def test_ap_three_relevant_hand_checked() -> None:
    # [r1, x, r2, x2, x3, r3]: 1/1, 2/3, 3/6 -> (1 + 0.6667 + 0.5) / 3 = 0.7222
    ranked = ["r1", "x", "r2", "x2", "x3", "r3"]
    assert average_precision(ranked, {"r1", "r2", "r3"}) == pytest.approx((1 + 2 / 3 + 0.5) / 3)


def test_ap_repeated_id_counts_once() -> None:
    # An item repeated in the list must not be counted twice: [r, r, x] with {r, s} -> (1/1)/2.
    assert average_precision(["r", "r", "x"], {"r", "s"}) == pytest.approx(0.5)


def test_ap_needs_a_relevant_item() -> None:
    with pytest.raises(ValueError, match="relevant"):
        average_precision(["a"], set())


def test_map_hand_checked() -> None:
    # RANKED APs with one relevant item: 1, 1/3, 0, 1/2 -> mean = (1 + 0.3333 + 0 + 0.5)/4 = 0.4583
    assert mean_average_precision(RANKED, RELEVANT) == pytest.approx((1 + 1 / 3 + 0 + 0.5) / 4)
    assert mean_average_precision([], []) == 0.0
    with pytest.raises(ValueError):
        mean_average_precision(RANKED, RELEVANT[:1])


def test_evaluate_keys_and_values() -> None:
    metrics = evaluate(RANKED, RELEVANT)
    assert list(metrics) == ["recall@1", "recall@3", "recall@10", "map", "queries"]
    assert metrics["recall@1"] == pytest.approx(0.25)
    assert metrics["recall@3"] == pytest.approx(0.75)
    assert metrics["recall@10"] == pytest.approx(0.75)
    assert metrics["map"] == pytest.approx((1 + 1 / 3 + 0 + 0.5) / 4)
    assert metrics["queries"] == 4


def test_evaluate_custom_ks_and_empty() -> None:
    assert list(evaluate(RANKED, RELEVANT, ks=(5,))) == ["recall@5", "map", "queries"]
    assert evaluate([], []) == {
        "recall@1": 0.0,
        "recall@3": 0.0,
        "recall@10": 0.0,
        "map": 0.0,
        "queries": 0,
    }


# ---------------------------------------------------------------------------------------------
# load_queries
# ---------------------------------------------------------------------------------------------


def test_load_csv_resolves_relative_paths(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    path = folder / "queries.csv"
    path.write_text(
        "image,item_id\nphotos/a.jpg,sku-1\n/abs/b.jpg,sku-2\nhttps://example.com/c.jpg,sku-3\n",
        encoding="utf-8",
    )
    assert load_queries(path) == [
        Query(image=os.path.abspath(folder / "photos" / "a.jpg"), item_id="sku-1"),
        Query(image=os.path.abspath("/abs/b.jpg"), item_id="sku-2"),
        Query(image="https://example.com/c.jpg", item_id="sku-3"),
    ]


def test_load_csv_tolerates_bom_extra_columns_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("\ufeffitem_id,image,note\nsku-1,a.jpg,front\n\nsku-2,b.jpg,\n", "utf-8")
    queries = load_queries(path)
    assert [q.item_id for q in queries] == ["sku-1", "sku-2"]
    assert queries[0].image == os.path.abspath(tmp_path / "a.jpg")


def test_load_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"image": "a.jpg", "item_id": "sku-1"}\n'
        "\n"
        '{"image": "HTTPS://example.com/b.jpg", "item_id": 42, "extra": true}\n',
        encoding="utf-8",
    )
    assert load_queries(path) == [
        Query(image=os.path.abspath(tmp_path / "a.jpg"), item_id="sku-1"),
        Query(image="HTTPS://example.com/b.jpg", item_id="42"),
    ]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("q.csv", "image,item_id\na.jpg,sku-1\nb.jpg\n", 3),  # missing cell
        ("q.csv", "image,item_id\na.jpg,sku-1\nb.jpg,\n", 3),  # empty id
        ("q.csv", "image,item_id\na.jpg,sku-1,oops\n", 2),  # surplus cell
        ("q.csv", "photo,item_id\na.jpg,sku-1\n", 1),  # wrong header
        ("q.jsonl", '{"image": "a.jpg", "item_id": "s"}\n{not json\n', 2),
        ("q.jsonl", '{"image": "a.jpg", "item_id": "s"}\n["a.jpg", "s"]\n', 2),
        ("q.jsonl", '{"image": "a.jpg"}\n', 1),  # no item_id
        ("q.jsonl", '\n{"image": "", "item_id": "s"}\n', 2),  # empty image
        ("q.jsonl", '{"image": "a.jpg", "item_id": true}\n', 1),  # bool is not an id
    ],
)
def test_load_bad_line_names_line_number(tmp_path: Path, name: str, text: str, line: int) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError, match=f"line {line}"):
        load_queries(path)


@pytest.mark.parametrize(
    ("name", "text"), [("q.csv", ""), ("q.csv", "image,item_id\n"), ("q.jsonl", "\n\n")]
)
def test_load_empty_file_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError):
        load_queries(path)


def test_load_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_queries(tmp_path / "absent.csv")
    other = tmp_path / "q.txt"
    other.write_text("image,item_id\na.jpg,s\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"\.csv"):
        load_queries(other)


# ---------------------------------------------------------------------------------------------
# write_report
# ---------------------------------------------------------------------------------------------


def _photo(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (640, 480)) -> str:
    Image.new("RGB", size, colour).save(path, "JPEG")
    return str(path)


@pytest.fixture
def report_inputs(tmp_path: Path) -> tuple[list[QueryResult], dict[str, str]]:
    src = tmp_path / "src"
    src.mkdir()
    hit_q = _photo(src / "hit_query.jpg", (10, 200, 10))
    miss_q = _photo(src / "miss_query.jpg", (200, 10, 10))
    lost_q = _photo(src / "lost_query.jpg", (10, 10, 200))
    red = _photo(src / "red.jpg", (255, 0, 0), (1200, 300))
    png = src / "cutout.png"
    Image.new("RGBA", (300, 300), (0, 0, 0, 0)).save(png)
    broken = src / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    item_images = {"good": red, "right-one": str(png), "<script>alert(1)</script>": red}
    results = [
        # A hit: must not be listed.
        QueryResult(Query(hit_q, "good"), "views", (("good", 0.91, red), ("other", 0.5, red))),
        # A miss at rank 3, behind a malicious id and an unreadable image.
        QueryResult(
            Query(miss_q, "right-one"),
            "views",
            (
                ("<script>alert(1)</script>", 0.8, red),
                ("wrong-two", 0.7, str(broken)),
                ("right-one", 0.6, str(png)),
            ),
        ),
        # A miss where the right item was not retrieved at all, under another mode.
        QueryResult(
            Query(lost_q, "never-found"),
            "centroid",
            (("wrong-a", 0.4, red), ("wrong-b", -0.2, "https://example.com/x.jpg")),
        ),
    ]
    return results, item_images


def test_report_lists_misses_not_hits(
    tmp_path: Path, report_inputs: tuple[list[QueryResult], dict[str, str]]
) -> None:
    results, item_images = report_inputs
    metrics = {
        "views": evaluate([["good"], ["x", "y", "right-one"]], ["good", "right-one"]),
        "centroid": {"recall@1": 0.0, "map": 0.0, "queries": 1},
    }
    out = write_report(tmp_path / "report", results, metrics, "Eval <shop>", item_images)

    assert out == tmp_path / "report" / "index.html"
    page = out.read_text(encoding="utf-8")
    assert "<title>Eval &lt;shop&gt;</title>" in page
    # Summary: both modes, formatted values, count as an int.
    assert "<th>views</th>" in page and "<th>centroid</th>" in page
    assert "0.500" in page and ">2<" in page
    # Misses present, hit absent.
    assert "miss_query.jpg" in page and "lost_query.jpg" in page
    assert "hit_query.jpg" not in page
    assert "rank 3" in page
    assert "not in top 2" in page
    assert "wrong-two" in page and "wrong-a" in page
    assert "80.0 %" in page  # similarity of the first wrong result
    assert "0.0 %" in page  # negative cosine shows as 0 %, as ProductHit does
    assert "Misses: views (1 of 2 queries)" in page
    # No external resources.
    assert "http://" not in page.replace("https://example.com/x.jpg", "")
    assert "<link" not in page and "<script" not in page


def test_report_escapes_malicious_item_id(
    tmp_path: Path, report_inputs: tuple[list[QueryResult], dict[str, str]]
) -> None:
    results, item_images = report_inputs
    page = write_report(tmp_path / "r", results, {}, "t", item_images).read_text("utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_thumbnails_small_and_placeholders(
    tmp_path: Path, report_inputs: tuple[list[QueryResult], dict[str, str]]
) -> None:
    results, item_images = report_inputs
    dest = tmp_path / "r"
    page = write_report(dest, results, {}, "t", item_images).read_text("utf-8")
    thumbs = sorted((dest / "thumbs").glob("*.jpg"))
    # miss query, lost query, red (shared, made once), cut-out png. Placeholders: the broken file,
    # the URL, and "never-found" (no catalogue image, not retrieved). The hit is never rendered.
    assert len(thumbs) == 4
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert image.format == "JPEG"
            assert max(image.size) <= THUMB_SIZE
            assert image.mode == "RGB"
    assert page.count("image unavailable") == 3
    # Thumbnails are referenced relatively, so the folder can be moved or zipped.
    assert 'src="thumbs/' in page


def test_report_cutout_flattened_on_white(tmp_path: Path) -> None:
    # A transparent cut-out becomes a white thumbnail: JPEG has no alpha, and black would hide it.
    png = tmp_path / "cutout.png"
    Image.new("RGBA", (300, 200), (0, 0, 0, 0)).save(png)
    miss = QueryResult(Query(str(png), "a"), "views", (("b", 0.5, str(png)),))
    dest = tmp_path / "r"
    write_report(dest, [miss], {}, "t", {})
    (thumb,) = (dest / "thumbs").glob("*.jpg")
    with Image.open(thumb) as image:
        assert image.size[0] == THUMB_SIZE and image.size[1] < THUMB_SIZE  # aspect kept
        assert min(image.getpixel((5, 5))) > 250


def test_report_without_misses_and_rewrite(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "p.jpg", (1, 2, 3))
    hit = QueryResult(Query(photo, "a"), "views", (("a", 1.0, photo),))
    dest = tmp_path / "r"
    write_report(dest, [hit], {"views": evaluate([["a"]], ["a"])}, "first", {"a": photo})
    out = write_report(dest, [hit], {"views": evaluate([["a"]], ["a"])}, "second", {"a": photo})
    page = out.read_text("utf-8")
    assert "No misses." in page and "second" in page and "first" not in page
    assert not list(dest.glob("*.tmp"))


def test_query_result_rank_and_miss() -> None:
    q = Query("/x.jpg", "b")
    assert QueryResult(q, "views", (("a", 0.9, ""), ("b", 0.8, ""))).rank == 2
    assert QueryResult(q, "views", (("b", 0.9, ""),)).is_miss is False
    assert QueryResult(q, "views", ()).rank is None
    assert QueryResult(q, "views", ()).is_miss is True
