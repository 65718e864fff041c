"""Face search units, on fakes: no dlib model runs here (the real models are in test_faces_e2e.py).

Synthetic photos hold coloured squares ("faces"); the fake detector finds each palette colour's
square, the fake embedder maps a colour to one fixed unit vector (a "person"), nudged a little by
where the square is, so the same person in two photos is close but not identical.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.common import (
    best_accuracy_threshold,
    pair_distances,
    rates,
    search_average_precision,
    threshold_at_fpr,
    tpr_at_fpr,
)
from lookalike.errors import QueryError, StoreError
from lookalike.faces.detect import (
    FaceBox,
    ManyFacesError,
    NoFaceError,
    find_faces,
    suppress_duplicates,
)
from lookalike.faces.index import FaceIndex
from lookalike.faces.ingest import scan_photos
from lookalike.faces.settings import FaceSettings
from lookalike.faces.values import split_tiers
from lookalike.pipeline.embed import l2_normalise
from lookalike.types import Box

PALETTE = {
    "ann": (220, 40, 40),
    "bob": (40, 200, 40),
    "cat": (40, 60, 230),
    "dan": (230, 200, 30),
}


class FakeDetector:
    """Finds the bounding box of each palette colour (tolerant of resize blur)."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        self.calls += 1
        out = []
        for colour in PALETTE.values():
            mask = (np.abs(rgb.astype(int) - np.array(colour)).sum(axis=2) < 30).astype(np.uint8)
            ys, xs = np.nonzero(mask)
            if len(xs) > 20:
                out.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 1.0))
        return out


class FakeEmbedder:
    """Box -> the unit vector of the colour at its centre, plus a small position-dependent nudge."""

    name = "fake-embedder"
    dim = 128

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.calls = 0
        rng = np.random.default_rng(7)
        self.base = {c: l2_normalise(rng.normal(size=(1, 128)))[0] for c in PALETTE.values()}

    def embed(self, image: Image.Image | np.ndarray, faces: list[FaceBox]) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed")  # what a kill looks like mid-run
        rgb = np.asarray(image)
        rows = []
        for f in faces:
            cx, cy = int((f.box.x1 + f.box.x2) / 2), int((f.box.y1 + f.box.y2) / 2)
            pixel = tuple(int(v) for v in rgb[cy, cx])
            colour = min(
                PALETTE.values(),
                key=lambda c: sum(abs(a - b) for a, b in zip(c, pixel, strict=True)),
            )
            nudge = np.zeros(128, dtype=np.float32)
            nudge[(cx + cy) % 128] = 0.05
            rows.append(self.base[colour] + nudge)
        return l2_normalise(np.array(rows).reshape(-1, 128))


def photo(path: Path, people: dict[str, tuple[int, int, int]], size=(400, 300)) -> Path:
    """A grey photo with one square per person: name -> (x, y, side)."""
    im = Image.new("RGB", size, (90, 90, 90))
    for name, (x, y, side) in people.items():
        im.paste(PALETTE[name], (x, y, x + side, y + side))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def make_index(tmp: Path, **kw) -> FaceIndex:
    settings = FaceSettings(detect_size=kw.pop("detect_size", 400), pad=0.1, threshold=0.3)
    return FaceIndex(
        tmp / "idx",
        face_settings=settings,
        detector=kw.pop("detector", FakeDetector()),
        embedder=kw.pop("embedder", FakeEmbedder()),
    )


@pytest.fixture
def album(tmp_path: Path) -> Path:
    root = tmp_path / "album"
    photo(root / "a.png", {"ann": (20, 20, 60)})
    photo(root / "b.png", {"ann": (200, 100, 80), "bob": (40, 40, 50)})
    photo(root / "c.png", {"bob": (100, 100, 70)})
    photo(root / "sub" / "d.png", {"cat": (10, 10, 90), "dan": (250, 150, 40)})
    photo(root / "e.png", {})  # nobody
    (root / ".hidden.png").write_bytes(b"not looked at")
    (root / "notes.txt").write_text("not a photo")
    return root


# -- verification metrics (hand-checked) ---------------------------------------------------------


def test_threshold_at_fpr_never_splits_ties() -> None:
    neg = np.array([0.9, 0.4, 0.2, 0.4])
    t = threshold_at_fpr(neg, 0.5)  # 2 may pass, but the two 0.4s come together
    assert 0.2 <= t < 0.4
    assert rates(np.array([]), neg, t)[1] == 0.25
    assert threshold_at_fpr(neg, 0.0) < 0.2
    assert threshold_at_fpr(neg, 1.0) == float("inf")
    with pytest.raises(ValueError):
        threshold_at_fpr(np.array([]), 0.1)
    with pytest.raises(ValueError):
        threshold_at_fpr(neg, 1.5)


def test_tpr_at_fpr_and_rates() -> None:
    pos = np.array([0.1, 0.2, 0.3, 0.5])
    neg = np.array([0.25, 0.6, 0.7, 0.8])
    tpr, t = tpr_at_fpr(pos, neg, 0.25)  # one negative (0.25) may pass: threshold just below 0.6
    assert 0.5 <= t < 0.6 and tpr == 1.0
    tpr, t = tpr_at_fpr(pos, neg, 0.0)  # none may pass: below 0.25
    assert t < 0.25 and tpr == 0.5
    assert rates(pos, neg, 0.3) == (0.75, 0.25)
    threshold, acc = best_accuracy_threshold(pos, neg)
    assert threshold == 0.5 and acc == pytest.approx((1.0 + 0.75) / 2)


def test_search_average_precision_counts_what_the_cut_leaves_out() -> None:
    d, rel = [0.2, 0.3, 0.5], [True, False, True]
    assert search_average_precision(d, rel, 0.4) == pytest.approx(0.5)  # 2nd relevant not returned
    assert search_average_precision(d, rel, 0.6) == pytest.approx((1 + 2 / 3) / 2)
    assert search_average_precision([0.3, 0.1], [True, False], 1.0) == pytest.approx(0.5)
    assert search_average_precision([0.1, np.inf], [False, True], 2.0) == 0.0  # no face found
    assert search_average_precision([0.1], [False], 1.0) == 0.0
    with pytest.raises(ValueError):
        search_average_precision([0.1], [True, False], 1.0)


def test_split_tiers_gates_maybe_on_a_strict_match() -> None:
    you, maybe = split_tiers([0.5, 0.3, 0.41, 0.2], 0.36, 0.45)
    assert you.tolist() == [3, 1] and maybe.tolist() == [2]
    you, maybe = split_tiers([0.40, 0.41], 0.36, 0.45)  # nothing strict: nothing at all
    assert you.tolist() == [] and maybe.tolist() == []
    you, maybe = split_tiers([0.3, 0.4], 0.36, 0.36)  # maybe at the threshold: no such tier
    assert you.tolist() == [0] and maybe.tolist() == []


def test_pair_distances_splits_same_and_different_and_skips_missing() -> None:
    v = np.eye(3, dtype=np.float32)
    v = np.vstack([v, np.full((1, 3), np.nan)])
    pos, neg = pair_distances(v, ["x", "x", "y", "x"])
    assert len(pos) == 1 and len(neg) == 2  # the NaN row (no face) is in no pair
    assert pos[0] == pytest.approx(np.sqrt(2))


# -- detection geometry ---------------------------------------------------------------------------


def test_find_faces_maps_boxes_back_through_resize_and_pad() -> None:
    im = Image.new("RGB", (1600, 1200), (90, 90, 90))
    im.paste(PALETTE["ann"], (400, 300, 600, 500))
    im.paste(PALETTE["bob"], (1500, 1100, 1600, 1200))  # touches the corner
    det = FakeDetector()
    faces = find_faces(im, det, FaceSettings(detect_size=400, pad=0.2, border="grey"))
    assert [round(f.size) for f in faces] == [200, 100]  # largest first
    ann = faces[0].box
    assert ann.x1 == pytest.approx(400, abs=8) and ann.y2 == pytest.approx(500, abs=8)
    bob = faces[1].box
    assert bob.x2 <= 1600 and bob.y2 <= 1200  # clipped to the photo


def test_find_faces_enlarges_small_photos_at_most_max_upscale() -> None:
    seen: list[tuple[int, ...]] = []

    class Spy(FakeDetector):
        def detect(self, rgb):
            seen.append(rgb.shape)
            return super().detect(rgb)

    im = Image.new("RGB", (100, 50), (90, 90, 90))
    find_faces(im, Spy(), FaceSettings(detect_size=1000, max_upscale=3.0, pad=0.0))
    assert seen == [(150, 300, 3)]


def test_suppress_duplicates_keeps_best_of_nested_boxes() -> None:
    big = (0, 0, 100, 100, 2.0)
    inside = (50, 50, 90, 90, 0.5)  # fully inside: same face at another scale
    apart = (200, 0, 260, 60, 0.1)
    assert suppress_duplicates([inside, big, apart]) == [big, apart]


# -- scanning -------------------------------------------------------------------------------------


def test_scan_photos_recurses_skips_hidden_and_non_images(album: Path) -> None:
    found, skipped = scan_photos(album)
    assert [Path(p).relative_to(album).as_posix() for p in found] == [
        "a.png",
        "b.png",
        "c.png",
        "e.png",
        "sub/d.png",
    ]
    assert skipped == []  # notes.txt is not a photo: not even worth a word
    found, skipped = scan_photos([album / "a.png", album / "missing.png"])
    assert len(found) == 1 and skipped[0].reason == "file not found"


def test_netpbm_photos_are_indexed_and_unreadable_photos_reported(
    album: Path, tmp_path: Path
) -> None:
    """Scanners and lab cameras write PGM / PPM: indexed like the rest. Photos no decoder here
    reads (camera RAW, other image formats) are reported, not passed over in silence."""
    for name, mode in (("grey.pgm", "L"), ("colour.ppm", "RGB")):
        im = Image.open(photo(tmp_path / "x.png", {"ann": (30, 30, 70)})).convert(mode)
        im.save(album / name)
    (album / "IMG_0001.CR2").write_bytes(b"raw")
    Image.new("RGB", (40, 40)).save(album / "old.pcx")
    with make_index(tmp_path) as fi:
        s = fi.index(album)
        assert {Path(p).name for p in fi.photos()} >= {"grey.pgm", "colour.ppm"}
        assert len(fi.faces(str(album / "colour.ppm"))) == 1
        # (the fake detector finds faces by colour; tests/e2e/test_faces_e2e.py finds ORL's in PGM)
        reasons = {Path(x.source).name: x.reason for x in s.skipped}
        assert set(reasons) == {"IMG_0001.CR2", "old.pcx"}
        assert "camera RAW" in reasons["IMG_0001.CR2"] and "not read" in reasons["old.pcx"]


# -- the index ------------------------------------------------------------------------------------


def test_index_search_and_incremental(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        s = fi.index(album)
        assert (s.photos_indexed, s.faces_written, s.photos_without_faces) == (5, 6, 1)
        assert fi.photos()[str(album / "b.png")] == 2
        face = fi.faces(str(album / "b.png"))[0]  # largest first: ann's 80 px square
        assert face.box == pytest.approx((200, 100, 280, 180), abs=4)
        assert face.face_size == pytest.approx(80, abs=4)

        result = fi.search(album / "a.png")
        assert [Path(m.photo).name for m in result.matches] == ["a.png", "b.png"]
        assert result.matches[0].distance < 1e-3 < result.matches[1].distance <= 0.3
        assert result.matches[1].box == pytest.approx((200, 100, 280, 180), abs=4)

        again = fi.index(album)
        assert (again.photos_unchanged, again.photos_indexed) == (5, 0)


def test_boxes_are_in_the_pixels_of_the_full_photo_when_decoded_smaller(tmp_path: Path) -> None:
    big = tmp_path / "big" / "big.jpg"
    big.parent.mkdir()
    im = Image.new("RGB", (3000, 2400), (90, 90, 90))
    im.paste(PALETTE["cat"], (2000, 1200, 2400, 1600))
    im.save(big, quality=95)
    settings = FaceSettings(detect_size=600, pad=0.1, decode_size=1024)
    with FaceIndex(
        tmp_path / "idx", face_settings=settings, detector=FakeDetector(), embedder=FakeEmbedder()
    ) as fi:
        fi.index(big.parent)
        (face,) = fi.faces()
    # Decoded at 1/2 (1500x1200), found at 600 px wide: the box is still in the file's pixels.
    assert face.box == pytest.approx((2000, 1200, 2400, 1600), abs=12)


def test_changed_photo_replaces_its_faces(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        photo(album / "b.png", {"cat": (10, 10, 60)})  # ann and bob replaced by cat
        s = fi.index(album)
        assert (s.photos_indexed, s.photos_unchanged) == (1, 4)
        assert len(fi.faces(str(album / "b.png"))) == 1
        names = [Path(m.photo).name for m in fi.search(album / "a.png").matches]
        assert names == ["a.png"]


def test_killed_run_resumes_to_the_same_index(album: Path, tmp_path: Path) -> None:
    settings = FaceSettings(detect_size=400, pad=0.1, threshold=0.3, batch_size=1)
    killed = FaceIndex(
        tmp_path / "idx",
        face_settings=settings,
        detector=FakeDetector(),
        embedder=FakeEmbedder(fail_after=2),
    )
    with pytest.raises(KeyboardInterrupt):
        killed.index(album)
    killed.close()
    with FaceIndex(
        tmp_path / "idx", face_settings=settings, detector=FakeDetector(), embedder=FakeEmbedder()
    ) as fi:
        s = fi.index(album)
        assert s.photos_unchanged == 2 and s.photos_indexed == 3  # only the unfinished ones
        resumed = {(f.photo, f.face_no, f.box) for f in fi.faces()}
    with make_index(tmp_path / "fresh") as fresh:
        fresh.index(album)
        assert {(f.photo, f.face_no, f.box) for f in fresh.faces()} == resumed


def test_bad_file_is_skipped_and_keeps_its_faces(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        (album / "c.png").write_bytes(b"\x89PNG broken")
        s = fi.index(album)
        assert [Path(x.source).name for x in s.skipped] == ["c.png"]
        assert len(fi.faces(str(album / "c.png"))) == 1  # old faces kept


def test_sync_removes_photos_gone_from_the_folder(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        (album / "c.png").unlink()
        assert fi.index(album).photos_removed == 0  # without --sync nothing is removed
        assert fi.index(album, sync=True).photos_removed == 1
        assert str(album / "c.png") not in fi.photos()
        assert [Path(m.photo).name for m in fi.search(album / "b.png", face=1).matches] == ["b.png"]


def test_query_with_no_face_or_several_faces(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        with pytest.raises(NoFaceError, match="no face found"):
            fi.search(album / "e.png")
        with pytest.raises(ManyFacesError, match="2 faces") as many:
            fi.search(album / "b.png")
        assert len(many.value.faces) == 2
        bob = fi.search(album / "b.png", face=1)  # the smaller face: bob
        assert [Path(m.photo).name for m in bob.matches] == ["b.png", "c.png"]
        with pytest.raises(QueryError, match="face 5 does not exist"):
            fi.search(album / "b.png", face=5)
        with pytest.raises(QueryError):
            fi.search(album / "a.png", k=0)


def test_threshold_decides_same_person(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        strict = fi.search(album / "a.png", threshold=0.01, maybe_threshold=0)
        assert [Path(m.photo).name for m in strict.matches] == ["a.png"]
        loose = fi.search(album / "a.png", threshold=2.0, k=10)
        assert len(loose.matches) == 5 - 1  # every photo with a face; e.png has none
        assert [m.distance for m in loose.matches] == sorted(m.distance for m in loose.matches)


def test_matches_come_in_two_tiers(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        # ann's own photo is "you"; ann in b.png (same colour, other place: ~0.07 away) "maybe"
        result = fi.search(album / "a.png", threshold=0.01, maybe_threshold=0.2)
        assert [(Path(m.photo).name, m.tier) for m in result.matches] == [
            ("a.png", "you"),
            ("b.png", "maybe"),
        ]
        assert result.maybe_threshold == 0.2 and len(result.you) == len(result.maybe) == 1
        assert 0.01 < result.maybe[0].distance <= 0.2
        # maybe_threshold below threshold: one tier only
        only = fi.search(album / "a.png", threshold=0.01, maybe_threshold=0.005)
        assert [m.tier for m in only.matches] == ["you"] and only.maybe_threshold == 0.01
        with pytest.raises(QueryError, match="maybe_threshold"):
            fi.search(album / "a.png", maybe_threshold=3.0)


def test_person_in_no_photo_gets_no_maybe_matches(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index([album / "b.png", album / "c.png"])
        # ann is in b.png, ~0.07 away: within the maybe tier, but nothing is strict
        assert fi.search(album / "a.png", threshold=0.01, maybe_threshold=0.2).matches == ()
        assert len(fi.search(album / "a.png", threshold=0.1).matches) == 1


def test_several_portraits_match_the_nearest_of_them(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        one = fi.search(album / "a.png", threshold=0.01, maybe_threshold=0)
        both = fi.search_many([album / "a.png", album / "c.png"], threshold=0.01, maybe_threshold=0)
        assert [Path(m.photo).name for m in one.matches] == ["a.png"]
        # each photo once, at its distance to the nearer portrait (0: a.png to a, c.png to c)
        assert [(Path(m.photo).name, m.distance) for m in both.matches] == [
            ("a.png", 0.0),
            ("c.png", 0.0),
        ]
        assert both.portraits == 2 and both.query_face.vector is not None
        # the mean of ann and bob is near neither: nothing within 0.01
        mean = fi.search_many([album / "a.png", album / "c.png"], threshold=0.01, combine="mean")
        assert mean.matches == ()
        with pytest.raises(QueryError, match="combine"):
            fi.search_many([album / "a.png"], combine="median")
        with pytest.raises(QueryError, match="no portrait"):
            fi.search_many([])
        with pytest.raises(ManyFacesError):
            fi.search_many([album / "a.png", album / "b.png"])


def test_search_without_index_is_a_clear_error(tmp_path: Path) -> None:
    fi = make_index(tmp_path)
    with pytest.raises(StoreError, match="faces index"):
        fi.search(tmp_path / "x.png")


def test_clusters_group_people(album: Path, tmp_path: Path) -> None:
    photo(album / "f.png", {"ann": (100, 50, 70), "dan": (300, 200, 50)})
    with make_index(tmp_path) as fi:
        fi.index(album)
        people = fi.clusters()
        by_photos = {p.person_id: {Path(x).name for x in p.photos} for p in people}
        assert by_photos[1] == {"a.png", "b.png", "f.png"}  # ann, the most faces
        assert sorted(len(p.faces) for p in people) == [1, 2, 2, 3]
        assert [p.person_id for p in people] == [1, 2, 3, 4]


def _stored_forms(vector: np.ndarray) -> list[bytes]:
    """The bytes a vector can sit on disk as: raw float32 (segments), CBOR floats (the WAL)."""
    return [
        vector.astype("<f4").tobytes(),
        b"".join(b"\xfa" + struct.pack(">f", float(x)) for x in vector),
    ]


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    """Files under `root` that contain any of `needles` (a byte-level grep)."""
    found = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            if any(n in data for n in needles):
                found.append(str(f.relative_to(root)))
    return found


def test_forget_photo_removes_vectors_from_search_and_disk(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        gone = fi.faces(str(album / "a.png"), with_vectors=True)[0]
        kept = fi.faces(str(album / "c.png"), with_vectors=True)[0]
        fi.store.flush()
        shard = fi.index_dir / "faces"
        # The check can fail: before forgetting, both forms of the vector are on disk.
        assert len(_files_holding(shard, _stored_forms(gone.vector))) >= 2

        done = fi.forget_photo(album / "a.png")
        assert done.faces_deleted == 1
        assert [Path(m.photo).name for m in fi.search(album / "a.png").matches] == ["b.png"]
        assert str(album / "a.png") not in fi.photos()
        # Indexing the folder again does not bring the forgotten faces back.
        assert fi.index(album).photos_unchanged == 5
        assert fi.faces(str(album / "a.png")) == []
    assert _files_holding(tmp_path / "idx", _stored_forms(gone.vector)) == []
    assert _files_holding(tmp_path / "idx", _stored_forms(kept.vector))  # the rest is intact
    with make_index(tmp_path) as fi:
        assert len(fi.faces()) == 5
        with pytest.raises(QueryError, match="not in the face index"):
            fi.forget_photo(album / "nope.png")


def test_forget_person_removes_every_face_of_the_cluster(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
        with pytest.raises(QueryError, match="clusters"):
            fi.forget_person(1)
        people = fi.clusters()
        ann = next(p for p in people if {Path(x).name for x in p.photos} == {"a.png", "b.png"})
        vectors = [
            f.vector
            for f in fi.faces(with_vectors=True)
            if f.face_id in {g.face_id for g in ann.faces}
        ]
        done = fi.forget_person(ann.person_id)
        assert done.faces_deleted == 2
        assert fi.search(album / "a.png", threshold=2.0).matches  # others are still there
        assert all(
            Path(m.photo).name != "a.png" for m in fi.search(album / "a.png", threshold=2.0).matches
        )
        assert fi.photos()[str(album / "b.png")] == 1  # bob stays
        with pytest.raises(QueryError, match="no person"):
            fi.forget_person(ann.person_id)
    needles = [form for v in vectors for form in _stored_forms(v)]
    assert _files_holding(tmp_path / "idx", needles) == []


def test_compaction_interrupted_is_recovered(album: Path, tmp_path: Path) -> None:
    with make_index(tmp_path) as fi:
        fi.index(album)
    idx = tmp_path / "idx"
    # Killed after the copy was complete and the old shard moved away, before the new one moved in.
    (idx / "faces").rename(idx / "faces.compact")
    (idx / "faces.compact" / "COMPLETE").write_text("x")
    with make_index(tmp_path) as fi:
        assert len(fi.faces()) == 6
    # Killed while copying: the half copy is thrown away.
    (idx / "faces.compact").mkdir()
    with make_index(tmp_path) as fi:
        assert len(fi.faces()) == 6
    assert not (idx / "faces.compact").exists()


def test_other_embedder_is_refused(album: Path, tmp_path: Path) -> None:
    from lookalike.errors import IndexMismatchError

    with make_index(tmp_path) as fi:
        fi.index(album)

    class Other(FakeEmbedder):
        name = "other"

    with (
        make_index(tmp_path, embedder=Other()) as fi,
        pytest.raises(IndexMismatchError),
    ):
        fi.index(album)


def test_one_writer_at_a_time(album: Path, tmp_path: Path) -> None:
    import fcntl

    with make_index(tmp_path) as fi:
        fi.index_dir.mkdir(parents=True, exist_ok=True)
        with open(fi.index_dir / ".faces.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            with pytest.raises(StoreError, match="another process"):
                fi.index(album)


def test_boxes_picture_and_people_page(album: Path, tmp_path: Path) -> None:
    from lookalike.faces.report import save_boxes_picture, write_people_page

    out = save_boxes_picture(album / "b.png", [(200, 100, 280, 180)], tmp_path / "b.jpg")
    pic = np.asarray(Image.open(out))
    assert pic.shape == (300, 400, 3)
    assert not np.allclose(pic[100, 240], PALETTE["ann"], atol=40)  # the outline is drawn
    with make_index(tmp_path) as fi:
        fi.index(album)
        page = write_people_page(tmp_path / "people", fi.clusters(), title="<people>")
    text = page.read_text()
    assert "&lt;people&gt;" in text and text.count("<section") == 4
    assert len(list((tmp_path / "people" / "faces").glob("*.jpg"))) == 6


def test_cli_bad_detector_is_a_usage_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lookalike.api.cli_faces import app

    r = CliRunner().invoke(
        app, ["index", str(tmp_path), "--detector", "bogus", "--index", str(tmp_path / "i")]
    )
    assert r.exit_code == 2 and "--detector" in r.output and "'hog' or 'cnn'" in r.output


def test_cli_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, lookalike.api.cli_faces, lookalike.faces; "
        "print([m for m in ('numpy', 'PIL', 'dlib', 'qdrant_edge') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_validate_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_FACES_THRESHOLD", "0.42")
    assert FaceSettings().threshold == 0.42
    with pytest.raises(ValueError):
        FaceSettings(pad=0.9)
    assert Box(0, 0, 1, 1).as_list() == [0, 0, 1, 1]
