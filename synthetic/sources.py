"""Line frame sources, in one place: what a camera of the simulated line shoots.

A `FrameSource` maps (car index, camera, shot) to an RGB (H, W, 3) uint8 frame or an already
encoded JPEG. Three kinds, chosen by `frame_source` (the `inspection produce --source` option):

- ``photos``: mosaics of the built-in sample photos (`photos.PhotoFrameSource`, the demo's);
- ``coco``: mosaics of a COCO dataset, with ground truth (`compose.MosaicFrameSource`);
- ``dir``: the JPEG files of a folder, cycled (`DirectoryFrameSource`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Union

import numpy as np

from inspection.tiling import TileGrid

SOURCE_KINDS = ("photos", "coco", "dir")


class FrameSource(Protocol):
    """(car_index, camera, shot) -> RGB uint8 (H, W, 3) frame, or an already encoded JPEG; deterministic."""

    def __call__(self, car_index: int, camera: int, shot: int) -> Union[np.ndarray, bytes]: ...


class SourceChoiceError(ValueError):
    """The source's options do not fit together; the message names the right call."""


class DirectoryFrameSource:
    """The .jpg/.jpeg files of a folder, sorted, cycled over (car, camera, shot); sent as they are."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise SourceChoiceError(f"--source dir needs --images DIR of JPEG frames; {folder} is no directory")
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not self.files:
            raise SourceChoiceError(f"no .jpg files in {folder}")

    def __call__(self, car_index: int, camera: int, shot: int) -> bytes:
        return self.files[(car_index * 1000 + camera * 100 + shot) % len(self.files)].read_bytes()


def frame_source(kind: str, grid: TileGrid, images: Path | None = None, annotations: Path | None = None) -> FrameSource:
    """The line frame source `kind` (one of SOURCE_KINDS); SourceChoiceError names a missing or wrong option."""
    if images is not None and not images.is_dir():
        raise SourceChoiceError(f"--images {images}: no such directory")
    if annotations is not None and not annotations.is_file():
        raise SourceChoiceError(f"--annotations {annotations}: no such file (a COCO instances JSON)")
    if kind == "photos":
        from .photos import PhotoFrameSource

        return PhotoFrameSource(grid)
    if kind == "coco":
        from .coco import CocoDataset
        from .compose import MosaicFrameSource

        if not images or not annotations:
            raise SourceChoiceError("--source coco needs --images DIR and --annotations instances.json")
        return MosaicFrameSource(CocoDataset.load(images, annotations), grid)
    if kind == "dir":
        if not images:
            raise SourceChoiceError("--source dir needs --images DIR of JPEG frames")
        return DirectoryFrameSource(images)
    raise SourceChoiceError(f"unknown --source {kind!r} (allowed: {', '.join(SOURCE_KINDS)})")
