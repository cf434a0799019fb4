"""Pure parts of the dashboard: chart binning, SVG charts (escaping), thumbnails (DCT scaling), bind rule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import simplejpeg
from hypothesis import given
from hypothesis import strategies as st

from inspection.analytics.binning import CHART_BINS, time_bins
from inspection.analytics.models import CarLatencySeries, ClassSeries, LatencySeries, TimeBins
from inspection.dashboard import charts
from inspection.dashboard.thumbnails import ThumbnailCache, make_thumbnail

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


@given(st.floats(0, 7 * 86400), st.floats(0, 86400))
def test_time_bins_cover_the_span_in_at_most_40_round_bins(offset_s: float, span_s: float) -> None:
    first = T0 + timedelta(seconds=offset_s)
    last = first + timedelta(seconds=span_s)
    bins = time_bins(first, last)
    assert bins.start is not None and bins.start <= first
    end = bins.start + timedelta(seconds=bins.count * bins.width_s)
    assert end > last
    assert bins.count <= CHART_BINS + 1
    assert bins.start.timestamp() % bins.width_s == 0  # bins start on round times


def test_time_bins_of_nothing() -> None:
    assert time_bins(None, None).count == 0


def test_charts_escape_names_and_ids() -> None:
    bins = TimeBins(start=T0, width_s=60.0, count=2)
    svg = charts.class_chart(ClassSeries(bins=bins, boxes={"<script>alert(1)</script>": [1, 2], "car": [0, 1]}))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and svg.count('class="bar"') == 3
    svg = charts.car_latency_chart(
        CarLatencySeries(
            car_id=["x'; DROP TABLE frames;--", "<b>c2</b>"],
            first_captured_at=[T0, T0],
            car_latency_s=[10.0, None],
            deadline_s=[60.0, 60.0],
            verdict=["met", "overdue"],
        )
    )
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&#x27;" in svg
    latency = charts.latency_chart(LatencySeries(bins=bins, frames=[3, 0], p50_s=[0.5, None], p99_s=[0.9, None]))
    assert latency.count("<circle") == 2  # p50 and p99 of the one bin with frames
    assert "no data yet" in charts.class_chart(ClassSeries(bins=TimeBins(start=None, width_s=60, count=0), boxes={}))


def test_thumbnail_is_dct_scaled_and_cached(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frame = (rng.random((2100, 2700, 3)) * 255).astype(np.uint8)
    jpeg = simplejpeg.encode_jpeg(frame, quality=80)
    thumb = make_thumbnail(jpeg, 320)
    height, width, _, _ = simplejpeg.decode_jpeg_header(thumb)
    assert (width, height) == (320, 249)
    cache = ThumbnailCache(tmp_path)
    digest = "ab" * 32
    calls = []
    first = cache.get(digest, lambda: calls.append(1) or jpeg, 160)
    second = cache.get(digest, lambda: calls.append(1) or jpeg, 160)
    assert first == second and calls == [1] and (tmp_path / "ab" / f"{digest}-w160.jpg").is_file()
    with pytest.raises(ValueError, match="not offered"):
        cache.path_for(digest, 4000)
    with pytest.raises(ValueError, match="sha256"):
        cache.path_for("../../etc/passwd", 160)
