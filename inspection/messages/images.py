"""The payload's image: its size from the header alone, strict decoding to RGB, JPEG encoding.

`decode_image` turns a payload into an (H, W, 3) uint8 RGB array and raises `ImageError` (corrupt,
truncated, not an image) or `ImageSizeError` (not the configured grid's size, refused from the
header before any decoding when it names the size).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import simplejpeg

from .errors import ImageError, ImageSizeError


def image_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) read from a JPEG's (libjpeg-turbo's header parser) or a PNG's IHDR header
    without decoding; None when neither names a size."""
    if payload[:8] == b"\x89PNG\r\n\x1a\n" and len(payload) >= 24:
        width, height = struct.unpack(">II", payload[16:24])
        return int(width), int(height)
    if payload[:2] != b"\xff\xd8":
        return None
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(bytes(payload))
    except ValueError:
        return None
    return int(width), int(height)


def _check_size(width: int, height: int, expected_wh: tuple[int, int] | None, what: str) -> None:
    if expected_wh is not None and (width, height) != tuple(expected_wh):
        ew, eh = expected_wh
        raise ImageSizeError(
            f"{what} is {width}×{height}, grid expects {ew}×{eh} (configs: grid.frame_width / grid.frame_height)",
            field="payload",
        )


def check_frame_size(payload: bytes, expected_wh: tuple[int, int] | None, what: str = "frame") -> None:
    """Refuse a wrong-size frame from its image header alone, before any decoding (ImageSizeError)."""
    size = image_size(payload)
    if size is not None:
        _check_size(*size, expected_wh, what)


def decode_image(
    payload: bytes,
    expected_wh: tuple[int, int] | None = None,
    *,
    what: str = "frame",
) -> np.ndarray:
    """Decode a JPEG/PNG payload to an (H, W, 3) uint8 RGB array.

    `expected_wh` = (width, height) of the configured grid; a mismatch raises ImageSizeError
    before the (costly) decode when the header reveals the size. A corrupt or truncated image
    raises ImageError. `what` names the frame in messages (e.g. `FrameMessage.label`).
    Callers re-raise with the record's RecordRef for dead letters.
    """
    data = bytes(payload)
    if not data:
        raise ImageError(f"{what}: payload is empty", field="payload")
    is_jpeg = data[:2] == b"\xff\xd8"
    if is_jpeg and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        # libjpeg fills a truncated scan with grey and only warns; a missing EOI marker catches it.
        raise ImageError(f"{what}: JPEG is truncated (no end-of-image marker) after {len(data)} bytes", field="payload")
    check_frame_size(data, expected_wh, what)
    if is_jpeg:
        try:
            # libjpeg-turbo in strict mode: a damaged scan is an error, not a grey-filled frame
            # (OpenCV only prints libjpeg's "premature end of data segment" warning and returns it).
            image = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as exc:
            raise ImageError(f"{what}: corrupt JPEG of {len(data)} bytes ({exc})", field="payload") from None
        _check_size(image.shape[1], image.shape[0], expected_wh, what)
        return image
    buf = np.frombuffer(data, np.uint8)
    try:
        if hasattr(cv2, "IMREAD_COLOR_RGB"):
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
        else:  # OpenCV < 4.10
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if image is not None:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    except cv2.error as exc:
        raise ImageError(f"{what}: image cannot be decoded ({exc})", field="payload") from None
    if image is None:
        kind = "JPEG" if is_jpeg else "image (not JPEG/PNG?)"
        raise ImageError(f"{what}: corrupt {kind} of {len(data)} bytes, OpenCV cannot decode it", field="payload")
    _check_size(image.shape[1], image.shape[0], expected_wh, what)
    return image


def encode_image(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG-encode an (H, W, 3) uint8 RGB array (quality 1..100)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"encode_image needs an (H, W, 3) uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality} out of range 1..100 (configs: line.jpeg_quality)")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV failed to JPEG-encode an array of shape {rgb.shape}")
    return buf.tobytes()
