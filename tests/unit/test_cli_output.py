"""What a user sees of the CLI: tables readable at 80 columns, one `error:` line per failure, --debug."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from inspection.bench import BenchRow
from inspection.cli import app, bench_table, demo_table, plan_table
from inspection.plan import Candidate

runner = CliRunner()


def render(table, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    print(out.getvalue())
    return out.getvalue()


def test_demo_table_keeps_car_ids_whole_at_80_columns() -> None:
    cars = [
        dict(
            car_id=f"car-{i:06d}",
            frames=95,
            frames_expected=95,
            errors=i,
            detections=12345,
            mean_frame_latency_s=12.34,
            max_frame_latency_s=123.45,
            car_latency_s=139.2,
            deadline_s=60.0,
            deadline_met=i == 1,
            lateness_s=79.3,
        )
        for i in (1, 2, 17)
    ] + [
        dict(
            car_id="car-000018",
            frames=40,
            frames_expected=95,
            errors=0,
            detections=10,
            mean_frame_latency_s=1.0,
            max_frame_latency_s=2.0,
            car_latency_s=None,
            deadline_s=60.0,
            deadline_met=None,
            lateness_s=None,
            state="overdue",
        )
    ]
    text = render(demo_table(cars, "cars (onnxruntime/int8, 0.21 frames/s overall)"))
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for value in (
        "car-000001",
        "car-000002",
        "car-000017",
        "95/95",
        "12345",
        "12.34",
        "123.45",
        "139.20",
        "60.0",
        "late 79.3 s",
        "40/95",
        "overdue",
    ):
        assert value in text


def test_bench_and_plan_tables_keep_every_value_whole_at_80_columns() -> None:
    rows = [
        BenchRow(
            "ssd_mobilenet_v2_coco",
            backend,
            "fp32",
            "cpu",
            "batched",
            64,
            1480.5,
            1400.0,
            42.6,
            512.0,
            "rss",
            3,
            100,
            {"speedup_vs_naive": 1.11},
        )
        for backend in ("onnxruntime", "tensorrt")
    ]
    text = render(bench_table(rows))
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for value in (
        "ssd_mobilenet_v2_coco",
        "onnxruntime/fp32",
        "tensorrt/fp32",
        "ms/frame",
        "tiles/s",
        "1480.5",
        "42.6",
        "512",
        "1.11",
    ):
        assert value in text
    candidate = Candidate(
        "ssd_mobilenet_v2_coco", "onnxruntime", "fp32", "cuda ×3 consumer(s)", 64, "pipeline", 12.1, 0.32, 1.15, 3, 1, "x"
    )
    text = render(plan_table([candidate], "deadline 60 s per car (95 frames)"))
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for value in ("ssd_mobilenet_v2_coco", "onnxruntime", "consumer(s)", "pipeline", "12.1", "1.15", "0.320", "ms/frame"):
        assert value in text


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_usage_mistakes_are_one_error_line_with_exit_2(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["eval", "--images", "/nope", "--annotations", "/nope.json"])
    assert result.exit_code == 2 and error_lines(result.output) == [
        "error: --images /nope: no such directory (the COCO images, e.g. val2017/)"
    ]
    monkeypatch.chdir(tmp_path)  # `plan` outside the repository: no benchmarks/ here
    result = runner.invoke(app, ["plan", "--deadline", "60"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert error_lines(result.output)[0].startswith("error: --results benchmarks: no such file or folder")
    result = runner.invoke(app, ["db", "prune", "--older-than", "3x", "--db", f"sqlite:///{tmp_path / 'r.db'}"])
    assert result.exit_code == 2 and "unit s, m, h, d or w" in result.output


def test_runtime_failures_are_one_error_line_and_debug_shows_the_traceback(tmp_path) -> None:
    broken = tmp_path / "bench.json"
    broken.write_text("{not json")
    result = runner.invoke(app, ["plan", "--deadline", "60", "--results", str(broken)])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = error_lines(result.output)
    assert "Expecting property name" in line and "Traceback" not in result.output
    assert "--debug" in result.output
    result = runner.invoke(app, ["--debug", "plan", "--deadline", "60", "--results", str(broken)])
    assert result.exit_code == 1 and type(result.exception).__name__ == "JSONDecodeError"
    result = runner.invoke(app, ["plan", "--deadline", "60", "--results", str(broken)], env={"INSPECTION_DEBUG": "1"})
    assert type(result.exception).__name__ == "JSONDecodeError"
