"""Small server-rendered SVG charts for the line page (no chart library, nothing fetched).

Each function takes a series of the read layer and returns SVG markup. Every text that reaches
the markup (class names, car ids, numbers) goes through `escape`, so a hostile class name or car
id is text in the picture, never markup.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

from ..analytics.models import CarLatencySeries, ClassSeries, LatencySeries

WIDTH, HEIGHT = 420, 250
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 26, 60
VERDICT_COLOURS = {"met": "#2e7d32", "missed": "#c62828", "overdue": "#ef6c00", "in_flight": "#9e9e9e"}
PALETTE = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#c62828", "#9e9d24", "#5d4037")
TOP_CLASSES = 6


def _frame(
    title: str, y_max: float, y_unit: str, body: list[str], x_labels: list[tuple[float, str]], legend: list[tuple[str, str]]
) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text class="chart-title" x="{LEFT}" y="15">{escape(title)}</text>',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for k in range(5):
        value = y_max * k / 4
        y = TOP + plot_h - plot_h * k / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{_number(value)}</text>')
    parts.append(
        f'<text class="tick" x="8" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 8 {TOP + plot_h / 2:.0f})" '
        f'text-anchor="middle">{escape(y_unit)}</text>'
    )
    for k, (x, label) in enumerate(x_labels):
        anchor = "start" if k == 0 and len(x_labels) > 1 else "end" if k == len(x_labels) - 1 and k > 0 else "middle"
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="{anchor}">{escape(label)}</text>')
    parts.extend(body)
    # legend: rows under the time axis, wrapped at the plot's width
    x, y = float(LEFT), HEIGHT - BOTTOM + 32
    for colour, label in legend:
        width = 6.2 * len(label) + 24
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, y = float(LEFT), y + 15
        parts.append(
            f'<rect x="{x:.0f}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text class="legend" x="{x + 13:.0f}" y="{y}">{escape(label)}</text>'
        )
        x += width
    parts.append("</svg>")
    return Markup("".join(parts))


def _empty(title: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f'<text class="chart-title" x="{LEFT}" y="15">{escape(title)}</text>'
        f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text></svg>'
    )


def _number(value: float) -> str:
    if value >= 100 or value == 0:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def _short(car_id: str, limit: int = 16) -> str:
    return car_id if len(car_id) <= limit else car_id[: limit - 1] + "\u2026"


def _time_label(t: datetime, width_s: float) -> str:
    return t.strftime("%H:%M:%S" if width_s < 60 else "%H:%M" if width_s < 86400 else "%m-%d")


def car_latency_chart(series: CarLatencySeries) -> Markup:
    """One bar per car (oldest left): its latency, coloured by verdict; a tick marks its deadline."""
    title = "car latency vs deadline (newest cars)"
    n = len(series.car_id)
    if n == 0:
        return _empty(title)
    values = [v or 0.0 for v in series.car_latency_s]
    y_max = _nice_max(max(values + series.deadline_s))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / n
    bar = max(1.0, step * 0.7)
    body = []
    for i, (car, value, deadline, verdict) in enumerate(zip(series.car_id, values, series.deadline_s, series.verdict)):
        x = LEFT + i * step + (step - bar) / 2
        h = plot_h * value / y_max
        y_deadline = TOP + plot_h - plot_h * deadline / y_max
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
            f'fill="{VERDICT_COLOURS[verdict]}"><title>{escape(car)}: {value:.2f} s, deadline {deadline:.1f} s, '
            f"{verdict}</title></rect>"
            f'<line class="deadline" x1="{x - 1:.1f}" x2="{x + bar + 1:.1f}" y1="{y_deadline:.1f}" y2="{y_deadline:.1f}"/>'
        )
    labels = (
        [(LEFT, _short(series.car_id[0])), (LEFT + plot_w, _short(series.car_id[-1]))]
        if n > 1
        else [(LEFT + step / 2, _short(series.car_id[0]))]
    )
    legend = [(VERDICT_COLOURS[v], v) for v in ("met", "missed", "overdue", "in_flight") if v in series.verdict]
    legend.append(("#212121", "deadline"))
    return _frame(title, y_max, "seconds", body, labels, legend)


def class_chart(series: ClassSeries) -> Markup:
    """Stacked bars per time bin: boxes of the most frequent classes, the rest as 'other'."""
    title = "detections per class over time (UTC)"
    bins = series.bins
    if bins.count == 0 or not series.boxes or bins.start is None:
        return _empty(title)
    names = list(series.boxes)
    shown = names[:TOP_CLASSES]
    stacks = [(name, series.boxes[name]) for name in shown]
    if len(names) > TOP_CLASSES:
        other = [sum(series.boxes[n][k] for n in names[TOP_CLASSES:]) for k in range(bins.count)]
        stacks.append(("other", other))
    totals = [sum(values[k] for _, values in stacks) for k in range(bins.count)]
    y_max = _nice_max(max(totals))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / bins.count
    bar = max(1.0, step * 0.8)
    body = []
    for k in range(bins.count):
        base = 0.0
        x = LEFT + k * step + (step - bar) / 2
        start = bins.start + timedelta(seconds=k * bins.width_s)
        for i, (name, values) in enumerate(stacks):
            if not values[k]:
                continue
            h = plot_h * values[k] / y_max
            y = TOP + plot_h - plot_h * base / y_max - h
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(name)}: {values[k]} boxes, '
                f"{_time_label(start, bins.width_s)} UTC</title></rect>"
            )
            base += values[k]
    end = bins.start + timedelta(seconds=bins.count * bins.width_s)
    labels = [(LEFT, _time_label(bins.start, bins.width_s)), (LEFT + plot_w, _time_label(end, bins.width_s))]
    legend = [(PALETTE[i % len(PALETTE)], name[:14]) for i, (name, _) in enumerate(stacks)]
    return _frame(title + f" ({_number(bins.width_s)} s bins)", y_max, "boxes", body, labels, legend)


def latency_chart(series: LatencySeries) -> Markup:
    """Frame latency p50 and p99 per time bin, as two lines (gaps where a bin has no frame)."""
    title = "frame latency p50 / p99 (UTC)"
    bins = series.bins
    values = [v for v in series.p99_s if v is not None]
    if bins.count == 0 or not values or bins.start is None:
        return _empty(title)
    y_max = _nice_max(max(values))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / bins.count
    body = []
    for name, data, colour in (("p50", series.p50_s, PALETTE[0]), ("p99", series.p99_s, PALETTE[5])):
        points = []
        for k, value in enumerate(data):
            if value is None:
                continue
            x = LEFT + (k + 0.5) * step
            y = TOP + plot_h - plot_h * value / y_max
            points.append((x, y))
            body.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{name} {value:.3f} s ({series.frames[k]} frames)</title></circle>"
            )
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline class="series" points="{path}" stroke="{colour}" fill="none"/>')
    end = bins.start + timedelta(seconds=bins.count * bins.width_s)
    labels = [(LEFT, _time_label(bins.start, bins.width_s)), (LEFT + plot_w, _time_label(end, bins.width_s))]
    return _frame(
        title + f" ({_number(bins.width_s)} s bins)", y_max, "seconds", body, labels, [(PALETTE[0], "p50"), (PALETTE[5], "p99")]
    )
