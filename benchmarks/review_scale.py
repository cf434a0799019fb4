"""Review loop at scale on PostgreSQL: reviewing a frame (load, confirm all, next) and exporting the
reviewed frames as COCO.

    python -m benchmarks.dashboard_scale fill --copy --db postgresql+psycopg://postgres@127.0.0.1:5432/review_scale \
        --cars 1000 --images /tmp/dashboard-scale-images
    python -m benchmarks.review_scale --db postgresql+psycopg://postgres@127.0.0.1:5432/review_scale \
        --images /tmp/dashboard-scale-images --out benchmarks/review-2core

Targets (issue 20): reviewing a frame <= 200 ms server time at 1,000 cars / 3 M detections; export of
10,000 reviewed frames <= 60 s and <= 300 MiB RSS.

Per reviewed frame, the server time (Server-Timing header of a real uvicorn server, the dashboard
started with one reviewer) of: the review page (it carries the frame's boxes), the POST confirming
every box, and the call that picks the next frame (`/api/review/next`, what the page's JavaScript
calls); p50/p95 of their sum over --frames frames, each the one the previous call picked. The boxes' JSON API and the whole queue (the queue page's data)
are timed beside it, not in the sum. 10 % of the cars get an NG verdict, the rest OK (car_verdicts
rows written once if the database has none). Two states: "fresh" (no review yet: the NG bucket) and
"deep" (every NG car's frame and the --deep-reviewed newest frames reviewed beforehand: the
near-threshold bucket, behind the reviewed frames). Per state, the same steps are run in-process
with every SQL statement timed (`split_in_process`) and the plans of the last frame's reads
written to review_plans.txt (EXPLAIN ANALYZE, BUFFERS).
Then the reviews go, the --export-frames newest frames get one review confirming their boxes (one
INSERT ... SELECT, setup only), and `inspection export --reviewed` runs under /usr/bin/time: wall
time and peak RSS of the whole command.
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
from sqlalchemy import Engine, event, text

from benchmarks.dashboard_scale import _free_port, _server_ms, _wait_up, machine
from inspection.config import ReviewConfig
from inspection.review.auth import hash_token
from inspection.review.models import ReviewIn
from inspection.review.store import next_frame, review_frame, review_queue, submit_review
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


def _prereview(engine, newest: int) -> int:
    """The database as analysts leave it after a while: every NG car's frame and the `newest` other
    frames (the near-threshold bucket's order) have a review by 'bench'. Setup, not the API path."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO reviews (frame_id, car_id, reviewer, reviewed_at, model, score_threshold, queue) "
                "SELECT f.id, f.car_id, 'bench', now(), 'ssd_mobilenet_v2_coco', 0.3, 'ng' FROM frames f "
                "JOIN car_verdicts v ON v.car_id = f.car_id WHERE v.verdict = 'ng' AND f.error IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.frame_id = f.id)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO reviews (frame_id, car_id, reviewer, reviewed_at, model, score_threshold, queue) "
                "SELECT f.id, f.car_id, 'bench', now(), 'ssd_mobilenet_v2_coco', 0.3, 'near' FROM frames f "
                "WHERE f.error IS NULL AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.frame_id = f.id) "
                "ORDER BY f.captured_at DESC, f.id LIMIT :n"
            ),
            {"n": newest},
        )
    with engine.connect() as conn:  # what autovacuum does soon after: statistics and the visibility map
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE reviews"))
        return conn.execute(text("SELECT COUNT(DISTINCT frame_id) FROM reviews")).scalar_one()


def split(engine: Engine, frames: int, plans: list[str], state: str) -> dict[str, Any]:
    """Where a review's time goes, in-process on the same database: per step the wall time of the
    store function, the part spent in SQL statements (client side: round trip included) and the
    slowest statement; the plans (EXPLAIN ANALYZE, BUFFERS) of each read of the last frame go to `plans`."""
    config = ReviewConfig()
    statements: list[tuple[str, Any, float]] = []
    began: list[float] = []

    def before(*_: Any) -> None:
        began.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters, (time.perf_counter() - began.pop()) * 1000))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    steps: dict[str, list[tuple[float, list[tuple[str, Any, float]]]]] = {}

    def timed(name: str, call, *args: Any, **kwargs: Any) -> Any:
        statements.clear()
        t0 = time.perf_counter()
        value = call(*args, **kwargs)
        steps.setdefault(name, []).append(((time.perf_counter() - t0) * 1000, list(statements)))
        return value

    try:
        with engine.connect() as conn:
            review_queue(conn, config, 0.3)  # warm: plan caches, the model's class list
            item = _first(review_queue(conn, config, 0.3).items)
        for _ in range(frames):
            with engine.connect() as conn:
                frame = timed("page", review_frame, conn, item.frame_id, 0.3, (2700, 2100))
            body = ReviewIn.model_validate(
                {"decisions": [{"detection_id": b.detection_id, "decision": "confirm"} for b in frame.boxes], "queue": item.queue}
            )
            timed(
                "confirm_all", submit_review, engine, item.frame_id, "bench", body, score_threshold=0.3, default_size=(2700, 2100)
            )
            with engine.connect() as conn:
                item = timed("next", next_frame, conn, config, 0.3, after=item.frame_id, queue=item.queue)
                timed("whole_queue", review_queue, conn, config, 0.3)
            if item is None:
                break
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    summary: dict[str, Any] = {}
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for name, runs in steps.items():
            total = [t for t, _ in runs]
            sql = [sum(ms for _, _, ms in stmts) for _, stmts in runs]
            slowest = max(runs[-1][1], key=lambda s: s[2])
            summary[name] = {
                "p50_ms": round(float(np.percentile(total, 50)), 1),
                "sql_p50_ms": round(float(np.percentile(sql, 50)), 1),
                "statements": len(runs[-1][1]),
                "slowest_statement": {"ms": round(slowest[2], 1), "sql": " ".join(slowest[0].split())[:160]},
            }
            for statement, parameters, ms in runs[-1][1]:
                if not statement.lstrip().upper().startswith("SELECT") or isinstance(parameters, list):
                    plans.append(
                        f"-- {state} / {name}: {ms:.1f} ms (not explained: a write)\n{' '.join(statement.split())[:300]}\n"
                    )
                    continue
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                plans.append(f"-- {state} / {name}: {ms:.1f} ms client side\n{' '.join(statement.split())[:300]}\n{plan}\n")
    finally:
        raw.rollback()
        raw.close()
    return summary


def _review_for_export(engine, frames: int) -> int:
    """The `frames` newest frames get one review each, confirming all their boxes, and no other review
    is left (benchmark setup, not the API path): the export's input."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO reviews (frame_id, car_id, reviewer, reviewed_at, model, score_threshold, queue) "
                "SELECT f.id, f.car_id, 'bench', now(), 'ssd_mobilenet_v2_coco', 0.3, 'direct' FROM frames f "
                "WHERE f.error IS NULL AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.frame_id = f.id) "
                "ORDER BY f.captured_at DESC, f.id LIMIT :n"
            ),
            {"n": frames},
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


def _first(items: list[Any]) -> Any:
    if not items:
        raise SystemExit("the review queue is empty: fill more cars or review fewer first (--deep-reviewed)")
    return items[0]


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
    whole_queue: list[float] = []  # the queue page's data, after each review: not part of the sum
    totals: list[float] = []
    buckets: list[str] = []
    try:
        _wait_up(base, server, timeout_s=300)  # start-up takes tens of seconds on a loaded 2-core machine
        client = httpx.Client(base_url=base, timeout=120)
        for _ in range(3):  # connections, plan caches
            client.get("/api/review/queue")
        item = _first(client.get("/api/review/queue").json()["items"])
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
            following = client.get("/api/review/next", params={"after": frame_id, "queue": item["queue"]})
            for name, response in (("page", page), ("confirm_all", saved), ("next", following)):
                steps[name].append(_server_ms(response))
            totals.append(sum(steps[name][-1] for name in steps))
            whole_queue.append(_server_ms(client.get("/api/review/queue")))
            item = following.json()
            if item is None:
                break
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(thumbs, ignore_errors=True)
    summary = {
        name: {"p50_ms": round(float(np.percentile(v, 50)), 1), "p95_ms": round(float(np.percentile(v, 95)), 1)}
        for name, v in steps.items()
    }
    return {
        "frames_reviewed": len(totals),
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
        "whole_queue_ms": {
            "p50": round(float(np.percentile(whole_queue, 50)), 1),
            "p95": round(float(np.percentile(whole_queue, 95)), 1),
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
    parser.add_argument("--frames", type=int, default=30, help="frames reviewed through the API, per state")
    parser.add_argument(
        "--deep-reviewed",
        type=int,
        default=20_000,
        help="the 'deep' state: every NG car's frame and this many newest frames reviewed before timing",
    )
    parser.add_argument("--export-frames", type=int, default=10_000, help="reviewed frames the export writes")
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
        reviewing: dict[str, Any] = {}
        splits: dict[str, Any] = {}
        plans: list[str] = []
        for state in ("fresh", "deep"):
            if state == "deep":
                reviewing["deep_reviews_before"] = _prereview(engine, args.deep_reviewed)
            reviewing[state] = review_frames(args.db, args.images, args.frames)
            splits[state] = split(engine, max(3, args.frames // 3), plans, state)
        _forget_reviews(engine)
        reviewed = _review_for_export(engine, args.export_frames)
        exporting = export(args.db, args.images)
    finally:
        engine.dispose()
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.review_scale", *(argv if argv is not None else sys.argv[1:])]),
        "database": size,
        "reviewing": reviewing,
        "split_in_process": splits,
        "reviewed_frames": reviewed,
        "export": exporting,
        "bench_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "review_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "review_plans.txt").write_text("\n".join(plans))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
