"""`inspection eval`: tile mAP on COCO mosaics, the scene table of tiling and stitching configurations, or (--reviewed) the scores on reviewed frames."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import Settings
from .base import ConfigOpt, _settings, _table, app, console
from .errors import UsageError


@app.command("eval")
def eval_(
    images: Optional[Path] = typer.Option(None, help="COCO images directory (e.g. val2017)"),
    annotations: Optional[Path] = typer.Option(None, help="COCO instances JSON"),
    reviewed: bool = typer.Option(
        False, "--reviewed", help="score the deployed model on the reviewed frames of --db instead (inspection.review.scoring)"
    ),
    db: Optional[str] = typer.Option(None, help="--reviewed: results database URL (default: config store.url)"),
    since: Optional[datetime] = typer.Option(None, help="--reviewed: reviews at or after this time (UTC)"),
    weekly: bool = typer.Option(False, "--weekly", help="--reviewed: one table per ISO week of review"),
    config: Optional[Path] = ConfigOpt,
    model: Optional[str] = typer.Option(None),
    backend: Optional[str] = typer.Option(None),
    precision: Optional[str] = typer.Option(None),
    path: Optional[Path] = typer.Option(None, help="model file instead of the registry's location"),
    max_tiles: Optional[int] = typer.Option(None, help="score only this many images (fast check)"),
    seed: int = 0,
    letterbox: bool = False,
    json_path: Optional[Path] = typer.Option(None, "--json"),
    scenes: int = typer.Option(
        0,
        min=0,
        help="instead of mosaics: N line-size scenes per seed (scaled, off-grid images), "
        "one table of tiling/stitching configurations and SAHI",
    ),
    seeds: str = typer.Option("0,1,2", help="--scenes: comma-separated scene seeds (mean and spread over them)"),
    overlaps: str = typer.Option("30,60", help="--scenes: overlapping grids to compare, pixels, comma-separated ('' for none)"),
    grid_options: Optional[Path] = typer.Option(
        None,
        help="--scenes: where to write each grid option's accuracy and time on this machine for `inspection plan` "
        "(default: grid_options_<machine>.json beside --json)",
    ),
    sahi: bool = typer.Option(
        True, help="--scenes: add the SAHI row (needs the [sahi] extra; skipped with its reason otherwise)"
    ),
    device: Optional[str] = typer.Option(None, help="model.device: cpu, cuda or auto"),
) -> None:
    """pycocotools mAP at tile level and at stitched-frame level on mosaics of a COCO dataset, plus tiles/s
    (with --scenes: the scene table of tiling and stitching configurations, see inspection.tools.scene_eval;
    with --reviewed: precision/recall/AP and verdict agreement on the analysts' reviewed frames)."""
    if reviewed:
        from .review import eval_reviewed

        eval_reviewed(_settings(config, **{"store.url": db}).store.url, since, weekly, json_path)
        return
    if images is None or annotations is None:
        raise UsageError("eval needs --images and --annotations (a COCO dataset), or --reviewed")
    from synthetic.coco import CocoDataset

    from ..detect import create_detector
    from ..stitch import stitch
    from ..tiling import TileGrid
    from ..tools.evaluate import evaluate

    settings = _settings(
        config,
        **{
            "model.name": model,
            "model.backend": backend,
            "model.precision": precision,
            "model.path": path,
            "model.device": device,
        },
    )
    if not images.is_dir():
        raise UsageError(f"--images {images}: no such directory (the COCO images, e.g. val2017/)")
    if not annotations.is_file():
        raise UsageError(f"--annotations {annotations}: no such file (the COCO instances JSON)")
    detector = create_detector(settings.model, settings.detect)
    dataset = CocoDataset.load(images, annotations)
    grid = TileGrid.from_config(settings.grid)
    if scenes:
        _scene_table(detector, dataset, grid, settings, scenes, seeds, overlaps, sahi, json_path, grid_options)
        return
    with Progress(TextColumn("frames"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("eval", total=None)
        report = evaluate(
            detector,
            dataset,
            grid,
            stitch_fn=functools.partial(stitch, config=settings.stitch),
            max_tiles=max_tiles,
            seed=seed,
            letterbox=letterbox,
            second_look_config=settings.grid.second_look,
            tolerance_px=settings.stitch.border_tolerance_px,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = _table(
        f"{report.model} {report.backend}/{report.precision}: {report.images} images, {report.tiles_per_s:.1f} tiles/s",
        ["level", *report.tile],
    )
    for level, scores in (("tile", report.tile), ("frame (stitched)", report.frame)):
        table.add_row(level, *(f"{v:.4f}" for v in scores.values()))
    console.print(table)
    if json_path:
        json_path.write_text(
            json.dumps(
                {
                    "tile": report.tile,
                    "frame": report.frame,
                    "tiles_per_s": report.tiles_per_s,
                    "model": report.model,
                    "backend": report.backend,
                    "precision": report.precision,
                    "images": report.images,
                    "classes_scored": report.classes_scored,
                    "second_look": settings.grid.second_look.model_dump(),
                    "second_look_s_per_frame": report.second_look_s / max(report.frames, 1),
                },
                indent=2,
            )
        )


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


def _scene_table(
    detector: Any,
    dataset: Any,
    grid: Any,
    settings: Settings,
    scenes: int,
    seeds: str,
    overlaps: str,
    sahi: bool,
    json_path: Optional[Path],
    grid_options: Optional[Path],
) -> None:
    """`inspection eval --scenes N`: one table, mean ± spread over the seeds, JSON beside it, and the
    grid options' measured accuracy and time for `inspection plan` (named with the machine)."""
    from ..tools.bench import machine_description
    from ..tools.plan import grid_options_path
    from ..tools.scene_eval import evaluate_scenes

    seed_list = _int_list(seeds, "--seeds")
    if not seed_list:
        raise UsageError("--seeds: give at least one seed, e.g. 0,1,2")
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("scenes", total=None)
        report = evaluate_scenes(
            detector,
            dataset,
            grid,
            settings.stitch,
            num_scenes=scenes,
            seeds=seed_list,
            overlaps=_int_list(overlaps, "--overlaps"),
            second_look_config=settings.grid.second_look,
            sahi=sahi,
            progress=lambda text: bar.update(task, description=text),
        )
    objects = sum(s["objects"] for s in report.scenes)
    crossing = sum(s["crossing"] for s in report.scenes)
    spread = "mean ± sd over seeds " + ",".join(str(s) for s in seed_list)
    table = _table(
        f"{report.model} {report.backend}/{report.precision}: {scenes} scenes × {len(seed_list)} seeds, {objects} objects, "
        f"{crossing / max(objects, 1):.0%} crossing a tile border ({spread})",
        [
            "configuration",
            "frame mAP",
            "AP small",
            "AP medium",
            "AP large",
            "AP crossing",
            "AP inside",
            "border recall",
            "s/frame",
        ],
        fold=("configuration",),
    )
    keys = ("mAP", "AP_small", "AP_medium", "AP_large", "AP_crossing", "AP_inside", "border_recall")
    for name, scores in report.summary().items():
        table.add_row(
            name,
            *(f"{scores[k][0]:.3f}±{scores[k][1]:.3f}" for k in keys),
            f"{scores['s_per_frame'][0]:.2f}±{scores['s_per_frame'][1]:.2f}",
        )
    Console(width=max(console.width, 180)).print(table)  # 9 columns of figures: too wide to fold at 80
    for name, why in report.skipped.items():
        console.print(f"{name} row skipped: {why}")
    if json_path:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
    machine = machine_description()
    options_path = grid_options or (grid_options_path(json_path.parent, machine) if json_path else None)
    if options_path:
        options_path.write_text(json.dumps(report.grid_options(machine), indent=2))
        console.print(f"grid options and their time on this machine: {options_path}")
