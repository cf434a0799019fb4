"""Review loop at scale on PostgreSQL: reviewing a frame (load, confirm all, next) and exporting the
reviewed frames as COCO.

    python -m benchmarks.dashboard_scale fill --db postgresql+psycopg://postgres@127.0.0.1:5432/review_scale --cars 1000
    python -m benchmarks.review_scale --db postgresql+psycopg://postgres@127.0.0.1:5432/review_scale \
        --images /tmp/dashboard-scale-images --out benchmarks/review-2core

Targets (issue 20): reviewing a frame <= 200 ms server time at 1,000 cars / 3 M detections; export of
10,000 reviewed frames <= 60 s and <= 300 MiB RSS.
Per reviewed frame, the server time (Server-Timing header of a real uvicorn server, the dashboard
started with one reviewer) of: the review page (it carries the frame's boxes), the POST confirming
every box, and the queue call that picks the next frame (the boxes' JSON API is timed beside it); p50/p95 of their sum over --frames frames taken from the
queue (NG cars first: 10 % of the cars get an NG verdict, the rest OK, written once as car_verdicts
rows if the database has none). Then every frame not reviewed yet gets a review confirming its boxes
(one INSERT ... SELECT, setup only), and `inspection export --reviewed` runs under /usr/bin/time:
wall time and peak RSS of the whole command.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import text

from benchmarks.dashboard_scale import _free_port, _server_ms, _wait_up, machine
from inspection.review.auth import hash_token
from inspection.store import create_engine_for

TOKEN = "bench-reviewer-token-0123456789abcdef"


def _verdicts(engine) -> None:
    with engine.begin() as conn:
        if conn.execute(text("SELECT COUNT(*) FROM car_verdicts")).scalar_one():
            return
        conn.execute(
            text(
                "INSERT INTO car_verdicts (car_id, verdict, rules_hash, model, decided_at, defects, reason) "
                "SELECT car_id, CASE WHEN (hashtext(car_id) % 10) = 0 THEN 'ng' ELSE 'ok' END, 'bench', "
                "'ssd_mobilenet_v2_coco', now(), 0, 'bench' FROM cars"
            )
        )


def _forget_reviews(engine) -> None:
    """A rerun starts from an unreviewed database: the reviews of earlier runs (reviewer 'bench') go."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM reviews WHERE reviewer = 'bench'"))


def _review_all(engine) -> int:
    """Every frame without a review gets one confirming all its boxes (benchmark setup, not the API path)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO reviews (frame_id, car_id, reviewer, reviewed_at, model, score_threshold, queue) "
                "SELECT f.id, f.car_id, 'bench', now(), 'ssd_mobilenet_v2_coco', 0.3, 'direct' FROM frames f "
                "WHERE f.error IS NULL AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.frame_id = f.id)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO review_decisions (review_id, detection_id, decision, class_id, class_name, score, x1, y1, x2, y2) "
                "SELECT r.id, d.id, 'confirm', d.class_id, d.class_name, d.score, d.x1, d.y1, d.x2, d.y2 "
                "FROM reviews r JOIN detections d ON d.frame_id = r.frame_id "
                "WHERE r.reviewer = 'bench' AND NOT EXISTS (SELECT 1 FROM review_decisions x WHERE x.review_id = r.id)"
            )
        )
        conn.execute(text("ANALYZE reviews; ANALYZE review_decisions"))
        return conn.execute(text("SELECT COUNT(DISTINCT frame_id) FROM reviews")).scalar_one()


def review_frames(db: str, images: Path, frames: int) -> dict[str, Any]:
    port = _free_port()
    thumbs = Path(tempfile.mkdtemp(prefix="review-thumbs-"))
    command = [
        sys.executable,
        "-m",
        "inspection.cli",
        "dashboard",
        "--db",
        db,
        "--images",
        str(images),
        "--port",
        str(port),
        "--thumbs",
        str(thumbs),
    ]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "INSPECTION_REVIEWERS": f"bench={hash_token(TOKEN)}"},
    )
    base = f"http://127.0.0.1:{port}"
    steps: dict[str, list[float]] = {"page": [], "confirm_all": [], "next": []}
    api_boxes: list[float] = []  # the same frame as JSON (API users; the page embeds it): not part of the sum
    totals: list[float] = []
    buckets: list[str] = []
    try:
        _wait_up(base, server, timeout_s=300)  # start-up takes tens of seconds on a loaded 2-core machine
        client = httpx.Client(base_url=base, timeout=120)
        for _ in range(3):  # connections, plan caches
            client.get("/api/review/queue")
        item = client.get("/api/review/queue").json()["items"][0]
        for _ in range(frames):
            frame_id = item["frame_id"]
            buckets.append(item["queue"])
            page = client.get(f"/review/frames/{frame_id}", params={"queue": item["queue"]})
            boxes = client.get(f"/api/review/frames/{frame_id}")
            api_boxes.append(_server_ms(boxes))
            body = {
                "decisions": [{"detection_id": b["detection_id"], "decision": "confirm"} for b in boxes.json()["boxes"]],
                "queue": item["queue"],
            }
            saved = client.post(f"/api/review/frames/{frame_id}", json=body, headers={"X-Review-Token": TOKEN})
            assert saved.status_code == 201, saved.text
            following = client.get("/api/review/queue", params={"exclude": frame_id})
            for name, response in (("page", page), ("confirm_all", saved), ("next", following)):
                steps[name].append(_server_ms(response))
            totals.append(sum(steps[name][-1] for name in steps))
            item = following.json()["items"][0]
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(thumbs, ignore_errors=True)
    summary = {
        name: {"p50_ms": round(float(np.percentile(v, 50)), 1), "p95_ms": round(float(np.percentile(v, 95)), 1)}
        for name, v in steps.items()
    }
    return {
        "frames_reviewed": frames,
        "queue_buckets": {b: buckets.count(b) for b in sorted(set(buckets))},
        "per_frame_server_ms": {
            "p50": round(float(np.percentile(totals, 50)), 1),
            "p95": round(float(np.percentile(totals, 95)), 1),
            "max": round(max(totals), 1),
        },
        "steps": summary,
        "api_frame_json_ms": {
            "p50": round(float(np.percentile(api_boxes, 50)), 1),
            "p95": round(float(np.percentile(api_boxes, 95)), 1),
        },
        "target_ms": 200,
    }


def export(db: str, images: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="review-export-")) / "coco"
    command = [
        "/usr/bin/time",
        "-f",
        "%e %M",
        sys.executable,
        "-m",
        "inspection.cli",
        "export",
        "--reviewed",
        str(out),
        "--db",
        db,
        "--images",
        str(images),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    wall_s, rss_kib = done.stderr.strip().splitlines()[-1].split()
    document = json.loads((out / "annotations" / "instances_default.json").read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return {
        "images": len(document["images"]),
        "annotations": len(document["annotations"]),
        "wall_s": float(wall_s),
        "peak_rss_mib": round(int(rss_kib) / 1024, 1),
        "targets": {"wall_s": 60, "peak_rss_mib": 300},
        "command": shlex.join(command[3:]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.review_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/review_scale")
    parser.add_argument("--images", type=Path, default=Path("/tmp/dashboard-scale-images"))
    parser.add_argument("--frames", type=int, default=30, help="frames reviewed through the API")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/review-2core"))
    args = parser.parse_args(argv)
    engine = create_engine_for(args.db)
    try:
        with engine.connect() as conn:
            size = dict(zip(("cars", "frames", "detections"), conn.execute(text(
                "SELECT (SELECT COUNT(*) FROM cars), (SELECT COUNT(*) FROM frames), (SELECT COUNT(*) FROM detections)"
            )).one(), strict=True))  # fmt: skip
        _verdicts(engine)
        _forget_reviews(engine)
        started = time.perf_counter()
        reviewing = review_frames(args.db, args.images, args.frames)
        reviewed = _review_all(engine)
        exporting = export(args.db, args.images)
    finally:
        engine.dispose()
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.review_scale", *(argv if argv is not None else sys.argv[1:])]),
        "database": size,
        "reviewing": reviewing,
        "reviewed_frames": reviewed,
        "export": exporting,
        "bench_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "review_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
