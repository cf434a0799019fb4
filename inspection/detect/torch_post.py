"""Post-processing on the model's device: the torch twin of `postprocess.select_detections`.

Same semantics, step for step: decode (SSD box coder / YOLOX grid / YOLOv8 boxes) -> per tile the best
`CANDIDATES_PER_TILE_FACTOR * max_per_tile` (box, class) pairs above the score floor -> at most
`pre_nms_top_k` per (tile, class) -> class-wise greedy NMS at `nms_iou` within each tile ->
`max_per_tile` per tile -> clipped to the tile, dataset class ids.

Split in two so the fixed-shape part can live inside a CUDA graph:
- `TorchCandidates.__call__` (static shapes: decode + `topk` per tile), captured with the network;
- `select_from_candidates` (data-dependent sizes: floor, NMS), run eagerly after each replay.

NMS is torchvision's CUDA kernel when torchvision is importable, else the project's exact numpy
`batched_nms` (CPU torch without torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..boxes import batched_nms as numpy_batched_nms
from ..config import DetectConfig
from ..detections import Detections
from .base import ModelSpec
from .postprocess import CANDIDATES_PER_TILE_FACTOR
from .preprocess import tile_scale
from .ssd import anchors_from_decoder
from .yolox import yolox_grid

try:
    import torchvision
except Exception:  # noqa: BLE001 - a torchvision built for another torch fails with various errors
    torchvision = None

NmsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]

# Boxes per torchvision NMS call: its kernel tests all n² pairs and builds an n×n bit mask, though
# only pairs inside one tile can matter, so calls hold a few whole tiles each (0.001 floor only).
NMS_BOXES_PER_CALL = 4096


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


def numpy_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float, tiles: torch.Tensor | None = None) -> torch.Tensor:
    """The project's exact vectorised numpy NMS, for torch without torchvision."""
    kept = numpy_batched_nms(boxes.cpu().numpy(), scores.cpu().numpy(), groups.cpu().numpy(), iou)
    return torch.from_numpy(kept).to(boxes.device)


def default_nms() -> Callable[..., torch.Tensor]:
    return torchvision_batched_nms if torchvision is not None else numpy_nms


def select_from_candidates(
    candidates: Candidates,
    num_tiles: int,
    class_ids: torch.Tensor,
    config: DetectConfig,
    tile_hw: tuple[int, int],
    floor: float,
    nms: Callable[..., torch.Tensor],
) -> Detections:
    """Floor, top-k per (tile, class), class-wise NMS, per-tile cap, clip -> `Detections` (numpy).

    Only the first `num_tiles` rows of the candidates are read (a CUDA graph runs a full batch).
    class_ids: (C,) int64 dataset id of each score column, on the candidates' device.
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
    kept = nms(boxes, score, groups, config.nms_iou, tile)
    kept = kept[top_k_per_group_torch(score[kept], tile[kept], config.max_per_tile)]
    by_score = kept[torch.argsort(score[kept], descending=True, stable=True)]
    kept = by_score[torch.argsort(tile[by_score], stable=True)]
    th, tw = tile_hw
    limit = torch.tensor([tw, th, tw, th], dtype=torch.float32, device=boxes.device)
    xyxy = torch.minimum(boxes[kept].clamp_min(0), limit)
    # One device->host copy: ids and tile indices are exact in float32 (< 2**24).
    packed = torch.cat([xyxy, score[kept, None], class_ids[column[kept]].float()[:, None], tile[kept].float()[:, None]], 1).cpu().numpy()
    return Detections(packed[:, :4], packed[:, 4], packed[:, 5].astype(np.int32), packed[:, 6].astype(np.int32))
