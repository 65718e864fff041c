"""People as a photographer shapes them: named, merged, split, hidden; stable across runs.

The faces of an index are grouped automatically (Chinese whispers, `cluster_faces`), but what a
user has decided must survive re-indexing, new photos and `forget`. So membership is sticky and
kept in `faces-book.json` beside the face index:

    people      person id ("1", "2", ... never reused) -> name, hidden, member face ids
    next_id     the next id to give

Listing (`list_people`) groups the faces again and applies the book:
    - a face that is a member of a person stays with that person (a user's merge or split is
      never undone by the clustering);
    - a new face (a member of nobody: a new photo, or the first listing) joins the person that
      holds most faces of its cluster, or, when its cluster holds none, a new person;
    - faces that no longer exist (forgotten, photo changed or removed) leave their person; a
      person left without faces disappears unless it has a name or is hidden (the user's word
      on it is kept, should the person come back in new photos of the same face ids).
Face ids derive from (photo, its bytes, face number), so an unchanged photo's faces keep their
ids across re-indexing. The listing is also saved as faces-people.json, so
`FaceIndex.forget_person(id)` removes the faces of a person as listed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, cast

import numpy as np

from lookalike.engine.lock import write_json
from lookalike.engine.manifest import now
from lookalike.errors import QueryError
from lookalike.faces.detect import require_dlib
from lookalike.faces.folder import PEOPLE
from lookalike.faces.values import Face, without_vector

if TYPE_CHECKING:
    from lookalike.faces.index import FaceIndex
    from lookalike.types import F32

P = ParamSpec("P")
BOOK = "faces-book.json"


@dataclass(frozen=True)
class PersonEntry:
    """What the book keeps of one person."""

    name: str | None = None
    hidden: bool = False
    members: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Book:
    people: Mapping[str, PersonEntry] = field(default_factory=dict)
    next_id: int = 1


Change = Callable[Concatenate[Book, P], Book | tuple[Book, str]]
"""A change of the book (`merge`, `split`, `rename`, `hide`): the new book, and split's new id."""


@dataclass(frozen=True)
class PersonView:
    """One person as listed: faces largest first; `cover` is the face to show for them."""

    person_id: str
    name: str | None
    hidden: bool
    faces: tuple[Face, ...]

    @property
    def photos(self) -> tuple[str, ...]:
        return tuple(sorted({f.photo for f in self.faces}))

    @property
    def cover(self) -> Face:
        return self.faces[0]


# -- pure grouping ----------------------------------------------------------------------------------


def assign(face_ids: Sequence[str], clusters: Sequence[int], book: Book) -> Book:
    """The book after grouping these faces (`clusters[i]` is face i's cluster label).

    Pure: see the module docstring for the rules. Deterministic for the same input.
    """
    alive = set(face_ids)
    owner = {f: pid for pid, e in book.people.items() for f in e.members if f in alive}
    members: dict[str, set[str]] = {pid: set() for pid in book.people}
    for f, pid in owner.items():
        members[pid].add(f)
    by_cluster: dict[int, list[str]] = {}
    for f, c in zip(face_ids, clusters, strict=True):
        by_cluster.setdefault(c, []).append(f)
    next_id = book.next_id
    for c in sorted(by_cluster, key=lambda c: face_ids.index(by_cluster[c][0])):
        faces = by_cluster[c]
        new = [f for f in faces if f not in owner]
        if not new:
            continue
        votes = Counter(owner[f] for f in faces if f in owner)
        if votes:
            pid = min(votes, key=lambda p: (-votes[p], int(p)))
        else:
            pid, next_id = str(next_id), next_id + 1
            members[pid] = set()
        members[pid].update(new)
    people = {}
    for pid, kept in members.items():
        old = book.people.get(pid, PersonEntry())
        if kept or old.name or old.hidden:
            people[pid] = PersonEntry(old.name, old.hidden, frozenset(kept))
    return Book(people, next_id)


def merge(book: Book, into: str, others: Iterable[str]) -> Book:
    """`others`' faces join `into`; `into` keeps its name (or takes the first other's)."""
    people = dict(book.people)
    target = _entry(book, into)
    name, members = target.name, set(target.members)
    for other in others:
        if other == into:
            continue
        entry = _entry(book, other)
        members |= entry.members
        name = name or entry.name
        del people[other]
    people[into] = PersonEntry(name, target.hidden, frozenset(members))
    return Book(people, book.next_id)


def split(book: Book, face_ids: Iterable[str], name: str | None = None) -> tuple[Book, str]:
    """The faces leave their person and become a new person (named `name`). (book, new id)."""
    moving = set(face_ids)
    if not moving:
        raise QueryError("name at least one face to split out")
    known = {f for e in book.people.values() for f in e.members}
    if moving - known:
        raise QueryError(f"unknown face id(s): {', '.join(sorted(moving - known)[:5])}")
    people = {
        pid: PersonEntry(e.name, e.hidden, e.members - moving) for pid, e in book.people.items()
    }
    new = str(book.next_id)
    people[new] = PersonEntry(name or None, False, frozenset(moving))
    return Book(people, book.next_id + 1), new


def rename(book: Book, person: str, name: str | None) -> Book:
    e = _entry(book, person)
    clean = (name or "").strip() or None
    if clean is not None and len(clean) > 200:
        raise QueryError("a name has at most 200 characters")
    return Book({**book.people, person: PersonEntry(clean, e.hidden, e.members)}, book.next_id)


def hide(book: Book, person: str, hidden: bool = True) -> Book:
    e = _entry(book, person)
    return Book({**book.people, person: PersonEntry(e.name, hidden, e.members)}, book.next_id)


def _entry(book: Book, person: str) -> PersonEntry:
    entry = book.people.get(str(person))
    if entry is None:
        known = ", ".join(sorted(book.people, key=int)[:20])
        raise QueryError(f"no person {person} (known: {known or 'none; list the people first'})")
    return entry


# -- on disk --------------------------------------------------------------------------------------


def load_book(index_dir: Path) -> Book:
    path = Path(index_dir) / BOOK
    if not path.exists():
        return Book()
    raw = json.loads(path.read_text())
    people = {
        pid: PersonEntry(p.get("name"), bool(p.get("hidden")), frozenset(p.get("members", ())))
        for pid, p in raw.get("people", {}).items()
    }
    return Book(people, int(raw.get("next_id", 1)))


def save_book(index_dir: Path, book: Book) -> None:
    write_json(
        Path(index_dir) / BOOK,
        {
            "next_id": book.next_id,
            "people": {
                pid: {"name": e.name, "hidden": e.hidden, "members": sorted(e.members)}
                for pid, e in sorted(book.people.items(), key=lambda kv: int(kv[0]))
            },
        },
    )


# -- faces -> people: Chinese whispers on the graph linking faces closer than a distance ----------
# Chinese whispers (Biemann 2006, dlib's implementation) needs no number of clusters: each face
# repeatedly takes the most common label among its linked neighbours. dlib seeds its random
# generator the same way on every call, so the same faces in the same order give the same people.

_BLOCK = 2048


def link_pairs(vectors: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of unit rows at Euclidean distance <= `threshold`.

    Computed in blocks of rows, so memory stays O(block x N) whatever N is.
    """
    v = np.asarray(vectors, dtype=np.float32)
    min_sim = 1.0 - threshold * threshold / 2.0
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(v), _BLOCK):
        sims = v[start : start + _BLOCK] @ v.T
        rows, cols = np.nonzero(sims >= min_sim - 1e-6)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                pairs.append((i, c))
    return pairs


def cluster_faces(faces: Sequence[Face], threshold: float) -> list[int]:
    """A person number per face (each read with its descriptor): 1 is the person with most
    faces, then 2 ...

    Ties in size are ordered by the person's first face, so numbering is stable for a given input.
    """
    n = len(faces)
    if n == 0:
        return []
    vectors = np.stack([cast("F32", f.vector) for f in faces])
    dlib = require_dlib()
    # A self-loop per face: dlib sizes its label array from the edges, so isolated faces need one.
    edges = [(i, i) for i in range(n)] + link_pairs(vectors, threshold)
    raw = list(dlib.chinese_whispers(edges))
    sizes = Counter(raw)
    first: dict[int, int] = {}
    for i, label in enumerate(raw):
        first.setdefault(label, i)
    order = sorted(sizes, key=lambda label: (-sizes[label], first[label]))
    number = {label: k + 1 for k, label in enumerate(order)}
    return [number[label] for label in raw]


# -- over a face index ------------------------------------------------------------------------------


def list_people(
    faces: FaceIndex, *, include_hidden: bool = False, threshold: float | None = None
) -> list[PersonView]:
    """Group the index's faces into people, apply and update the book, save the listing.

    Most faces first (then by id). Hidden people only with `include_hidden`.
    """
    limit = threshold if threshold is not None else faces.face_settings.cluster_threshold
    limit = limit if limit is not None else faces.face_settings.threshold
    every = faces.faces(with_vectors=True)  # every face carries its descriptor
    labels = cluster_faces(every, limit)
    ids = [f.face_id for f in every]
    book = assign(ids, labels, load_book(faces.index_dir))
    views = _views(book, every)
    listing = _listing(views)
    if book != load_book(faces.index_dir) or listing != _saved_listing(faces.index_dir):
        # Something to write (new faces, faces gone, first listing): under the lock, from the
        # book as it is now (another writer may have changed it meanwhile). A listing that
        # changes nothing writes nothing, so readers do not contend for the lock.
        with faces.write_lock():
            book = assign(ids, labels, load_book(faces.index_dir))
            save_book(faces.index_dir, book)
            views = _views(book, every)
            save_listing(faces.index_dir, _listing(views), limit)
    return [v for v in views if include_hidden or not v.hidden]


def change_book(faces: FaceIndex, change: Change[P], *args: P.args, **kw: P.kwargs) -> str | None:
    """Apply `change(book, *args, **kw)` (merge, split, rename, hide) under the write lock and
    save the book. Returns what `change` returns besides the book (split: the new id)."""
    with faces.write_lock():
        out = change(load_book(faces.index_dir), *args, **kw)
        book, extra = out if isinstance(out, tuple) else (out, None)
        save_book(faces.index_dir, book)
    return extra


def _views(book: Book, every: Sequence[Face]) -> list[PersonView]:
    by_id = {f.face_id: without_vector(f) for f in every}
    views = []
    for pid, e in book.people.items():
        faces = sorted(
            (by_id[f] for f in e.members if f in by_id),
            key=lambda f: (-f.face_size, f.photo, f.face_no),
        )
        if faces:
            views.append(PersonView(pid, e.name, e.hidden, tuple(faces)))
    views.sort(key=lambda v: (-len(v.faces), int(v.person_id)))
    return views


def _listing(views: Sequence[PersonView]) -> dict[str, list[str]]:
    return {v.person_id: [f.face_id for f in v.faces] for v in views}


def _saved_listing(index_dir: Path) -> dict[str, list[str]] | None:
    path = Path(index_dir) / PEOPLE
    return json.loads(path.read_text()).get("people") if path.exists() else None


def save_listing(index_dir: Path, people: Mapping[str, list[str]], threshold: float) -> None:
    """Write faces-people.json: the people as listed (id -> face ids), what `forget --person` takes."""
    write_json(
        Path(index_dir) / PEOPLE, {"threshold": threshold, "created": now(), "people": people}
    )
