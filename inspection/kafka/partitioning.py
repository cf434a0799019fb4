"""Which partition a frame goes to: even shares of every car for any consumer count dividing P.

Hashing the key `car:camera` puts a car's 95 frames on at most five partitions (one per camera),
so four consumers got 2/1/1/1 of its cameras. Producers now choose the partition themselves:

    partition = frame index within the car mod P,   frame index = camera * shots_per_camera + shot

so partition p holds ceil or floor of 95/P frames of every car, and C consumers that each own P/C
partitions (C divides P; the default P = 12 is divisible by 1, 2, 3, 4 and 6) get an equal share
of every car, within P/C frames. The key stays `car:camera` (the contract's check and compacting
tools keep working); a producer that still hashes the key is still correct, only less even.
One camera's shots are no longer in order on one partition: nothing downstream relied on it
(frames are upserted by (car, camera, shot), a car completes on its count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def frame_index(camera: int | np.ndarray, shot: int | np.ndarray, shots_per_camera: int) -> int | np.ndarray:
    """A frame's position within its car, 0 .. cameras*shots_per_camera - 1 (ints or arrays)."""
    return camera * shots_per_camera + shot


@dataclass(frozen=True)
class FramePartitioner:
    """`partition(camera, shot)` for a topic of `partitions` partitions and a line of `shots_per_camera`."""

    shots_per_camera: int
    partitions: int

    def __post_init__(self) -> None:
        if self.shots_per_camera <= 0 or self.partitions <= 0:
            raise ValueError(
                f"FramePartitioner needs shots_per_camera > 0 and partitions > 0, got {self.shots_per_camera}, {self.partitions}"
            )

    def partition(self, camera: int | np.ndarray, shot: int | np.ndarray) -> int | np.ndarray:
        return frame_index(camera, shot, self.shots_per_camera) % self.partitions
