"""Results store: SQL models, the write/read repository, migrations, content-addressed images."""

from .db import DatabaseUnreachableError, create_engine_for, mask_url, wait_for_database
from .images import ImageStore, ImageStoreError
from .migrations import upgrade_database
from .repository import (
    CarNotFoundError,
    CarSummary,
    FrameNotFoundError,
    FrameRecord,
    RejectedMessage,
    ResultStore,
    StoreCounts,
    StoredFrame,
)

__all__ = [
    "CarNotFoundError",
    "CarSummary",
    "DatabaseUnreachableError",
    "FrameNotFoundError",
    "FrameRecord",
    "ImageStore",
    "ImageStoreError",
    "RejectedMessage",
    "ResultStore",
    "StoreCounts",
    "StoredFrame",
    "create_engine_for",
    "mask_url",
    "upgrade_database",
    "wait_for_database",
]
