"""Results store: SQL models, the write/read repository, migrations, content-addressed images."""

from . import review_models  # noqa: F401  (registers the review and shadow tables on Base)
from .db import create_engine_for, mask_url, wait_for_database
from .errors import DatabaseUnreachableError, RecordRefused, StoreError, StoreUnavailable
from .images import ImageStore, ImageStoreError
from .migrations import upgrade_database
from .repository import (
    CarNotFoundError,
    CarSummary,
    FrameNotFoundError,
    FrameRecord,
    OverdueCar,
    PruneCounts,
    RejectedMessage,
    ResultStore,
    StoredFrame,
)
from .retry import RetryPolicy

__all__ = [
    "CarNotFoundError",
    "CarSummary",
    "DatabaseUnreachableError",
    "FrameNotFoundError",
    "FrameRecord",
    "ImageStore",
    "ImageStoreError",
    "OverdueCar",
    "PruneCounts",
    "RecordRefused",
    "RejectedMessage",
    "ResultStore",
    "RetryPolicy",
    "StoreError",
    "StoreUnavailable",
    "StoredFrame",
    "create_engine_for",
    "mask_url",
    "upgrade_database",
    "wait_for_database",
]
