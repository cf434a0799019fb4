"""Loading `inspection bench` results (benchmarks/**/bench.json) for notebooks/benchmarks.ipynb.

A bench.json is what `inspection.tools.bench.write_results` writes:
    {"command": "inspection bench ...", "machine": {"gpu": ..., "cpu_model": ..., ...},
     "rows": [BenchRow as a dict: model, backend, precision, device, mode, batch_size, frame_ms,
              frame_ms_min, tiles_per_s, peak_mem_mib, mem_kind, repeats, detections, extra], ...]}
Each row here gets the file's folder (`source`, relative to the search root), a short `machine`
label (GPU name, else CPU model) and the `command` that produced it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

BENCH_FILE = "bench.json"
SERIES_KEYS = ("machine", "model", "backend", "precision", "device")  # one plotted line each


def find_bench_files(root: str | Path) -> list[Path]:
    """Every bench.json under `root`, sorted by path."""
    return sorted(Path(root).rglob(BENCH_FILE))


def machine_label(machine: dict[str, Any]) -> str:
    return str(machine.get("gpu") or machine.get("cpu_model") or machine.get("processor") or "unknown machine")


def load_rows(paths: Iterable[str | Path], root: str | Path | None = None) -> list[dict[str, Any]]:
    """All result rows of the given bench.json files, flattened (extra.* become columns)."""
    rows = []
    for path in map(Path, paths):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "rows" not in data:
            raise ValueError(f"{path} is not an `inspection bench` result (no 'rows'); was it written by write_results?")
        machine = data.get("machine") or {}
        source = str(path.parent.relative_to(root)) if root is not None else str(path.parent)
        for row in data["rows"]:
            flat = {k: v for k, v in row.items() if k != "extra"}
            flat.update({f"extra.{k}": v for k, v in (row.get("extra") or {}).items()})
            flat.update(source=source, machine=machine_label(machine), command=data.get("command", ""))
            rows.append(flat)
    return rows


def to_dataframe(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with a `series` label (machine / model / backend / precision / device)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["series"] = df[list(SERIES_KEYS)].astype(str).agg(" / ".join, axis=1)
    return df.sort_values([*SERIES_KEYS, "mode", "batch_size"], ignore_index=True)
