"""Reading the packaging: token normalisation and text matching (units), PP-OCR on real photos (e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.pipeline.ocr import fold, normalise_tokens, token_similarity, trigrams
from lookalike.pipeline.text_match import ItemTextIndex, TextEvidence, TextMatchSettings, fuse

# ---------------------------------------------------------------------------------------------
# Normalisation (pure)
# ---------------------------------------------------------------------------------------------


def test_fold_removes_accents_and_case() -> None:
    assert fold("ÄPPLE Mjölk") == "apple mjolk"
    assert fold("Straße") == "strasse"


def test_normalise_tokens_splits_and_drops_noise() -> None:
    lines = ["BRAVO", "ÄPPLE-JUICE 1,5%", "a b", "18.50", "大", "Mild&Creamy"]
    assert normalise_tokens(lines) == ("bravo", "apple", "juice", "mild", "creamy")
    assert normalise_tokens("18.50 kr 2019", keep_numbers=True) == ("2019",)
    assert normalise_tokens("ox milk", min_len=2) == ("ox", "milk")
    assert normalise_tokens("") == ()


def test_trigram_similarity_tolerates_ocr_errors_in_long_words_only() -> None:
    assert trigrams("milk") == frozenset({"#mi", "mil", "ilk", "lk#"})
    assert token_similarity("yoghurt", "yoghurt") == 1.0
    assert 0.5 < token_similarity("yoghurt", "yogburt") < 0.7
    assert token_similarity("milk", "mjlk") < 0.5
    assert token_similarity("apple", "tropicana") == 0.0


# ---------------------------------------------------------------------------------------------
# Text matching and fusion (pure)
# ---------------------------------------------------------------------------------------------


def _index() -> ItemTextIndex:
    # Two cartons of one brand that differ in the flavour printed on them, and a fruit without text.
    return ItemTextIndex.from_photos(
        [
            ("apple-juice", ["bravo", "apple", "juice"]),
            ("apple-juice", ["bravo", "apple"]),
            ("orange-juice", ["bravo", "apelsin", "juice"]),
            ("orange-juice", ["bravo", "apelsin"]),
            ("banana", []),
        ]
    )


def test_the_item_showing_the_query_words_scores_highest() -> None:
    index = _index()
    settings = TextMatchSettings(fuzzy=1.0)
    ev = index.score(
        ["bravo", "apelsin", "juice"], ["apple-juice", "orange-juice", "banana"], settings
    )
    scores = {e.item_id: e.score for e in ev}
    assert scores["orange-juice"] > scores["apple-juice"] > scores["banana"] == 0.0
    assert min(scores.values()) >= 0.0 and max(scores.values()) <= 1.0
    assert set(ev[1].matched) == {"bravo", "apelsin", "juice"}
    # The brand alone is no evidence between the two products of that brand.
    brand = index.score(["bravo"], ["apple-juice", "orange-juice"], settings)
    assert brand[0].score == pytest.approx(brand[1].score)


def test_words_no_item_shows_count_for_nothing() -> None:
    index = _index()
    settings = TextMatchSettings(fuzzy=1.0, min_evidence=0.0, coverage=0.0)
    plain = index.score(["apelsin"], ["orange-juice"], settings)[0].score
    noisy = index.score(["apelsin", "qwxyz", "price"], ["orange-juice"], settings)[0].score
    assert plain == pytest.approx(noisy) == pytest.approx(1.0)


def test_coverage_keeps_a_product_with_more_words_from_winning() -> None:
    # Shelf photos of a mixed juice also catch the words of its neighbours: its vocabulary is a
    # superset. The query only shows "god" and "orange".
    index = ItemTextIndex.from_photos(
        [("orange", ["god", "orange"])] * 2 + [("mix", ["god", "orange", "red", "grapefruit"])] * 2
    )
    query = ["god", "orange"]
    recall_only = index.score(query, ["orange", "mix"], TextMatchSettings(fuzzy=1.0, coverage=0.0))
    assert recall_only[0].score == pytest.approx(recall_only[1].score)
    both = index.score(query, ["orange", "mix"], TextMatchSettings(fuzzy=1.0, coverage=0.5))
    assert both[0].score > both[1].score


def test_size_weights_favour_the_largest_letters() -> None:
    from lookalike.pipeline.ocr import token_weights

    tall = ((0.0, 0.0), (100.0, 0.0), (100.0, 40.0), (0.0, 40.0))
    small = ((0.0, 50.0), (50.0, 50.0), (50.0, 60.0), (0.0, 60.0))
    weights = token_weights(["OATLY", "price 18.50"], [tall, small], power=1.0)
    assert weights == {"oatly": 1.0, "price": pytest.approx(0.25)}
    assert token_weights(["OATLY", "price"], [tall, small], power=0.0) == {
        "oatly": 1.0,
        "price": 1.0,
    }
    index = ItemTextIndex.from_photos([("oatly", ["oatly"]), ("label", ["price"])])
    settings = TextMatchSettings(fuzzy=1.0, coverage=0.0, min_evidence=0.0)
    ev = index.score(["oatly", "price"], ["oatly", "label"], settings, weights)
    assert ev[0].score > 3 * ev[1].score


def test_fuzzy_matching_forgives_an_ocr_error() -> None:
    index = _index()
    exact = index.score(["apelsim"], ["orange-juice"], TextMatchSettings(fuzzy=1.0))[0]
    fuzzy = index.score(["apelsim"], ["orange-juice"], TextMatchSettings(fuzzy=0.5))[0]
    assert exact.score == 0.0
    assert fuzzy.score > 0.0 and fuzzy.matched == ("apelsin",)


def test_min_photos_drops_one_off_readings() -> None:
    index = ItemTextIndex.from_photos([("a", ["milk", "noise"]), ("a", ["milk"]), ("b", ["milk"])])
    settings = TextMatchSettings(fuzzy=1.0, min_photos=2, min_evidence=0.0)
    assert index.score(["noise"], ["a"], settings)[0].score == 0.0
    assert index.score(["noise"], ["a"], TextMatchSettings(fuzzy=1.0))[0].score > 0.0
    # An item with a single OCR'd photo keeps its words.
    assert index.score(["milk"], ["b"], settings)[0].score > 0.0


def test_index_round_trips_through_json_and_gates_queries() -> None:
    index = _index()
    again = ItemTextIndex.from_json(index.to_json())
    q = ["bravo", "apple"]
    assert again.score(q, ["apple-juice"]) == index.score(q, ["apple-juice"])
    assert index.has_text("apple-juice") and not index.has_text("banana")
    assert not index.has_text("unknown")
    assert index.should_read(["apple-juice", "orange-juice", "banana"], min_items=0.5)
    assert not index.should_read(["banana", "unknown", "apple-juice"], min_items=0.5)
    assert not index.should_read([])
    # One price label read on one of four photos of apples does not make apples a text item.
    apples = ItemTextIndex.from_photos([("apples", ["price"]), *[("apples", [])] * 3])
    assert not apples.has_text("apples", min_share=0.3) and apples.has_text("apples", 0.25)


def test_fuse_reorders_only_the_head() -> None:
    candidates = [("a", 0.90), ("b", 0.88), ("c", 0.70), ("d", 0.69)]
    evidence = [TextEvidence("b", 1.0), TextEvidence("d", 1.0)]
    fused = fuse(candidates, evidence, TextMatchSettings(weight=0.1, top_n=3))
    assert [i for i, _ in fused] == ["b", "a", "c", "d"]
    assert fused[0][1] == pytest.approx(0.98)
    # d has text evidence too but lies beyond top_n: untouched.
    assert fused[3] == ("d", 0.69)
    # Without text evidence the order is the image order.
    assert fuse(candidates, [], TextMatchSettings()) == candidates


# ---------------------------------------------------------------------------------------------
# PP-OCR on real photos
# ---------------------------------------------------------------------------------------------

_CARTON = (
    "iconic-images-and-descriptions/Packages/Juice/Bravo-Apple-Juice/Bravo-Apple-Juice_Iconic.jpg"
)
_FRUIT = "iconic-images-and-descriptions/Fruit/Apple/Golden-Delicious/Golden-Delicious_Iconic.jpg"


@pytest.mark.e2e
def test_a_grocery_carton_yields_the_words_printed_on_it(data_dir: Path) -> None:
    from lookalike.pipeline.decode import load_image
    from lookalike.pipeline.ocr import TextReader

    image = load_image(str(data_dir / "grocery" / _CARTON)).image
    result = TextReader().read(image)
    # The carton says "BRAVO / ÄPPLE / JUICE".
    assert len({"bravo", "apple", "juice"} & set(result.words)) >= 2, result.text
    assert len(result.boxes) == len(result.scores) == len(result.lines) >= 2
    for quad in result.boxes:
        for x, y in quad:
            assert -2 <= x <= image.width + 2 and -2 <= y <= image.height + 2
    assert result.ms > 0


@pytest.mark.e2e
def test_the_gate_reads_the_carton_and_skips_the_apple(data_dir: Path) -> None:
    from lookalike.pipeline.decode import load_image
    from lookalike.pipeline.ocr import TextReader

    reader = TextReader()
    carton = reader.detect(load_image(str(data_dir / "grocery" / _CARTON)).image)
    fruit_gate, fruit_text = reader.read_if_text(
        load_image(str(data_dir / "grocery" / _FRUIT)).image
    )
    assert carton.has_text and carton.boxes >= 2 and carton.area > 0.01
    assert not fruit_gate.has_text and fruit_text is None
