"""SSD (TF Object Detection API) anchors and box decoding, vectorised over the whole batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def ssd_anchors(
    feature_maps: Sequence[int],
    min_scale: float,
    max_scale: float,
    aspect_ratios: Sequence[float],
    interpolated_scale_aspect_ratio: float = 1.0,
    reduce_boxes_in_lowest_layer: bool = True,
) -> np.ndarray:
    """TF OD API `multiple_grid_anchor_generator` for a square input -> (A, 4) float32
    (ymin, xmin, ymax, xmax) normalised; order: layer, then row, column, box.
    """
    num_layers = len(feature_maps)
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    layers = []
    for layer, size in enumerate(feature_maps):
        if layer == 0 and reduce_boxes_in_lowest_layer:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], ar) for ar in aspect_ratios]
            if interpolated_scale_aspect_ratio > 0:
                specs.append((np.sqrt(scales[layer] * scales[layer + 1]), interpolated_scale_aspect_ratio))
        box_scale = np.array([s for s, _ in specs])
        ratio_sqrt = np.sqrt(np.array([r for _, r in specs]))
        heights, widths = box_scale / ratio_sqrt, box_scale * ratio_sqrt
        centres = (np.arange(size) + 0.5) / size
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # (size, size)
        cy = np.broadcast_to(cy[..., None], (size, size, len(specs)))
        cx = np.broadcast_to(cx[..., None], (size, size, len(specs)))
        boxes = np.stack([cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2], axis=-1)
        layers.append(boxes.reshape(-1, 4))
    return np.concatenate(layers).astype(np.float32)


def anchors_from_decoder(decoder: dict[str, Any]) -> np.ndarray:
    params = dict(decoder["anchors"])
    kind = params.pop("type")
    if kind != "ssd_multiple_grid":
        raise ValueError(f"unknown anchor generator {kind!r}")
    return ssd_anchors(**params)


def decode_ssd_boxes(encodings: np.ndarray, anchors: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    """SSD box coder: (N, A, 4) (ty, tx, th, tw) + (A, 4) anchors -> (N, A, 4) xyxy normalised."""
    enc = encodings.reshape(encodings.shape[0], -1, 4)
    ya = (anchors[:, 0] + anchors[:, 2]) / 2
    xa = (anchors[:, 1] + anchors[:, 3]) / 2
    ha = anchors[:, 2] - anchors[:, 0]
    wa = anchors[:, 3] - anchors[:, 1]
    ty, tx, th, tw = (enc[..., i] / scales[i] for i in range(4))
    yc, xc = ty * ha + ya, tx * wa + xa
    h, w = np.exp(th) * ha, np.exp(tw) * wa
    return np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=-1).astype(np.float32)
