"""The Grafana dashboard of the results database: its panels' SQL lives here, with the read layer.

Grafana talks to PostgreSQL directly (its own datasource, deploy/grafana), so these statements
are PostgreSQL with Grafana's macros (`$__timeFilter(col)`, `$__timeGroupAlias(col, 1h)`); the
car state is inspection.car_state's expression, judged at `now()` with overdue.grace_s's default. `dashboard_json()` renders the
dashboard that deploy/grafana/dashboards/inspection.json holds; a test checks that file is this
output and runs every panel's SQL, macros expanded as Grafana does, on a migrated PostgreSQL.

    python -m inspection.analytics.grafana deploy/grafana/dashboards/inspection.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..car_state import DEFAULT_GRACE_S
from .queries import VERDICT_SQL

DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "inspection-pg"}
# overdue.grace_s's default: the same cutoff the edge's overdue watcher and gauge use
_VERDICT_NOW = VERDICT_SQL.replace(":overdue_before", f"(now() - interval '{DEFAULT_GRACE_S:g} seconds')")


@dataclass(frozen=True)
class Panel:
    title: str
    sql: str
    kind: Literal["timeseries", "barchart", "stat", "table"]
    format: Literal["time_series", "table"]
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""


PANELS: tuple[Panel, ...] = (
    Panel(
        "Cars per hour",
        """SELECT $__timeGroupAlias(c.first_captured_at, 1h),
       COUNT(*) AS cars
FROM cars AS c
WHERE $__timeFilter(c.first_captured_at)
GROUP BY 1
ORDER BY 1""",
        "timeseries",
        "time_series",
        description="cars whose first frame was captured in each hour",
    ),
    Panel(
        "Deadline miss rate per hour",
        f"""SELECT $__timeGroupAlias(c.first_captured_at, 1h),
       100.0 * SUM(CASE WHEN v.verdict IN ('missed', 'overdue') THEN 1 ELSE 0 END)
             / NULLIF(SUM(CASE WHEN v.verdict <> 'in_flight' THEN 1 ELSE 0 END), 0) AS "miss rate"
FROM cars AS c
CROSS JOIN LATERAL (SELECT {_VERDICT_NOW} AS verdict) AS v
WHERE $__timeFilter(c.first_captured_at)
GROUP BY 1
ORDER BY 1""",
        "timeseries",
        "time_series",
        unit="percent",
        description="(missed + overdue) / (completed + overdue) of the cars first captured in each hour",
    ),
    Panel(
        "Car lateness (completion - deadline)",
        """SELECT c.completed_at AS "time",
       c.lateness_s AS "lateness"
FROM cars AS c
WHERE $__timeFilter(c.completed_at) AND c.completed_at IS NOT NULL
ORDER BY 1""",
        "timeseries",
        "time_series",
        unit="s",
        description="one point per completed car; above 0 = late",
    ),
    Panel(
        "Overdue cars now",
        f"""SELECT COUNT(*) AS overdue
FROM cars AS c
WHERE c.completed_at IS NULL AND ({_VERDICT_NOW}) = 'overdue'""",
        "stat",
        "table",
        width=6,
        description="incomplete cars past their deadline (frames lost or stuck)",
    ),
    Panel(
        "Parked records in range",
        """SELECT (SELECT COUNT(*) FROM frames WHERE error IS NOT NULL AND $__timeFilter(processed_at))
     + (SELECT COUNT(*) FROM rejected_messages WHERE $__timeFilter(received_at)) AS parked""",
        "stat",
        "table",
        width=6,
        description="error frames and rejected messages (all sent to the dead-letter topic)",
    ),
    Panel(
        "Detections per class",
        """SELECT d.class_name AS "class",
       COUNT(*) AS boxes
FROM detections AS d
JOIN frames AS f ON f.id = d.frame_id
WHERE $__timeFilter(f.captured_at)
GROUP BY d.class_name
ORDER BY boxes DESC, d.class_name
LIMIT 20""",
        "barchart",
        "table",
        description="stored boxes of the frames captured in the time range",
    ),
    Panel(
        "Frame latency p50 / p99",
        """SELECT $__timeGroupAlias(f.captured_at, 5m),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY f.latency_s) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY f.latency_s) AS p99
FROM frames AS f
WHERE $__timeFilter(f.captured_at) AND f.error IS NULL
GROUP BY 1
ORDER BY 1""",
        "timeseries",
        "time_series",
        unit="s",
        description="capture -> stored, frames stored without error",
    ),
)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorMode": "code",
                "rawQuery": True,
                "format": panel.format,
                "rawSql": panel.sql,
            }
        ],
    }


def dashboard_json() -> dict[str, Any]:
    panels = []
    x = y = 0
    row_height = 0
    for panel_id, panel in enumerate(PANELS, start=1):
        if x + panel.width > 24:
            x, y = 0, y + row_height
            row_height = 0
        panels.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": "inspection-line",
        "title": "Inspection line",
        "description": "Cars, deadline misses, lateness, detections per class and frame latency from the inspection "
        "results database (generated by inspection.analytics.grafana; do not edit by hand)",
        "tags": ["inspection"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard_json(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m inspection.analytics.grafana OUT.json")
    Path(args[0]).write_text(render())


if __name__ == "__main__":
    main()
