"""Find people: every face of every photo in its own collection, searchable from one selfie.

    detect.py    faces in a photo (dlib HOG, run at a reduced size; boxes in the photo's pixels),
                 5-point alignment + dlib's 128-d ResNet descriptor, L2-normalised; where the
                 dlib `.dat` files are, and what they are (sha256)
    index.py     `FaceIndex`: index / search / clusters / forget over a Qdrant Edge shard
                 (default) or the store `--store` names (registry: `lookalike.store.registry`);
                 indexing is the engine's incremental run (`FaceIndexer`)
    folder.py    its folder: detector, embedder, faces.json (`engine.manifest.FaceManifest`),
                 options, lock, the store, reading
    search.py    its search: "you" and "maybe you" photos of one or several portraits
    ingest.py    which photos a folder holds (and the photo-like files that are not read), an
                 index run's photo loading (worker threads) and face points
    values.py    faces, matches, query faces, results, people, summaries; "you" and "maybe you"
                 matches, and when the looser tier is shown
    people.py    faces -> people (Chinese whispers on the "same person" graph), people as the user
                 shapes them: stable ids, names, merge, split, hide
    report.py    HTML page of the clusters; a picture of the detected boxes

Heavy modules (numpy, dlib, PIL, qdrant) are imported by the submodules, not here, so
`import lookalike.faces` stays cheap; `FaceIndex` and `FaceSettings` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.settings import FaceSettings

__all__ = ["FaceIndex", "FaceSettings"]


def __getattr__(name: str) -> type:
    if name == "FaceIndex":
        from lookalike.faces.index import FaceIndex

        return FaceIndex
    if name == "FaceSettings":
        from lookalike.faces.settings import FaceSettings

        return FaceSettings
    raise AttributeError(name)
