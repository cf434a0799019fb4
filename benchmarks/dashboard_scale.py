"""Dashboard at scale: fill PostgreSQL with N synthetic cars through ResultStore, then time every
dashboard endpoint (server time from the Server-Timing header, p50/p95) on a real uvicorn server
and stream a CSV export of about 1 million detections while sampling the server's peak RSS.

    python -m benchmarks.dashboard_scale fill  --db postgresql+psycopg://postgres@127.0.0.1:5432/dashboard_scale --cars 1000
    python -m benchmarks.dashboard_scale time  --db postgresql+psycopg://postgres@127.0.0.1:5432/dashboard_scale \
        --out benchmarks/dashboard-2core

Targets (issue 9): p95 server time <= 150 ms per page/API call at 1,000 cars (95,000 frames,
about 3 million detections); CSV export of 1 million detections with peak RSS <= 200 MiB.
The cars are written the way the edge writes them (`ResultStore.store_frame`, one transaction
per frame, COPY of the boxes on PostgreSQL); every frame points at one of a few real JPEGs put
once in an image store, so thumbnails can be timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from inspection.analytics import AnalyticsReader
from inspection.config import StoreConfig
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.store import FrameRecord, ImageStore, ResultStore

CAMERAS, SHOTS = 5, 19
TAKT_S = 60.0
BOXES_PER_FRAME = 32  # mean; Poisson
CLASSES = [
    "person",
    "car",
    "truck",
    "bicycle",
    "chair",
    "bottle",
    "cup",
    "handbag",
    "backpack",
    "bench",
    "potted plant",
    "book",
    "clock",
    "tv",
    "laptop",
    "cell phone",
]
CLASS_WEIGHTS = np.array([0.30, 0.18, 0.08, 0.06, 0.06, 0.05, 0.05, 0.04, 0.04, 0.03, 0.03, 0.02, 0.02, 0.02, 0.01, 0.01])
S_NS = 10**9


def _admin_create(url: str) -> None:
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database)))


def fill(db: str, cars: int, images_dir: Path, workers: int, seed: int) -> dict[str, Any]:
    """Write `cars` cars of 5 × 19 frames ending now (one every TAKT_S), as the edge would."""
    if make_url(db).get_backend_name() == "postgresql":
        _admin_create(db)
    from inspection.messages.images import encode_image
    from inspection.tiling import TileGrid
    from synthetic.photos import PhotoFrameSource

    source = PhotoFrameSource(TileGrid())
    image_store = ImageStore(images_dir)
    uris = [image_store.put(encode_image(source(1, cam, 0), 85)) for cam in range(CAMERAS)]
    store = ResultStore.open(StoreConfig(url=db, image_dir=None))
    run_id = store.start_run("ssd_mobilenet_v2_coco", "tensorrt", "fp16", "scale", host="bench", consumer_id="bench:1")
    now_ns = time.time_ns()
    first_ns = now_ns - int(cars * TAKT_S * S_NS)
    done = [0]
    lock = threading.Lock()
    started = time.perf_counter()

    def write_car(index: int) -> int:
        rng = np.random.default_rng(seed * 100_003 + index)
        car = f"car-{index:06d}"
        car_start = first_ns + int(index * TAKT_S * S_NS)
        deadline = car_start + int(TAKT_S * S_NS)
        late = rng.random() < 0.05  # some cars miss their deadline
        boxes_written = 0
        for shot in range(SHOTS):
            for cam in range(CAMERAS):
                captured = car_start + int(shot * TAKT_S * S_NS / SHOTS) + cam * 1_000_000
                processed = captured + int(rng.uniform(0.3, 2.5) * S_NS)
                if late and shot == SHOTS - 1:
                    processed = deadline + int(rng.uniform(1, 20) * S_NS)
                record = FrameRecord(
                    FrameId(car, cam, shot, CAMERAS * SHOTS),
                    captured,
                    deadline,
                    captured + 50_000_000,
                    processed,
                    run_id,
                    width=2700,
                    height=2100,
                    image_uri=uris[cam],
                    kafka_topic="frames",
                    kafka_partition=cam,
                    kafka_offset=index * SHOTS + shot,
                )
                if rng.random() < 0.002:
                    store.store_error(record, "decode", f"frame car={car} cam={cam} shot={shot}: not a JPEG (bench)")
                    continue
                n = int(rng.poisson(BOXES_PER_FRAME))
                xy = rng.uniform([0, 0], [2600, 2000], size=(n, 2))
                wh = rng.uniform(20, 300, size=(n, 2))
                xyxy = np.concatenate([xy, np.minimum(xy + wh, [2700, 2100])], axis=1).astype(np.float32)
                classes = rng.choice(len(CLASSES), size=n, p=CLASS_WEIGHTS / CLASS_WEIGHTS.sum()).astype(np.int32)
                scores = rng.uniform(0.3, 1.0, size=n).astype(np.float32)
                store.store_frame(record, Detections(xyxy, scores, classes, np.full(n, -1, np.int32)), CLASSES)
                boxes_written += n
        with lock:
            done[0] += 1
            if done[0] % 50 == 0:
                rate = done[0] / (time.perf_counter() - started)
                print(f"  {done[0]}/{cars} cars ({rate:.2f} cars/s)", flush=True)
        return boxes_written

    with ThreadPoolExecutor(workers) as pool:
        boxes = sum(pool.map(write_car, range(cars)))
    for k in range(100):
        store.store_rejected(
            "frames", k % 5, 10_000_000 + k, b"\xff\xfe", "headers", "no car_id header (bench)", now_ns - k * S_NS, run_id
        )
    counts = AnalyticsReader(store.engine).counts()
    store.close()
    if make_url(db).get_backend_name() == "postgresql":
        # what autovacuum does a little later on a running line: statistics and visibility map of the new rows
        with psycopg.connect(
            make_url(db).set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
        ) as conn:
            conn.execute("VACUUM (ANALYZE)")
    return {
        "cars": counts.cars,
        "frames": counts.frames,
        "detections": counts.detections,
        "boxes_written": boxes,
        "fill_s": round(time.perf_counter() - started, 1),
        "workers": workers,
    }


def _timestamps(ns: np.ndarray) -> np.ndarray:
    """Nanoseconds since the epoch -> PostgreSQL text timestamps in UTC (microseconds), vectorised."""
    return np.char.add(np.datetime_as_string(ns.astype("datetime64[ns]"), unit="us"), "+00")


def _copy_text(columns: list[np.ndarray]) -> bytes:
    """Rows of COPY text format (tab-separated, \\N for NULL) from parallel columns of strings."""
    rows = np.asarray(columns[0]).astype(str).astype(object)
    for column in columns[1:]:
        rows = rows + "\t" + np.asarray(column).astype(str).astype(object)
    return ("\n".join(rows.tolist()) + "\n").encode() if len(rows) else b""


def fill_copy(db: str, cars: int, images_dir: Path, seed: int, chunk_cars: int = 50) -> dict[str, Any]:
    """The same cars, frames and boxes as `fill` (5 x 19 frames a car, Poisson(32) boxes, 0.2 % error
    rows, 5 % late cars), generated with numpy and written with COPY: benchmark setup in about a
    minute instead of half an hour, not the edge's write path (that is what `fill` times)."""
    from inspection.messages.images import encode_image
    from inspection.store import upgrade_database
    from inspection.tiling import TileGrid
    from synthetic.photos import PhotoFrameSource

    if make_url(db).get_backend_name() != "postgresql":
        raise SystemExit(f"fill --copy needs PostgreSQL (COPY); {db} is not")
    _admin_create(db)
    upgrade_database(db)
    source = PhotoFrameSource(TileGrid())
    image_store = ImageStore(images_dir)
    uris = np.array([image_store.put(encode_image(source(1, cam, 0), 85)) for cam in range(CAMERAS)], dtype=object)
    libpq = make_url(db).set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.perf_counter()
    now_ns = time.time_ns()
    first_ns = now_ns - int(cars * TAKT_S * S_NS)
    names = np.array(CLASSES, dtype=object)
    weights = CLASS_WEIGHTS / CLASS_WEIGHTS.sum()
    per_car = CAMERAS * SHOTS
    boxes = 0
    with psycopg.connect(libpq) as conn:
        run_id = conn.execute(
            "INSERT INTO runs (started_at, model, backend, precision, config_hash, host, consumer_id) "
            "VALUES (now() - interval '1 day', 'ssd_mobilenet_v2_coco', 'tensorrt', 'fp16', 'scale', 'bench', 'bench:1') "
            "RETURNING id"
        ).fetchone()[0]
        frame_base = conn.execute("SELECT COALESCE(MAX(id), 0) FROM frames").fetchone()[0]
        det_base = conn.execute("SELECT COALESCE(MAX(id), 0) FROM detections").fetchone()[0]
        for start in range(0, cars, chunk_cars):
            rng = np.random.default_rng([seed, start])
            index = np.arange(start, min(cars, start + chunk_cars))
            n_cars = len(index)
            car_start = first_ns + index * int(TAKT_S * S_NS)
            deadline = car_start + int(TAKT_S * S_NS)
            late = rng.random(n_cars) < 0.05
            # frames: car-major, then shot, then camera (the order the line takes them)
            car_of = np.repeat(np.arange(n_cars), per_car)
            shot = np.tile(np.repeat(np.arange(SHOTS), CAMERAS), n_cars)
            cam = np.tile(np.arange(CAMERAS), n_cars * SHOTS)
            captured = car_start[car_of] + (shot * int(TAKT_S * S_NS / SHOTS)) + cam * 1_000_000
            processed = captured + (rng.uniform(0.3, 2.5, len(captured)) * S_NS).astype(np.int64)
            last = late[car_of] & (shot == SHOTS - 1)
            processed[last] = deadline[car_of][last] + (rng.uniform(1, 20, last.sum()) * S_NS).astype(np.int64)
            error = rng.random(len(captured)) < 0.002
            count = np.where(error, 0, rng.poisson(BOXES_PER_FRAME, len(captured)))
            frame_id = frame_base + 1 + np.arange(len(captured))
            frame_base += len(captured)
            car_ids = np.array([f"car-{i:06d}" for i in index], dtype=object)
            completed = processed.reshape(n_cars, per_car).max(axis=1)
            lateness = (completed - deadline) / S_NS
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY cars (car_id, frames_expected, frames_done, first_captured_at, deadline_at, completed_at, "
                    "deadline_met, lateness_s) FROM STDIN"
                ) as copy:
                    copy.write(_copy_text([
                        car_ids, np.full(n_cars, per_car), np.full(n_cars, per_car), _timestamps(car_start),
                        _timestamps(deadline), _timestamps(completed), np.where(lateness <= 0, "t", "f"),
                        np.char.mod("%.6f", lateness),
                    ]))  # fmt: skip
                with cur.copy(
                    "COPY frames (id, car_id, camera, shot, width, height, captured_at, received_at, processed_at, "
                    "latency_s, image_uri, error, error_kind, run_id, kafka_topic, kafka_partition, kafka_offset, "
                    "detection_count) FROM STDIN"
                ) as copy:
                    n = len(captured)
                    copy.write(_copy_text([
                        frame_id, car_ids[car_of], cam, shot, np.full(n, 2700), np.full(n, 2100), _timestamps(captured),
                        _timestamps(captured + 50_000_000), _timestamps(processed),
                        np.char.mod("%.6f", (processed - captured) / S_NS), uris[cam],
                        np.where(error, "frame: not a JPEG (bench)", "\\N"), np.where(error, "decode", "\\N"),
                        np.full(n, run_id), np.full(n, "frames"), cam, index[car_of] * SHOTS + shot, count,
                    ]))  # fmt: skip
                total = int(count.sum())
                xy = rng.uniform([0, 0], [2600, 2000], size=(total, 2))
                wh = rng.uniform(20, 300, size=(total, 2))
                xyxy = np.concatenate([xy, np.minimum(xy + wh, [2700, 2100])], axis=1)
                cls = rng.choice(len(CLASSES), size=total, p=weights)
                with cur.copy(
                    "COPY detections (id, frame_id, class_id, class_name, score, x1, y1, x2, y2, tile_index) FROM STDIN"
                ) as copy:
                    copy.write(_copy_text([
                        det_base + 1 + np.arange(total), np.repeat(frame_id, count), cls, names[cls],
                        np.char.mod("%.4f", rng.uniform(0.3, 1.0, total)),
                        *(np.char.mod("%.1f", xyxy[:, k]) for k in range(4)), np.full(total, -1),
                    ]))  # fmt: skip
                det_base += total
                boxes += total
            conn.commit()
            print(f"  {index[-1] + 1}/{cars} cars ({time.perf_counter() - started:.0f} s)", flush=True)
        for table, column in (("frames", "id"), ("detections", "id"), ("runs", "id")):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT MAX({column}) FROM {table}))")
        conn.commit()
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        counts = conn.execute(
            "SELECT (SELECT COUNT(*) FROM cars), (SELECT COUNT(*) FROM frames), (SELECT COUNT(*) FROM detections)"
        ).fetchone()
    return {
        "cars": counts[0],
        "frames": counts[1],
        "detections": counts[2],
        "boxes_written": boxes,
        "fill_s": round(time.perf_counter() - started, 1),
        "method": "copy",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_up(base: str, server: subprocess.Popen, timeout_s: float = 300) -> None:
    """Until the dashboard answers; a server that exited says why (its stderr) instead of a late timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            err = server.stderr.read().decode(errors="replace") if server.stderr else ""
            raise RuntimeError(f"dashboard at {base} exited with {server.returncode}: {err[-2000:]}")
        try:
            if httpx.get(base + "/api/line/mark", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"dashboard at {base} did not answer")


def _server_ms(response: httpx.Response) -> float:
    timing = response.headers.get("server-timing", "")
    return float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")


def time_endpoints(db: str, images_dir: Path, out: Path, repeats: int, csv_rows: int) -> dict[str, Any]:
    port = _free_port()
    thumbs = Path(tempfile.mkdtemp(prefix="dashboard-thumbs-"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inspection.cli",
            "dashboard",
            "--db",
            db,
            "--images",
            str(images_dir),
            "--port",
            str(port),
            "--thumbs",
            str(thumbs),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        _wait_up(base, server)
        client = httpx.Client(base_url=base, timeout=600)
        rss_start = _rss_mib(server.pid, "VmRSS")
        # CSV first, so the server's high-water mark is the export's (plus start-up)
        cars = client.get("/api/cars", params={"per_page": 200, "page": 1}).json()
        total_cars = cars["total"]
        oldest = client.get("/api/cars", params={"per_page": 1, "page": total_cars}).json()["items"][0]
        since = datetime.fromisoformat(oldest["first_captured_at"])
        per_car = 95 * BOXES_PER_FRAME
        until = since + timedelta(seconds=TAKT_S * (csv_rows / per_car))
        params = {"since": since.isoformat(), "until": until.isoformat()}
        peak = [rss_start]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_mib(server.pid, "VmRSS"))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        rows = -1
        size = 0
        with client.stream("GET", "/api/detections.csv", params=params) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                rows += chunk.count(b"\n")
                size += len(chunk)
        csv_s = time.perf_counter() - started
        stop.set()
        sampler.join()
        results["csv_export"] = {
            "rows": rows,
            "bytes": size,
            "seconds": round(csv_s, 2),
            "rows_per_s": round(rows / csv_s),
            "server_rss_before_mib": round(rss_start, 1),
            "server_peak_rss_mib": round(max(peak[0], _rss_mib(server.pid, "VmHWM")), 1),
            "params": params,
        }
        print(
            f"csv: {rows} rows in {csv_s:.1f} s, server peak RSS {results['csv_export']['server_peak_rss_mib']} MiB", flush=True
        )

        rng = random.Random(1)
        car_ids = [c["car_id"] for c in cars["items"]]
        detail = client.get(f"/api/cars/{car_ids[0]}").json()
        frame_ids = [c["frame_id"] for c in detail["cells"] if c["frame_id"] is not None]
        endpoints: list[tuple[str, Any]] = [
            ("/ (line page)", lambda: "/"),
            ("/api/line", lambda: "/api/line"),
            ("/api/cars", lambda: "/api/cars"),
            ("/api/cars?page=30", lambda: "/api/cars?page=30"),
            ("/api/line/charts", lambda: "/api/line/charts"),
            ("/api/line/mark", lambda: "/api/line/mark"),
            ("/cars/{id} (page)", lambda: f"/cars/{rng.choice(car_ids)}"),
            ("/api/cars/{id}", lambda: f"/api/cars/{rng.choice(car_ids)}"),
            ("/frames/{id} (page)", lambda: f"/frames/{rng.choice(frame_ids)}"),
            ("/api/frames/{id}", lambda: f"/api/frames/{rng.choice(frame_ids)}"),
            ("/api/frames/{id}/detections", lambda: f"/api/frames/{rng.choice(frame_ids)}/detections"),
            ("/frames/{id}/thumb.jpg", lambda: f"/frames/{rng.choice(frame_ids)}/thumb.jpg"),
            ("/detections (page, last hour)", lambda: "/detections"),
            ("/api/detections (last hour)", lambda: "/api/detections"),
            ("/api/detections (last hour, class=person)", lambda: "/api/detections?class_name=person"),
            ("/api/detections (car)", lambda: f"/api/detections?since=all&car_id={rng.choice(car_ids)}"),
            ("/api/detections (last hour, min_score=0.9)", lambda: "/api/detections?min_score=0.9"),
            ("/api/detections (last hour, page 20)", lambda: "/api/detections?page=20"),
            ("/problems (page)", lambda: "/problems"),
            ("/api/problems", lambda: "/api/problems"),
            ("/api/detections (since=all: every detection)", lambda: "/api/detections?since=all"),
        ]
        table = []
        for name, make in endpoints:
            for _ in range(2):  # warm-up
                client.get(make()).raise_for_status()
            server_ms, wall_ms = [], []
            n = repeats if "since=all: every" not in name else max(3, repeats // 5)
            for _ in range(n):
                t0 = time.perf_counter()
                response = client.get(make())
                wall_ms.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
                server_ms.append(_server_ms(response))
            row = {
                "endpoint": name,
                "requests": n,
                "p50_ms": round(float(np.percentile(server_ms, 50)), 1),
                "p95_ms": round(float(np.percentile(server_ms, 95)), 1),
                "max_ms": round(max(server_ms), 1),
                "client_p50_ms": round(float(np.percentile(wall_ms, 50)), 1),
                "bytes": len(response.content),
                "meets_150ms_p95": bool(np.percentile(server_ms, 95) <= 150),
            }
            table.append(row)
            print(f"{name:48s} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  {row['bytes']} B", flush=True)
        results["endpoints"] = table
        page = client.get(f"/cars/{car_ids[0]}")
        thumb_bytes = sum(len(client.get(f"/frames/{f}/thumb.jpg").content) for f in frame_ids)
        static = sum(len(client.get(p).content) for p in ("/static/style.css", "/static/app.js"))
        results["car_page_transfer"] = {
            "html_bytes": len(page.content),
            "thumbnails": len(frame_ids),
            "thumbnail_bytes": thumb_bytes,
            "static_bytes": static,
            "total_mib": round((len(page.content) + thumb_bytes + static) / 2**20, 3),
        }
    finally:
        server.terminate()
        server.wait(30)
    return results


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "note": "shared development machine: other jobs ran beside the benchmark (see the load average)",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("fill", "time", "all"))
    parser.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/dashboard_scale")
    parser.add_argument("--cars", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=Path, default=Path("/tmp/dashboard-scale-images"))
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/dashboard-2core"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--copy",
        action="store_true",
        help="fill with COPY of numpy-generated rows (setup in minutes; not the edge's write path)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "dashboard_scale.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["machine"] = machine()
    if args.step in ("fill", "all"):
        print(f"filling {args.db} with {args.cars} cars", flush=True)
        if args.copy:
            report["fill"] = fill_copy(args.db, args.cars, args.images, args.seed)
        else:
            report["fill"] = fill(args.db, args.cars, args.images, args.workers, args.seed)
        report["fill_command"] = shlex.join(
            [
                "python",
                "-m",
                "benchmarks.dashboard_scale",
                "fill",
                "--db",
                args.db,
                "--cars",
                str(args.cars),
                *(["--copy"] if args.copy else ["--workers", str(args.workers)]),
            ]
        )
        print(json.dumps(report["fill"]), flush=True)
    if args.step in ("time", "all"):
        report["time"] = time_endpoints(args.db, args.images, args.out, args.repeats, args.csv_rows)
        report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        report["time_command"] = shlex.join(
            [
                "python",
                "-m",
                "benchmarks.dashboard_scale",
                "time",
                "--db",
                args.db,
                "--repeats",
                str(args.repeats),
                "--csv-rows",
                str(args.csv_rows),
            ]
        )
    report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {report_path}")


if __name__ == "__main__":
    main()
