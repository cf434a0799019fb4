"""`inspection export --reviewed OUT`: the reviewed frames with their corrected boxes as a COCO dataset.

Layout (CVAT's "COCO 1.0" import: a zip of this folder; Label Studio: `label-studio-converter import
coco -i annotations/instances_default.json`; pycocotools: `COCO(path)`):

    OUT/images/frame-<id>.jpg                 (--frames, default: hard links to the image store, copies
                                               across file systems; never moved)
    OUT/images/frame-<id>-t<k>.jpg            (--tiles: the frame's grid tiles, encoded anew)
    OUT/annotations/instances_default.json    images, annotations (bbox xywh, area, iscrowd 0,
                                               segmentation []), categories (ids from 1)
    OUT/frames.csv                            image id -> frame id, car, camera, shot, tile, reviewer, time

Corrected boxes: the confirmed detections plus the boxes drawn as missed; rejected ones are left out.
An annotation's `attributes` (CVAT reads them) say where it came from: `source` confirmed or drawn.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import Engine

from ..store.images import ImageStore, ImageStoreError
from ..tiling import TileGrid
from .reviewed import ReviewedFrame, reviewed_frames

ANNOTATIONS = Path("annotations") / "instances_default.json"
# --tiles: a box cut by a tile border is kept in a tile that shows at least this share of it
MIN_VISIBLE = 0.5


class ExportError(ValueError):
    """The export cannot be written (the message names the path and the fix)."""


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    images: int
    annotations: int
    frames: int
    skipped: list[str]  # frames without an image, each with why
    linked: int
    copied: int


def _place(source: Path, target: Path) -> bool:
    """Hard link `source` at `target` (True), or copy it where a link is impossible (False). Never moves."""
    try:
        os.link(source, target)
        return True
    except OSError:
        shutil.copyfile(source, target)
        return False


def _image_path(frame: ReviewedFrame, images: ImageStore | None) -> Path:
    if frame.image_uri is None:
        raise FileNotFoundError("the edge kept no image of it")
    stores = [ImageStore(frame.image_dir)] if frame.image_dir else []
    if images is not None:
        stores.append(images)
    if not stores:
        raise FileNotFoundError("no image store known: pass --images DIR")
    for store in stores:
        try:
            return store.path_for(frame.image_uri)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"{frame.image_uri} is in none of {', '.join(str(s.root) for s in stores)}")


def export_reviewed(
    engine: Engine,
    out: Path,
    *,
    images: ImageStore | None,
    since: datetime | None = None,
    unit: Literal["frames", "tiles"] = "frames",
    grid: TileGrid | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty: export into a new folder")
    if unit == "tiles" and grid is None:
        raise ExportError("--tiles needs the tile grid (config grid.*)")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / ANNOTATIONS.parent).mkdir(parents=True, exist_ok=True)
    coco_images: list[dict[str, Any]] = []
    # annotations go to a scratch file as they come (memory stays flat); their category ids are
    # remapped to 1..K when the final JSON is written, once every class is known
    scratch = out / "annotations" / ".annotations.jsonl"
    n_annotations = 0
    categories: dict[int, str] = {}
    skipped: list[str] = []
    linked = copied = frames = 0
    with (out / "frames.csv").open("w", newline="") as index_file, scratch.open("w") as pending:
        index = csv.writer(index_file)
        index.writerow(["image_id", "file_name", "frame_id", "car_id", "camera", "shot", "tile", "reviewer", "reviewed_at"])
        with engine.connect() as conn:
            for frame in reviewed_frames(conn, since=since):
                try:
                    source = _image_path(frame, images)
                except (FileNotFoundError, ImageStoreError) as exc:
                    skipped.append(f"frame {frame.frame_id} (car {frame.car_id!r} cam {frame.camera} shot {frame.shot}): {exc}")
                    continue
                frames += 1
                xyxy, classes, names = frame.label_xyxy, frame.label_class, frame.label_names
                sources = ["confirmed"] * int(frame.det_confirmed.sum()) + ["drawn"] * len(frame.missed_names)
                for class_id, name in zip(classes.tolist(), names, strict=True):
                    categories.setdefault(int(class_id), name)
                if unit == "frames":
                    name = f"frame-{frame.frame_id}{source.suffix}"
                    if _place(source, out / "images" / name):
                        linked += 1
                    else:
                        copied += 1
                    pieces = [(name, None, frame.width, frame.height, xyxy, classes, sources)]
                else:
                    assert grid is not None
                    pieces = _write_tiles(frame, source, out / "images", grid, xyxy, classes, sources)
                for file_name, tile, width, height, boxes, box_classes, box_sources in pieces:
                    image_id = len(coco_images) + 1
                    coco_images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
                    index.writerow(
                        [image_id, file_name, frame.frame_id, frame.car_id, frame.camera, frame.shot,
                         "" if tile is None else tile, frame.reviewer, frame.reviewed_at.isoformat()]
                    )  # fmt: skip
                    for box, class_id, origin in zip(boxes.tolist(), box_classes.tolist(), box_sources, strict=True):
                        x1, y1, x2, y2 = box
                        n_annotations += 1
                        pending.write(f"{n_annotations} {image_id} {int(class_id)} {x1!r} {y1!r} {x2!r} {y2!r} {origin}\n")
                if progress is not None:
                    progress(frames)
    category_ids = {class_id: k + 1 for k, class_id in enumerate(sorted(categories))}
    head = {"info": {"description": "inspection: reviewed frames with corrected boxes", "version": "1"}, "licenses": []}
    with (out / ANNOTATIONS).open("w") as document, scratch.open() as pending:
        document.write(json.dumps(head)[:-1] + ', "images": ' + json.dumps(coco_images) + ', "annotations": [')
        for k, line in enumerate(pending):
            ann_id, image_id, class_id, x1, y1, x2, y2, origin = line.split()
            left, top, right, bottom = float(x1), float(y1), float(x2), float(y2)
            annotation = {
                "id": int(ann_id), "image_id": int(image_id), "category_id": category_ids[int(class_id)],
                "bbox": [left, top, right - left, bottom - top], "area": (right - left) * (bottom - top), "iscrowd": 0,
                "segmentation": [], "attributes": {"occluded": False, "source": origin},
            }  # fmt: skip
            document.write(("," if k else "") + json.dumps(annotation))
        categories_json = [
            {"id": category_ids[c], "name": categories[c], "supercategory": "", "model_class_id": c} for c in sorted(categories)
        ]
        document.write('], "categories": ' + json.dumps(categories_json) + "}")
    scratch.unlink()
    return ExportSummary(out, len(coco_images), n_annotations, frames, skipped, linked, copied)


def _write_tiles(
    frame: ReviewedFrame,
    source: Path,
    folder: Path,
    grid: TileGrid,
    xyxy: np.ndarray,
    classes: np.ndarray,
    sources: list[str],
) -> list[tuple[str, int, int, int, np.ndarray, np.ndarray, list[str]]]:
    """The frame's grid tiles as JPEGs, with the boxes that a tile shows at least MIN_VISIBLE of, clipped."""
    import simplejpeg

    image = simplejpeg.decode_jpeg(source.read_bytes(), colorspace="RGB")
    height, width = image.shape[:2]
    size = grid.tile_size
    area = np.maximum((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]), 1e-6)
    pieces = []
    k = 0
    for y in grid.y_starts:
        for x in grid.x_starts:
            x0, y0 = int(x), int(y)
            x1, y1 = min(x0 + size, width), min(y0 + size, height)
            clipped = np.stack(
                [
                    np.clip(xyxy[:, 0], x0, x1),
                    np.clip(xyxy[:, 1], y0, y1),
                    np.clip(xyxy[:, 2], x0, x1),
                    np.clip(xyxy[:, 3], y0, y1),
                ],
                axis=1,
            )
            visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) / area
            keep = visible >= MIN_VISIBLE
            name = f"frame-{frame.frame_id}-t{k:02d}.jpg"
            tile = np.ascontiguousarray(image[y0:y1, x0:x1])
            (folder / name).write_bytes(simplejpeg.encode_jpeg(tile, quality=95, colorspace="RGB"))
            boxes = clipped[keep] - np.array([x0, y0, x0, y0], np.float32)
            pieces.append(
                (name, k, x1 - x0, y1 - y0, boxes, classes[keep], [s for s, ok in zip(sources, keep, strict=True) if ok])
            )
            k += 1
    return pieces
