"""The line charts' time bins: round bin widths over a window, boxes per class and latency percentiles per bin
(numpy over whole columns; SQLite has no percentiles, so they are taken here for both databases)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .models import ClassSeries, LatencySeries, TimeBins
from .rollup import MINUTE, minute_of

CHART_BINS = 40
_NICE_BIN_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def time_bins(first: datetime | None, last: datetime | None, bins: int = CHART_BINS) -> TimeBins:
    """At most `bins` bins of a round width (1 s … 1 day) covering [first, last]."""
    if first is None or last is None:
        return TimeBins(start=None, width_s=60.0, count=0)
    span = max((last - first).total_seconds(), 1.0)
    width = next((w for w in _NICE_BIN_S if span / w <= bins), _NICE_BIN_S[-1])
    epoch = first.timestamp()
    start = datetime.fromtimestamp(epoch - epoch % width, tz=timezone.utc)
    count = int((last - start).total_seconds() // width) + 1
    return TimeBins(start=start, width_s=float(width), count=count)


@dataclass(frozen=True)
class _BinRow:
    bin: int
    class_id: int
    class_name: str
    boxes: int


def rollup_bins(minutes: dict[int, dict[tuple[int, str], int]], bins: TimeBins) -> list[_BinRow]:
    """Rows like CLASS_COUNTS_BINNED's from the rollup's minutes (bins of whole minutes)."""
    assert bins.start is not None
    per_bin = int(bins.width_s // MINUTE)
    first = minute_of(bins.start)
    totals: dict[tuple[int, int, str], int] = {}
    for minute, per_class in minutes.items():
        k = (minute - first) // per_bin
        if 0 <= k < bins.count:
            for (class_id, name), boxes in per_class.items():
                totals[k, class_id, name] = totals.get((k, class_id, name), 0) + boxes
    return [_BinRow(k, c, n, b) for (k, c, n), b in totals.items()]


def _bin_array(bins: TimeBins, rows: list[Any]) -> np.ndarray:
    return np.clip(np.array([r.bin for r in rows], dtype=np.int64), 0, bins.count - 1)


def class_series(bins: TimeBins, rows: list[Any]) -> ClassSeries:
    if not rows or bins.count == 0:
        return ClassSeries(bins=bins, boxes={})
    index = _bin_array(bins, rows)
    names = np.array([r.class_name for r in rows], dtype=object)
    boxes = np.array([r.boxes for r in rows], dtype=np.int64)
    totals = {str(n): int(boxes[names == n].sum()) for n in set(names.tolist())}
    series = {}
    for name in sorted(totals, key=lambda n: (-totals[n], n)):
        mask = names == name
        series[name] = np.bincount(index[mask], weights=boxes[mask], minlength=bins.count).astype(np.int64).tolist()
    return ClassSeries(bins=bins, boxes=series)


def latency_series(bins: TimeBins, rows: list[Any]) -> LatencySeries:
    if not rows or bins.count == 0:
        return LatencySeries(bins=bins, frames=[0] * bins.count, p50_s=[None] * bins.count, p99_s=[None] * bins.count)
    table = np.asarray([tuple(r) for r in rows], dtype=np.float64).reshape(-1, 2)
    index = np.clip(table[:, 0].astype(np.int64), 0, bins.count - 1)
    latency = table[:, 1]
    order = np.lexsort((latency, index))  # by bin, then latency: each bin's latencies sorted
    index, latency = index[order], latency[order]
    bounds = np.searchsorted(index, np.arange(bins.count + 1))
    counts = np.diff(bounds)
    filled = counts > 0
    quantiles = {}
    for quantile in (0.5, 0.99):  # numpy's default (linear) quantile, for every bin at once
        position = bounds[:-1] + quantile * np.maximum(counts - 1, 0)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, bounds[1:] - 1)
        low, high = np.minimum(low, len(latency) - 1), np.maximum(np.minimum(high, len(latency) - 1), 0)
        value = latency[low] + (latency[high] - latency[low]) * (position - np.floor(position))
        quantiles[quantile] = [float(v) if ok else None for v, ok in zip(value, filled)]
    return LatencySeries(bins=bins, frames=counts.tolist(), p50_s=quantiles[0.5], p99_s=quantiles[0.99])
