"""Post-processing on the model's device: the torch twin of `postprocess.select_detections`.

Same semantics, step for step: decode (SSD box coder / YOLOX grid / YOLOv8 boxes) -> per tile the best
`CANDIDATES_PER_TILE_FACTOR * max_per_tile` (box, class) pairs above the score floor -> at most
`pre_nms_top_k` per (tile, class) -> class-wise greedy NMS at `nms_iou` within each tile ->
`max_per_tile` per tile -> clipped to the tile, dataset class ids.

Split in two so the fixed-shape part can live inside a CUDA graph:
- `TorchCandidates.__call__` (static shapes: decode + `topk` per tile), captured with the network;
- `select_from_candidates` (data-dependent sizes: floor, NMS), run eagerly after each replay.

Its cost follows the boxes it must look at, not the boxes above the floor: a tile keeps at most
`max_per_tile` boxes, so NMS first runs on each tile's best `PREFIX_FACTOR * max_per_tile`
candidates, and only tiles that keep fewer than `max_per_tile` of them go on to a longer prefix.
This is exact (greedy NMS decides a box from higher-scoring boxes only). At COCO's 0.001 floor (64
real tiles: 87,000 candidates after the per-class top-k, 5.8 M same-class pairs) the first round
holds 19,200 boxes and 0.9 M pairs, and 5 of 64 tiles need a second round.

NMS (`default_nms`): on CUDA `tile_dense_nms`, exact greedy NMS as dense per-tile tensor operations;
on the CPU the project's numpy `batched_nms`. `torchvision_batched_nms` (torchvision's kernel in
calls of whole tiles) is kept for comparison in tests/gpu/torch_timing.py. All three are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..boxes import batched_nms as numpy_batched_nms
from ..config import DetectConfig
from ..detections import Detections
from .base import ModelSpec
from .postprocess import CANDIDATES_PER_TILE_FACTOR, ArrayOps, nms_within_reach
from .preprocess import tile_scale
from .ssd import anchors_from_decoder
from .yolox import yolox_grid

try:
    import torchvision
except Exception:
    torchvision = None

# Boxes per torchvision NMS call: its kernel tests all n² pairs and builds an n×n bit mask, though
# only pairs inside one tile can matter, so calls hold a few whole tiles each (0.001 floor only).
NMS_BOXES_PER_CALL = 4096
# First NMS round per tile: its best PREFIX_FACTOR * max_per_tile candidates (measured on coco_tiny
# at the 0.001 floor: about half of them survive NMS, so 3x leaves few tiles to a second round).
PREFIX_FACTOR = 3
# Matrix entries (box pairs of one tile) per step of `tile_dense_nms`: 4 M entries, ~160 MB of work space.
TILE_NMS_PAIRS_PER_STEP = 4 * 1024 * 1024


def have_torchvision_nms() -> bool:
    return torchvision is not None


@dataclass(frozen=True)
class Candidates:
    """The best (box, class) pairs of each tile, fixed shapes: score (N, P), column (N, P) score
    column index, boxes (N, P, 4) xyxy in tile pixels. Pairs at or under the floor are still here."""

    score: torch.Tensor
    column: torch.Tensor
    boxes: torch.Tensor


class TorchCandidates:
    """Raw output tensors -> `Candidates`, all fixed-shape tensor ops (CUDA-graph capturable)."""

    def __init__(self, spec: ModelSpec, config: DetectConfig, tile_hw: tuple[int, int], device: torch.device) -> None:
        self.spec = spec
        self.kind = spec.decoder["type"]
        self.names = spec.decoder["outputs"]
        ih, iw = spec.input_size
        scale = torch.as_tensor(tile_scale(spec, tile_hw), dtype=torch.float32, device=device)
        if self.kind == "ssd_box_coder":
            # Decoding stays in the encoder's (y, x) order and flips to (x, y) at the end: indexing with
            # a Python list inside a CUDA-graph capture would be an unrecordable host->device copy.
            anchors = torch.as_tensor(anchors_from_decoder(spec.decoder), dtype=torch.float32, device=device)
            self.anchor_centre = (anchors[:, :2] + anchors[:, 2:]) / 2  # (A, 2) yc, xc
            self.anchor_size = anchors[:, 2:] - anchors[:, :2]  # (A, 2) h, w
            self.inv_scales = 1.0 / torch.tensor(spec.decoder["scales"], dtype=torch.float32, device=device)  # ty, tx, th, tw
            self.to_pixels = torch.tensor([iw, ih, iw, ih], dtype=torch.float32, device=device) * scale
        elif self.kind == "yolox":
            grid, stride = yolox_grid(spec.input_size, spec.decoder["strides"])
            self.grid = torch.as_tensor(grid, device=device)
            self.stride = torch.as_tensor(stride, device=device)[:, None]
            self.to_pixels = scale
        elif self.kind == "yolov8":
            self.to_pixels = scale
        else:
            raise ValueError(f"model {spec.name}: unknown decoder {self.kind!r}")
        columns = spec.num_columns
        self.background = torch.as_tensor(list(spec.background_columns), dtype=torch.int64, device=device)
        self.per_tile = CANDIDATES_PER_TILE_FACTOR * config.max_per_tile
        self.num_columns = columns

    def decode(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> boxes (N, A, 4) xyxy tile pixels, scores (N, A, C) float32 (same maths as OutputDecoder)."""
        if self.kind == "ssd_box_coder":
            enc = outputs[self.names["boxes"]].float()
            enc = enc.reshape(enc.shape[0], -1, 4) * self.inv_scales  # (ty, tx, th, tw)
            centre = enc[..., :2] * self.anchor_size + self.anchor_centre  # (yc, xc)
            half = torch.exp(enc[..., 2:]) * self.anchor_size / 2  # (h/2, w/2)
            boxes = torch.cat([(centre - half).flip(-1), (centre + half).flip(-1)], -1) * self.to_pixels
            return boxes, outputs[self.names["scores"]].float()
        raw = outputs[self.names["predictions"]].float()
        if self.kind == "yolov8":  # (N, 4 + C, A): cx, cy, w, h in input pixels, sigmoid scores
            raw = raw.transpose(1, 2)
            half = raw[..., 2:4] / 2
            boxes = torch.cat([raw[..., :2] - half, raw[..., :2] + half], -1) * self.to_pixels
            return boxes, raw[..., 4:]
        centre = (raw[..., :2] + self.grid) * self.stride
        half = torch.exp(raw[..., 2:4]) * self.stride / 2
        boxes = torch.cat([centre - half, centre + half], -1) * self.to_pixels
        return boxes, raw[..., 4:5] * raw[..., 5:]

    def __call__(self, outputs: dict[str, torch.Tensor]) -> Candidates:
        boxes, scores = self.decode(outputs)
        n, a, c = scores.shape
        if self.background.numel():
            # Scores are >= 0 and the floor is >= 0, so -1 keeps background columns out for good.
            scores = scores.index_fill(2, self.background, -1.0)
        k = min(self.per_tile, a * c)
        score, index = torch.topk(scores.reshape(n, a * c), k, dim=1, sorted=False)
        anchor = torch.div(index, c, rounding_mode="floor")
        picked = torch.gather(boxes, 1, anchor[..., None].expand(n, k, 4))
        return Candidates(score, index % c, picked)


def top_k_per_group_torch(scores: torch.Tensor, groups: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores within each group, ordered by group then best score first.

    scores (N,), groups (N,) int64 -> (M,) int64; the torch twin of `boxes.top_k_per_group`.
    """
    n = scores.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(groups[by_score], stable=True)]
    g = groups[order]
    position = torch.arange(n, device=scores.device)
    is_start = torch.ones(n, dtype=torch.bool, device=scores.device)
    is_start[1:] = g[1:] != g[:-1]
    start = torch.cummax(torch.where(is_start, position, torch.zeros_like(position)), 0).values
    return order[position - start < k]


def _offset_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float) -> torch.Tensor:
    """torchvision.ops.batched_nms's coordinate trick (each group shifted to its own region) in
    float64: with thousands of groups the shifts reach ~1e6, where float32 would round the IoU."""
    b = boxes.double()
    low = b.min()
    span = b.max() - low + 1
    shifted = b - low + (groups.double() * span)[:, None]
    return torchvision.ops.nms(shifted, scores.double(), iou)


def torchvision_batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    iou: float,
    tiles: torch.Tensor | None = None,
    max_boxes_per_call: int = NMS_BOXES_PER_CALL,
) -> torch.Tensor:
    """Greedy NMS within each group on the boxes' device; (K,) indices, best score first.

    boxes (N, 4) xyxy, scores (N,), groups (N,) int64; tiles (N,) int64 (groups never span tiles).
    Suppresses IoU > iou, like `boxes.batched_nms`. With more than `max_boxes_per_call` boxes (the
    0.001 score floor of COCO evaluation) whole tiles are grouped into calls of bounded size.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if n <= max_boxes_per_call or tiles is None:
        return _offset_nms(boxes, scores, groups, iou)
    order = torch.argsort(tiles, stable=True)
    counts = torch.bincount(tiles[order]).cpu().numpy()
    ends = np.cumsum(counts)
    kept = []
    start = 0
    # A loop over chunks of whole tiles (tens at the 0.001 floor), not over tiles or boxes.
    while start < n:
        fits = np.searchsorted(ends, start + max_boxes_per_call, side="right") - 1  # last tile end within the budget
        stop = int(ends[fits]) if fits >= 0 and ends[fits] > start else int(ends[np.searchsorted(ends, start, side="right")])
        part = order[start:stop]
        kept.append(part[_offset_nms(boxes[part], scores[part], groups[part], iou)])
        start = stop
    kept_all = torch.cat(kept)
    return kept_all[torch.argsort(scores[kept_all], descending=True, stable=True)]


def tile_dense_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    iou: float,
    tiles: torch.Tensor | None = None,
    max_pairs_per_step: int = TILE_NMS_PAIRS_PER_STEP,
) -> torch.Tensor:
    """Greedy NMS within each group on the boxes' device, tile by tile as dense matrices; (K,) indices,
    best score first, exactly `boxes.batched_nms` (same order, same float64 IoU, suppresses IoU > iou).

    boxes (N, 4) xyxy, scores (N,), groups (N,) int64; tiles (N,) int64, groups never span tiles
    (None: one tile). Each tile's boxes, best first, form a row of a (tiles, W, W) "suppresses" matrix
    (same group, IoU > iou, higher in the order); the greedy keep mask is its fixed point, found in
    (longest suppression chain + 1) steps of whole-batch tensor operations: no per-box work, no
    host round trip but one sync per step. Tiles are processed in slices of at most
    `max_pairs_per_step` matrix entries, which bounds the working memory (~40 B per entry).
    """
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    tiles = torch.zeros(n, dtype=torch.int64, device=device) if tiles is None else tiles
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(tiles[by_score], stable=True)]  # tile-major, best first
    tile_sorted = tiles[order]
    _, inverse, counts = torch.unique_consecutive(tile_sorted, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=device) - starts[inverse]
    width = int(counts.max())
    index = torch.full((counts.numel(), width), -1, dtype=torch.int64, device=device)
    index[inverse, rank] = order
    ahead = torch.ones((width, width), dtype=torch.bool, device=device).triu_(1)  # row i is ahead of column j
    per_step = max(1, max_pairs_per_step // (width * width))
    kept_parts = []
    for start in range(0, counts.numel(), per_step):
        rows = index[start : start + per_step]
        valid = rows >= 0
        safe = rows.clamp_min(0)
        b = boxes[safe].double()  # (T, W, 4)
        g = groups[safe]
        x1, y1, x2, y2 = b.unbind(-1)
        iw = (torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :])).clamp_min_(0)
        ih = (torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :])).clamp_min_(0)
        inter = iw.mul_(ih)
        del ih
        area = (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0)
        union = area[:, :, None] + area[:, None, :] - inter
        overlap = torch.where(union > 0, inter / union.where(union > 0, 1.0), 0.0) > iou
        del inter, union
        suppresses = overlap & ahead & (g[:, :, None] == g[:, None, :]) & valid[:, :, None]
        keep = valid
        while True:
            new_keep = valid & ~(suppresses & keep[:, :, None]).any(1)
            if torch.equal(new_keep, keep):
                break
            keep = new_keep
        kept_parts.append(rows[keep])
    kept = torch.cat(kept_parts)
    # The order of `boxes.batched_nms`: group-major, then best score first (stable) overall.
    kept = kept[torch.argsort(groups[kept], stable=True)]
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


def numpy_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float, tiles: torch.Tensor | None = None
) -> torch.Tensor:
    """The project's exact vectorised numpy NMS, for torch without torchvision."""
    kept = numpy_batched_nms(boxes.cpu().numpy(), scores.cpu().numpy(), groups.cpu().numpy(), iou)
    return torch.from_numpy(kept).to(boxes.device)


def default_nms(device: torch.device) -> Callable[..., torch.Tensor]:
    """On CUDA `tile_dense_nms` (whole-batch tensor operations; torchvision's kernel copies its
    suppression mask to the host and loops there, once per call); on the CPU the numpy NMS, which
    only visits same-group pairs: at the operating threshold the dense matrices cost more there
    (`select_from_candidates` on 64 tiles, 2-core machine: 143 ms against 695 ms at 0.3, 2.5 s
    against 2.0 s at 0.001; benchmarks/cpu-2core/post_scaling.py). All give the same result."""
    return tile_dense_nms if device.type == "cuda" else numpy_nms


def _tile_major_order(score: torch.Tensor, tile: torch.Tensor) -> torch.Tensor:
    # Best first inside each tile; ties keep their input order (as the NMS's own sort does).
    by_score = torch.argsort(score, descending=True, stable=True)
    return by_score[torch.argsort(tile[by_score], stable=True)]


# `postprocess.nms_within_reach` (the one definition of the prefix rule) on tensors of any device.
TORCH_OPS = ArrayOps(
    tile_major_order=_tile_major_order,
    rank_in_tile=lambda tile_sorted: (
        torch.arange(tile_sorted.numel(), device=tile_sorted.device) - torch.searchsorted(tile_sorted, tile_sorted)
    ),
    bincount=lambda values, minlength: torch.bincount(values, minlength=minlength),
    all_true=lambda count: torch.ones_like(count, dtype=torch.bool),
    concat=torch.cat,
)


def select_from_candidates(
    candidates: Candidates,
    num_tiles: int,
    class_ids: torch.Tensor,
    config: DetectConfig,
    tile_hw: tuple[int, int],
    floor: float,
    nms: Callable[..., torch.Tensor],
    first_prefix: int | None = None,
) -> Detections:
    """Floor, top-k per (tile, class), class-wise NMS, per-tile cap, clip -> `Detections` (numpy).

    Only the first `num_tiles` rows of the candidates are read (a CUDA graph runs a full batch).
    class_ids: (C,) int64 dataset id of each score column, on the candidates' device.
    first_prefix: boxes per tile in the first NMS round (`nms_within_reach`); default
    PREFIX_FACTOR * max_per_tile. The result does not depend on it.
    """
    score_all = candidates.score[:num_tiles]
    tile, slot = torch.nonzero(score_all > floor, as_tuple=True)
    if tile.numel() == 0:
        return Detections.empty()
    score = score_all[tile, slot]
    column = candidates.column[:num_tiles][tile, slot]
    boxes = candidates.boxes[:num_tiles][tile, slot]
    groups = tile * class_ids.numel() + column
    pick = top_k_per_group_torch(score, groups, config.pre_nms_top_k)
    tile, column, score, groups, boxes = tile[pick], column[pick], score[pick], groups[pick], boxes[pick]
    prefix = PREFIX_FACTOR * config.max_per_tile if first_prefix is None else first_prefix
    kept = nms_within_reach(boxes, score, groups, tile, config.nms_iou, config.max_per_tile, prefix, nms=nms, ops=TORCH_OPS)
    kept = kept[top_k_per_group_torch(score[kept], tile[kept], config.max_per_tile)]
    by_score = kept[torch.argsort(score[kept], descending=True, stable=True)]
    kept = by_score[torch.argsort(tile[by_score], stable=True)]
    th, tw = tile_hw
    limit = torch.tensor([tw, th, tw, th], dtype=torch.float32, device=boxes.device)
    xyxy = torch.minimum(boxes[kept].clamp_min(0), limit)
    # One device->host copy: ids and tile indices are exact in float32 (< 2**24).
    packed = (
        torch.cat([xyxy, score[kept, None], class_ids[column[kept]].float()[:, None], tile[kept].float()[:, None]], 1)
        .cpu()
        .numpy()
    )
    return Detections(packed[:, :4], packed[:, 4], packed[:, 5].astype(np.int32), packed[:, 6].astype(np.int32))
