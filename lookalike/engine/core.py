"""Engine: index a catalogue, search it by photo. The CLI, HTTP API and web page are thin layers on it.

The engine never prints or exits: it reports progress through a callback and raises typed errors.
`Engine` is a facade: building models and stores (`wiring`), the photo pipeline (`photos`),
indexing (`indexer`, `centroids`), filters (`fields`) and searching (`searcher`, `textfusion`)
live in modules of their own.

Index folder layout:
    lookalike.json   what built the index (models, preprocessing): see `index_manifest`
    shard/           the Qdrant Edge shard: one point per view, one `centroid` point per item
                     (or a collection elsewhere: `--store`, recorded in the manifest)
    .lock            held while a process writes

Visibility while indexing: see `lookalike.engine.indexer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.config import Settings
from lookalike.engine import adapted, wiring
from lookalike.engine.fields import FilterFields
from lookalike.engine.indexer import Indexer
from lookalike.engine.lock import ClosesStore, folder_write_lock
from lookalike.engine.manifest import IndexManifest
from lookalike.engine.part import Forward
from lookalike.engine.photos import PhotoPipeline
from lookalike.engine.searcher import Searcher
from lookalike.engine.textfusion import TextFusion
from lookalike.errors import IndexMismatchError, StoreError
from lookalike.learn import adapted as learned
from lookalike.pipeline.embed import ImageEmbedder
from lookalike.store.base import Store, where

if TYPE_CHECKING:
    from lookalike.engine.integrity import VerifyReport
    from lookalike.engine.wiring import Stages
    from lookalike.learn.projection import Projection
    from lookalike.pipeline.decode import DecodeLimits
    from lookalike.pipeline.ocr import TextReader
    from lookalike.pipeline.views import ViewSettings


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
        self.views, self.manifest = wiring.resolve_views(
            self.manifest, self.index_dir, views, self.settings
        )
        self._stage_cache: Stages | None = None
        if embedder and self.manifest and self.manifest.embedder.name != embedder:
            raise IndexMismatchError(
                f"the index at {self.index_dir} was built with {self.manifest.embedder.name}, "
                f"not {embedder}; index into a new folder to use {embedder}"
            )
        self.embedder_name = embedder or (
            self.manifest.embedder.name if self.manifest else self.settings.models.embedder
        )
        self._embedder = image_embedder
        self._injected = image_embedder is not None
        self._wanted: IndexManifest | None = None
        self._checked = False
        self._store = store
        self._store_spec = store_spec
        self._projection: Projection | None = None
        self._projection_loaded = False
        self.network: dict[str, Any] | None = self.manifest.network if self.manifest else None
        """The adapted network to embed with (`lookalike.learn.adapted`), as the manifest records."""
        self._reader: TextReader | None = None
        self._unchecked_open = False  # verify and repair open a store that failed its check
        self._fields = FilterFields(self)
        self._texts = TextFusion(self)
        self._searcher = Searcher(self, self._texts)
        self._indexer = Indexer(self, self._texts, self._fields)

    # -- components, built lazily so `Engine(...)` is cheap -------------------------------------

    @property
    def projection(self) -> Projection | None:
        """The index's learned projection (`lookalike tune`) when it has one and the setting
        `tuned` is on (searches then use the `tuned` vectors), else None."""
        return self.stored_projection() if self.settings.search.tuned else None

    def stored_projection(self) -> Projection | None:
        """The index's projection whatever the `tuned` setting says (new points must carry it);
        read once and checked against the manifest's sha256."""
        if not self._projection_loaded:
            record = self.manifest.projection if self.manifest is not None else None
            if record and self.manifest is not None:
                from lookalike.engine.adapted import load_projection

                self._projection = load_projection(self.index_dir, record, self.manifest.dim)
            self._projection_loaded = True
        return self._projection

    def use_projection(self, projection: Projection | None) -> None:
        """Search and index with `projection` from now on (`tune` applied a new one)."""
        self._projection = projection

    @property
    def embedder(self) -> ImageEmbedder:
        wanted = self.wanted_manifest()
        if self.manifest is not None and not self._checked:
            self.manifest.check_compatible(wanted, self.index_dir)
            self._checked = True
        assert self._embedder is not None
        return self._embedder

    def wanted_manifest(self) -> IndexManifest:
        """What an index built by this engine's embedder records (loads the model on first use)."""
        if self._wanted is None:
            if self._embedder is not None:  # injected (tests, custom embedders)
                self._wanted = wiring.injected_manifest(self._embedder, self.views)
            else:
                self._embedder, self._wanted = wiring.load_embedder(
                    self.embedder_name, self.settings, self.views, self.index_dir, self.network
                )
        return self._wanted

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
        """Where this index's vectors live (`wiring.store_record`)."""
        return wiring.store_record(self.manifest, self.index_dir, self._store_spec, self.settings)

    def open_store_at(self, spec: str) -> Store:
        """A store for this index's vectors at `spec` (e.g. a migration's destination), opened
        with this engine's settings (API key, graph settings); the manifest is not changed."""
        if self.manifest is None:
            raise StoreError(f"no index at {self.index_dir}")
        return self._open_store(self.manifest.dim, spec)

    def _open_store(self, dim: int, spec: str | None = None) -> Store:
        spec = spec or self.store_record()["spec"]
        projection = self.manifest.projection if self.manifest is not None else None
        return wiring.open_store(self.settings, self.index_dir, spec, dim, projection)

    def create_index(self) -> None:
        if self.manifest is None:
            manifest = dataclasses.replace(
                self.wanted_manifest(), store=self.store_record(), visibility=1
            )
            manifest.save(self.index_dir)
            self.manifest = manifest
            self._checked = True
        else:
            _ = self.embedder  # loads the model and checks it is the one that built the index

    @contextmanager
    def write_lock(self, *, repair: bool = False) -> Iterator[tuple[str, ...]]:
        """The index's one-writer lock, also for code beside the engine that rewrites the index
        (`tune`, `tune --train`).

        One writer at a time, and the index sealed after each successful write
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

    def verify(self) -> VerifyReport:
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
        """Before a `--repair` run: see `integrity.repair_damage`."""
        from lookalike.engine.integrity import repair_damage

        repaired = repair_damage(self)
        if repaired:
            self._fields.forget()
        return repaired

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
        self._texts.forget()

    # -- indexing ------------------------------------------------------------------------------

    index = Forward("_indexer", Indexer.index)

    @property
    def pipeline(self) -> PhotoPipeline:
        """The photo pipeline (decode, views, embed) with this engine's models and settings."""
        return PhotoPipeline(self)

    def decode_limits(self) -> DecodeLimits:
        """Decode limits of catalogue photos from the settings (`wiring.decode_limits`)."""
        return wiring.decode_limits(self.settings, lambda: self.embedder, self.views)

    def stages(self) -> Stages:
        """(detector, isolator) the view settings need (None where not used); loaded once."""
        if self._stage_cache is None:
            self._stage_cache = wiring.load_stages(self.settings, self.views)
        return self._stage_cache

    filter_fields = Forward("_fields", FilterFields.filter_fields)

    user_filter = Forward("_fields", FilterFields.user_filter)

    training_views = Forward("pipeline", PhotoPipeline.training_views)

    def text_reader(self) -> TextReader:
        if self._reader is None:
            from lookalike.pipeline.ocr import TextReader

            self._reader = TextReader()
        return self._reader

    text_index = Forward("_texts", TextFusion.text_index)

    delete = Forward("_indexer", Indexer.delete)

    # -- searching (`lookalike.engine.searcher`, `lookalike.engine.textfusion`) ----------------

    embed_query = Forward("_searcher", Searcher.embed_query)

    search = Forward("_searcher", Searcher.search)

    query_vector = Forward("_searcher", Searcher.query_vector)

    embed_queries = Forward("_searcher", Searcher.embed_queries)

    fuse_text = Forward("_texts", TextFusion.fuse_text)

    search_objects = Forward("_searcher", Searcher.search_objects)

    detected_objects = Forward("_searcher", Searcher.detected_objects)

    query_views = Forward("_searcher", Searcher.query_views)

    search_text = Forward("_texts", TextFusion.search_text)

    similar = Forward("_searcher", Searcher.similar)

    recommend = Forward("_searcher", Searcher.recommend)

    decode_query = Forward("_searcher", Searcher.decode_query)

    search_vector = Forward("_searcher", Searcher.search_vector)

    predict_field = Forward("_searcher", Searcher.predict_field)

    # -- information ---------------------------------------------------------------------------

    item = Forward("_searcher", Searcher.item)

    item_vector = Forward("_searcher", Searcher.item_vector)

    facets = Forward("_fields", FilterFields.facets)

    fields = Forward("_fields", FilterFields.fields)

    # Functions of the engine kept with what they compute: `engine.tune(...)` is
    # `tune_index(engine, ...)`, with its signature and docstring.
    projection_status = adapted.projection_status

    network_status = learned.network_status

    tune = adapted.tune_index

    def stats(self) -> dict[str, Any]:
        """What `lookalike stats` reports of an index: items, views, models, size, tuning and
        levels."""
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
