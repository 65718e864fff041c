"""Find-people routes of the HTTP API: search the face index with a selfie, serve its photos,
its statistics; and the people (`people_router`, included by `faces_router`):

    GET  /api/faces/people[?all=true]          people, most faces first: id, name, counts, cover
    GET  /api/faces/people/{id}/photos         the photos a person is in, the face's box in each
    GET  /api/faces/face/{face_id}.jpg[?size]  a square picture of one indexed face
    POST /api/faces/people/{id}/name           {"name": "Ann"} (null or "" removes it)
    POST /api/faces/people/merge               {"into": "1", "others": ["4", "7"]}
    POST /api/faces/people/split               {"face_ids": [...], "name": null}: a new person
    POST /api/faces/people/{id}/hide           {"hidden": true}

The people router works over callables the app provides, so it needs none of the app's internals.
Changes need `X-API-Key` when the server has a key (like adding items). Blocking work runs on
worker threads.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from lookalike.api.http_schemas import MAX_K, ChooseFaceOut, ErrorOut, FaceSearchOut
from lookalike.api.http_state import AppState, KeyHeader
from lookalike.api.results import person_json
from lookalike.api.served_files import THUMB_SIZES, image_response

if TYPE_CHECKING:
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.people import PersonView
    from lookalike.faces.values import Face, FaceSearchResult, QueryFace
    from lookalike.pipeline.decode import DecodeLimits


def faces_router(state: AppState) -> APIRouter:
    """The find-people endpoints over `state` (the face index opens on first use)."""
    router = APIRouter()

    @router.post(
        "/api/faces/search",
        response_model=FaceSearchOut,
        tags=["faces"],
        responses={
            409: {
                "model": ChooseFaceOut,
                "description": "Several faces in the photo: ask again with `face=N`.",
            },
            422: {"model": ErrorOut, "description": "No face in the photo, or a bad face number."},
        },
    )
    async def search_faces(
        photo: Annotated[UploadFile, File(description="A photo of the person (a selfie).")],
        face: Annotated[
            int | None,
            Form(ge=0, description="Which face of the photo, 0 = largest (see the 409 answer)."),
        ] = None,
        threshold: Annotated[
            float | None,
            Form(
                gt=0,
                le=2,
                description="'Same person' distance, 0..2 [default: the calibrated 0.36].",
            ),
        ] = None,
        maybe_threshold: Annotated[
            float | None,
            Form(
                ge=0,
                le=2,
                description="Outer distance of the 'maybe you' tier [default: 0.42].",
            ),
        ] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K, description="Most photos returned.")] = 50,
    ) -> dict[str, Any] | JSONResponse:
        """The indexed photos that contain the person of the photo, best first, each with the
        matching face's box. Several faces in the photo and no `face`: 409 listing them."""
        data = await state.read_upload(photo)
        status, body = await state.run_search(
            face_results, state, data, face, threshold, k, maybe_threshold
        )
        return body if status == 200 else JSONResponse(body, status_code=status)

    @router.get(
        "/api/faces/photos/{path:path}",
        tags=["faces"],
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The photo."},
            404: {"model": ErrorOut, "description": "Not a photo of the face index."},
        },
    )
    async def get_face_photo(
        path: str,
        size: Annotated[
            int | None,
            Query(ge=THUMB_SIZES[0], le=THUMB_SIZES[1], description="Longest side of a thumbnail."),
        ] = None,
    ) -> Response:
        """A photo of the face index: only photos whose faces are indexed are served."""
        found = await state.read(state.face_photos.lookup, path)
        if found is None:
            raise HTTPException(404, f"no photo {path!r} in the face index")
        return await image_response(state, found, path, size)

    @router.get("/api/faces/stats", tags=["faces"])
    async def face_stats() -> dict[str, Any]:
        """Photos and faces in the face index (503 when there is none yet)."""
        return await state.read(face_index_stats, state)

    router.include_router(
        people_router(
            state.face_index, state.access.check, state.face_photos.url_for, state.catalogue_limits
        )
    )
    return router


def face_results(
    state: AppState,
    data: bytes,
    face: int | None,
    threshold: float | None,
    k: int,
    maybe_threshold: float | None = None,
) -> tuple[int, dict[str, Any]]:
    """(200, matches) or (409, the faces to choose from). Blocking.

    Boxes are in pixels of the photo as uploaded (EXIF-rotated, decoded at full size).
    """
    from lookalike.faces.detect import ManyFacesError

    faces = state.face_index()
    t0 = time.perf_counter()
    image = state.decode(data, full_size=True)
    decode_ms = (time.perf_counter() - t0) * 1e3
    size = {"width": image.size[0], "height": image.size[1]}
    try:
        # dlib's detector and network are not documented as thread-safe: one at a time.
        with state.face_search_lock:
            result = faces.search(
                image, face=face, threshold=threshold, k=k, maybe_threshold=maybe_threshold
            )
    except ManyFacesError as exc:
        listed = [
            {
                "number": n,
                "box": [round(v, 1) for v in f.box.as_list()],
                "det_score": round(float(f.score), 4),
                "face_size": round(float(f.size), 1),
            }
            for n, f in enumerate(exc.faces)
        ]
        return 409, {
            "detail": str(exc),
            "error": "ManyFacesError",
            "faces": listed,
            "query": size,
        }
    return 200, _faces_out(state, faces, result, size, decode_ms)


def _faces_out(
    state: AppState,
    faces: FaceIndex,
    result: FaceSearchResult,
    size: dict[str, int],
    decode_ms: float,
) -> dict[str, Any]:
    ids = [m.face_id for m in result.matches]
    sizes = {r.id: r.payload.get("image_size") for r in faces.store.retrieve(ids)} if ids else {}
    matches = []
    for rank, m in enumerate(result.matches, 1):
        url = state.face_photos.url_for(m.photo)
        local = url is not None and url.startswith(state.face_photos.prefix)
        image_size = sizes.get(m.face_id)
        matches.append(
            {
                "rank": rank,
                "tier": m.tier,
                "photo": state.face_photos.name(m.photo),
                "name": os.path.basename(m.photo.rstrip("/")) or m.photo,
                "image_url": url,
                "thumbnail_url": f"{url}?size=640" if local else url,
                "image_size": list(image_size) if image_size else None,
                "box": [round(v, 1) for v in m.box],
                "distance": m.distance,
                "similarity": m.similarity,
                "face_id": m.face_id,
                "det_score": m.det_score,
                "face_size": m.face_size,
            }
        )
    timings = {**result.timings_ms, "decode": decode_ms}
    return {
        "matches": matches,
        "threshold": result.threshold,
        "maybe_threshold": result.maybe_threshold,
        "query": {
            **size,
            "face": _query_face_out(result.query_face),
            "faces": [_query_face_out(f) for f in result.query_faces],
        },
        "timings_ms": {
            **{k_: round(v, 2) for k_, v in timings.items()},
            "total": round(sum(timings.values()), 2),
        },
    }


def face_index_stats(state: AppState) -> dict[str, Any]:
    info = dict(state.face_index().stats())
    info.pop("index", None)  # the server's folder layout is nobody's business
    info["threshold"] = state.face_index().face_settings.threshold
    info["maybe_threshold"] = state.face_index().face_settings.maybe_threshold
    return info


def _query_face_out(f: QueryFace) -> dict[str, Any]:
    return {
        "number": f.number,
        "box": [round(v, 1) for v in f.box],
        "det_score": f.det_score,
        "face_size": f.face_size,
    }


_CROPS = 512  # face pictures cached (a People page shows one per person)


class NameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200, description="null or '' removes it.")


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: str = Field(max_length=20, description="The person who stays.")
    others: list[str] = Field(min_length=1, max_length=100)


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    face_ids: list[str] = Field(min_length=1, max_length=1000)
    name: str | None = Field(default=None, max_length=200)


class HideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: bool = True


def people_router(
    faces: Callable[[], FaceIndex],
    check_key: Callable[[str | None], None],
    photo_url: Callable[[str], str | None],
    limits: DecodeLimits,
) -> APIRouter:
    """The routes above. faces: the face index (blocking; StoreError when there is none);
    check_key: raises 401 for a missing or wrong key; photo_url: where a browser loads a photo
    of the face index (None when it cannot)."""
    router = APIRouter(tags=["faces"])
    # Face pictures are small: a JPEG decoded at reduced size (>= 1024 px) is plenty.
    limits = replace(limits, draft_size=1024)
    crops: OrderedDict[tuple[str, int], bytes] = OrderedDict()
    crops_lock = threading.Lock()
    write_lock = threading.Lock()

    def face_out(f: Face) -> dict[str, Any]:
        url = photo_url(f.photo)
        local = url is not None and not url.startswith(("http://", "https://"))
        return {
            "face_id": f.face_id,
            "photo": f.photo,
            "name": os.path.basename(f.photo.rstrip("/")) or f.photo,
            "box": list(f.box),
            "face_size": f.face_size,
            "image_url": url,
            "thumbnail_url": f"{url}?size=640" if local else url,
            "face_url": f"/api/faces/face/{f.face_id}.jpg",
        }

    def person_out(p: PersonView) -> dict[str, Any]:
        return {**person_json(p), "cover": face_out(p.cover)}

    def listing(include_hidden: bool) -> list[PersonView]:
        from lookalike.faces.people import list_people

        # One listing or change at a time in this process: a listing may write the book, and
        # the folder's lock refuses a second writer rather than wait.
        with write_lock:
            return list_people(faces(), include_hidden=include_hidden)

    def find(person: str) -> PersonView:
        for p in listing(True):
            if p.person_id == person:
                return p
        raise HTTPException(404, f"no person {person!r} with faces in the face index")

    def crop(face_id: str, size: int) -> bytes:
        from lookalike.faces.report import face_thumbnail
        from lookalike.pipeline.decode import load_image

        with crops_lock:
            if (face_id, size) in crops:
                crops.move_to_end((face_id, size))
                return crops[(face_id, size)]
        index = faces()
        records = index.store.retrieve([face_id]) if _looks_like_id(face_id) else []
        if not records or records[0].payload.get("kind") != "face":
            raise HTTPException(404, f"no face {face_id!r} in the face index")
        p = records[0].payload
        photo = str(p["photo"])
        if photo.startswith(("http://", "https://")):
            raise HTTPException(404, "the face's photo is not on this server")
        decoded = load_image(photo, limits)
        scale = decoded.image.width / decoded.original_size[0]
        box = tuple(v * scale for v in p["box"])
        picture = face_thumbnail(decoded.image, box, size=size)
        buf = io.BytesIO()
        picture.save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with crops_lock:
            crops[(face_id, size)] = data
            while len(crops) > _CROPS:
                crops.popitem(last=False)
        return data

    async def change(key: str | None, what: str, /, *args: object, **kw: object) -> object:
        """`lookalike.faces.people.<what>(book, *args, **kw)` (rename, merge, split, hide) applied
        to the book on a worker thread, once `key` is checked (as `faces people` does)."""
        from lookalike.faces import people

        check_key(key)

        def locked() -> object:
            with write_lock:  # one change at a time in this process; the folder lock for others
                return people.change_book(faces(), getattr(people, what), *args, **kw)

        return await anyio.to_thread.run_sync(locked)

    @router.get("/api/faces/people")
    async def list_people_route(
        include_hidden: Annotated[
            bool, Query(alias="all", description="Hidden people too.")
        ] = False,
    ) -> dict[str, Any]:
        """The people of the face index, most faces first, with names and a cover face."""
        people = await anyio.to_thread.run_sync(listing, include_hidden)
        return {"people": [person_out(p) for p in people]}

    @router.get("/api/faces/people/{person}/photos")
    async def person_photos(person: str) -> dict[str, Any]:
        """The photos this person is in, the face framed (largest faces first)."""
        p = await anyio.to_thread.run_sync(find, person)
        return {**person_out(p), "photos": [face_out(f) for f in p.faces]}

    @router.get(
        "/api/faces/face/{face_id}.jpg",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def face_picture(
        face_id: str, size: Annotated[int, Query(ge=32, le=512)] = 160
    ) -> Response:
        """A square picture of one indexed face (its photo cropped around it)."""
        data = await anyio.to_thread.run_sync(crop, face_id, size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    @router.post("/api/faces/people/{person}/name")
    async def name_person(person: str, body: NameIn, x_api_key: KeyHeader = None) -> dict[str, Any]:
        """Name a person (kept across re-indexing); null or "" removes the name."""
        await change(x_api_key, "rename", person, body.name)
        return {"person": person, "name": (body.name or "").strip() or None}

    @router.post("/api/faces/people/merge")
    async def merge_people(body: MergeIn, x_api_key: KeyHeader = None) -> dict[str, Any]:
        """The `others` are the same person as `into`: one person from now on."""
        await change(x_api_key, "merge", body.into, body.others)
        return {"person": body.into, "merged": body.others}

    @router.post("/api/faces/people/split")
    async def split_faces(body: SplitIn, x_api_key: KeyHeader = None) -> dict[str, Any]:
        """Take wrongly grouped faces out of their person: they become a new person."""
        new = await change(x_api_key, "split", body.face_ids, name=body.name)
        return {"person": new, "face_ids": body.face_ids, "name": body.name}

    @router.post("/api/faces/people/{person}/hide")
    async def hide_person(person: str, body: HideIn, x_api_key: KeyHeader = None) -> dict[str, Any]:
        """Hide a person from the list (their faces stay searchable), or show them again."""
        await change(x_api_key, "hide", person, body.hidden)
        return {"person": person, "hidden": body.hidden}

    return router


def _looks_like_id(face_id: str) -> bool:
    """Point ids are UUIDs: anything else cannot be one (and is not sent to the store)."""
    try:
        uuid.UUID(face_id)
    except ValueError:
        return False
    return True
