"""People a photographer manages: names, merges, splits, hidden people, a minimum face size;
kept across re-indexing and `forget`. Fakes (tests/unit/test_faces.py) on generated photos."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.errors import QueryError
from lookalike.faces import people as pp
from lookalike.faces.people import Book, PersonEntry, assign
from tests.unit.test_faces import make_index, photo

# -- pure grouping (hand-checked) -------------------------------------------------------------------


def test_first_grouping_follows_the_clusters() -> None:
    book = assign(["a", "b", "c"], [1, 1, 2], Book())
    assert {pid: set(e.members) for pid, e in book.people.items()} == {
        "1": {"a", "b"},
        "2": {"c"},
    }
    assert book.next_id == 3


def test_membership_is_sticky_and_new_faces_follow_their_cluster() -> None:
    book = Book({"1": PersonEntry("Ann", False, frozenset({"a"})),
                 "2": PersonEntry(None, False, frozenset({"b"}))}, 3)  # fmt: skip
    # The clustering now puts a and b together (and a new face d with them): the user's two
    # people stay two; d joins the lower id among the tied owners; e, alone, is a new person.
    out = assign(["a", "b", "d", "e"], [7, 7, 7, 8], book)
    assert set(out.people["1"].members) == {"a", "d"} and out.people["1"].name == "Ann"
    assert set(out.people["2"].members) == {"b"}
    assert set(out.people["3"].members) == {"e"} and out.next_id == 4


def test_gone_faces_leave_and_only_named_or_hidden_empty_people_stay() -> None:
    book = Book({"1": PersonEntry("Ann", False, frozenset({"a"})),
                 "2": PersonEntry(None, False, frozenset({"b"})),
                 "3": PersonEntry(None, True, frozenset({"c"}))}, 4)  # fmt: skip
    out = assign([], [], book)
    assert set(out.people) == {"1", "3"} and not out.people["1"].members


def test_merge_split_rename_hide() -> None:
    book = assign(["a", "b", "c", "d"], [1, 1, 2, 3], Book())
    book = pp.rename(book, "2", "  Bob ")
    book = pp.merge(book, "1", ["2", "3"])
    assert set(book.people) == {"1"} and book.people["1"].name == "Bob"
    assert set(book.people["1"].members) == {"a", "b", "c", "d"}
    book, new = pp.split(book, ["c"], name="Cat")
    assert new == "4" and set(book.people["4"].members) == {"c"}
    assert "c" not in book.people["1"].members
    assert pp.hide(book, "4").people["4"].hidden
    with pytest.raises(QueryError, match="no person 9"):
        pp.merge(book, "1", ["9"])
    with pytest.raises(QueryError, match="unknown face"):
        pp.split(book, ["zz"])
    # a split face stays split when grouped again, although its cluster says otherwise
    again = assign(["a", "b", "c", "d"], [1, 1, 1, 1], book)
    assert set(again.people["4"].members) == {"c"}


# -- over a face index ------------------------------------------------------------------------------


@pytest.fixture
def album(tmp_path: Path) -> Path:
    root = tmp_path / "album"
    photo(root / "a.png", {"ann": (20, 20, 60)})
    photo(root / "b.png", {"ann": (200, 100, 80), "bob": (40, 40, 50)})
    photo(root / "c.png", {"bob": (100, 100, 70)})
    return root


def _who(people: list[pp.PersonView]) -> dict[str | None, set[str]]:
    return {p.name: {Path(x).name for x in p.photos} for p in people}


def test_names_survive_reindexing_new_photos_and_forget(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        people = pp.list_people(fi)
        assert sorted(len(p.faces) for p in people) == [2, 2]
        ann = next(p for p in people if "a.png" in {Path(x).name for x in p.photos})
        bob = next(p for p in people if p is not ann)
        pp.change_book(fi, pp.rename, ann.person_id, "Ann")
        pp.change_book(fi, pp.rename, bob.person_id, "Bob")
        photo(album / "d.png", {"ann": (50, 50, 90)})  # a new photo of Ann
        fi.index(album)
        assert _who(pp.list_people(fi)) == {
            "Ann": {"a.png", "b.png", "d.png"},
            "Bob": {"b.png", "c.png"},
        }
        fi.forget_photo(album / "a.png")
        fi.index(album)  # the forgotten photo stays forgotten; names stay
        assert _who(pp.list_people(fi)) == {"Ann": {"b.png", "d.png"}, "Bob": {"b.png", "c.png"}}
        # forget --person uses the ids of this listing
        done = fi.forget_person(bob.person_id)
        assert done.faces_deleted == 2
        assert _who(pp.list_people(fi)) == {"Ann": {"b.png", "d.png"}}


def test_merge_split_and_hide_over_an_index(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        first, second = pp.list_people(fi)
        pp.change_book(fi, pp.merge, first.person_id, [second.person_id])
        (everyone,) = pp.list_people(fi)
        assert len(everyone.faces) == 4
        c_face = next(f.face_id for f in everyone.faces if f.photo.endswith("c.png"))
        new = pp.change_book(fi, pp.split, [c_face], name="Stranger")
        fi.index(album)  # nothing changed: the split holds
        listed = pp.list_people(fi)
        assert {p.name for p in listed} == {None, "Stranger"}
        pp.change_book(fi, pp.hide, new)
        assert [p.name for p in pp.list_people(fi)] == [None]
        assert {p.name for p in pp.list_people(fi, include_hidden=True)} == {None, "Stranger"}


def test_min_face_size_is_kept_across_runs(album: Path, tmp_path: Path) -> None:
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.settings import FaceSettings
    from tests.unit.test_faces import FakeDetector, FakeEmbedder

    def index(min_size: int | None) -> FaceIndex:
        settings = FaceSettings(detect_size=400, pad=0.1, threshold=0.3, min_face_size=min_size)
        return FaceIndex(
            tmp_path / "idx", face_settings=settings, detector=FakeDetector(),
            embedder=FakeEmbedder(),
        )  # fmt: skip

    with index(55) as fi:
        fi.index(album)
        assert sorted(f.face_size for f in fi.faces()) == [70, 80, 80]  # bob's 50 px one is out
        kept = {f.face_id for f in fi.faces() if not f.photo.endswith("a.png")}
    with index(None) as fi:  # not given: the index remembers 55
        s = fi.index(album)
        assert s.photos_unchanged == 3 and len(fi.faces()) == 3
    with index(0) as fi:
        fi.forget_photo(album / "a.png")
        s = fi.index(album)  # another minimum: looked at again, except the forgotten photo
        assert s.photos_indexed == 2 and sorted(f.face_size for f in fi.faces()) == [50, 70, 80]
        assert kept <= {f.face_id for f in fi.faces()}  # the faces kept keep their ids


def test_cli_people_commands(album: Path, tmp_path: Path, monkeypatch) -> None:
    from lookalike.api import cli_faces, cli_faces_people
    from tests.unit.test_faces import FakeDetector, FakeEmbedder

    real = cli_faces_people.open_faces

    def fake_faces(index, **overrides):
        fi = real(index, **{**overrides, "detect_size": 400, "pad": 0.1, "threshold": 0.3})
        fi._detector, fi._embedder = FakeDetector(), FakeEmbedder()
        return fi

    for module in (cli_faces, cli_faces_people):
        monkeypatch.setattr(module, "open_faces", fake_faces)
    run = CliRunner().invoke
    idx = str(tmp_path / "idx")
    assert run(cli_faces.app, ["index", str(album), "--index", idx]).exit_code == 0
    import json

    r = run(cli_faces.app, ["people", "list", "--index", idx, "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)["people"]
    assert len(listed) == 2 and all(p["faces"] == 2 for p in listed)
    pid = listed[0]["person"]
    r = run(cli_faces.app, ["people", "name", pid, "Ann", "--index", idx, "--json"])
    assert r.exit_code == 0, r.output
    r = run(cli_faces.app, ["people", "photos", pid, "--index", idx, "--json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)["photos"]) == 2
    other = listed[1]["person"]
    r = run(cli_faces.app, ["people", "merge", pid, other, "--index", idx, "--json"])
    assert r.exit_code == 0, r.output
    r = run(cli_faces.app, ["people", "list", "--index", idx, "--json"])
    (only,) = json.loads(r.stdout)["people"]
    assert only["name"] == "Ann" and only["faces"] == 4
    face = only["face_ids"][0]
    r = run(cli_faces.app, ["people", "split", face, "--name", "X", "--index", idx, "--json"])
    assert r.exit_code == 0, r.output
    new = json.loads(r.stdout)["person"]
    r = run(cli_faces.app, ["people", "hide", new, "--index", idx])
    assert r.exit_code == 0, r.output
    r = run(cli_faces.app, ["people", "list", "--index", idx, "--json"])
    assert [p["name"] for p in json.loads(r.stdout)["people"]] == ["Ann"]
    r = run(cli_faces.app, ["people", "name", "99", "Z", "--index", idx])
    assert r.exit_code == 2 and "no person 99" in r.output


def test_a_listing_that_changes_nothing_writes_nothing(album: Path, tmp_path: Path) -> None:
    """Readers (the People page) must not contend for the folder's write lock."""
    with make_index(tmp_path) as fi:
        fi.index(album)
        first = pp.list_people(fi)
        book = tmp_path / "idx" / pp.BOOK
        before = book.stat().st_mtime_ns
        with fi.write_lock():  # another writer holds the folder
            again = pp.list_people(fi)
        assert [p.person_id for p in again] == [p.person_id for p in first]
        assert book.stat().st_mtime_ns == before
