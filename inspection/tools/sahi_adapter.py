"""SAHI (optional extra `[sahi]`) around one of our detectors: the anchor of the scene table.

`sahi_detections` runs `sahi.predict.get_sliced_prediction` on a frame with SAHI's own slicing
and merging (its defaults: 300×300 slices, overlap 0.2, a standard prediction of the whole image,
GREEDYNMM / IoS 0.5), our detector doing the inference: slices go to `detect` in batches of up to
`batch_size` (SAHI's `batch_size` argument), the whole image is resized to one tile as our own
global view is. SAHI's auto-switch to NMS below a 0.1 score floor is turned off
(`force_postprocess_type`) so the same merge is measured at every floor; `force=False` keeps it
(SAHI's default use at COCO's 0.001 floor: NMS / IoU), the table shows both.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..detections import Detections


class SahiNotInstalled(ImportError):
    """sahi is not installed; the message names the extra."""


def _require_sahi() -> Any:
    try:
        import sahi  # noqa: F401
        from sahi.models.base import DetectionModel
    except ImportError as exc:
        raise SahiNotInstalled(f"sahi is not installed ({exc}); pip install -e '.[sahi]'") from None
    return DetectionModel


def make_sahi_model(detector: Any, score_floor: float, tile_size: int, batch_size: int = 64) -> Any:
    """A `sahi.models.base.DetectionModel` whose inference is `detector.detect` on uint8 RGB tiles."""
    DetectionModel = _require_sahi()
    from sahi.prediction import ObjectPrediction
    from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

    class InspectionDetectionModel(DetectionModel):  # type: ignore[misc, valid-type]
        def load_model(self) -> None:
            raise RuntimeError("pass the detector with model=")

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self.category_mapping = {str(k): v for k, v in model.spec.class_names.items()}

        def set_device(self, device: str | None = None) -> None:  # the detector owns its device
            self.device = device

        def _tile(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
            h, w = image.shape[:2]
            if (h, w) == (tile_size, tile_size):
                return image, (1.0, 1.0)
            return cv2.resize(image, (tile_size, tile_size), interpolation=cv2.INTER_AREA), (w / tile_size, h / tile_size)

        def _run(self, images: list[np.ndarray]) -> list[Detections]:
            tiles, scales = zip(*(self._tile(np.ascontiguousarray(im)) for im in images))
            batch = np.stack(tiles)
            parts = []
            for s in range(0, len(batch), batch_size):
                d = self.model.detect(batch[s : s + batch_size], score_threshold=self.confidence_threshold)
                parts.append(Detections(d.xyxy, d.score, d.class_id, d.tile_index + s))
            d = Detections.merge(parts)
            out = []
            for k, (sx, sy) in enumerate(scales):
                mine = d[d.tile_index == k]
                out.append(Detections(mine.xyxy * np.array([sx, sy, sx, sy], np.float32), mine.score, mine.class_id))
            return out

        def perform_inference(self, image: np.ndarray) -> None:
            self._original_predictions = self._run([image])

        def perform_batch_inference(self, images: list[np.ndarray]) -> None:
            self._batch_images = None  # inference happens here, in one batched call
            self._original_predictions = self._run(images)

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: Any = [[0, 0]],  # noqa: B006 - SAHI's own signature
            full_shape_list: Any = None,
        ) -> None:
            shifts = fix_shift_amount_list(shift_amount_list)
            shapes = fix_full_shape_list(full_shape_list)
            per_image = []
            for k, d in enumerate(self._original_predictions):
                shift = shifts[k] if k < len(shifts) else [0, 0]
                shape = shapes[k] if shapes is not None and k < len(shapes) else None
                per_image.append(
                    [
                        ObjectPrediction(
                            bbox=box,
                            category_id=int(c),
                            category_name=self.category_mapping.get(str(int(c)), str(int(c))),
                            score=float(s),
                            shift_amount=shift,
                            full_shape=shape,
                        )
                        for box, s, c in zip(d.xyxy.tolist(), d.score.tolist(), d.class_id.tolist())
                        if box[2] > box[0] and box[3] > box[1]
                    ]
                )
            self._object_prediction_list_per_image = per_image

    return InspectionDetectionModel(model=detector, confidence_threshold=score_floor, load_at_init=True)


def sahi_detections(
    model: Any, frame: np.ndarray, *, slice_size: int = 300, overlap_ratio: float = 0.2, batch_size: int = 64, force: bool = True
) -> Detections:
    """SAHI's sliced prediction of one (H, W, 3) RGB frame -> frame-pixel Detections (GREEDYNMM, IoS 0.5).

    force=False leaves SAHI's own switch on: below a 0.1 score floor it merges with NMS / IoU instead
    (SAHI's default behaviour at COCO's 0.001 evaluation floor, and the stronger anchor there).
    """
    from sahi.predict import get_sliced_prediction

    result = get_sliced_prediction(
        frame,
        model,
        slice_height=slice_size,
        slice_width=slice_size,
        overlap_height_ratio=overlap_ratio,
        overlap_width_ratio=overlap_ratio,
        perform_standard_pred=True,
        postprocess_type="GREEDYNMM",
        postprocess_match_metric="IOS",
        postprocess_match_threshold=0.5,
        verbose=0,
        batch_size=batch_size,
        force_postprocess_type=force,
    )
    return predictions_to_detections(result.object_prediction_list)


def predictions_to_detections(preds: list[Any]) -> Detections:
    """SAHI's merged `ObjectPrediction` list (frame pixels) -> (N,) Detections."""
    if not preds:
        return Detections.empty()
    xyxy = np.asarray([p.bbox.to_xyxy() for p in preds], np.float32)
    return Detections(xyxy, [p.score.value for p in preds], [p.category.id for p in preds])
