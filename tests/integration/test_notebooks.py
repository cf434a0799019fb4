"""The notebooks run, top to bottom, on a database this test writes (nbclient, a real kernel), so
they cannot rot: a query or column they use that the read layer no longer has fails here."""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.integration.dashboard_data import populate

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def _execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for k, v in output.get("data", {}).items() if k == "text/plain")
    return "\n".join(parts)


def test_results_notebook_runs_on_a_written_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    populate(url, tmp_path / "images", time.time_ns())
    monkeypatch.setenv("INSPECTION__STORE__URL", url)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = _text(_execute(NOTEBOOKS / "results_analysis.ipynb"))
    assert f"database: {url}" in out
    # the state counts of the cars the test wrote (3 met, 1 missed, 1 overdue, 1 in flight: issue 19's one car state)
    for state, count in (("met", 3), ("missed", 1), ("overdue", 1), ("in_flight", 1)):
        assert re.search(rf"^{state}\s+{count}$", out, re.MULTILINE), (state, count)
    assert "decode" in out and "no car_id header" in out  # errors by kind, error frames, rejected messages


def test_benchmarks_notebook_runs_on_the_committed_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DIR", str(REPO / "benchmarks"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = _text(_execute(NOTEBOOKS / "benchmarks.ipynb"))
    assert "bench.json under" in out and "cpu-2core/bench.json" in out
