"""Shared checks for backend tests: real COCO tiles, detection matching, tile-level COCO mAP."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np

from inspection.boxes import box_iou
from inspection.detections import Detections


def fp32_copy(src: Path, dst: Path) -> Path:
    """An fp16-weight ONNX graph rewritten to compute in fp32 (same, fp16-rounded, weights).

    Where only raw_fp16.onnx is at hand (the GPU machine), this gives onnxruntime and the torch
    module one fp32 reference graph: onnxruntime runs fp16 graphs in fp16 on the CPU, and the
    resulting score differences flip near-tie NMS decisions that say nothing about the backend.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(src))

    def upcast(tensor):
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))

    for init in model.graph.initializer:
        upcast(init)
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                upcast(attr.t)
    del model.graph.value_info[:]
    onnx.save(model, str(dst))
    return dst


def coco_tiles(coco_root: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """coco_tiny images resized to 300×300 RGB tiles (what the tile-level mAP measures).

    Returns tiles (N, 300, 300, 3) uint8, scale (N, 2) = (width/300, height/300), image ids.
    """
    gt = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    images = gt["images"][:limit]
    tiles = np.empty((len(images), 300, 300, 3), np.uint8)
    for i, im in enumerate(images):
        bgr = cv2.imread(str(coco_root / "val2017" / im["file_name"]))
        tiles[i] = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (300, 300), interpolation=cv2.INTER_LINEAR)
    scale = np.array([[im["width"] / 300, im["height"] / 300] for im in images])
    return tiles, scale, [im["id"] for im in images]


def tile_level_map(detector, coco_root: Path, batch: int = 64) -> float:
    """pycocotools bbox mAP@[.5:.95] of `detector` on coco_tiny tiles at COCO's 0.001 floor."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    tiles, scale, ids = coco_tiles(coco_root)
    rows = []
    for start in range(0, len(tiles), batch):
        det = detector.detect(tiles[start : start + batch], 0.001)
        tile = det.tile_index + start
        xyxy = det.xyxy.astype(np.float64) * np.tile(scale[tile], 2)  # (sx, sy, sx, sy)
        rows.append(np.c_[np.asarray(ids)[tile], xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], det.score, det.class_id])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_root / "annotations" / "instances_val2017.json"))
        evaluation = COCOeval(coco, coco.loadRes(np.concatenate(rows)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def match(reference: Detections, candidate: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each reference detection, the candidate of the same tile and class with the highest IoU.

    Returns (iou (R,), |score difference| (R,), matched candidate index (R,), -1 where none).
    """
    iou = box_iou(reference.xyxy, candidate.xyxy)
    same = (reference.tile_index[:, None] == candidate.tile_index[None, :]) & (
        reference.class_id[:, None] == candidate.class_id[None, :]
    )
    iou = np.where(same, iou, -1.0)
    if iou.shape[1] == 0:
        return np.zeros(len(reference)), np.full(len(reference), np.inf), np.full(len(reference), -1)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(reference)), best]
    found = best_iou >= 0
    diff = np.where(found, np.abs(reference.score - candidate.score[best]), np.inf)
    return np.maximum(best_iou, 0.0), diff, np.where(found, best, -1)


def assert_detections_agree(
    reference: Detections,
    candidate: Detections,
    floor: float,
    min_iou: float = 0.9,
    max_score_diff: float = 0.02,
    nms_iou: float = 0.6,
    max_swap_fraction: float = 0.01,
) -> None:
    """Same detections up to numerical noise: matched one-to-one (same tile and class) with IoU >
    min_iou and scores within max_score_diff, both ways.

    Boxes scoring within max_score_diff of the floor used for both may be present on one side
    only. NMS keeps one box of each overlapping pair of a class, so when two such boxes score
    within the tolerance of each other, noise may keep the other one: such swaps (best counterpart
    overlapping it above `nms_iou`, score within tolerance) are allowed for at most
    `max_swap_fraction` of the detections (and at least one).
    """
    assert len(reference) > 0, "reference has no detections: the comparison would prove nothing"
    for a, b in ((reference, candidate), (candidate, reference)):
        iou, diff, index = match(a, b)
        strict = a.score > floor + max_score_diff
        good = (iou > min_iou) & (diff <= max_score_diff)
        swap = strict & ~good & (iou > nms_iou) & (diff <= max_score_diff)
        bad = strict & ~good & ~swap
        assert not bad.any(), (
            f"{bad.sum()} of {strict.sum()} detections unmatched: tiles {a.tile_index[bad][:5]}, classes "
            f"{a.class_id[bad][:5]}, scores {a.score[bad][:5]}, best IoU {iou[bad][:5]}, score diff {diff[bad][:5]}"
        )
        assert swap.sum() <= max(1, max_swap_fraction * strict.sum()), (
            f"{swap.sum()} of {strict.sum()} detections kept a different box of an overlapping pair: tiles "
            f"{a.tile_index[swap][:5]}, IoU {iou[swap][:5]}"
        )
        matched = index[strict & good]
        assert len(np.unique(matched)) == len(matched), "two detections matched the same counterpart"
