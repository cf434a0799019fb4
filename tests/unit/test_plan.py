import json

import pytest

from inspection.plan import GpuScaling, best, load_accuracy, load_rows, plan


def rows():
    return [
        {
            "model": "big",
            "backend": "torch",
            "precision": "fp16",
            "device": "cuda",
            "mode": "batched",
            "batch_size": 64,
            "frame_ms": 10.0,
        },
        {
            "model": "small",
            "backend": "torch",
            "precision": "fp16",
            "device": "cuda",
            "mode": "batched",
            "batch_size": 64,
            "frame_ms": 2.0,
        },
        {
            "model": "big",
            "backend": "onnxruntime",
            "precision": "fp32",
            "device": "cpu",
            "mode": "batched",
            "batch_size": 64,
            "frame_ms": 4000.0,
        },
        {
            "model": "big",
            "backend": "torch",
            "precision": "fp16",
            "device": "cuda",
            "mode": "naive",
            "batch_size": 1,
            "frame_ms": 50.0,
        },
    ]


ACC = {("big", "torch", "fp16"): 0.32, ("small", "torch", "fp16"): 0.25, ("big", "onnxruntime", "fp32"): 0.32}


def test_most_accurate_that_meets_the_deadline_wins():
    ranked = plan(rows(), ACC, deadline_s=1.0, takt_s=60, frames_per_car=95)
    assert best(ranked).model == "big" and best(ranked).backend == "torch"  # 0.95 s per car
    assert all(c.mode != "naive" for c in ranked)


def test_tighter_deadline_falls_back_to_the_faster_model():
    ranked = plan(rows(), ACC, deadline_s=0.5, frames_per_car=95)
    choice = best(ranked)
    assert choice.model == "small" and choice.gpus_for_deadline == 1


def test_gpu_count_for_deadline_and_takt():
    ranked = plan(rows(), ACC, deadline_s=60.0, takt_s=30.0, frames_per_car=95)
    cpu = next(c for c in ranked if c.backend == "onnxruntime")
    assert cpu.car_s_one_gpu == 380.0
    assert (cpu.gpus_for_deadline, cpu.gpus_for_takt, cpu.gpus) == (7, 13, 13)


def test_nothing_fits_picks_fewest_devices():
    ranked = plan(rows()[2:3], ACC, deadline_s=10.0, frames_per_car=95)
    assert best(ranked).gpus == 38


def test_loads_bench_and_eval_files(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"rows": rows()}))
    (tmp_path / "eval_big.json").write_text(
        json.dumps({"model": "big", "backend": "torch", "precision": "fp16", "tile": {"mAP": 0.3}})
    )
    assert len(load_rows([tmp_path])) == 4
    assert load_accuracy([tmp_path]) == {("big", "torch", "fp16"): 0.3}


def test_end_to_end_results_become_pipeline_rows(tmp_path):
    cars = [{"car_latency_s": t} for t in (1.9, 1.2, 1.1)]
    (tmp_path / "e2e.json").write_text(
        json.dumps(
            {
                "model": "big",
                "backend": "torch",
                "precision": "fp16",
                "device": "cuda",
                "frames_per_car": 95,
                "cars": cars,
                "extra": {"consumers": 3},
            }
        )
    )
    (row,) = load_rows([tmp_path])
    assert row["mode"] == "pipeline" and row["frame_ms"] == 1.2 / 95 * 1e3 and "×3" in row["device"]
    ranked = plan([row], ACC, deadline_s=1.5, frames_per_car=95)
    assert best(ranked).gpus_for_deadline == 1 and best(ranked).map == 0.32


def test_cars_spread_over_several_gpus_are_no_single_device_row(tmp_path):
    """A 2-GPU end-to-end run is a scaling measurement (scaling.json), not one device's speed."""
    car = {
        "model": "big",
        "backend": "torch",
        "precision": "fp16",
        "device": "cuda",
        "frames_per_car": 95,
        "cars": [{"car_latency_s": 0.9}],
    }
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "e2e.json").write_text(json.dumps({**car, "extra": {"consumers": 4, "gpus": [0]}}))
    (tmp_path / "two" / "e2e.json").write_text(json.dumps({**car, "extra": {"consumers": 4, "gpus": [0, 1]}}))
    (row,) = load_rows([tmp_path])
    assert row["source"].endswith("one/e2e.json")


def test_whole_car_measurement_replaces_detector_only_rows():
    whole = {
        "model": "big",
        "backend": "torch",
        "precision": "fp16",
        "device": "cuda ×1 consumer(s)",
        "mode": "pipeline",
        "batch_size": 64,
        "frame_ms": 20.0,
    }
    ranked = plan([*rows(), whole], ACC, deadline_s=60, frames_per_car=95)
    torch_fp16 = [c for c in ranked if (c.model, c.backend, c.precision) == ("big", "torch", "fp16")]
    assert [c.mode for c in torch_fp16] == ["pipeline"] and torch_fp16[0].frame_ms == 20.0


def test_measured_gpu_scaling_replaces_the_linear_assumption(tmp_path):
    path = tmp_path / "scaling.json"
    # 2 GPUs: 1.6x, 4 GPUs: 2.4x (efficiency 0.6), measured somewhere named
    path.write_text(json.dumps({"machine": "2x H100 80GB (test)", "car_s": {"1": 1.2, "2": 0.75, "4": 0.5}}))
    scaling = GpuScaling.load(path)
    assert scaling.measured and scaling.speedup(2) == pytest.approx(1.6) and scaling.speedup(3) == pytest.approx(2.0)
    assert scaling.speedup(8) == pytest.approx(4.8)  # beyond the data: the 4-GPU efficiency kept
    big = [r for r in rows() if r["backend"] == "torch" and r["mode"] == "batched" and r["model"] == "big"]
    # 10 ms/frame -> 0.95 s per car on one GPU; a 0.5 s deadline: linear says 2 GPUs, measured says 3
    (linear,) = plan(big, ACC, deadline_s=0.5, frames_per_car=95)
    (measured,) = plan(big, ACC, deadline_s=0.5, frames_per_car=95, scaling=scaling)
    assert linear.gpus_for_deadline == 2 and "assumed linear" in linear.scaling
    assert measured.gpus_for_deadline == 3 and measured.scaling == "2x H100 80GB (test)"
    assert GpuScaling.linear().speedup(5) == 5.0


def test_scaling_file_without_one_gpu_is_refused(tmp_path):
    path = tmp_path / "scaling.json"
    path.write_text(json.dumps({"machine": "x", "car_s": {"2": 0.5}}))
    with pytest.raises(ValueError, match="1 GPU"):
        GpuScaling.load(path)
