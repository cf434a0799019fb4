"""The `inspection` command as a user runs it (typer's runner, real models and data)."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from inspection.cli import app

runner = CliRunner()


def test_eval_writes_the_json_the_issue_names(tmp_path, coco_tiny, yolox_onnx):
    out = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--images",
            str(coco_tiny / "val2017"),
            "--annotations",
            str(coco_tiny / "annotations" / "instances_val2017.json"),
            "--model",
            "yolox_nano",
            "--backend",
            "onnxruntime",
            "--path",
            str(yolox_onnx),
            "--max-tiles",
            "12",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for level in ("tile", "frame"):
        assert set(data[level]) == {"mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"}
        assert 0 < data[level]["mAP"] <= 1
    assert data["tiles_per_s"] > 0


def test_bench_writes_csv_json_png(tmp_path, yolox_onnx, monkeypatch):
    monkeypatch.setenv("INSPECTION__MODEL__PATH", str(yolox_onnx))
    result = runner.invoke(
        app,
        [
            "bench",
            "--combo",
            "yolox_nano:onnxruntime:fp32",
            "--batch-sizes",
            "32,64",
            "--repeats",
            "1",
            "--no-naive",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    modes = {(r["mode"], r["batch_size"]) for r in data["rows"]}
    assert modes == {("batched", 32), ("batched", 64), ("forward", 64)}
    assert all(r["tiles_per_s"] > 0 and r["peak_mem_mib"] > 0 for r in data["rows"])
    assert data["machine"]["cpu_count"] and data["command"].startswith("inspection bench")
    assert (tmp_path / "bench.csv").read_text().count("\n") == 4
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_config_value_is_a_clear_error(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("model:\n  precision: fp8\n")
    result = runner.invoke(app, ["eval", "--images", ".", "--annotations", "x.json", "--config", str(bad)])
    assert result.exit_code == 2
    assert "model.precision" in result.output and "fp16" in result.output


def test_the_retired_opencv_backend_is_one_error_line_naming_its_replacement(tmp_path):
    result = runner.invoke(app, ["eval", "--images", ".", "--annotations", "x.json", "--backend", "opencv"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "opencv was retired" in line and "model.backend=onnxruntime" in line


def test_model_list_names_both_models():
    result = runner.invoke(app, ["model", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "ssd_mobilenet_v2_coco" in result.output and "yolox_nano" in result.output


@pytest.mark.parametrize("command", ["edge", "produce"])
def test_unreachable_broker_is_one_error_line(command):
    result = runner.invoke(app, [command, "--bootstrap", "127.0.0.1:1"], env={"INSPECTION__KAFKA__CONNECT_TIMEOUT_S": "1"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "no Kafka broker answered at 127.0.0.1:1" in line and "kafka.bootstrap_servers" in line


def small_line(monkeypatch, yolox_onnx, kafka_broker, cameras: int, shots: int) -> None:
    """A small car on the session broker, detected by YOLOX-Nano (fast on 2 cores), through the environment."""
    monkeypatch.setenv("INSPECTION__MODEL__PATH", str(yolox_onnx))
    monkeypatch.setenv("INSPECTION__KAFKA__BOOTSTRAP_SERVERS", kafka_broker.bootstrap_servers)
    monkeypatch.setenv("INSPECTION__LINE__CAMERAS", str(cameras))
    monkeypatch.setenv("INSPECTION__LINE__SHOTS_PER_CAMERA", str(shots))


def test_bench_end_to_end_mode_times_whole_cars(tmp_path, yolox_onnx, kafka_broker, monkeypatch):
    """`inspection bench --e2e`: cars through a real broker into SQLite, with a stage breakdown."""
    small_line(monkeypatch, yolox_onnx, kafka_broker, cameras=2, shots=1)
    result = runner.invoke(
        app,
        [
            "bench",
            "--combo",
            "yolox_nano:onnxruntime:fp32",
            "--batch-sizes",
            "0",
            "--e2e",
            "1",
            "--deadline",
            "120",
            "--out",
            str(tmp_path),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e2e.json").read_text())
    (car,) = data["cars"]
    assert data["frames_per_car"] == car["frames"] == 2
    assert 0 < car["first_stored_s"] <= car["car_latency_s"] < 120 and car["deadline_met"] is True
    split = car["stage_ms_per_frame"]
    assert split["fetch"] >= 0 and split["decode"] > 0 and split["detect"] > 0 and split["db_write"] > 0
    # the spans of each frame add up to its wall time in the consumer (poll to offset durable)
    assert sum(v for k, v in split.items() if k != "wall") == pytest.approx(split["wall"], rel=1e-3)
    assert data["stage_split"]["frames"] == 2 and data["stage_split"]["commit_ms_per_frame"] >= 0
    assert data["bare_model_ms"] > 0 and data["pipeline_to_bare_ratio"] > 0
    assert 0 < data["frame_latency_p50_ms"] <= data["frame_latency_p99_ms"] < car["car_latency_s"] * 1e3
    assert data["command"].startswith("inspection bench") and "--e2e=1" in data["command"]


@pytest.mark.slow
def test_bench_end_to_end_with_two_consumer_processes(tmp_path, yolox_onnx, kafka_broker, monkeypatch):
    """--consumers 2: one `inspection edge --workers 2` (the supervisor) consumes each car; timings from the DB."""
    small_line(monkeypatch, yolox_onnx, kafka_broker, cameras=2, shots=2)
    result = runner.invoke(
        app,
        [
            "bench",
            "--combo",
            "yolox_nano:onnxruntime:fp32",
            "--batch-sizes",
            "0",
            "--e2e",
            "1",
            "--deadline",
            "120",
            "--consumers",
            "2",
            "--out",
            str(tmp_path),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e2e.json").read_text())
    (car,) = data["cars"]
    assert data["extra"]["consumers"] == 2 and data["extra"]["timing_source"].startswith("database frame rows")
    # every worker's marks came back: the split is filled for the supervised run too
    assert data["stage_split"]["frames"] == data["frames_per_car"] * len(data["cars"])
    assert all(car["stage_ms_per_frame"]["detect"] > 0 and car["stage_ms_per_frame"]["wall"] > 0 for car in data["cars"])
    assert car["frames"] == 4 and 0 < car["car_latency_s"] < 120 and car["deadline_met"] is True
    assert 0 < data["frame_latency_p50_ms"] <= data["frame_latency_p99_ms"] < car["car_latency_s"] * 1e3
    log = (tmp_path / "edge.log").read_text()
    assert log.count("started worker") == 2 and len(set(re.findall(r"pid (\d+)", log))) == 2


def test_build_engine_explains_what_is_missing(tmp_path):
    """TensorRT and pycuda cannot be installed here: the command says what to install and where."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; tests/gpu/test_tensorrt_backend.py builds real engines")
    result = runner.invoke(app, ["model", "build-engine", "--precision", "fp16"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "tensorrt" in result.output and "inspection[gpu]" in result.output
    result = runner.invoke(app, ["model", "build-engine", "--precision", "int8"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "tensorrt" in result.output and "inspection[gpu]" in result.output
    result = runner.invoke(app, ["model", "build-engine", "--precision", "fp8"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "fp16" in result.output


def test_edge_without_any_bootstrap_is_a_clear_error():
    result = runner.invoke(app, ["edge"], env={"COLUMNS": "200", "INSPECTION__KAFKA__BOOTSTRAP_SERVERS": "null"})
    assert result.exit_code == 2 and "--bootstrap" in result.output


def test_model_convert_without_tensorflow(tmp_path):
    out = tmp_path / "raw.onnx"
    result = runner.invoke(app, ["model", "convert", "ssd_mobilenet_v2_coco", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"wrote {out}" in result.output and "163 ONNX nodes" in result.output
    refused = runner.invoke(app, ["model", "convert", "yolox_nano", "--out", str(tmp_path / "y.onnx")], env={"COLUMNS": "200"})
    assert refused.exit_code == 1 and "no conversion recipe" in refused.output


def test_missing_torch_names_the_extra(monkeypatch):
    """Where torch is not installed (import fails), backend torch says which extra to install."""
    import sys

    from inspection.config import DetectConfig, ModelConfig
    from inspection.detect import MissingBackendError, create_detector

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError, as without the package
    monkeypatch.delitem(sys.modules, "inspection.detect.torch", raising=False)
    with pytest.raises(MissingBackendError, match=r"pip install 'inspection\[torch\]'"):
        create_detector(ModelConfig(backend="torch", device="cpu"), DetectConfig())
