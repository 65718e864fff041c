"""Find-people routes of the HTTP API: search the face index with a selfie, serve its photos,
its statistics; the people routes (`http_faces_people`) are included here."""

import os
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from lookalike.api.http_schemas import MAX_K, ChooseFaceOut, ErrorOut, FaceSearchOut
from lookalike.api.http_state import AppState
from lookalike.api.served_files import THUMB_SIZES, image_response

if TYPE_CHECKING:
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.values import FaceSearchResult, QueryFace


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

    from lookalike.api.http_faces_people import people_router

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
    faces: "FaceIndex",
    result: "FaceSearchResult",
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


def _query_face_out(f: "QueryFace") -> dict[str, Any]:
    return {
        "number": f.number,
        "box": [round(v, 1) for v in f.box],
        "det_score": f.det_score,
        "face_size": f.face_size,
    }
