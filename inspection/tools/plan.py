"""`inspection plan`: the paper's model-selection discussion as a command.

From measured bench rows (time per frame per model/backend/precision/batch on some hardware) and
eval results (mAP per model/backend/precision), choose the most accurate configuration whose car
fits the per-car deadline, and size the line: how many GPUs (edge consumers) keep up with a takt.

A car is `frames_per_car` frames; with g GPUs sharing it, its work takes frames × t_frame / S(g),
S(g) the speed-up of g GPUs measured end to end (`GpuScaling`, a JSON written by
benchmarks/h100/run_multi_gpu.py: whole-car latency on 1, 2 (4) GPUs and the machine). Between
measured counts S is interpolated; beyond the largest, that count's efficiency S(g)/g is kept.
Without a measurement S(g) = g, and the plan says that it assumed it. The fewest g with
frames × t_frame / S(g) ≤ deadline meets the deadline; ≤ takt keeps up with the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GpuScaling:
    """Whole-car latency measured on 1..n GPUs (`car_s`: GPUs -> seconds) and where it was measured."""

    machine: str
    car_s: dict[int, float]
    source: str = ""

    @classmethod
    def linear(cls) -> GpuScaling:
        return cls("assumed linear (no measured GPU scaling)", {1: 1.0})

    @classmethod
    def load(cls, path: Path) -> GpuScaling:
        """{"machine": "...", "car_s": {"1": 0.9, "2": 0.5}} (benchmarks/h100/scaling.json)."""
        data = json.loads(path.read_text())
        car_s = {int(k): float(v) for k, v in data["car_s"].items()}
        if 1 not in car_s or any(v <= 0 for v in car_s.values()):
            raise ValueError(f"{path}: car_s needs a positive time for 1 GPU and each count measured, got {data['car_s']}")
        return cls(str(data["machine"]), car_s, str(path))

    @property
    def measured(self) -> bool:
        return len(self.car_s) > 1

    def speedup(self, gpus: int) -> float:
        """S(g) = car time on 1 GPU / car time on g GPUs (interpolated, efficiency held beyond the data)."""
        counts = sorted(self.car_s)
        speed = {g: self.car_s[1] / self.car_s[g] for g in counts}
        if len(counts) == 1:
            return float(gpus)
        if gpus in speed:
            return speed[gpus]
        if gpus > counts[-1]:
            return gpus * speed[counts[-1]] / counts[-1]
        return float(np.interp(gpus, counts, [speed[g] for g in counts]))

    def gpus_needed(self, car_s_one_gpu: float, budget_s: float, limit: int = 4096) -> int:
        """The fewest GPUs whose car time fits `budget_s` (`limit` if none up to it does)."""
        for gpus in range(1, limit + 1):
            if car_s_one_gpu / self.speedup(gpus) <= budget_s + 1e-9:
                return gpus
        return limit


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
    scaling: str = "assumed linear (no measured GPU scaling)"

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
            if len(data.get("extra", {}).get("gpus") or []) > 1:
                continue  # a car spread over several GPUs: what scaling.json summarises, not one device's speed
            if data.get("cars"):
                latency = sorted(c["car_latency_s"] for c in data["cars"])[len(data["cars"]) // 2]
                consumers = data.get("extra", {}).get("consumers", 1)
                rows.append(
                    {
                        "model": data["model"],
                        "backend": data["backend"],
                        "precision": data["precision"],
                        "device": f"{data['device']} ×{consumers} consumer(s)",
                        "mode": "pipeline",
                        "batch_size": 64,
                        "frame_ms": latency / data["frames_per_car"] * 1e3,
                        "source": str(f),
                    }
                )
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
    scaling: GpuScaling | None = None,
) -> list[Candidate]:
    """Every measured configuration, ranked: fits one GPU's deadline first, then mAP, then speed.

    Where a configuration was measured end to end ("pipeline": broker, decoding and database
    included), its detector-only rows are left out: the whole-car measurement is the honest one.
    """
    scaling = scaling or GpuScaling.linear()
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
                model=r["model"],
                backend=r["backend"],
                precision=r["precision"],
                device=r.get("device", "?"),
                batch_size=int(r["batch_size"]),
                mode=r["mode"],
                frame_ms=r["frame_ms"],
                map=accuracy_for(accuracy, r["model"], r["backend"], r["precision"]),
                car_s_one_gpu=car_s,
                gpus_for_deadline=scaling.gpus_needed(car_s, deadline_s),
                gpus_for_takt=scaling.gpus_needed(car_s, takt_s) if takt_s else 1,
                source=r.get("source", ""),
                scaling=scaling.machine,
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


# ----------------------------------------------------------------------------- grid options per site profile


@dataclass(frozen=True)
class GridOption:
    """One grid option (one call, second look, overlap N (+ second look)) as `inspection eval --scenes` measured it."""

    option: str
    row: str
    map: float
    border_recall: float
    s_per_frame: float


@dataclass(frozen=True)
class GridOptionTimes:
    """The grid options measured on one machine (`grid_options_<machine>.json`)."""

    machine: dict[str, Any]
    options: dict[str, GridOption]
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> GridOptionTimes:
        data = json.loads(path.read_text())
        options = {
            key: GridOption(key, str(v["row"]), float(v["mAP"]), float(v["border_recall"]), float(v["s_per_frame"]))
            for key, v in data["options"].items()
        }
        if not options or any(o.s_per_frame <= 0 for o in options.values()):
            raise ValueError(f"{path}: needs grid options with a positive s_per_frame each")
        return cls(dict(data["machine"]), options, str(path))

    @property
    def on_gpu(self) -> bool:
        return bool(self.machine.get("gpu"))

    def describe(self) -> str:
        what = self.machine.get("gpu") or self.machine.get("cpu_model") or self.machine.get("processor") or "?"
        cores = self.machine.get("cpu_count")
        return f"{what}" + (f", {cores} cores" if cores and not self.on_gpu else "")


def machine_slug(machine: dict[str, Any]) -> str:
    """A file-name form of a machine: its GPU, else its CPU model and core count (e.g. intel-xeon-processor-2cpu)."""
    name = str(machine.get("gpu") or machine.get("cpu_model") or machine.get("processor") or "machine")
    slug = "-".join("".join(ch if ch.isalnum() else " " for ch in name.lower()).split())
    return slug if machine.get("gpu") else f"{slug}-{machine.get('cpu_count', '?')}cpu"


def grid_options_path(folder: Path, machine: dict[str, Any]) -> Path:
    """Where `inspection eval --scenes` writes the grid options measured on `machine`."""
    return folder / f"grid_options_{machine_slug(machine)}.json"


def load_grid_options(paths: Iterable[Path]) -> list[GridOptionTimes]:
    """Every grid_options_*.json under the given files or folders."""
    found = []
    for path in paths:
        files = sorted(path.rglob("grid_options_*.json")) if path.is_dir() else [path]
        found.extend(GridOptionTimes.load(f) for f in files)
    return found


@dataclass(frozen=True)
class GridChoice:
    """The grid chosen for one site profile, and why."""

    profile: str
    times: GridOptionTimes
    budget_s: float  # the car's deadline less the margin
    car_s: dict[str, float]  # option -> frames per car × measured time per frame
    chosen: GridOption
    fits: bool
    same_kind: bool  # the times were measured on the profile's kind of device (GPU or CPU)

    def why(self) -> str:
        o = self.chosen
        where = f"measured on {self.times.describe()} ({self.times.source})"
        if not self.same_kind:
            where += "; no grid-option times from this profile's kind of device: run `inspection eval --scenes` there"
        if self.fits:
            better = [
                f"{k} ({self.car_s[k]:.1f} s)"
                for k, v in self.times.options.items()
                if (v.map, v.border_recall) > (o.map, o.border_recall)
            ]
            reason = f"the most accurate option whose car ({self.car_s[o.option]:.1f} s) fits {self.budget_s:.1f} s"
            if better:
                reason += "; more accurate but too slow: " + ", ".join(better)
        else:
            reason = (
                f"no option fits {self.budget_s:.1f} s; the fastest ({self.car_s[o.option]:.1f} s per car) is chosen: "
                "more consumers or devices are needed"
            )
        return f"{o.option} (mAP {o.map:.3f}, border recall {o.border_recall:.2f}): {reason}; {where}"


def choose_grid(
    profile: str, times: GridOptionTimes, deadline_s: float, margin: float, frames_per_car: int, same_kind: bool = True
) -> GridChoice:
    """The most accurate grid option (mAP, then border recall) whose car fits deadline × (1 − margin), else the fastest."""
    budget = deadline_s * (1.0 - margin)
    car_s = {k: frames_per_car * o.s_per_frame for k, o in times.options.items()}
    fitting = [o for o in times.options.values() if car_s[o.option] <= budget + 1e-9]
    if fitting:
        chosen = max(fitting, key=lambda o: (o.map, o.border_recall, -o.s_per_frame))
    else:
        chosen = min(times.options.values(), key=lambda o: o.s_per_frame)
    return GridChoice(profile, times, budget, car_s, chosen, bool(fitting), same_kind)


def times_for(measured: list[GridOptionTimes], on_gpu: bool) -> tuple[GridOptionTimes, bool] | None:
    """The grid-option times of the profile's kind of device (the latest file found), else any, flagged."""
    same = [t for t in measured if t.on_gpu == on_gpu]
    if same:
        return same[-1], True
    return (measured[-1], False) if measured else None
