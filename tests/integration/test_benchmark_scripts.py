"""Every benchmark script still runs: `--help` only prints help, and a tiny smoke case goes through the
script's whole path on the CPU (seconds; the figures are not measurements and are not looked at).

A script added under benchmarks/ without a smoke case here fails `test_every_script_has_a_smoke_case`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import COCO_TINY, REPO, SSD_DIR, YOLOX_ONNX

pytestmark = pytest.mark.timeout(600)

SCRIPTS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "benchmarks").rglob("*.py") if p.name != "__init__.py")


def _run(args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "INSPECTION_MODEL_DIR": str(tmp_path / "models")}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _smoke_cases(tmp: Path) -> dict[str, list[str]]:
    """Script -> arguments of its smoke run (the smallest size each one takes)."""
    images, annotations = str(COCO_TINY / "val2017"), str(COCO_TINY / "annotations" / "instances_val2017.json")
    return {
        "benchmarks/cpu-2core/stitch_scaling.py": ["--frames", "1", "--reps", "1", "--out", str(tmp / "stitch.json")],
        "benchmarks/cpu-2core/post_scaling.py": ["--reps", "1", "--tiles", "4"],
        "benchmarks/verdict_signal.py": ["--cars", "1", "--boxes", "2", "--backlog", "5", "--out", str(tmp / "verdict.json")],
        "benchmarks/cpu-2core/second_look_tuning.py": ["--scenes", "1", "--seeds", "100", "--out", str(tmp / "tuning.json")],
        "benchmarks/cpu-2core/opencv_vs_onnxruntime.py": [
            "--onnx",
            str(SSD_DIR / "raw_fp32.onnx"),
            "--images",
            images,
            "--tiles",
            "2",
            "--rounds",
            "1",
            "--out",
            str(tmp / "opencv.json"),
        ],
        "benchmarks/cpu-2core/int8_vs_fp32.py": [
            "--images",
            images,
            "--annotations",
            annotations,
            "--rounds",
            "1",
            "--max-tiles",
            "2",
            "--calibration-tiles",
            "2",
            "--flavours",
            "onnxruntime",
            "--out",
            str(tmp / "int8.json"),
        ],
        "benchmarks/postprocess_floor.py": [
            "--images",
            images,
            "--annotations",
            annotations,
            "--frames",
            "1",
            "--repeats",
            "1",
            "--out",
            str(tmp / "floor.json"),
        ],
        "benchmarks/h100/experiments.py": [
            "--onnx",
            str(SSD_DIR / "raw_fp32.onnx"),
            "--device",
            "cpu",
            "--variants",
            "eager",
            "--reps",
            "1",
            "--budget",
            "120",
            "--out",
            str(tmp / "experiments"),
        ],
        "benchmarks/h100/run_edge.py": [
            "--cpu-check",
            "--onnx",
            str(YOLOX_ONNX),
            "--workers",
            "1",
            "--cars",
            "1",
            "--budget",
            "240",
            "--out",
            str(tmp / "edge"),
        ],
        "benchmarks/h100/run_multi_gpu.py": [
            "--cpu-check",
            "--onnx",
            str(YOLOX_ONNX),
            "--gpu-counts",
            "1",
            "--workers",
            "1",
            "--cars",
            "1",
            "--budget",
            "240",
            "--out",
            str(tmp / "multi"),
        ],
    }


NEEDS_TORCH = {"benchmarks/cpu-2core/post_scaling.py", "benchmarks/h100/experiments.py"}
# dashboard_scale and review_scale need PostgreSQL: their smoke runs are test_dashboard_scale_smoke and
# test_review_scale_smoke below.
SMOKED_ELSEWHERE = {"benchmarks/dashboard_scale.py", "benchmarks/review_scale.py"}


def test_every_script_has_a_smoke_case(tmp_path):
    assert set(SCRIPTS) == set(_smoke_cases(tmp_path)) | SMOKED_ELSEWHERE


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_only_prints_help(script, tmp_path):
    before = set(REPO.rglob("*.json"))
    result = _run([script, "--help"], tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith("usage:"), result.stdout[:300]
    assert set(REPO.rglob("*.json")) == before, "--help wrote result files"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - SMOKED_ELSEWHERE))
def test_smoke_run(script, tmp_path):
    if script in NEEDS_TORCH and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch (pip install 'inspection[torch]')")
    if not (COCO_TINY.exists() and SSD_DIR.exists()):
        pytest.skip("test data ../shared not found (set INSPECTION_SHARED)")
    result = _run([script, *_smoke_cases(tmp_path)[script]], tmp_path, timeout=420)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    written = [p for p in tmp_path.rglob("*.json") if p.stat().st_size and "models" not in p.parts]
    if script not in {"benchmarks/cpu-2core/post_scaling.py"}:  # post_scaling prints its table only
        assert written, "the smoke run wrote no result file"
        for path in written:
            json.loads(path.read_text())


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_scale_smoke(postgres_url, tmp_path):
    result = _run(
        [
            "-m",
            "benchmarks.dashboard_scale",
            "all",
            "--db",
            postgres_url,
            "--cars",
            "2",
            "--repeats",
            "1",
            "--csv-rows",
            "100",
            "--images",
            str(tmp_path / "images"),
            "--out",
            str(tmp_path / "out"),
        ],
        tmp_path,
        timeout=420,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    report = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert report


@pytest.mark.slow
@pytest.mark.postgres
def test_review_scale_smoke(postgres_url, tmp_path):
    images = str(tmp_path / "images")
    fill = _run(
        [
            "-m",
            "benchmarks.dashboard_scale",
            "fill",
            "--copy",  # the ResultStore fill is smoked by test_dashboard_scale_smoke
            "--db",
            postgres_url,
            "--cars",
            "2",
            "--images",
            images,
            "--out",
            str(tmp_path / "fill"),
        ],
        tmp_path,
        420,
    )
    assert fill.returncode == 0, (fill.stdout[-2000:], fill.stderr[-3000:])
    filled = json.loads((tmp_path / "fill" / "dashboard_scale.json").read_text())["fill"]
    assert (filled["cars"], filled["frames"], filled["method"]) == (2, 190, "copy")
    assert filled["detections"] == filled["boxes_written"] > 0
    result = _run(
        [
            "-m",
            "benchmarks.review_scale",
            "--db",
            postgres_url,
            "--images",
            images,
            "--frames",
            "2",
            "--deep-reviewed",
            "20",
            "--export-frames",
            "50",
            "--out",
            str(tmp_path / "out"),
        ],
        tmp_path,
        timeout=420,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    report = json.loads((tmp_path / "out" / "review_scale.json").read_text())
    assert report["reviewing"]["fresh"]["frames_reviewed"] == report["reviewing"]["deep"]["frames_reviewed"] == 2
    assert report["export"]["images"] == report["reviewed_frames"] == 50
