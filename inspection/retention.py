"""Retention: `inspection db prune` deletes results and frame images older than a cutoff.

Frames are ~1.6 MB each (~150 MB a car, ~9 GB an hour at a 60 s takt), so a site sets
`retention.rows_days` / `retention.images_days` (or passes `--older-than`) and runs the prune
daily (cron, a systemd timer, a Kubernetes CronJob). It is a dry run unless asked to delete:

- rows: cars first captured before the cutoff with their frames and detections, and rejected
  messages received before it (runs stay: they are small and name who wrote what);
- images: files of frames captured before the images cutoff (or of pruned frames) that no kept
  frame references (images are content-addressed: one file may serve several frames); kept frames
  get `image_uri` cleared. A run's image directory is the one recorded on its row (`runs.image_dir`),
  else the configured `store.image_dir`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .store import ImageStore, ImageStoreError, ResultStore

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '90m', '45s', '2w' (one number and unit) as a timedelta; ValueError naming the format."""
    match = _DURATION.fullmatch(text or "")
    if match is None:
        raise ValueError(f"duration {text!r}: expected a number and a unit s, m, h, d or w, e.g. 30d or 12h")
    seconds = float(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class PruneReport:
    rows_before: datetime | None
    images_before: datetime | None
    dry_run: bool
    cars: int
    frames: int
    detections: int
    rejected: int
    images_cleared: int
    image_files: int
    image_bytes: int
    images_missing: int  # referenced files already gone (or outside any known image directory)


def prune(
    store: ResultStore,
    *,
    rows_older_than: timedelta | None,
    images_older_than: timedelta | None,
    default_image_dir: Path | None,
    dry_run: bool = True,
    now: datetime | None = None,
) -> PruneReport:
    """Prune rows and images older than the given ages; a dry run deletes nothing and reports the same."""
    now = now or datetime.now(timezone.utc)
    rows_before = now - rows_older_than if rows_older_than else None
    images_before = now - images_older_than if images_older_than else None
    if rows_before is not None and (images_before is None or images_before < rows_before):
        images_before = rows_before  # a pruned frame's image goes with it
    counts = store.prune(rows_before, images_before, dry_run=dry_run)
    files = found = missing = 0
    for directory, uri in counts.image_files:
        root = Path(directory) if directory else default_image_dir
        if root is None or not root.is_dir():
            missing += 1
            continue
        images = ImageStore(root)
        try:
            path = images.path_for(uri, must_exist=False)
            size = path.stat().st_size if path.is_file() else None
        except (ImageStoreError, OSError):
            size = None
        if size is None:
            missing += 1
            continue
        files += 1
        found += size if dry_run else images.delete(uri)
    return PruneReport(
        rows_before,
        images_before,
        dry_run,
        counts.cars,
        counts.frames,
        counts.detections,
        counts.rejected,
        counts.images_cleared,
        files,
        found,
        missing,
    )
