"""Grafana (deploy/grafana) and the read-only role (deploy/postgres), checked on a real PostgreSQL:
every panel's SQL, with Grafana's macros expanded as Grafana expands them, runs on a migrated
database the test fills and gives what the read layer gives; the role can read and cannot write."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql
from sqlalchemy.engine import make_url

from inspection.analytics import AnalyticsReader, DetectionFilter, open_readonly_engine
from inspection.analytics.grafana import DATASOURCE, PANELS, render
from tests.integration.dashboard_data import populate

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
ROLE_SQL = REPO / "deploy" / "postgres" / "readonly-role.sql"

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def expand_macros(statement: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros used by the panels, expanded the way Grafana's backend does."""

    def group(match: re.Match[str]) -> str:
        seconds = int(match["n"]) * _UNITS[match["unit"]]
        alias = ' AS "time"' if match["alias"] else ""
        return f"floor(extract(epoch from {match['col']})/{seconds})*{seconds}{alias}"

    def rfc3339(t: datetime) -> str:
        return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    out = re.sub(r"\$__timeGroup(?P<alias>Alias)?\((?P<col>[^,()]+),\s*'?(?P<n>\d+)(?P<unit>[smhd])'?\)", group, statement)
    out = re.sub(
        r"\$__timeFilter\((?P<col>[^()]+)\)", lambda m: f"{m['col']} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'", out
    )
    assert "$__" not in out, f"a macro the test does not expand: {out}"
    return out


def _libpq(url: str, **changes: str) -> str:
    return make_url(url).set(drivername="postgresql", **changes).render_as_string(hide_password=False)


def test_committed_dashboard_is_the_generated_one() -> None:
    path = GRAFANA / "dashboards" / "inspection.json"
    assert path.read_text() == render(), "regenerate: python -m inspection.analytics.grafana " + str(path.relative_to(REPO))
    dashboard = json.loads(path.read_text())
    targets = [p["targets"][0] for p in dashboard["panels"]]
    assert [t["rawSql"] for t in targets] == [p.sql for p in PANELS]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("cars per hour", "miss rate", "lateness", "per class", "latency p50 / p99"):
        assert topic in titles
    (source,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "inspection.yml").read_text())["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE["uid"], DATASOURCE["type"])
    assert source["user"] == "inspection_reader" and source["jsonData"]["database"] == "inspection"
    (provider,) = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "inspection.yml").read_text())["providers"]
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())["services"]["grafana"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in compose["volumes"]


def test_every_panel_runs_and_agrees_with_the_read_layer(postgres_url: str, tmp_path: Path) -> None:
    data = populate(postgres_url, tmp_path / "images", time.time_ns())
    start, end = data.now - timedelta(hours=24), data.now + timedelta(minutes=5)
    results = {}
    with psycopg.connect(_libpq(postgres_url)) as conn:
        for panel in PANELS:
            rows = conn.execute(expand_macros(panel.sql, start, end)).fetchall()
            assert rows, panel.title
            results[panel.title] = rows
    engine = open_readonly_engine(postgres_url)
    try:
        reader = AnalyticsReader(engine)
        cars = reader.cars(per_page=100).items
        counts = reader.class_counts(DetectionFilter(since=start))
    finally:
        engine.dispose()

    def hour(t: datetime) -> float:
        return float(int(t.timestamp()) // 3600 * 3600)

    per_hour = Counter(hour(c.first_captured_at) for c in cars)
    assert {float(t): n for t, n in results["Cars per hour"]} == per_hour
    judged: Counter[float] = Counter()
    missed: Counter[float] = Counter()
    for car in cars:
        if car.verdict != "in_flight":
            judged[hour(car.first_captured_at)] += 1
            missed[hour(car.first_captured_at)] += car.verdict in ("missed", "overdue")
    for t, rate in results["Deadline miss rate per hour"]:
        if judged[float(t)] == 0:
            assert rate is None  # only in-flight cars in that hour: no rate yet
        else:
            assert float(rate) == pytest.approx(100 * missed[float(t)] / judged[float(t)])
    assert any(rate is not None and float(rate) > 0 for _, rate in results["Deadline miss rate per hour"])
    lateness = sorted(float(v) for _, v in results["Car lateness (completion - deadline)"])
    assert lateness == pytest.approx(sorted(c.lateness_s for c in cars if c.lateness_s is not None))
    assert results["Overdue cars now"] == [(sum(c.verdict == "overdue" for c in cars),)] == [(1,)]
    assert results["Parked records in range"] == [(2,)]
    assert [(r[0], r[1]) for r in results["Detections per class"]] == [(c.class_name, c.boxes) for c in counts][:20]
    assert all(p50 <= p99 for _, p50, p99 in results["Frame latency p50 / p99"])


def _role_sql(reader: str, password: str, owner: str, dbname: str) -> str:
    """deploy/postgres/readonly-role.sql with psql's :"var" and :'var' substituted (as psql -v does)."""
    identifiers = {"reader": reader, "owner": owner, "dbname": dbname}
    text = "\n".join(line for line in ROLE_SQL.read_text().splitlines() if not line.startswith("--"))
    text = re.sub(r':"(\w+)"', lambda m: sql.Identifier(identifiers[m[1]]).as_string(), text)
    return re.sub(r":'(\w+)'", lambda m: sql.Literal(password).as_string(), text)


def test_read_only_role_reads_and_cannot_write(postgres_url: str, tmp_path: Path) -> None:
    populate(postgres_url, tmp_path / "images", time.time_ns())
    dbname = make_url(postgres_url).database
    owner = make_url(postgres_url).username or "postgres"
    reader = f"reader_{uuid.uuid4().hex[:10]}"
    admin = _libpq(postgres_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in _role_sql(reader, "pw", owner, dbname).split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("CREATE TABLE later_table (x integer)")  # as the next migration would, as the owner
    try:
        with psycopg.connect(_libpq(postgres_url, username=reader, password="pw")) as conn:
            assert conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 26
            assert conn.execute("SELECT COUNT(*) FROM later_table").fetchone()[0] == 0
            assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM rejected_messages")
            conn.rollback()
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
            conn.commit()  # the next transaction may write, as far as the session goes: the grants still refuse
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM rejected_messages")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(reader)))
        with psycopg.connect(_libpq(postgres_url, database="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))
