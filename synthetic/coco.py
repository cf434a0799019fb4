"""Reading a COCO-format detection dataset: an images directory plus an `instances` JSON.

Annotations are grouped per image into parallel numpy arrays (`ImageAnnotations`), so the
composer transforms a whole image's boxes with array operations. Only what box detection needs
is kept (bbox, category, crowd flag, area); segmentations are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class DatasetError(ValueError):
    """The dataset's JSON or images are not usable; the message names the file and the fix."""


@dataclass(frozen=True)
class ImageInfo:
    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class ImageAnnotations:
    """One image's annotations as parallel arrays (N boxes).

    bbox: (N, 4) float32 xywh in image pixels. category_id: (N,) int32 dataset ids.
    iscrowd: (N,) int8 (1 = crowd region, ignored by COCO evaluation). area: (N,) float32
    (COCO's segmentation area, used for the small/medium/large split). ann_id: (N,) int64.
    """

    bbox: np.ndarray
    category_id: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray
    ann_id: np.ndarray

    def __len__(self) -> int:
        return len(self.bbox)

    @classmethod
    def empty(cls) -> ImageAnnotations:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.int32),
            np.zeros((0,), np.int8),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.int64),
        )


@dataclass(frozen=True)
class CocoDataset:
    """A COCO detection dataset: images sorted by id, annotations grouped per image, categories."""

    images_dir: Path
    images: tuple[ImageInfo, ...]
    annotations: Mapping[int, ImageAnnotations]
    categories: tuple[dict[str, Any], ...]
    _by_id: dict[int, ImageInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {im.id: im for im in self.images})

    @classmethod
    def load(cls, images_dir: str | Path, annotations_json: str | Path) -> CocoDataset:
        """Read `annotations_json` (COCO instances format); images are looked up in `images_dir`."""
        images_dir = Path(images_dir)
        path = Path(annotations_json)
        if not path.is_file():
            raise DatasetError(f"annotations file {path} does not exist (pass the COCO instances JSON)")
        if not images_dir.is_dir():
            raise DatasetError(f"images directory {images_dir} does not exist (pass the folder holding the dataset's images)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"annotations file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, images_dir, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], images_dir: str | Path, source: str = "<dict>") -> CocoDataset:
        """Build from an already parsed COCO dict (`images`, `annotations`, `categories`)."""
        missing = [k for k in ("images", "annotations", "categories") if k not in data]
        if missing:
            raise DatasetError(f"{source} lacks COCO key(s) {', '.join(missing)}; expected a COCO instances file")
        try:
            images = tuple(
                sorted(
                    (
                        ImageInfo(int(im["id"]), str(im["file_name"]), int(im["width"]), int(im["height"]))
                        for im in data["images"]
                    ),
                    key=lambda im: im.id,
                )
            )
        except KeyError as exc:
            raise DatasetError(f"{source}: an image entry lacks {exc}; COCO images need id, file_name, width, height") from None
        ids = [im.id for im in images]
        if len(set(ids)) != len(ids):
            raise DatasetError(f"{source}: image ids are not unique")
        return cls(Path(images_dir), images, _group_annotations(data["annotations"], set(ids), source), tuple(data["categories"]))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_ids(self) -> np.ndarray:
        """(N,) int64 image ids in ascending order (the order seeded permutations index into)."""
        return np.asarray([im.id for im in self.images], np.int64)

    def image_info(self, image_id: int) -> ImageInfo:
        try:
            return self._by_id[int(image_id)]
        except KeyError:
            raise KeyError(f"image id {image_id} is not in the dataset") from None

    def annotations_for(self, image_id: int) -> ImageAnnotations:
        return self.annotations.get(int(image_id), ImageAnnotations.empty())

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB (grayscale files are expanded to three channels)."""
        info = self.image_info(image_id)
        path = self.images_dir / info.file_name
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read image {path} (image id {info.id}); is images_dir the dataset's image folder?")
        h, w = bgr.shape[:2]
        if (w, h) != (info.width, info.height):
            raise DatasetError(
                f"image {path} is {w}×{h} but the annotations say {info.width}×{info.height}; "
                "images and annotations JSON do not belong together"
            )
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _group_annotations(anns: list[dict[str, Any]], image_ids: set[int], source: str) -> dict[int, ImageAnnotations]:
    """Group annotations per image into arrays with one sort (no per-image Python lists of dicts)."""
    if not anns:
        return {}
    try:
        img = np.fromiter((a["image_id"] for a in anns), np.int64, len(anns))
        bbox = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        cat = np.fromiter((a["category_id"] for a in anns), np.int32, len(anns))
        crowd = np.fromiter((a.get("iscrowd", 0) for a in anns), np.int8, len(anns))
        area = np.fromiter((a["area"] if "area" in a else a["bbox"][2] * a["bbox"][3] for a in anns), np.float32, len(anns))
        ann_id = np.fromiter((a["id"] for a in anns), np.int64, len(anns))
    except (KeyError, ValueError, TypeError) as exc:
        raise DatasetError(
            f"{source}: malformed annotation ({exc}); COCO annotations need id, image_id, bbox [x,y,w,h], category_id"
        ) from None
    unknown = np.setdiff1d(img, np.fromiter(image_ids, np.int64, len(image_ids)))
    if unknown.size:
        raise DatasetError(f"{source}: annotations refer to image ids missing from `images`, e.g. {unknown[:5].tolist()}")
    order = np.argsort(img, kind="stable")
    img = img[order]
    starts = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])
    ends = np.r_[starts[1:], len(img)]
    out: dict[int, ImageAnnotations] = {}
    for s, e in zip(starts, ends):
        sel = order[s:e]
        out[int(img[s])] = ImageAnnotations(bbox[sel], cat[sel], crowd[sel], area[sel], ann_id[sel])
    return out
