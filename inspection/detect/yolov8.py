"""Ultralytics YOLOv8 / YOLO11 export decoding (the layout most plants train today), vectorised.

The ONNX export's single output is (N, 4 + C, A): per anchor point the box centre and size
(cx, cy, w, h) in network-input pixels, then C class scores already passed through a sigmoid.
There is no objectness column (unlike YOLOX) and no grid to add (the export decodes boxes itself).
"""

from __future__ import annotations

import numpy as np


def decode_yolov8(raw: np.ndarray, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4 + C, A) export output -> boxes (N, A, 4) xyxy input pixels, scores (N, A, C)."""
    if raw.ndim != 3 or raw.shape[1] < 5:
        raise ValueError(f"YOLOv8 output must be (N, 4 + classes, anchors), got {raw.shape}")
    if num_classes is not None and raw.shape[1] != 4 + num_classes:
        raise ValueError(
            f"YOLOv8 output has {raw.shape[1] - 4} class columns (shape {raw.shape}), the model metadata lists {num_classes}"
        )
    centre, size = raw[:, 0:2], raw[:, 2:4]  # (N, 2, A)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).transpose(0, 2, 1)
    scores = raw[:, 4:].transpose(0, 2, 1)
    return np.ascontiguousarray(boxes, np.float32), np.ascontiguousarray(scores, np.float32)
