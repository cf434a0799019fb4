import json

import pytest

from inspection.tools.plan import (
    GpuScaling,
    GridOptionTimes,
    best,
    choose_grid,
    grid_options_path,
    load_accuracy,
    load_grid_options,
    load_rows,
    machine_slug,
    plan,
    times_for,
)


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


# ----------------------------------------------------------------------------- grid options per site profile


def _options(tmp_path, machine, **times):
    accuracy = {
        "one_call": (0.19, 0.47),
        "second_look": (0.26, 0.60),
        "overlap_60": (0.23, 0.58),
        "overlap_60+second_look": (0.27, 0.63),
    }
    path = tmp_path / f"grid_options_{machine_slug(machine)}.json"
    path.write_text(
        json.dumps(
            {
                "machine": machine,
                "options": {
                    k: {"row": k, "mAP": accuracy[k][0], "border_recall": accuracy[k][1], "s_per_frame": s}
                    for k, s in times.items()
                },
            }
        )
    )
    return path


CPU = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_count": 2, "gpu": None}


def test_the_most_accurate_grid_that_fits_the_deadline_less_the_margin_wins(tmp_path):
    slow = {"overlap_60+second_look": 0.70}
    times = GridOptionTimes.load(_options(tmp_path, CPU, one_call=0.40, second_look=0.48, **slow))
    # 95 frames: 38 s, 45.6 s, 66.5 s per car; 60 s less 20 % = 48 s
    choice = choose_grid("default.yaml", times, 60.0, 0.2, 95)
    assert choice.fits and choice.chosen.option == "second_look" and choice.budget_s == pytest.approx(48.0)
    assert "more accurate but too slow: overlap_60+second_look (66.5 s)" in choice.why() and "fits 48.0 s" in choice.why()
    # a wider margin leaves only one call
    assert choose_grid("default.yaml", times, 60.0, 0.3, 95).chosen.option == "one_call"
    # nothing fits: the fastest, and the plan says so
    tight = choose_grid("default.yaml", times, 10.0, 0.2, 95)
    assert not tight.fits and tight.chosen.option == "one_call" and "no option fits" in tight.why()


def test_grid_options_file_is_named_with_the_machine_and_found_per_device_kind(tmp_path):
    gpu = {"gpu": "NVIDIA H100 80GB HBM3", "cpu_count": 16}
    _options(tmp_path, CPU, one_call=0.4, second_look=0.5)
    _options(tmp_path, gpu, one_call=0.004, overlap_60=0.008, **{"overlap_60+second_look": 0.009})
    assert grid_options_path(tmp_path, CPU).name == "grid_options_intel-r-xeon-r-processor-2cpu.json"
    assert grid_options_path(tmp_path, gpu).name == "grid_options_nvidia-h100-80gb-hbm3.json"
    measured = load_grid_options([tmp_path])
    on_gpu, same = times_for(measured, on_gpu=True)
    assert same and on_gpu.on_gpu and choose_grid("h100.yaml", on_gpu, 60.0, 0.2, 95).chosen.option == "overlap_60+second_look"
    only_cpu = [t for t in measured if not t.on_gpu]
    times, same = times_for(only_cpu, on_gpu=True)
    assert (
        not same
        and "no grid-option times from this profile's kind of device" in choose_grid("h100.yaml", times, 60, 0.2, 95, same).why()
    )
    assert times_for([], on_gpu=False) is None


def test_plan_command_picks_each_profiles_grid_and_says_why(tmp_path):
    from typer.testing import CliRunner

    from inspection.cli import app

    _options(tmp_path, CPU, one_call=0.40, second_look=0.48, **{"overlap_60+second_look": 0.70})
    site = tmp_path / "site.yaml"
    site.write_text("line:\n  takt_s: 90\n  deadline_margin: 0.1\n")  # 81 s: every option fits
    result = CliRunner().invoke(
        app,
        ["plan", "--profile", "configs/default.yaml", "--profile", str(site), "--results", str(tmp_path)],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    chosen = [line for line in result.output.splitlines() if line.startswith("choose ")]
    assert chosen[0].startswith("choose second_look (mAP 0.260") and "fits 48.0 s" in chosen[0]
    assert chosen[1].startswith("choose overlap_60+second_look") and "fits 81.0 s" in chosen[1]
    assert "measured on Intel(R) Xeon(R) Processor, 2 cores" in chosen[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["plan", "--profile", str(site), "--results", str(empty)])
    assert result.exit_code == 1 and "no grid_options_*.json" in result.output
    result = CliRunner().invoke(app, ["plan", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "--deadline" in result.output
