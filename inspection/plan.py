"""`inspection plan`: the paper's model-selection discussion as a command.

From measured bench rows (time per frame per model/backend/precision/batch on some hardware) and
eval results (mAP per model/backend/precision), choose the most accurate configuration whose car
fits the per-car deadline, and size the line: how many GPUs (edge consumers) keep up with a takt.

A car is `frames_per_car` frames; with g consumers sharing it, its work takes about
frames × t_frame / g (the consumer group spreads a car's cameras over partitions). So
g ≥ frames × t_frame / deadline to meet the deadline, and g ≥ frames × t_frame / takt to keep up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass(frozen=True)
class Candidate:
    model: str
    backend: str
    precision: str
    device: str
    batch_size: int
    mode: str
    frame_ms: float
    map: float | None
    car_s_one_gpu: float
    gpus_for_deadline: int
    gpus_for_takt: int
    source: str

    @property
    def gpus(self) -> int:
        return max(self.gpus_for_deadline, self.gpus_for_takt)


def load_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Bench rows from bench*.json and e2e*.json files (or folders holding them), tagged with their file.

    An end-to-end result becomes one "pipeline" row whose time per frame is the median measured
    car latency divided by the car's frames: what a whole car really took, broker and database included.
    """
    rows: list[dict[str, Any]] = []
    for path in paths:
        files = sorted([*path.rglob("bench*.json"), *path.rglob("e2e*.json")]) if path.is_dir() else [path]
        for f in files:
            data = json.loads(f.read_text())
            for row in data.get("rows", []):
                rows.append({**row, "source": str(f)})
            if data.get("cars"):
                latency = sorted(c["car_latency_s"] for c in data["cars"])[len(data["cars"]) // 2]
                consumers = data.get("extra", {}).get("consumers", 1)
                rows.append({
                    "model": data["model"], "backend": data["backend"], "precision": data["precision"],
                    "device": f"{data['device']} ×{consumers} consumer(s)", "mode": "pipeline", "batch_size": 64,
                    "frame_ms": latency / data["frames_per_car"] * 1e3, "source": str(f),
                })
    return rows


def load_accuracy(paths: Iterable[Path]) -> dict[tuple[str, str, str], float]:
    """(model, backend, precision) -> tile mAP from eval JSON files (`inspection eval --json`)."""
    acc: dict[tuple[str, str, str], float] = {}
    for path in paths:
        files = sorted(path.rglob("eval*.json")) if path.is_dir() else [path]
        for f in files:
            data = json.loads(f.read_text())
            if "tile" in data and "model" in data:
                acc[(data["model"], data["backend"], data["precision"])] = float(data["tile"]["mAP"])
    return acc


def accuracy_for(acc: dict[tuple[str, str, str], float], model: str, backend: str, precision: str) -> float | None:
    """Measured mAP of the exact combination, else of the same model and precision on another
    backend (backends agree on boxes), else None (unknown accuracy ranks last)."""
    if (model, backend, precision) in acc:
        return acc[(model, backend, precision)]
    same = [v for (m, _, p), v in acc.items() if m == model and p == precision]
    return max(same) if same else None


def plan(
    rows: list[dict[str, Any]],
    accuracy: dict[tuple[str, str, str], float],
    deadline_s: float,
    takt_s: float | None = None,
    frames_per_car: int = 95,
    modes: tuple[str, ...] = ("pipeline", "batched"),
) -> list[Candidate]:
    """Every measured configuration, ranked: fits one GPU's deadline first, then mAP, then speed.

    Where a configuration was measured end to end ("pipeline": broker, decoding and database
    included), its detector-only rows are left out: the whole-car measurement is the honest one.
    """
    measured_whole = {(r["model"], r["backend"], r["precision"]) for r in rows if r.get("mode") == "pipeline"}
    candidates = []
    for r in rows:
        if r.get("mode") not in modes or not r.get("frame_ms"):
            continue
        if r["mode"] != "pipeline" and (r["model"], r["backend"], r["precision"]) in measured_whole:
            continue
        frame_s = r["frame_ms"] / 1e3
        car_s = frames_per_car * frame_s
        candidates.append(
            Candidate(
                model=r["model"], backend=r["backend"], precision=r["precision"], device=r.get("device", "?"),
                batch_size=int(r["batch_size"]), mode=r["mode"], frame_ms=r["frame_ms"],
                map=accuracy_for(accuracy, r["model"], r["backend"], r["precision"]),
                car_s_one_gpu=car_s,
                gpus_for_deadline=max(1, math.ceil(car_s / deadline_s - 1e-9)),
                gpus_for_takt=max(1, math.ceil(car_s / takt_s - 1e-9)) if takt_s else 1,
                source=r.get("source", ""),
            )
        )
    return sorted(candidates, key=lambda c: (c.gpus_for_deadline > 1, -(c.map if c.map is not None else -1), c.frame_ms))


def best(candidates: list[Candidate]) -> Candidate | None:
    """The most accurate configuration meeting the deadline on one GPU, or else the one needing fewest GPUs."""
    if not candidates:
        return None
    fitting = [c for c in candidates if c.gpus_for_deadline == 1]
    if fitting:
        return fitting[0]
    return min(candidates, key=lambda c: (c.gpus, -(c.map or 0), c.frame_ms))
