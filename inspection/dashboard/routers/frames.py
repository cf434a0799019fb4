"""One frame: metadata, its boxes (JSON arrays), the original JPEG and thumbnails, by frame id.

Images are found through the frame's row: the request names a frame id, never a path, and the
image store accepts nothing but the content-addressed URIs it writes.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from ...analytics import AnalyticsReader
from ...analytics.models import FrameBoxes, FrameDefects, FrameDetail
from ...store.images import ImageStore, ImageStoreError
from ...tiling import TileGrid
from ..config import DashboardConfig
from ..deps import get_config, get_images, get_reader, get_thumbs
from ..templating import templates
from ..thumbnails import THUMB_WIDTHS, ThumbnailCache

router = APIRouter(tags=["frames"])
IMMUTABLE = "private, max-age=31536000, immutable"  # content-addressed: the bytes of an id never change


@router.get("/api/frames/{frame_id}", response_model=FrameDetail, summary="one frame's metadata")
def api_frame(frame_id: int, reader: AnalyticsReader = Depends(get_reader)) -> FrameDetail:
    return reader.frame(frame_id)


@router.get(
    "/api/frames/{frame_id}/detections",
    response_model=FrameBoxes,
    summary="a frame's boxes in frame pixels, highest score first, as parallel arrays",
)
def api_frame_boxes(frame_id: int, reader: AnalyticsReader = Depends(get_reader)) -> FrameBoxes:
    return reader.frame_boxes(frame_id)


@router.get(
    "/api/frames/{frame_id}/defects",
    response_model=FrameDefects,
    summary="the boxes the inspection rules kept as defects (with the rule) or an ignore region removed",
)
def api_frame_defects(frame_id: int, reader: AnalyticsReader = Depends(get_reader)) -> FrameDefects:
    return reader.frame_defects(frame_id)


def _image_bytes(frame_id: int, reader: AnalyticsReader, images: ImageStore) -> tuple[str, bytes]:
    uri = reader.frame_image_uri(frame_id)
    if uri is None:
        raise HTTPException(404, f"frame {frame_id} has no stored image (the edge ran without store.image_dir)")
    try:
        return uri, images.get(uri)
    except FileNotFoundError:
        raise HTTPException(404, f"image of frame {frame_id} is not in the image store {images.root}") from None
    except ImageStoreError as exc:
        raise HTTPException(500, f"image of frame {frame_id}: {exc}") from None


def _digest(uri: str) -> str:
    return uri.rsplit("/", 1)[-1].split(".", 1)[0]


@router.get(
    "/frames/{frame_id}/image.jpg",
    summary="the original JPEG of a frame",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def frame_image(
    frame_id: int, reader: AnalyticsReader = Depends(get_reader), images: ImageStore = Depends(get_images)
) -> Response:
    uri, data = _image_bytes(frame_id, reader, images)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": IMMUTABLE, "ETag": f'"{_digest(uri)}"'})


@router.get(
    "/frames/{frame_id}/thumb.jpg",
    summary="a thumbnail (DCT-domain downscaled, cached)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def frame_thumb(
    frame_id: int,
    w: int = Query(160, description=f"width: one of {THUMB_WIDTHS}"),
    reader: AnalyticsReader = Depends(get_reader),
    images: ImageStore = Depends(get_images),
    thumbs: ThumbnailCache = Depends(get_thumbs),
) -> Response:
    if w not in THUMB_WIDTHS:
        raise HTTPException(422, f"w={w}: thumbnails come in widths {', '.join(map(str, THUMB_WIDTHS))}")
    uri = reader.frame_image_uri(frame_id)
    if uri is None:
        raise HTTPException(404, f"frame {frame_id} has no stored image")
    data = thumbs.get(_digest(uri), lambda: _image_bytes(frame_id, reader, images)[1], w)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": IMMUTABLE, "ETag": f'"{_digest(uri)}-{w}"'})


@router.get("/frames/{frame_id}", response_class=HTMLResponse, include_in_schema=False)
def frame_page(
    frame_id: int, request: Request, reader: AnalyticsReader = Depends(get_reader), config: DashboardConfig = Depends(get_config)
) -> HTMLResponse:
    frame = reader.frame(frame_id)
    grid = TileGrid.from_config(config.grid)
    tiles = [(int(x), int(y)) for y in grid.y_starts for x in grid.x_starts]
    width, height = frame.width or grid.frame_width, frame.height or grid.frame_height
    return templates.TemplateResponse(
        request,
        "frame.html",
        {
            "frame": frame,
            "width": width,
            "height": height,
            "tiles": tiles,
            "tile_size": grid.tile_size,
            "has_images": request.app.state.images is not None,
        },
    )
