"""Issue 13 scale-out over GPUs in one device call (<= 5 minutes on a 2-GPU host, default --budget 280):

    PYTHONPATH=/tmp/site:. python3 -m benchmarks.h100.run_multi_gpu --onnx <carried>/raw_fp16.onnx --out "$OUT"

End to end with one `inspection edge --workers W --gpus ...` (the supervisor, W workers per GPU, one
consumer group) on 1 GPU, then on 2 (and 4 where the host has them: `--gpu-counts 1,2,4`), the same
cars through the embedded broker into SQLite. Writes each run's e2e.json under $OUT/gpus_<g>/, and
$OUT/scaling.json: {"machine", "car_s": {"1": median car latency, "2": ...}, "efficiency": {...}}
(efficiency = car_s[1] / (g * car_s[g])), the file `inspection plan --scaling` reads (commit it as
benchmarks/h100/scaling.json), plus summary.txt.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.h100.run_edge import base_env, e2e_args, e2e_summary, run_step


def main() -> None:
    parser = argparse.ArgumentParser(description="issue 13: car latency and scaling efficiency on 1, 2 (4) GPUs")
    parser.add_argument("--onnx", help="the fp16 SSD ONNX file carried to the machine")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=280.0)
    parser.add_argument("--gpu-counts", default="1,2")
    parser.add_argument("--workers", type=int, default=3, help="worker processes per GPU")
    parser.add_argument("--cars", type=int, default=3)
    parser.add_argument("--join-wait", type=float, default=20.0)
    parser.add_argument("--cpu-check", action="store_true", help="check the script on the CPU (not a measurement)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = base_env(args)
    deadline = time.monotonic() + args.budget
    steps, runs = [], {}
    counts = [int(g) for g in args.gpu_counts.split(",")]
    for g in counts:
        left = deadline - time.monotonic()
        if left < 30:
            steps.append({"step": f"gpus_{g}", "skipped": "budget spent"})
            continue
        argv = e2e_args(args, args.workers, ",".join(str(i) for i in range(g)), deadline_s=0.4)
        step = run_step(f"gpus_{g}", argv, args.out, min(left, args.budget / len(counts) + 30), env)
        steps.append(step)
        summary = e2e_summary(Path(step["folder"]))
        if summary:
            runs[g] = summary
    car_s = {str(g): r["car_latency_median_s"] for g, r in runs.items()}
    machine: dict[str, Any] = next(iter(runs.values()))["machine"] if runs else {}
    gpu_name = machine.get("gpu") or "CPU (script check, not a measurement)"
    result = {
        "machine": f"{max(runs) if runs else 0}x {gpu_name}, {machine.get('cpu_count', '?')} host cores"
        + (f" ({args.workers} edge workers per GPU)" if runs else ""),
        "car_s": car_s,
        "efficiency": {g: car_s["1"] / (int(g) * s) for g, s in car_s.items()} if "1" in car_s else {},
        "runs": {str(g): r for g, r in runs.items()},
        "steps": steps,
        "command": "python -m benchmarks.h100.run_multi_gpu "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    (args.out / "scaling.json").write_text(json.dumps(result, indent=2))
    lines = ["gpus  car s (median)  p50 ms  p99 ms  efficiency  GPU MiB"]
    for g, r in sorted(runs.items()):
        lines.append(
            f"{g:>4} {r['car_latency_median_s']:>15.3f} {r['frame_latency_p50_ms'] or 0:>7.1f} {r['frame_latency_p99_ms'] or 0:>7.1f} "
            f"{result['efficiency'].get(str(g), 0):>11.2f}  {json.dumps(r['peak_gpu_mem_mib_per_gpu'])}"
        )
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
