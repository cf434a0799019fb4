"""`Detections`: a whole result set as parallel numpy arrays (struct of arrays, no per-box objects)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Detections:
    """N boxes as parallel arrays.

    xyxy: (N, 4) float32, pixels (tile pixels before stitching, frame pixels after).
    score: (N,) float32.
    class_id: (N,) int32, the model's dataset category ids (COCO 91-ids for COCO models).
    tile_index: (N,) int32, index of the tile in the batch (-1 once boxes are in frame pixels
        and no longer belong to one tile, e.g. after a merge of boxes from two tiles).
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    score: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_id: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    tile_index: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyxy", np.asarray(self.xyxy, np.float32).reshape(-1, 4))
        object.__setattr__(self, "score", np.asarray(self.score, np.float32).reshape(-1))
        object.__setattr__(self, "class_id", np.asarray(self.class_id, np.int32).reshape(-1))
        n = len(self.xyxy)
        tile = np.asarray(self.tile_index, np.int32).reshape(-1)
        if tile.size == 0 and n:
            tile = np.full(n, -1, np.int32)
        object.__setattr__(self, "tile_index", tile)
        if not (len(self.score) == len(self.class_id) == len(self.tile_index) == n):
            raise ValueError(
                f"Detections arrays disagree in length: xyxy={n} score={len(self.score)} "
                f"class_id={len(self.class_id)} tile_index={len(self.tile_index)}"
            )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | Sequence[int]) -> Detections:
        """Select by boolean mask, integer index array or slice."""
        return Detections(self.xyxy[index], self.score[index], self.class_id[index], self.tile_index[index])

    @classmethod
    def empty(cls) -> Detections:
        return cls()

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.tile_index for p in parts]),
        )

    def with_score_at_least(self, threshold: float) -> Detections:
        return self[self.score >= threshold]

    def sorted_by_score(self) -> Detections:
        return self[np.argsort(-self.score, kind="stable")]

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]
