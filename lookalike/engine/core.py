"""Engine: index a catalogue, search it by photo. The CLI, HTTP API and web page are thin layers on it.

The engine never prints or exits: it reports progress through a callback and raises typed errors.

Index folder layout:
    lookalike.json   what built the index (models, preprocessing): see `index_manifest`
    shard/           the Qdrant Edge shard: one point per view, one `centroid` point per item
                     (or a collection elsewhere: `--store`, recorded in the manifest)
    .lock            held while a process writes

Visibility while indexing (readers may search while a run writes): a view is written with
`pending: true`; an item's centroid is written once all its views are; then its views lose the
flag. Centroid searches see an item only through its centroid, view searches skip pending views,
so a query never sees an item with only some of its views, nor before its centroid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from lookalike.config import Settings
from lookalike.engine.lock import ClosesStore, folder_write_lock
from lookalike.engine.manifest import IndexManifest, ModelRecord
from lookalike.errors import (
    CatalogueError,
    DecodeError,
    IndexMismatchError,
    QueryError,
    StoreError,
)
from lookalike.pipeline.embed import ImageEmbedder, l2_normalise
from lookalike.store.base import Condition, Filter, PointRecord, Store, point_id, where
from lookalike.store.filters import parse_where

if TYPE_CHECKING:
    from lookalike.pipeline.decode import DecodeLimits
    from lookalike.pipeline.views import ViewSettings

from lookalike.types import (
    F32,
    RESERVED_PAYLOAD_KEYS,
    Aggregation,
    Box,
    IndexSummary,
    Item,
    ProductHit,
    Skipped,
)

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances; total may be 0 when unknown."""

# Engine-owned keys hidden from results; the automatic attributes stay visible (and facetable).
INTERNAL_KEYS = RESERVED_PAYLOAD_KEYS - {"colours", "classes", "labels"}
_LOOKAHEAD_BATCHES = 4


@dataclass(frozen=True)
class SearchResult:
    """Results (one per item, best first) and where the time went, in milliseconds."""

    hits: tuple[ProductHit, ...]
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    mode: Aggregation = "centroid"
    score: str = "cosine"
    """What `ProductHit.score` is: `cosine` similarity, `bm25` text score, or `rrf` fused rank score."""
    query_object: QueryObject | None = None
    """The region of the query photo searched with (None for text and item queries)."""
    objects: tuple[QueryObject, ...] = ()
    """Every relevant object detected in the query photo, most relevant first (pickable in the UI)."""

    @property
    def match(self) -> str | None:
        """The best hit's "same product", "similar" or "no close match" (None: not judged)."""
        return self.hits[0].match if self.hits else None


@dataclass(frozen=True)
class _Task:
    item: Item
    image: str


@dataclass(frozen=True)
class _Loaded:
    task: _Task
    sha256: str | None = None
    image: Image.Image | None = None
    skipped: Skipped | None = None
    unchanged: bool = False
    views: tuple[_View, ...] = ()
    words: tuple[str, ...] | None = None
    """OCR words of an unchanged photo read for the first time (only its payload changes)."""


@dataclass(frozen=True)
class _View:
    """One view of a decoded catalogue photo, ready to embed."""

    key: str
    box: tuple[float, float, float, float]
    label: str
    score: float
    image: Image.Image | None = field(compare=False, repr=False)
    colours: tuple[str, ...] = ()
    tensor: F32 | None = field(default=None, compare=False, repr=False)
    """The embedder's input, made on the decode threads when the embedder can `prepare` one."""
    words: tuple[str, ...] | None = None
    """Words OCR read on the photo (`settings.ocr`); None when OCR did not run on it."""


EmbeddedBatch = tuple[list[_Loaded], F32, list[list[str]]]
"""Loaded photos, the vectors of their views in order (N, dim), and each view's class names."""


class IndexRunner(Protocol):
    """Where decoding and embedding run (this process by default; `lookalike.engine.distributed` spreads
    them over a Ray cluster). The engine writes what it yields to the store, in order."""

    def embedded(
        self,
        engine: Engine,
        tasks: Sequence[_Task],
        existing: Mapping[tuple[str, str], _Stored],
    ) -> Iterator[EmbeddedBatch]: ...


@dataclass(frozen=True)
class _Stored:
    ids: tuple[str, ...]
    content_hash: str
    fields_hash: str
    read: bool = False
    """OCR ran on the photo (its views carry `ocr_words`)."""


_NO_VIEWS = _Stored((), "", "")


@dataclass(frozen=True)
class QueryObject:
    """What part of a query photo a search used: a detected object, the user's box, or the whole."""

    label: str
    box: tuple[float, float, float, float]
    score: float


NOT_DETECTED = (None, "image", "box")
"""View labels that did not come from the detector: the whole photo, a user's box."""
SEARCH_TEXT = "search_text"
"""Centroid payload field holding an item's words, BM25-indexed for text queries."""
FUSION_DEPTH = 50
"""How many results of each ranking go into a fusion."""
RRF_K = 60
TEXT_TOP_N = 10
"""Query text re-orders this many image candidates (chosen on held-out catalogue photos)."""
TEXT_SIZE_POWER = 1.0
"""Query words count by their letter height relative to the tallest line, to this power (the
product held to the camera has the largest print; chosen on held-out catalogue photos)."""
"""Reciprocal rank fusion constant (Cormack et al. 2009): rank r contributes 1 / (RRF_K + r)."""
VISIBLE_VIEWS = Filter((Condition("kind", "eq", "view"), Condition("pending", "ne", True)))
"""Views a search may return: not those of an item still being written (no `pending` = visible,
so indexes from before the flag existed read as before)."""
PENDING_VIEWS = Filter((Condition("kind", "eq", "view"), Condition("pending", "eq", True)))
ALL_VIEWS = Filter((Condition("kind", "eq", "view"),))
"""What view searches see on an index whose `pending` flags are not reliable (manifest
`visibility` 0): every view, as such indexes were always read."""


def view_settings(settings: Settings) -> ViewSettings:
    """The view settings `settings` ask for (detect, isolate, labels, garment)."""
    from lookalike.pipeline.detect import parse_labels
    from lookalike.pipeline.views import ViewSettings

    labels = parse_labels(settings.labels)
    return ViewSettings(
        detect=settings.detect,
        isolate=settings.isolate,
        labels=labels,
        garment=settings.garment,
        background=tuple(settings.isolate_background),  # type: ignore[arg-type]
        margin=settings.isolate_margin,
    )


def _query_object(view: Any, photo: Image.Image, views: ViewSettings) -> QueryObject:
    from lookalike.pipeline.views import shown_label

    box = view.box.as_list() if view.box is not None else [0.0, 0.0, *map(float, photo.size)]
    return QueryObject(shown_label(view.label, views), tuple(box), float(view.score))  # type: ignore[arg-type]


LEGACY_VIEWS: dict[str, Any] = {"fit_small": False, "min_skin": 0.0, "salient_fit_small": False}
"""View settings added after indexes were first recorded, as those indexes were made."""


def _same_views(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two recorded view settings make the same vectors. `fit_small` matters only when
    a network runs (detection or isolation), `min_skin` only for garments, `salient_fit_small`
    only for isolated objects; a record without them predates them (`LEGACY_VIEWS`)."""

    def norm(d: Mapping[str, Any]) -> dict[str, Any]:
        out = {**LEGACY_VIEWS, **d}
        if out.get("isolate", "none") != "garment":
            out.pop("min_skin")
        if out.get("isolate", "none") == "none" or not out.get("detect"):
            out.pop("salient_fit_small")  # U^2-NetP runs on detected objects only
        if not out.get("detect") and out.get("isolate", "none") == "none":
            out.pop("fit_small")
        return out

    return norm(a) == norm(b)


def _views_from_dict(d: Mapping[str, Any]) -> ViewSettings:
    from lookalike.pipeline.views import ViewSettings

    values = {**LEGACY_VIEWS, **d}  # recorded before they existed: as those indexes were made
    if values.get("labels") is not None:
        values["labels"] = frozenset(values["labels"])
    if values.get("background") is not None:
        values["background"] = tuple(values["background"])
    return ViewSettings(**values)


def _view_key(view: Any, image: Image.Image) -> tuple[list[float], str]:
    """(box, key) of a catalogue photo's view: the key names the view within its photo."""
    box = view.box.as_list() if view.box is not None else [0.0, 0.0, *map(float, image.size)]
    key = "full" if view.box is None else f"{view.label}@" + ",".join(f"{c:.0f}" for c in box)
    return box, key


def _consensus(lists: Sequence[Sequence[str]], *, top: int = 3) -> list[str]:
    """Values found in at least a third of an item's views, most frequent first (at least one)."""
    counts: dict[str, int] = {}
    for values in lists:
        for v in dict.fromkeys(values):
            counts[v] = counts.get(v, 0) + 1
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    kept = [v for v in ranked if counts[v] * 3 >= len(lists)]
    return (kept or ranked[:1])[:top]


def _rrf(rankings: Sequence[Sequence[ProductHit]], k: int) -> list[ProductHit]:
    """Reciprocal rank fusion of rankings of items: score = sum over rankings of 1/(RRF_K + rank)."""
    scores: dict[str, float] = {}
    first: dict[str, ProductHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.item_id] = scores.get(hit.item_id, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(hit.item_id, hit)
    order = sorted(scores, key=lambda i: -scores[i])[:k]
    return [dataclasses.replace(first[i], score=scores[i]) for i in order]


def _fields_hash(fields: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(fields), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Engine(ClosesStore):
    """Index and search one index folder.

    embedder: model name from the catalogue (`lookalike models list`); defaults to the one the index
    was built with, else `settings.embedder`. Asking for another than the index's is an error.
    """

    def __init__(
        self,
        index_dir: Path | str | None = None,
        *,
        settings: Settings | None = None,
        embedder: str | None = None,
        store: Store | None = None,
        image_embedder: ImageEmbedder | None = None,
        views: ViewSettings | None = None,
        store_spec: str | None = None,
    ) -> None:
        """store_spec: where the vectors live (`--store`: edge, qdrant://host:6333/name, ...).
        None: the store the index's manifest records, else `settings.store` for a new index.
        Naming another store than the one an existing index records is an IndexMismatchError."""
        self.settings = settings or Settings()
        self.index_dir = Path(index_dir) if index_dir is not None else self.settings.index
        from lookalike.learn.swap import recover_network_swap

        recover_network_swap(self.index_dir)  # a `tune --train` swap interrupted mid-way
        self.manifest = IndexManifest.load(self.index_dir)
        self.views = self._resolve_views(views)
        self._stage_cache: tuple[Any, Any] | None = None
        if embedder and self.manifest and self.manifest.embedder.name != embedder:
            raise IndexMismatchError(
                f"the index at {self.index_dir} was built with {self.manifest.embedder.name}, "
                f"not {embedder}; index into a new folder to use {embedder}"
            )
        self.embedder_name = embedder or (
            self.manifest.embedder.name if self.manifest else self.settings.embedder
        )
        self._embedder = image_embedder
        self._injected = image_embedder is not None
        self._wanted: IndexManifest | None = None
        self._checked = False
        self._store = store
        self._store_spec = store_spec
        self._projection: Any = None
        self._projection_loaded = False
        self.network: dict[str, Any] | None = self.manifest.network if self.manifest else None
        """The adapted network to embed with (`lookalike.learn.adapted`), as the manifest records."""
        self._reader: Any = None
        self._text_index: Any = None
        self._last_read: tuple[Image.Image, Any] | None = None
        self._kinds: dict[str, str] | None = None  # fields filters may name (`filter_fields`)
        self._keyword_fields: dict[str, str] = {}  # those of them with facets
        self._unchecked_open = False  # verify and repair open a store that failed its check

    def _resolve_views(self, asked: ViewSettings | None) -> ViewSettings:
        """How photos become views: as the index recorded it; else as asked or as the settings say.

        Asking an existing index for other view settings is an error: its vectors were made
        from other crops.
        """
        from lookalike.pipeline.views import ViewSettings

        if self.manifest is not None:
            recorded = self.manifest.options.get("views") or ViewSettings(detect=False).to_dict()
            # Indexes from before detection existed, or before `LEGACY_VIEWS`: read as made.
            recorded = {**LEGACY_VIEWS, **recorded}
            if self.manifest.options.get("views") != recorded:
                options = {**self.manifest.options, "views": recorded}
                self.manifest = dataclasses.replace(self.manifest, options=options)
            if asked is not None and not _same_views(asked.to_dict(), recorded):
                raise IndexMismatchError(
                    f"the index at {self.index_dir} was built with views {recorded}, "
                    f"not {asked.to_dict()}; index into a new folder to change them"
                )
            return _views_from_dict(recorded)
        return asked if asked is not None else view_settings(self.settings)

    # -- components, built lazily so `Engine(...)` is cheap -------------------------------------

    @property
    def projection(self) -> Any:
        """The index's learned projection (`lookalike tune`) when it has one and the setting
        `tuned` is on (searches then use the `tuned` vectors), else None."""
        return self._stored_projection() if self.settings.tuned else None

    def _stored_projection(self) -> Any:
        """The index's projection whatever the `tuned` setting says (new points must carry it);
        read once and checked against the manifest's sha256."""
        if not self._projection_loaded:
            record = self.manifest.projection if self.manifest is not None else None
            if record and self.manifest is not None:
                from lookalike.engine.adapted import load_projection

                self._projection = load_projection(self.index_dir, record, self.manifest.dim)
            self._projection_loaded = True
        return self._projection

    @property
    def embedder(self) -> ImageEmbedder:
        wanted = self._wanted_manifest()
        if self.manifest is not None and not self._checked:
            self.manifest.check_compatible(wanted, self.index_dir)
            self._checked = True
        assert self._embedder is not None
        return self._embedder

    def _wanted_manifest(self) -> IndexManifest:
        """What an index built by this engine's embedder records (loads the model on first use)."""
        if self._wanted is None:
            if self._embedder is not None:  # injected (tests, custom embedders)
                self._wanted = IndexManifest(
                    embedder=ModelRecord(self._embedder.name, "injected", "image-embedder"),
                    dim=self._embedder.dim,
                    preprocess={},
                    options={"views": self.views.to_dict()},
                )
            else:
                self._embedder, self._wanted = self._load_embedder()
        return self._wanted

    def _load_embedder(self) -> tuple[ImageEmbedder, IndexManifest]:
        from lookalike.models.catalog import get_spec
        from lookalike.models.store import ModelStore, sha256_file
        from lookalike.pipeline.embedders import load_embedder

        spec = get_spec(self.embedder_name)
        models = ModelStore(
            self.settings.cache_dir,
            mirror=self.settings.models_mirror,
            offline=self.settings.offline,
        )
        model_dir = models.path(spec.name)
        if self.network:  # `tune --train` re-embedded the index with an adapted network
            from lookalike.learn.adapted import open_adapted

            embedder = open_adapted(self.index_dir, self.network, spec, self.settings)
        else:
            embedder = load_embedder(
                spec,
                model_dir,
                threads=self.settings.threads,
                optimization=self.settings.ort_optimization,
                spinning=self.settings.ort_spinning,
            )
        digest = hashlib.sha256()
        for f in spec.files:
            digest.update(sha256_file(model_dir / f.filename).encode())
        record = ModelRecord(spec.name, digest.hexdigest(), spec.role)
        wanted = IndexManifest(
            embedder=record,
            dim=embedder.dim,
            preprocess=spec.preprocess.to_dict() if spec.preprocess else {},
            options={
                **({"output": spec.extra["output"]} if spec.extra.get("output") else {}),
                "views": self.views.to_dict(),
            },
        )
        return embedder, wanted

    @property
    def store(self) -> Store:
        if self._store is None:
            if self.manifest is None:
                raise StoreError(
                    f"no index at {self.index_dir}: run `lookalike index CATALOGUE --index "
                    f"{self.index_dir}` first"
                )
            if self.store_record()["kind"] == "edge":
                from lookalike.engine.adapted import recover_shard
                from lookalike.engine.integrity import check_open

                recover_shard(self.index_dir)  # a tuning swap interrupted mid-way
                if not self._unchecked_open:
                    check_open(self.index_dir)  # damaged files: an error, never wrong answers
            self._store = self._open_store(self.manifest.dim)
        return self._store

    def store_record(self) -> dict[str, Any]:
        """Where this index's vectors live (`registry.store_record`): as asked, else as the
        manifest records, else `settings.store`. IndexMismatchError if asked != recorded."""
        from lookalike.store.registry import same_store, store_record

        recorded: dict[str, Any] | None = None
        if self.manifest is not None:
            # Indexes from before the setting existed live in the embedded shard.
            recorded = self.manifest.store or store_record("edge", self.index_dir)
        if self._store_spec is None:
            return recorded or store_record(self.settings.store, self.index_dir)
        asked = store_record(self._store_spec, self.index_dir)
        if recorded is not None and not same_store(asked, recorded):
            raise IndexMismatchError(
                f"the index at {self.index_dir} keeps its vectors in {recorded['spec']}, not "
                f"{asked['spec']}: leave out --store, or move it with `lookalike migrate --index "
                f"{self.index_dir} --to {self._store_spec}`"
            )
        return asked

    def open_store_at(self, spec: str) -> Store:
        """A store for this index's vectors at `spec` (e.g. a migration's destination), opened
        with this engine's settings (API key, graph settings); the manifest is not changed."""
        if self.manifest is None:
            raise StoreError(f"no index at {self.index_dir}")
        return self._open_store(self.manifest.dim, spec)

    def _open_store(self, dim: int, spec: str | None = None) -> Store:
        from lookalike.store.edge import EdgeParams
        from lookalike.store.registry import open_store

        s = self.settings
        key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
        edge = EdgeParams(
            m=s.hnsw_m,
            ef_construct=s.hnsw_ef_construct,
            hnsw_ef=s.hnsw_ef,
            quantization=s.quantization,
            oversampling=s.oversampling,
            optimize_threshold=s.optimize_threshold,
        )
        spec = spec or self.store_record()["spec"]
        vectors = {"image": dim}
        projection = self.manifest.projection if self.manifest is not None else None
        if projection:  # a tuned index also carries the projected vectors (`lookalike tune`)
            vectors["tuned"] = int(projection["d_out"])
        return open_store(spec, self.index_dir, vectors, api_key=key, edge=edge)

    def _create_index(self) -> None:
        if self.manifest is None:
            manifest = dataclasses.replace(
                self._wanted_manifest(), store=self.store_record(), visibility=1
            )
            manifest.save(self.index_dir)
            self.manifest = manifest
            self._checked = True
        else:
            _ = self.embedder  # loads the model and checks it is the one that built the index

    def write_lock(self) -> AbstractContextManager[tuple[str, ...]]:
        """The index's one-writer lock, for code beside the engine that rewrites the index
        (`tune`, `tune --train`): refused when the index is damaged, sealed after the block."""
        return self._write_lock()

    @contextmanager
    def _write_lock(self, *, repair: bool = False) -> Iterator[tuple[str, ...]]:
        """One writer at a time, and the index sealed after each successful write
        (`lookalike.engine.integrity`): a damaged index is refused before it is written to, or
        with `repair` its damaged shard set aside (yields what was found); the seal says
        `writing` while the files change."""
        from lookalike.engine import integrity

        with folder_write_lock(self.index_dir, ".lock", ""):
            repaired: tuple[str, ...] = ()
            if repair:
                repaired = self._repair()
            elif self.manifest is not None and self.store_record()["kind"] == "edge":
                integrity.check_open(self.index_dir)
            integrity.begin_write(self.index_dir)
            try:
                yield repaired
            except BaseException:
                integrity.abandon_write(self.index_dir)
                raise
            if self._store is not None:
                self._store.flush()
            integrity.seal(self.index_dir)

    def verify(self) -> Any:
        """Check everything (`lookalike verify`): every sealed file's digest, and every vector
        read back through the store (finite, unit length, centroids the mean of their views).
        Returns `index_integrity.VerifyReport`; never raises for damage, it reports it."""
        from lookalike.engine.integrity import verify_index

        self._unchecked_open = True  # open it even when the open-time check fails
        try:
            return verify_index(self.index_dir, lambda: self.store)
        finally:
            self._unchecked_open = False

    def _repair(self) -> tuple[str, ...]:
        """Before a `--repair` run: find damage as `verify` does; a damaged shard is set aside
        (`shard.damaged/`) so that the run rebuilds it from the catalogue."""
        from lookalike.engine import integrity

        if self.manifest is None or self.store_record()["kind"] != "edge":
            return ()
        try:
            report = self.verify()
        except StoreError as exc:
            # The shard cannot be opened. Damage only if its files say so: another process
            # holding it (a server) is not a reason to set it aside.
            files = integrity.check(self.index_dir, full=True)
            if not files:
                raise
            report = integrity.VerifyReport(
                "sealed",
                0,
                0,
                (*files, integrity.Damage(integrity.SHARD, f"cannot be opened: {exc}")),
            )
        if not report.damage:
            return ()
        self.close()
        integrity.set_aside_shard(self.index_dir)
        self._kinds = None
        return tuple(str(d) for d in report.damage)

    def reload(self) -> None:
        """Read the index folder again (after `tune --train` or `--reset` swapped its network and
        vectors): manifest, embedder, projection and store are reopened on next use."""
        self.close()
        self.manifest = IndexManifest.load(self.index_dir)
        self.network = self.manifest.network if self.manifest else None
        self._wanted = None
        self._checked = False
        if not self._injected:
            self._embedder = None
        self._projection, self._projection_loaded = None, False
        self._text_index = None

    # -- indexing ------------------------------------------------------------------------------

    def index(
        self,
        catalogue: Path | str | Iterable[Item],
        *,
        sync: bool = False,
        progress: Progress | None = None,
        runner: IndexRunner | None = None,
        repair: bool = False,
    ) -> IndexSummary:
        """Index a catalogue (folder, JSONL or CSV manifest, or Items) incrementally.

        Only images that are new or whose bytes changed are decoded and embedded; views of images
        an item no longer lists are removed; `sync` also removes items absent from the catalogue.
        Safe to kill at any point: a rerun finishes the job and yields the same index.
        runner: where decoding and embedding run (default: here, decoding on threads overlapped
        with inference); this process always writes to the store.
        repair: check everything first (`verify`); a damaged shard is set aside and rebuilt from
        the catalogue (every photo embedded again). Without it a damaged index is an
        IndexDamagedError.
        """
        from lookalike.catalog import load_catalogue

        started = time.perf_counter()
        notify = progress or (lambda stage, done, total: None)
        skipped: list[Skipped] = []
        if isinstance(catalogue, str | Path):
            cat = load_catalogue(Path(catalogue))
            items, skipped = list(cat.items), list(cat.skipped)
            if not items:
                from lookalike.catalog import no_items_message

                raise CatalogueError(no_items_message(Path(catalogue), skipped))
        else:
            items = list(catalogue)
        self._text_index = None
        with self._write_lock(repair=repair) as repaired:
            self._create_index()
            store = self.store
            existing = self._existing_views(store)
            tasks = [_Task(item, image) for item in items for image in dict.fromkeys(item.images)]
            embedded = unchanged = written = 0
            done = 0
            notify("embed", 0, len(tasks))
            if runner is None:
                batches = self._embedded(tasks, existing)
            else:
                batches = runner.embedded(self, tasks, existing)
            for batch, vectors, classes in batches:
                for loaded in batch:
                    if loaded.skipped:
                        skipped.append(loaded.skipped)
                    unchanged += loaded.unchanged
                    if loaded.words is not None:
                        task = loaded.task
                        store.set_payload(
                            Filter(
                                (
                                    Condition("item_id", "eq", task.item.id),
                                    Condition("image", "eq", task.image),
                                    Condition("kind", "eq", "view"),
                                )
                            ),
                            {"ocr_words": list(loaded.words)},
                        )
                todo = [(b, v) for b in batch for v in b.views]
                if todo:
                    points = [
                        self._view_point(b, view, vec, cls)
                        for (b, view), vec, cls in zip(todo, vectors, classes, strict=True)
                    ]
                    store.upsert(points)
                    # Views this photo had before (other objects) that it no longer has.
                    new_ids = {p.id for p in points}
                    old_ids = [
                        pid
                        for b in {id(b): b for b, _ in todo}.values()
                        for pid in existing.get((b.task.item.id, b.task.image), _NO_VIEWS).ids
                        if pid not in new_ids
                    ]
                    store.delete(old_ids)
                    embedded += sum(1 for b in batch if b.views)
                    written += len(points)
                done += len(batch)
                notify("embed", done, len(tasks))
            self._refresh_fields(store, items, existing)
            removed = self._remove_stale(store, items, existing, sync=sync, skipped=skipped)
            notify("centroids", 0, 0)
            self._refresh_centroids(store)
            # Last: the new views become visible to view searches (see the module docstring).
            store.set_payload(PENDING_VIEWS, {"pending": False})
            self._record_fields(items)
            self._ensure_indexes(store, items)
            store.flush()
            settle = getattr(store, "settle", None)  # the embedded store: build the HNSW graph
            if settle is not None:
                notify("optimize", 0, 0)
                settle()
            from lookalike.engine.calibration import calibrate_index

            calibrate_index(self, progress=notify)
            # Items count once they can be found: an item whose every photo was skipped is not
            # in the index (what `stats` counts), so it is not counted as indexed either.
            held = {
                str(rec.payload.get("item_id"))
                for rec in store.scroll(where("kind", "centroid"), fields=["item_id"])
            }
        return IndexSummary(
            items=len({item.id for item in items} & held),
            images_seen=len(tasks),
            images_embedded=embedded,
            images_unchanged=unchanged,
            views_written=written,
            items_removed=removed,
            skipped=tuple(skipped),
            seconds=time.perf_counter() - started,
            items_in_catalogue=len(items),
            items_in_index=len(held),
            repaired=repaired,
        )

    def _record_fields(self, items: Sequence[Item]) -> None:
        """At the end of a run: the manifest records the catalogue's fields (for filter checks)
        and that the views' `pending` flags are reliable (no flag is left set now)."""
        from lookalike.store.filter_check import field_kinds, merge_kinds

        if self.manifest is None:
            return
        seen = field_kinds(
            {k: v for k, v in item.fields.items() if k not in INTERNAL_KEYS} for item in items
        )
        fields = merge_kinds(self._catalogue_fields(), seen)
        if fields != self.manifest.fields or self.manifest.visibility < 1:
            self.manifest = dataclasses.replace(self.manifest, fields=fields, visibility=1)
            self.manifest.save(self.index_dir)
        self._kinds = None

    def _catalogue_fields(self) -> dict[str, str]:
        """The catalogue fields the manifest records; for an index from before they were
        recorded, read from the items' payloads (every centroid: once)."""
        from lookalike.store.filter_check import field_kinds

        if self.manifest is not None and self.manifest.fields:
            return dict(self.manifest.fields)
        return field_kinds(
            {k: v for k, v in rec.payload.items() if k not in INTERNAL_KEYS}
            for rec in self.store.scroll(where("kind", "centroid"))
        )

    def filter_fields(self, *, fresh: bool = False) -> dict[str, str]:
        """Fields filters may name -> kind (text, number, bool, list, object, mixed): the
        catalogue's, the automatic attributes and the payload-indexed ones. Cached until the
        next write (`fresh`: read again)."""
        from lookalike.store.filter_check import merge_kinds, schema_kinds

        if self._kinds is None or fresh:
            schema = {
                k: v for k, v in self.store.payload_schema().items() if k not in INTERNAL_KEYS
            }
            builtin = {"item_id": "text", "colours": "list", "classes": "list", "labels": "list"}
            self._kinds = merge_kinds(builtin, self._catalogue_fields(), schema_kinds(schema))
            # Values are checked through facets, which need a keyword index.
            self._keyword_fields = {k: "text" for k, v in schema.items() if v == "keyword"}
        return dict(self._kinds)

    def user_filter(self, where: str | Filter | None) -> Filter | None:
        """A user's filter (`where` text or a Filter), checked: a field the index does not have or
        a value of another type is a FilterFieldError, a text value no item has a
        FilterValueError suggesting close ones (instead of an empty answer without a word)."""
        from lookalike.errors import FilterFieldError
        from lookalike.store.filter_check import check_filter, check_values

        user = parse_where(where) if isinstance(where, str) or where is None else where
        if user is None or not user.conditions:
            return user
        try:
            check_filter(user, self.filter_fields())
        except FilterFieldError:
            check_filter(user, self.filter_fields(fresh=True))  # another process added fields?
        centroids = Filter((Condition("kind", "eq", "centroid"),))
        check_values(
            user,
            self._keyword_fields,
            count=lambda f: self.store.count(centroids & f),
            facet=lambda name: self.store.facet(name, centroids, limit=1000),
        )
        return user

    @staticmethod
    def _existing_views(store: Store) -> dict[tuple[str, str], _Stored]:
        """(item_id, image) -> the views of that photo in the store (ids, content and fields hash)."""
        out: dict[tuple[str, str], _Stored] = {}
        for rec in store.scroll(
            where("kind", "view"),
            fields=["item_id", "image", "content_hash", "fields_hash", "ocr_words"],
        ):
            p = rec.payload
            key = (p["item_id"], p["image"])
            prev = out.get(key)
            ids = (*prev.ids, rec.id) if prev else (rec.id,)
            read = "ocr_words" in p or (prev is not None and prev.read)
            out[key] = _Stored(ids, p["content_hash"], p.get("fields_hash", ""), read)
        return out

    def _embedded(
        self, tasks: Sequence[_Task], existing: Mapping[tuple[str, str], _Stored]
    ) -> Iterator[EmbeddedBatch]:
        """The local runner: decode (threads, ahead) and embed (this thread), batch by batch."""
        for batch in self._batches(self._load_all(tasks, existing)):
            views = [v for b in batch for v in b.views]
            vectors, classes = self._embed_for_index(views)
            yield batch, vectors, classes

    def _decode_limits(self) -> DecodeLimits:
        """Decode limits from the settings. Automatic draft size: large JPEGs are decoded at the
        smallest 1/2-1/8 scale that still gives the embedder its resize target (its input side /
        crop fraction) when views are whole photos; detection and isolation crop objects out of
        the photo, so they keep 1024 pixels, and so does OCR (it reads print at 736 px)."""
        from lookalike.pipeline.decode import DecodeLimits

        draft = self.settings.draft_size
        if draft <= 0:
            draft = 1024
            pp = getattr(self.embedder, "preprocess", None)
            whole = not self.views.detect and self.views.isolate == "none"
            if pp is not None and whole and not self.settings.ocr:
                fraction = pp.crop_fraction if pp.resize == "centre_crop" else 1.0
                draft = math.ceil(pp.size / fraction)
        return DecodeLimits(
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
            draft_size=draft,
        )

    def _load_one(
        self, task: _Task, existing: Mapping[tuple[str, str], _Stored], limits: DecodeLimits
    ) -> _Loaded:
        """Read, hash and (unless unchanged) decode one photo into its views, each with its
        embedder input when the embedder can `prepare` one. Never raises for a bad photo: it comes
        back `skipped` with the reason. Thread-safe."""
        from lookalike.pipeline.decode import content_hash, decode_image, read_source

        try:
            data = read_source(task.image, limits)
            sha = content_hash(data)
            prev = existing.get((task.item.id, task.image))
            if prev is not None and prev.content_hash == sha:
                if self.settings.ocr and not prev.read:
                    # OCR turned on for an indexed photo: read it, keep its vectors.
                    image = decode_image(data, task.image, limits)
                    return _Loaded(task, sha, unchanged=True, words=self._read_words(image))
                return _Loaded(task, sha, unchanged=True)
            image = decode_image(data, task.image, limits)
            return _Loaded(task, sha, image=image, views=tuple(self._photo_views(image)))
        except DecodeError as exc:
            return _Loaded(task, skipped=Skipped(task.image, str(exc)))
        except OSError as exc:
            return _Loaded(task, skipped=Skipped(task.image, f"cannot read: {exc}"))

    def _load_all(
        self, tasks: Sequence[_Task], existing: Mapping[tuple[str, str], _Stored]
    ) -> Iterator[_Loaded]:
        """Read, hash, decode and prepare on worker threads, in order, a bounded number of batches
        ahead of inference (which runs on the caller's thread meanwhile)."""
        limits = self._decode_limits()
        self._stages()  # load detector / isolator before the worker threads need them

        def load(task: _Task) -> _Loaded:
            return self._load_one(task, existing, limits)

        window = max(1, self.settings.batch_size) * _LOOKAHEAD_BATCHES
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
            pending: list[Future[_Loaded]] = []
            it = iter(tasks)
            for task in it:
                pending.append(pool.submit(load, task))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for fut in pending:
                yield fut.result()

    def _batches(self, loaded: Iterator[_Loaded]) -> Iterator[list[_Loaded]]:
        batch: list[_Loaded] = []
        size = max(1, self.settings.batch_size)
        for entry in loaded:
            batch.append(entry)
            if sum(len(b.views) for b in batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    @staticmethod
    def _item_payload(item: Item) -> dict[str, Any]:
        fields = {k: v for k, v in item.fields.items() if k not in INTERNAL_KEYS}
        return {**fields, "item_id": item.id, "fields_hash": _fields_hash(item.fields)}

    def _embed_for_index(self, views: Sequence[_View]) -> tuple[F32, list[list[str]]]:
        """(N, dim) vectors of `views`, and each view's ImageNet class names when the embedder has
        a classifier head (same forward pass, so the attribute is free)."""
        from lookalike.pipeline.attributes import imagenet_class_names

        embedder = self.embedder
        if not views:
            return np.zeros((0, embedder.dim), dtype=np.float32), []
        prepared = getattr(embedder, "embed_prepared", None)
        if prepared is not None and all(v.tensor is not None for v in views):
            top = 5 if self.settings.attributes else 0
            vectors, tops = prepared(np.stack([v.tensor for v in views]), top=top)
            return vectors, [imagenet_class_names(t) if t else [] for t in tops]
        images = [v.image for v in views if v.image is not None]
        if len(images) != len(views):
            raise ValueError("views without a decoded image cannot be embedded here")
        with_classes = getattr(embedder, "embed_images_with_classes", None)
        if with_classes is None or not self.settings.attributes:
            return embedder.embed_images(images), [[] for _ in images]
        vectors, tops = with_classes(images)
        return vectors, [imagenet_class_names(t) for t in tops]

    def _view_point(
        self, loaded: _Loaded, view: _View, vector: F32, classes: Sequence[str] = ()
    ) -> PointRecord:
        item, image = loaded.task.item, loaded.task.image
        payload = {
            **self._item_payload(item),
            "kind": "view",
            "image": image,
            "content_hash": loaded.sha256,
            "view_key": view.key,
            "box": list(view.box),
            "label": view.label,
            "det_score": view.score,
            "colours": list(view.colours),
            "classes": list(classes),
            "pending": True,  # hidden from searches until the item's centroid is written
        }
        if view.words is not None:
            payload["ocr_words"] = list(view.words)
        vectors = {"image": vector}
        projection = self._stored_projection()
        if projection is not None:
            vectors["tuned"] = projection.apply(vector)
        return PointRecord(point_id(item.id, image, view.key), vectors, payload)

    # -- detection and isolation -----------------------------------------------------------------

    def _stages(self) -> tuple[Any, Any]:
        """(detector, isolator) the view settings need (None where not used); loaded once."""
        if self._stage_cache is None:
            vs = self.views
            detector = isolator = None
            if vs.detect or vs.isolate != "none":
                from lookalike.models.store import ModelStore

                models = ModelStore(
                    self.settings.cache_dir,
                    mirror=self.settings.models_mirror,
                    offline=self.settings.offline,
                )
                if vs.detect:
                    from lookalike.pipeline.detect import YoloxDetector

                    detector = YoloxDetector.from_store(
                        models, threads=self.settings.threads, fit_small=vs.fit_small
                    )
                if vs.isolate != "none":
                    from lookalike.pipeline.isolate import Isolator

                    isolator = Isolator.from_store(
                        models,
                        (vs.isolate,),
                        threads=self.settings.threads,
                        margin=vs.margin,
                        aspect=vs.aspect,
                        clothes_fit_small=vs.fit_small,
                        salient_fit_small=vs.salient_fit_small,
                    )
            self._stage_cache = (detector, isolator)
        return self._stage_cache

    def _photo_views(self, image: Image.Image) -> list[_View]:
        """The views of one catalogue photo: each kept object (isolated as configured), and the
        whole photo. Runs on the decode threads."""
        from lookalike.pipeline.attributes import dominant_colours
        from lookalike.pipeline.views import views_for_image

        detector, isolator = self._stages()
        prepare = getattr(self.embedder, "prepare", None)
        words = self._read_words(image) if self.settings.ocr else None
        out = []
        for v in views_for_image(image, detector, isolator, self.views):
            box, key = _view_key(v, image)
            rgb = v.image.convert("RGB")
            colours = tuple(dominant_colours(rgb)) if self.settings.attributes else ()
            tensor = prepare(rgb) if prepare is not None else None
            out.append(
                _View(key, tuple(box), v.label, float(v.score), rgb, colours, tensor, words)  # type: ignore[arg-type]
            )
        return out

    def training_views(self, source: str, *, query: bool = False) -> list[tuple[str, Image.Image]]:
        """(view key, RGB image) of each view indexing makes of one photo; with `query`, the one
        view a search of the photo uses first (key "query"). What `lookalike.learn` trains on and
        re-embeds, so training sees the pixels the index embeds. Raises DecodeError, OSError."""
        from lookalike.pipeline.decode import decode_image, read_source
        from lookalike.pipeline.views import views_for_image

        if query:
            photo = self._decode_query(source)
            return [("query", self._query_views(photo)[0].image.convert("RGB"))]
        limits = self._decode_limits()
        image = decode_image(read_source(source, limits), source, limits)
        detector, isolator = self._stages()
        return [
            (_view_key(v, image)[1], v.image.convert("RGB"))
            for v in views_for_image(image, detector, isolator, self.views)
        ]

    def _text_reader(self) -> Any:
        if self._reader is None:
            from lookalike.pipeline.ocr import TextReader

            self._reader = TextReader()
        return self._reader

    def _read_words(self, image: Image.Image) -> tuple[str, ...]:
        """The words printed on a catalogue photo: the cheap text detector first, the full OCR
        only where it finds text (about 1 s a photo on 2 cores); () when it finds none."""
        _gate, result = self._text_reader().read_if_text(image)
        return result.words if result is not None else ()

    def text_index(self) -> Any:
        """`ItemTextIndex` of the OCR words stored with the views (one entry per photo); None
        when no photo of the index was OCR'd. Cached until the index is written again."""
        if self._text_index is None:
            from lookalike.pipeline.text_match import ItemTextIndex

            index = ItemTextIndex()
            any_read = False
            for rec in self.store.scroll(
                where("kind", "view"), fields=["item_id", "view_key", "ocr_words"]
            ):
                if rec.payload.get("view_key") != "full":  # one entry per photo
                    continue
                words = rec.payload.get("ocr_words")
                any_read |= words is not None
                index.add(str(rec.payload["item_id"]), words or ())
            self._text_index = index if any_read else False
        return self._text_index or None

    def _refresh_fields(
        self,
        store: Store,
        items: Sequence[Item],
        existing: Mapping[tuple[str, str], _Stored],
    ) -> None:
        """Catalogue metadata changed (price, title ...) but not the photos: update payloads only."""
        stored_hash: dict[str, str] = {key[0]: v.fields_hash for key, v in existing.items()}
        for item in items:
            old = stored_hash.get(item.id)
            if old is not None and old != _fields_hash(item.fields):
                store.set_payload(where("item_id", item.id), self._item_payload(item))

    def _remove_stale(
        self,
        store: Store,
        items: Sequence[Item],
        existing: Mapping[tuple[str, str], _Stored],
        *,
        sync: bool,
        skipped: Sequence[Skipped],
    ) -> int:
        listed = {item.id: set(item.images) for item in items}
        # An image that failed to load this time keeps its old views: a transient error
        # (network, permissions) must not delete good data.
        failed = {s.source for s in skipped}
        stale = [
            pid
            for (item_id, image), stored in existing.items()
            if item_id in listed and image not in listed[item_id] and image not in failed
            for pid in stored.ids
        ]
        store.delete(stale)
        removed = 0
        if sync:
            gone = sorted({item_id for item_id, _ in existing} - set(listed))
            for start in range(0, len(gone), 256):
                chunk = tuple(gone[start : start + 256])
                store.delete_where(Filter((Condition("item_id", "in", chunk),)))
            removed = len(gone)
        return removed

    def _refresh_centroids(self, store: Store) -> None:
        """Make every item's `centroid` point the normalised mean of its current views.

        Computed from what is in the store (not from this run's work), so it also repairs centroids
        left stale by a run that was killed before reaching this step.
        """
        views: dict[str, list[tuple[str, str, str]]] = {}
        for rec in store.scroll(
            where("kind", "view"), fields=["item_id", "content_hash", "fields_hash"]
        ):
            p = rec.payload
            # The fields hash is part of the signature: changed metadata rebuilds the search text.
            views.setdefault(p["item_id"], []).append(
                (rec.id, p["content_hash"], p.get("fields_hash", ""))
            )
        signatures = {
            item_id: hashlib.sha256(repr(sorted(v)).encode()).hexdigest()[:16]
            for item_id, v in views.items()
        }
        current: dict[str, str] = {}
        orphans: list[str] = []
        for rec in store.scroll(where("kind", "centroid"), fields=["item_id", "views"]):
            item_id = rec.payload["item_id"]
            if item_id in views:
                current[item_id] = rec.payload.get("views", "")
            else:
                orphans.append(rec.id)
        store.delete(orphans)
        todo = [i for i, sig in signatures.items() if current.get(i) != sig]
        for start in range(0, len(todo), 256):
            chunk = todo[start : start + 256]
            recs = list(
                store.scroll(
                    Filter(
                        (Condition("item_id", "in", tuple(chunk)), Condition("kind", "eq", "view"))
                    ),
                    with_vectors=True,
                )
            )
            by_item: dict[str, list[PointRecord]] = {}
            for rec in recs:
                by_item.setdefault(rec.payload["item_id"], []).append(rec)
            points = []
            for item_id, recs_ in by_item.items():
                recs_.sort(key=lambda r: r.id)  # deterministic summation order
                mean = np.mean([r.vectors["image"] for r in recs_], axis=0)
                vectors = {"image": l2_normalise(mean[None])[0]}
                projection = self._stored_projection()
                if projection is not None:
                    # Recomputed in the projected space: the mean of the projected views.
                    tuned = [
                        r.vectors["tuned"]
                        if "tuned" in r.vectors
                        else projection.apply(r.vectors["image"])
                        for r in recs_
                    ]
                    vectors["tuned"] = l2_normalise(np.mean(tuned, axis=0)[None])[0]
                first = min(recs_, key=lambda r: r.payload["image"])
                payload = {
                    k: v
                    for k, v in first.payload.items()
                    if k not in ("box", "label", "det_score", "content_hash", "view_key", "pending")
                }
                payload.update(
                    kind="centroid",
                    views=signatures[item_id],
                    colours=_consensus([r.payload.get("colours") or [] for r in recs_]),
                    classes=_consensus([r.payload.get("classes") or [] for r in recs_]),
                    # Detected objects ("cup", "handbag"); the whole-photo and user-box views
                    # carry no detector label.
                    labels=_consensus(
                        [
                            [r.payload["label"]]
                            for r in recs_
                            if r.payload.get("label") not in NOT_DETECTED
                        ]
                    ),
                )
                payload["search_text"] = self._search_text(payload)
                points.append(
                    PointRecord(
                        point_id(item_id, "centroid"),
                        vectors,
                        payload,
                    )
                )
            store.upsert(points)

    def _search_text(self, payload: Mapping[str, Any]) -> str:
        """The words text queries match for an item: its catalogue text fields and attributes."""
        parts: list[str] = []
        for name in (*self.settings.text_fields, "colours", "classes", "labels"):
            value = payload.get(name)
            if isinstance(value, list):
                parts.extend(str(v) for v in value)
            elif value not in (None, ""):
                parts.append(str(value))
        return " ".join(parts)

    @staticmethod
    def _ensure_indexes(store: Store, items: Sequence[Item]) -> None:
        store.ensure_index("item_id", "keyword")
        store.ensure_index("colours", "keyword")
        store.ensure_index("classes", "keyword")
        store.ensure_index("labels", "keyword")
        store.ensure_index(SEARCH_TEXT, "text")
        store.ensure_index("kind", "keyword")
        store.ensure_index("pending", "bool")
        kinds: dict[str, str] = {}
        for item in items[:1000]:  # field types are a catalogue-wide property: a sample suffices
            for k, v in item.fields.items():
                if k in INTERNAL_KEYS or k in kinds:
                    continue
                if isinstance(v, bool):
                    kinds[k] = "bool"
                elif isinstance(v, int | float):
                    kinds[k] = "float"
                elif isinstance(v, str) and len(v) <= 64:
                    kinds[k] = "keyword"
        for k, kind in kinds.items():
            store.ensure_index(k, kind)  # type: ignore[arg-type]

    # -- deleting ------------------------------------------------------------------------------

    def delete(self, item_ids: Sequence[str]) -> list[str]:
        """Remove items (all their views and centroids); the ids that were in the index."""
        self._text_index = None
        removed: list[str] = []
        with self._write_lock():
            for item_id in dict.fromkeys(item_ids):
                if self.store.count(where("item_id", item_id)):
                    removed.append(item_id)
                self.store.delete_where(where("item_id", item_id))
            self.store.flush()
        return removed

    # -- searching -----------------------------------------------------------------------------

    def embed_query(self, image: Image.Image) -> F32:
        return self.embedder.embed_images([image.convert("RGB")])[0]

    def search(
        self,
        query: Path | str | bytes | Image.Image,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
        box: Box | Sequence[float] | None = None,
        exclude: Sequence[str] = (),
        text: str | None = None,
    ) -> SearchResult:
        """The `k` items most like the photo, one result per item, best first.

        box: search with this region of the photo only (x1, y1, x2, y2 in pixels of the decoded,
        EXIF-rotated photo); clipped to the photo; an empty region is a QueryError. Without a box,
        an index built with detection searches with the query's most relevant object (reported in
        `query_object`), or the whole photo when nothing relevant is found.
        exclude: item ids left out of the results (e.g. the item a "more like this" started from).
        text: words to combine with the photo ("this, but in red"): the image ranking and the text
        ranking (`search_text`) are fused by reciprocal rank fusion.

        where: a filter expression (`category = 'Milk' and price < 100`) or a `Filter`; it is
        applied inside the vector search, so `k` results come back whenever `k` items match.
        """
        _ = self.store  # no index: say so before any work on the photo
        t0 = time.perf_counter()
        photo = self._decode_query(query)
        view = self._query_views(photo, box=box)[0]
        objects = self._detected_objects(photo)
        t1 = time.perf_counter()
        vector = self._query_vector(view.image)
        t2 = time.perf_counter()
        timings = {"decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3}
        kind = "cosine"
        if text:
            depth = max(k, FUSION_DEPTH)
            image_hits = self._judged(
                self.search_vector(vector, k=depth, where=where, mode=mode, exclude=exclude), mode
            )
            text_hits = self._text_hits(text, depth, where, exclude)
            hits, kind = _rrf([image_hits, text_hits], k), "rrf"
        else:
            tm = self._text_settings()
            fusing = self.settings.text_fusion and self.text_index() is not None
            depth = max(k, tm.top_n) if fusing else k
            hits = self.search_vector(vector, k=depth, where=where, mode=mode, exclude=exclude)
            hits = self._judged(hits, mode)
            t3 = time.perf_counter()
            fused = self._fuse_query_text(photo, hits, timings) if fusing else None
            timings["search"] = (t3 - t2) * 1e3
            if fused is not None:
                hits, kind = fused, "cosine+text"
            hits = hits[:k]
        timings.setdefault("search", (time.perf_counter() - t2) * 1e3)
        return SearchResult(
            tuple(hits),
            timings,
            mode or self.settings.mode,
            kind,
            _query_object(view, photo, self.views),
            objects,
        )

    def _query_vector(self, image: Image.Image) -> F32:
        """The query's embedder vector: with `settings.tta`, the normalised mean over the photo
        and its augmentations (one batch)."""
        return self.embed_queries([image])[0]

    def embed_queries(self, images: Sequence[Image.Image]) -> F32:
        """(N, D) embedder vectors of query photos, with the `settings.tta` augmentation: each
        the normalised mean of the photo's and its variants' vectors (1-4 embeddings a photo)."""
        rgb = [im.convert("RGB") for im in images]
        if self.settings.tta == "none":
            return self.embedder.embed_images(rgb)
        from lookalike.pipeline.tta import tta_embed

        if not rgb:
            return np.zeros((0, self.embedder.dim), np.float32)
        return np.concatenate(
            [tta_embed(self.embedder.embed_images, im, self.settings.tta) for im in rgb]
        )

    def _text_settings(self) -> Any:
        from lookalike.pipeline.text_match import TextMatchSettings

        return TextMatchSettings(
            weight=self.settings.text_weight, size_power=TEXT_SIZE_POWER, top_n=TEXT_TOP_N
        )

    def fuse_text(
        self, photo: Image.Image, hits: Sequence[ProductHit]
    ) -> tuple[list[ProductHit], bool]:
        """`hits` (image ranking of `photo`) re-ordered by the words read on the photo, and
        whether it was read (see `settings.text_fusion`). For evaluations: `search` does this."""
        fused = self._fuse_query_text(photo, list(hits), {})
        return (fused, True) if fused is not None else (list(hits), False)

    def _fuse_query_text(
        self, photo: Image.Image, hits: list[ProductHit], timings: dict[str, float]
    ) -> list[ProductHit] | None:
        """Image hits re-ordered by the words read on the query, or None when the index has no
        OCR words or fewer than half of the first 5 candidates carry text (the query is then
        not read: OCR costs about 1 s)."""
        from lookalike.pipeline.text_match import fuse

        index = self.text_index()
        if index is None or not hits or not index.should_read([h.item_id for h in hits[:5]]):
            return None
        from lookalike.pipeline.ocr import token_weights

        t = time.perf_counter()
        tm = self._text_settings()
        if self._last_read is not None and self._last_read[0] is photo:
            words, weights = self._last_read[1]
        else:
            read = self._text_reader().read(photo)
            words = read.words
            weights = token_weights(read.lines, read.boxes, tm.size_power) if read.boxes else None
            self._last_read = (photo, (words, weights))
        timings["ocr"] = (time.perf_counter() - t) * 1e3
        evidence = index.score(words, [h.item_id for h in hits[: tm.top_n]], tm, weights)
        order = fuse([(h.item_id, h.score) for h in hits], evidence, tm)
        by_id = {h.item_id: h for h in hits}
        return [dataclasses.replace(by_id[i], score=s) for i, s in order]

    def search_objects(
        self,
        query: Path | str | bytes | Image.Image,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
    ) -> list[SearchResult]:
        """Results per detected object of the photo (like object chips), most relevant object
        first; the whole photo when the index has no detection or nothing relevant is found."""
        _ = self.store
        t0 = time.perf_counter()
        photo = self._decode_query(query)
        views = self._query_views(photo, all_objects=True)
        # As `search` embeds its one view (TTA included): the same object scores the same.
        vectors = self.embed_queries([v.image for v in views])
        per_object_ms = (time.perf_counter() - t0) * 1e3 / max(1, len(views))
        out = []
        for view, vector in zip(views, vectors, strict=True):
            t = time.perf_counter()
            hits = self._judged(self.search_vector(vector, k=k, where=where, mode=mode), mode)
            timings = {"embed": per_object_ms, "search": (time.perf_counter() - t) * 1e3}
            out.append(
                SearchResult(
                    tuple(hits), timings, mode or self.settings.mode, "cosine",
                    _query_object(view, photo, self.views),
                )
            )  # fmt: skip
        return out

    def _detected_objects(self, photo: Image.Image) -> tuple[QueryObject, ...]:
        """The relevant objects of a query photo, for a UI to offer as regions to search."""
        detector, _ = self._stages()
        if detector is None:
            return ()
        from lookalike.pipeline.views import kept_objects, shown_label

        # A second detector pass (~20 ms) on top of the one that chose the view: kept simple
        # rather than threading detections through the isolation stage.
        kept = kept_objects(detector.detect(photo), photo.size, self.views)
        return tuple(
            QueryObject(shown_label(d.label, self.views), tuple(d.box.as_list()), d.score)  # type: ignore[arg-type]
            for d in kept
        )

    def query_views(
        self,
        photo: Image.Image,
        *,
        box: Box | Sequence[float] | None = None,
        all_objects: bool = False,
    ) -> list[Any]:
        """The `ObjectView`s a query photo searches with under this index's view settings, the
        one `search` uses first (see `lookalike.pipeline.isolate.query_views`)."""
        return self._query_views(photo, box=box, all_objects=all_objects)

    def _query_views(
        self,
        photo: Image.Image,
        *,
        box: Box | Sequence[float] | None = None,
        all_objects: bool = False,
    ) -> list[Any]:
        from lookalike.pipeline.views import query_views

        detector, isolator = self._stages()
        return query_views(photo, detector, isolator, self.views, box=box, all_objects=all_objects)

    def search_text(
        self,
        text: str,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        exclude: Sequence[str] = (),
    ) -> SearchResult:
        """Items matching words: BM25 over each item's catalogue words and automatic attributes;
        with a CLIP-family embedder also its text tower, the two rankings fused (RRF)."""
        if not text.strip():
            raise QueryError("empty text query")
        t0 = time.perf_counter()
        depth = max(k, FUSION_DEPTH)
        words = self._text_hits(text, depth, where, exclude)
        embed_texts = getattr(self.embedder, "embed_texts", None)
        if embed_texts is None:
            hits, kind = words[:k], "bm25"
        else:
            vector = embed_texts([text])[0]
            semantic = self.search_vector(vector, k=depth, where=where, exclude=exclude)
            hits, kind = _rrf([semantic, words], k), "rrf"
        timings = {"search": (time.perf_counter() - t0) * 1e3}
        return SearchResult(tuple(hits), timings, "centroid", kind)

    def _text_hits(
        self, text: str, limit: int, where: str | Filter | None, exclude: Sequence[str]
    ) -> list[ProductHit]:
        user = self.user_filter(where)
        flt = Filter((Condition("kind", "eq", "centroid"),)) & user
        if exclude:
            flt = flt & Filter((Condition("item_id", "not_in", tuple(exclude)),))
        hits = self.store.text_search(SEARCH_TEXT, text, limit=limit, flt=flt)
        return [self._product_hit(h.item_id, h.score, h.payload) for h in hits]

    def similar(
        self,
        item_id: str,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
    ) -> SearchResult:
        """More like this: items nearest to an indexed item's centroid, the item itself excluded."""
        t0 = time.perf_counter()
        hits = self.search_vector(
            self.item_vector(item_id), k=k, where=where, mode=mode, exclude=[item_id]
        )
        hits = self._judged(hits, mode)
        timings = {"search": (time.perf_counter() - t0) * 1e3}
        return SearchResult(tuple(hits), timings, mode or self.settings.mode)

    def recommend(
        self,
        positive: Sequence[str],
        negative: Sequence[str] = (),
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
    ) -> SearchResult:
        """More like `positive` items, less like `negative` ones (`lookalike.engine.recommend`): the
        items nearest to the positives' mean centroid pushed away from the negatives', every
        example left out. QueryError for an unknown item or no positive example."""
        from lookalike.engine.recommend import recommend_vector

        t0 = time.perf_counter()
        vector = recommend_vector(
            [self.item_vector(i) for i in positive], [self.item_vector(i) for i in negative]
        )
        examples = list(dict.fromkeys([*positive, *negative]))
        hits = self.search_vector(vector, k=k, where=where, mode=mode, exclude=examples)
        hits = self._judged(hits, mode)
        timings = {"search": (time.perf_counter() - t0) * 1e3}
        return SearchResult(tuple(hits), timings, mode or self.settings.mode)

    def _decode_query(self, query: Path | str | bytes | Image.Image) -> Image.Image:
        from lookalike.pipeline.decode import DecodeLimits, decode_image, read_source

        if isinstance(query, Image.Image):
            return query.convert("RGB")
        limits = DecodeLimits(
            max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
        )
        if isinstance(query, bytes):
            return decode_image(query, "query", limits)
        source = str(query)
        try:
            return decode_image(read_source(source, limits), source, limits)
        except DecodeError as exc:
            raise DecodeError(f"query photo {source}: {exc}") from exc

    def search_vector(
        self,
        vector: F32,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
        exclude: Sequence[str] = (),
        route: str | None = None,
    ) -> list[ProductHit]:
        """Items nearest to `vector`. `route`: a catalogue field (e.g. `category`): first predict
        the query's value of it from its nearest views, then search only items that have it."""
        mode = mode or self.settings.mode
        if k < 1:
            raise QueryError("k must be at least 1")
        user = self.user_filter(where)
        if route:
            predicted = self.predict_field(vector, route, where=user)
            if predicted is not None:
                user = Filter((Condition(route, "eq", predicted),)) & user
        if exclude:
            user = Filter((Condition("item_id", "not_in", tuple(exclude)),)) & user
        vector, using = self._search_space(vector)
        if mode == "views":
            flt = self._visible_views() & user
            hits = self.store.search_groups(vector, using=using, groups=k, flt=flt)
        elif mode == "centroid":
            flt = Filter((Condition("kind", "eq", "centroid"),)) & user
            hits = self.store.search(vector, using=using, limit=k, flt=flt)
        else:
            raise QueryError(f"unknown mode {mode!r}; use 'views' or 'centroid'")
        return [self._product_hit(h.item_id, h.score, h.payload) for h in hits]

    def _visible_views(self) -> Filter:
        """The views a search may see: not those being written (`VISIBLE_VIEWS`), unless the
        index's flags predate their being cleared (manifest `visibility` 0: every view)."""
        if self.manifest is not None and self.manifest.visibility < 1:
            return ALL_VIEWS
        return VISIBLE_VIEWS

    def _judged(self, hits: list[ProductHit], mode: Aggregation | None) -> list[ProductHit]:
        """Image hits labelled "same product", "similar" or "no close match" by the index's
        calibrated levels for the space searched and the mode (unchanged without levels)."""
        from lookalike.engine.calibration import calibration_levels

        space = "tuned" if self.projection is not None else "image"
        levels = calibration_levels(self).get(space, {}).get(mode or self.settings.mode)
        if levels is None:
            return hits
        return [dataclasses.replace(h, match=levels.match(h.score)) for h in hits]

    def _search_space(self, vector: F32) -> tuple[F32, str]:
        """(vector, named vector to search): an embedder vector is projected and searched among
        the `tuned` vectors when the index has a projection and the `tuned` setting is on."""
        projection = self.projection
        vector = np.asarray(vector, dtype=np.float32)
        if projection is not None and vector.shape[-1] == projection.d_in:
            return projection.apply(vector), "tuned"
        return vector, "image"

    def predict_field(
        self, vector: F32, field_name: str, *, where: Filter | None = None, neighbours: int = 15
    ) -> Any:
        """The value of `field_name` most supported by the `neighbours` nearest views (votes
        weighted by similarity); None when no neighbour has the field."""
        flt = self._visible_views() & where
        votes: dict[Any, float] = {}
        vector, using = self._search_space(vector)
        for hit in self.store.search(vector, using=using, limit=neighbours, flt=flt):
            value = hit.payload.get(field_name)
            if value is not None and not isinstance(value, list):
                votes[value] = votes.get(value, 0.0) + max(hit.score, 0.0)
        return max(votes, key=lambda v: votes[v]) if votes else None

    @staticmethod
    def _product_hit(item_id: str, score: float, payload: Mapping[str, Any]) -> ProductHit:
        fields = {k: v for k, v in payload.items() if k not in INTERNAL_KEYS}
        box = payload.get("box")
        return ProductHit(
            item_id=item_id,
            score=score,
            image=str(payload.get("image", "")),
            fields=fields,
            box=tuple(box) if box and payload.get("kind") == "view" else None,  # type: ignore[arg-type]
        )

    # -- information ---------------------------------------------------------------------------

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An indexed item: its catalogue fields and the images of its views; None if unknown."""
        conditions = [Condition("item_id", "eq", item_id)]
        if self._visible_views() is not ALL_VIEWS:  # not the views of a photo being added
            conditions.append(Condition("pending", "ne", True))
        views = list(self.store.scroll(Filter(tuple(conditions))))
        if not views:
            return None
        fields: dict[str, Any] = {}
        images: list[str] = []
        for rec in views:
            if rec.payload.get("kind") == "view":
                images.append(str(rec.payload.get("image", "")))
            fields.update({k: v for k, v in rec.payload.items() if k not in INTERNAL_KEYS})
        return {"item_id": item_id, "fields": fields, "images": sorted(set(images))}

    def item_vector(self, item_id: str) -> F32:
        """The item's centroid vector (mean of its views), for "more like this"."""
        recs = self.store.retrieve([point_id(item_id, "centroid")], with_vectors=True)
        if not recs:
            raise QueryError(f"no item {item_id!r} in {self.index_dir}")
        return recs[0].vectors["image"]

    def facets(
        self, field_name: str, *, where: str | Filter | None = None, limit: int = 20
    ) -> dict[Any, int]:
        """Value -> number of items with it, among items matching `where`. FilterFieldError for a
        field that is not a keyword-indexed one (only those have facets)."""
        from lookalike.errors import FilterFieldError

        keyword = sorted(k for k, v in self.fields().items() if v == "keyword")
        if field_name not in keyword:
            raise FilterFieldError(
                f"no facets for {field_name!r}: facets count the values of text fields: "
                + (", ".join(keyword) or "none")
            )
        user = self.user_filter(where)
        flt = Filter((Condition("kind", "eq", "centroid"),)) & user
        return self.store.facet(field_name, flt, limit=limit)

    def fields(self) -> dict[str, str]:
        """Catalogue fields users can filter on: name -> kind (keyword, float, bool)."""
        return {k: v for k, v in self.store.payload_schema().items() if k not in INTERNAL_KEYS}

    def projection_status(self, *, exact: bool = True) -> Any:
        """`lookalike.engine.adapted.ProjectionStatus`: is a learned projection used, is it stale
        (`exact`: by the signature of every view; else by their number, one count)."""
        from lookalike.engine.adapted import projection_status

        return projection_status(self, exact=exact)

    def network_status(self, *, exact: bool = True) -> Any:
        """`lookalike.learn.adapted.NetworkStatus`: is the index embedded with an adapted network
        (`tune --train`), is it stale."""
        from lookalike.learn.adapted import network_status

        return network_status(self, exact=exact)

    def tune(self, **kwargs: Any) -> Any:
        """Fit, store and apply a learned projection: see `lookalike.engine.adapted.tune_index`."""
        from lookalike.engine.adapted import tune_index

        return tune_index(self, **kwargs)

    def stats(self) -> dict[str, Any]:
        """Items, views, models and size of the index."""
        from lookalike.engine.calibration import calibration_levels
        from lookalike.engine.calibration import describe as describe_levels

        store = self.store
        manifest = self.manifest
        return {
            "index": str(self.index_dir),
            "items": store.count(where("kind", "centroid")),
            "views": store.count(where("kind", "view")),
            "embedder": manifest.embedder.name if manifest else None,
            "embedder_sha256": manifest.embedder.sha256 if manifest else None,
            "dim": manifest.dim if manifest else None,
            "created": manifest.created if manifest else None,
            "disk_bytes": store.disk_bytes(),
            "projection": self.projection_status(exact=False).describe(),
            "match_levels": describe_levels(
                calibration_levels(self), "tuned" if self.projection is not None else "image"
            ),
            "network": self.network_status(exact=False).describe(),
            "fields": self.fields(),
        }
