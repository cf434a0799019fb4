"""Raw network outputs -> per-tile `Detections`, shared by every backend.

decode (per model family) -> candidate selection -> one batched class-wise NMS -> per-tile cap.
Everything is an array operation over the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..boxes import batched_nms, top_k_per_group
from ..config import DetectConfig
from ..detections import Detections
from .base import ModelSpec
from .preprocess import tile_scale
from .ssd import anchors_from_decoder, decode_ssd_boxes
from .yolov8 import decode_yolov8
from .yolox import decode_yolox

DECODERS = ("ssd_box_coder", "yolox", "yolov8")

# Per tile, candidates beyond this many (the best (box, class) pairs) are never needed: a box only
# suppresses lower-scoring ones, so the kept set is exact whenever max_per_tile boxes survive among them.
CANDIDATES_PER_TILE_FACTOR = 20
# First NMS round: each tile's best PREFIX_FACTOR * max_per_tile candidates (see `nms_within_reach`).
PREFIX_FACTOR = 3


@dataclass(frozen=True)
class RawOutput:
    """Decoded network output for a batch: boxes (N, A, 4) xyxy in network-input pixels, scores (N, A, C)."""

    boxes: np.ndarray
    scores: np.ndarray


class OutputDecoder:
    """Turns a model's raw output tensors into `RawOutput`, driven by the spec's `decoder` section."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.kind = spec.decoder["type"]
        if self.kind == "ssd_box_coder":
            self.anchors = anchors_from_decoder(spec.decoder)
            self.scales = spec.decoder["scales"]
        elif self.kind not in DECODERS:
            raise ValueError(f"model {spec.name}: unknown decoder {self.kind!r} (known: {', '.join(DECODERS)})")

    @property
    def output_names(self) -> list[str]:
        return list(self.spec.decoder["outputs"].values())

    def decode(self, outputs: dict[str, np.ndarray]) -> RawOutput:
        names = self.spec.decoder["outputs"]
        if self.kind == "ssd_box_coder":
            ih, iw = self.spec.input_size
            boxes = decode_ssd_boxes(outputs[names["boxes"]], self.anchors, self.scales)
            boxes *= np.array([iw, ih, iw, ih], np.float32)
            return RawOutput(boxes, np.asarray(outputs[names["scores"]], np.float32))
        raw = np.asarray(outputs[names["predictions"]], np.float32)
        if self.kind == "yolov8":
            return RawOutput(*decode_yolov8(raw, self.spec.num_columns))
        return RawOutput(*decode_yolox(raw, self.spec.input_size, self.spec.decoder["strides"]))


def _candidates(
    scores: np.ndarray, floor: float, per_tile: int, background: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tile, anchor, column) of the (box, class) pairs scoring above `floor`, never a `background`
    column; where a tile has more than `per_tile`, its best `per_tile` (a few more may pass: the
    selection also spends up to one slot per anchor on background columns it then drops).
    Reads `scores` in place, never copies it."""
    n, a, c = scores.shape
    above = scores > floor
    if background:
        above[:, :, list(background)] = False
    if above.sum(axis=(1, 2)).max(initial=0) <= per_tile:
        return np.nonzero(above)
    # argpartition on the raw scores: masking first (-inf below the floor) would hand introselect
    # millions of equal keys, several times slower than the real values.
    reach = min(a * c, per_tile + a * len(background))
    flat = scores.reshape(n, a * c)
    best = np.argpartition(flat, a * c - reach, axis=1)[:, a * c - reach :]  # (n, reach)
    tile = np.repeat(np.arange(n), reach)
    index = best.ravel()
    keep = above.reshape(n, a * c)[tile, index]
    tile, index = tile[keep], index[keep]
    return tile, index // c, index % c


@dataclass(frozen=True)
class ArrayOps:
    """The few array operations `nms_within_reach` needs that numpy and torch spell differently."""

    tile_major_order: Callable[[Any, Any], Any]  # (score, tile) -> indices: tile-major, best first, ties in input order
    rank_in_tile: Callable[[Any], Any]  # sorted tiles -> each position's rank inside its tile
    bincount: Callable[[Any, int], Any]
    all_true: Callable[[Any], Any]  # counts -> a bool array of the same length, all True
    concat: Callable[[list[Any]], Any]


NUMPY_OPS = ArrayOps(
    tile_major_order=lambda score, tile: np.lexsort((-score, tile)),
    rank_in_tile=lambda tile_sorted: np.arange(len(tile_sorted)) - np.searchsorted(tile_sorted, tile_sorted, side="left"),
    bincount=lambda values, minlength: np.bincount(values, minlength=minlength),
    all_true=lambda count: np.ones(len(count), bool),
    concat=np.concatenate,
)


def _numpy_nms(boxes: np.ndarray, score: np.ndarray, groups: np.ndarray, iou: float, tile: np.ndarray) -> np.ndarray:
    return batched_nms(boxes, score, groups, iou)


def nms_within_reach(
    boxes: Any,
    score: Any,
    groups: Any,
    tile: Any,
    iou: float,
    max_per_tile: int,
    first_prefix: int,
    nms: Callable[..., Any] = _numpy_nms,
    ops: ArrayOps = NUMPY_OPS,
) -> Any:
    """Class-wise NMS of every box that can be among its tile's best `max_per_tile` kept boxes.

    boxes (N, 4), score (N,), groups (N,) (never spanning tiles), tile (N,) int -> (K,) int64 indices
    of kept boxes. Each round runs `nms(boxes, score, groups, iou, tile)` on every open tile's best
    `prefix` boxes; a tile is done once it keeps `max_per_tile` of them or its prefix holds all its
    boxes, else the prefix doubles. Exact: greedy NMS decides a box from higher-scoring boxes of its
    group only, so the decisions inside a prefix are final, and kept boxes beyond it score lower
    than all within. numpy arrays by default; torch tensors with `torch_post.TORCH_OPS` and a torch NMS.
    """
    if len(score) == 0:
        return np.zeros((0,), np.int64) if ops is NUMPY_OPS else tile[:0]
    order = ops.tile_major_order(score, tile)
    tile_sorted = tile[order]
    rank = ops.rank_in_tile(tile_sorted)
    count = ops.bincount(tile_sorted, 0)
    open_tiles = ops.all_true(count)
    kept_parts = []
    prefix = first_prefix
    while True:
        chosen = order[open_tiles[tile_sorted] & (rank < prefix)]
        kept = chosen[nms(boxes[chosen], score[chosen], groups[chosen], iou, tile[chosen])]
        done = open_tiles & ((ops.bincount(tile[kept], len(count)) >= max_per_tile) | (count <= prefix))
        kept_parts.append(kept[done[tile[kept]]])
        open_tiles &= ~done
        if not bool(open_tiles.any()):
            return ops.concat(kept_parts)
        prefix *= 2


def select_detections(
    raw: RawOutput, spec: ModelSpec, config: DetectConfig, tile_hw: tuple[int, int], score_threshold: float | None = None
) -> Detections:
    """Score filter, one batched class-wise NMS (groups = tile × class), per-tile cap, tile pixels."""
    floor = config.score_threshold if score_threshold is None else score_threshold
    scores = raw.scores
    columns = np.asarray(spec.output_class_ids)
    tile, anchor, column = _candidates(scores, floor, CANDIDATES_PER_TILE_FACTOR * config.max_per_tile, spec.background_columns)
    score = scores[tile, anchor, column]
    groups = tile.astype(np.int64) * scores.shape[2] + column
    pick = top_k_per_group(score, groups, config.pre_nms_top_k)
    tile, anchor, column, score, groups = tile[pick], anchor[pick], column[pick], score[pick], groups[pick]
    boxes = raw.boxes[tile, anchor] * tile_scale(spec, tile_hw)
    kept = nms_within_reach(boxes, score, groups, tile, config.nms_iou, config.max_per_tile, PREFIX_FACTOR * config.max_per_tile)
    kept = kept[top_k_per_group(score[kept], tile[kept], config.max_per_tile)]
    kept = kept[np.lexsort((-score[kept], tile[kept]))]
    th, tw = tile_hw
    xyxy = np.clip(boxes[kept], 0, np.array([tw, th, tw, th], np.float32))
    return Detections(xyxy, score[kept], columns[column[kept]], tile[kept])
