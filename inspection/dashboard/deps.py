"""Dependencies of the routers: the read layer, the image store, the thumbnail cache, the config."""

from __future__ import annotations

from fastapi import HTTPException, Request

from ..analytics import AnalyticsReader
from ..store.images import ImageStore
from .config import DashboardConfig
from .thumbnails import ThumbnailCache


def get_reader(request: Request) -> AnalyticsReader:
    """The read layer on the read-only engine opened at start-up."""
    return request.app.state.reader


def get_config(request: Request) -> DashboardConfig:
    return request.app.state.config


def get_images(request: Request) -> ImageStore:
    images = request.app.state.images
    if images is None:
        raise HTTPException(404, "this dashboard has no image store: start it with --images DIR (the edge's store.image_dir)")
    return images


def get_thumbs(request: Request) -> ThumbnailCache:
    return request.app.state.thumbs
