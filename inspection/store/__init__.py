"""Results store: SQL models, the writer (`ResultStore`), migrations, content-addressed images; reads go through `inspection.analytics`."""

from . import review_models  # noqa: F401  (registers the review and shadow tables on Base)
from .db import create_engine_for, mask_url, wait_for_database
from .errors import DatabaseUnreachableError, RecordRefused, StoreError, StoreUnavailable
from .images import ImageStore, ImageStoreError
from .migrations import upgrade_database
from .repository import (
    FrameRecord,
    OverdueCar,
    PruneCounts,
    ResultStore,
    StoredFrame,
)
from .retry import RetryPolicy

__all__ = [
    "DatabaseUnreachableError",
    "FrameRecord",
    "ImageStore",
    "ImageStoreError",
    "OverdueCar",
    "PruneCounts",
    "RecordRefused",
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
