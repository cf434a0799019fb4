"""The review loop (issue 20): `inspection review-token`, `export --reviewed`, `shadow`, and the tables of
`eval --reviewed` (the logic is in inspection/review)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from .base import ConfigOpt, _settings, _table, app, console
from .errors import CliError, UsageError


def eval_reviewed(url: str, since: Optional[datetime], weekly: bool, json_path: Optional[Path]) -> None:
    """`inspection eval --reviewed`: precision/recall/AP and verdict agreement on the reviewed frames of `url`."""
    from ..review.scoring import score_reviewed
    from ..review.scoring import weekly as weekly_scores
    from ..store import create_engine_for

    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            scores = weekly_scores(conn) if weekly else [score_reviewed(conn, since=_utc(since))]
    finally:
        engine.dispose()
    if not scores or scores[0].frames == 0:
        raise CliError(
            f"no reviewed frames in {url}" + (f" since {since}" if since else "") + ": review some in the dashboard first"
        )
    for score in scores:
        title = (
            f"{score.label}: {score.frames} reviewed frames ({score.frames_with_drawn} with drawn boxes), "
            f"verdict agreement {_pct(score.verdict_agreement)} on {score.cars} cars"
        )
        table = _table(title, ["class", "confirmed", "rejected", "missed", "precision", "recall", "AP", "AP50"])
        for c in score.classes:
            table.add_row(
                escape(c.class_name),
                str(c.confirmed),
                str(c.rejected),
                str(c.missed),
                _pct(c.precision),
                _pct(c.recall),
                _pct(c.ap),
                _pct(c.ap50),
            )
        table.add_row("all", "", "", "", _pct(score.precision), _pct(score.recall), _pct(score.ap), _pct(score.ap50))
        console.print(table)
        if score.verdict_flips:
            console.print("verdict contradicted by review: " + escape(", ".join(score.verdict_flips)))
    if json_path:
        json_path.write_text(json.dumps([s.model_dump() for s in scores], indent=2))


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)


def _ns(value: Optional[datetime]) -> Optional[int]:
    value = _utc(value)
    return None if value is None else int(value.timestamp() * 1e9)


@app.command("export")
def export_cmd(
    out: Path = typer.Argument(..., help="new folder for the COCO dataset"),
    reviewed: bool = typer.Option(False, "--reviewed", help="the reviewed frames with their corrected boxes (required)"),
    since: Optional[datetime] = typer.Option(None, help="reviews at or after this time (UTC)"),
    tiles: bool = typer.Option(False, "--tiles/--frames", help="one image per grid tile (boxes clipped) or whole frames"),
    db: Optional[str] = typer.Option(None, help="results database URL (default: config store.url)"),
    images: Optional[Path] = typer.Option(None, help="image store (default: each run's image_dir, then config store.image_dir)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """COCO dataset (images + annotations/instances_default.json) of the reviewed frames, for CVAT, Label Studio, pycocotools."""
    from ..review.export import ExportError, export_reviewed
    from ..store import ImageStore, create_engine_for
    from ..tiling import TileGrid

    if not reviewed:
        raise UsageError("export writes reviewed frames only: pass --reviewed")
    settings = _settings(config, **{"store.url": db, "store.image_dir": str(images) if images else None})
    store_dir = settings.store.image_dir
    engine = create_engine_for(settings.store.url)
    try:
        summary = export_reviewed(
            engine,
            out,
            images=ImageStore(store_dir) if store_dir and Path(store_dir).is_dir() else None,
            since=_utc(since),
            unit="tiles" if tiles else "frames",
            grid=TileGrid.from_config(settings.grid),
        )
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    finally:
        engine.dispose()
    for line in summary.skipped:
        console.print(f"skipped {escape(line)}")
    console.print(
        f"{summary.images} images ({summary.frames} frames; {summary.linked} linked, {summary.copied} copied), "
        f"{summary.annotations} boxes -> {escape(str(out))}/annotations/instances_default.json"
    )


@app.command("shadow")
def shadow_cmd(
    model: str = typer.Option(..., "--model", help="a registered model (inspection model list) to run beside the deployed one"),
    live: bool = typer.Option(False, "--live/--replay", help="live: its own consumer group; replay: a range of the topic"),
    from_offset: Optional[int] = typer.Option(None, min=0, help="replay: first offset (every partition)"),
    to_offset: Optional[int] = typer.Option(None, min=0, help="replay: stop before this offset"),
    since: Optional[datetime] = typer.Option(None, help="replay: first record at/after this time (UTC)"),
    until: Optional[datetime] = typer.Option(None, help="replay: stop at this time (UTC)"),
    max_frames: Optional[int] = typer.Option(None, min=1, help="stop after this many frames"),
    compare_only: bool = typer.Option(False, "--compare", help="only print candidate vs deployed (reviewed set, verdict flips)"),
    path: Optional[Path] = typer.Option(None, help="the candidate's model file (default: the registry's location)"),
    bootstrap: Optional[str] = typer.Option(None, help="HOST:PORT of the Kafka cluster (default: config)"),
    db: Optional[str] = typer.Option(None, help="results database URL (default: config store.url)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="--compare: write the comparison as JSON"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """A candidate model in shadow: its boxes and verdicts stored apart (shadow_* tables); --compare shows it against the deployed one."""
    from ..review.compare import compare
    from ..review.shadow import ReplayRange, open_shadow, shadow_group
    from ..store import create_engine_for, upgrade_database

    settings = _settings(config, **{"store.url": db, "kafka.bootstrap_servers": bootstrap})
    if not compare_only and not settings.kafka.bootstrap_servers:
        raise UsageError("no Kafka cluster: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers")
    engine = create_engine_for(settings.store.url)
    try:
        if not compare_only:
            upgrade_database(engine)
            runner = open_shadow(
                settings, model, settings.kafka.bootstrap_servers, engine, path=path
            )  # model errors name the fix
            group = shadow_group(settings.kafka.group_id, model)
            stop = (lambda s: s.frames >= max_frames) if max_frames else (lambda s: False)
            if live:
                stats = runner.live(group, stop)
            else:
                span = ReplayRange(from_offset, to_offset, _ns(since), _ns(until))
                stats = runner.replay(group, span, stop)
            console.print(
                f"shadow {escape(model)}: {stats.frames} frames stored ({stats.errors} error rows, {stats.unreadable} unreadable records), "
                f"{stats.verdicts} car verdicts"
            )
        with engine.connect() as conn:
            result = compare(conn, model, score_threshold=settings.detect.score_threshold)
    finally:
        engine.dispose()
    _print_comparison(result)
    if json_path:
        json_path.write_text(result.model_dump_json(indent=2))


def _print_comparison(result: Any) -> None:
    table = _table(
        f"candidate {escape(result.candidate)} vs deployed {escape(str(result.deployed))}: {result.reviewed_frames} reviewed frames, "
        f"{result.ground_truth_boxes} corrected boxes",
        ["model", "boxes", "TP", "precision", "recall", "AP", "AP50"],
    )
    for score in (result.deployed_score, result.candidate_score):
        if score is not None:
            table.add_row(
                escape(score.model),
                str(score.boxes),
                str(score.true_positives),
                _pct(score.precision),
                _pct(score.recall),
                _pct(score.ap),
                _pct(score.ap50),
            )
    console.print(table)
    changes = ", ".join(f"{k} {v}" for k, v in sorted(result.verdict_changes.items())) or "none"
    console.print(f"verdicts on {result.cars_compared} cars: {changes}")
    for car, deployed, candidate in result.flips[:20]:
        console.print(f"  flip {escape(car)}: {deployed} -> {candidate}")


@app.command("review-token")
def review_token(name: str = typer.Argument(..., help="the reviewer's name (letters, digits, . _ @ -)")) -> None:
    """A new reviewer token: give the token to the reviewer, put the name=sha256 line in INSPECTION_REVIEWERS."""
    from ..review.auth import ReviewerConfigError, Reviewers, hash_token, new_token

    token = new_token()
    line = f"{name}={hash_token(token)}"
    try:
        Reviewers.parse(line)
    except ReviewerConfigError as exc:
        raise UsageError(str(exc)) from None
    console.print(f"token (give it to {escape(name)}; it is not stored anywhere): {token}")
    console.print(f"reviewer line for INSPECTION_REVIEWERS: {line}")
