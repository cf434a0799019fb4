"""Thumbnails of stored frames: DCT-domain downscaling, cached on disk by content.

libjpeg-turbo (through simplejpeg) decodes the JPEG at 1/2, 1/4 or 1/8 of its size by keeping only
the low frequencies of each 8×8 block: a 2700×2100 frame becomes 338×263 without decoding it at
full size; a smaller thumbnail is then area-averaged from those 338×263 pixels. The result is re-encoded and kept under
`root/ab/<sha256 of the original>-w<width>.jpg`: the original's digest (its image-store URI)
names the thumbnail, so a frame's thumbnail is made once, shared by every frame with the same
bytes, and never stale. Writes are atomic (`files.write_atomic`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import simplejpeg

from ..files import write_atomic

THUMB_WIDTHS = (160, 320)  # the sizes served (bounded: a request cannot fill the cache with sizes)
THUMB_QUALITY = 70


class ThumbnailCache:
    """`get(digest, jpeg_bytes_loader, width) -> thumbnail bytes`, made on first request."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path_for(self, digest: str, width: int) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"thumbnail key {digest!r} is not a sha256 hex digest")
        if width not in THUMB_WIDTHS:
            raise ValueError(f"thumbnail width {width} not offered (allowed: {', '.join(map(str, THUMB_WIDTHS))})")
        return self.root / digest[:2] / f"{digest}-w{width}.jpg"

    def get(self, digest: str, original: callable[[], bytes], width: int) -> bytes:  # type: ignore[valid-type]
        path = self.path_for(digest, width)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        data = make_thumbnail(original(), width)
        write_atomic(path, data, durable=False)  # a cache: rebuilt from the original if a power cut loses it
        return data


def make_thumbnail(jpeg: bytes, width: int) -> bytes:
    """A JPEG `width` pixels wide: decoded at the smallest DCT scale (1/8 … 1) at least that wide,
    then, if that is still wider (a frame under 8× the width), area-averaged down from the small image."""
    header_h, header_w, _, _ = simplejpeg.decode_jpeg_header(jpeg)
    min_height = max(1, round(width * header_h / header_w))
    pixels = simplejpeg.decode_jpeg(
        jpeg, colorspace="RGB", fastdct=True, fastupsample=True, min_width=width, min_height=min_height
    )
    if pixels.shape[1] > width * 1.05:  # past the 1/8 DCT limit: finish on the small image (cheap)
        pixels = cv2.resize(pixels, (width, min_height), interpolation=cv2.INTER_AREA)
    return simplejpeg.encode_jpeg(pixels, quality=THUMB_QUALITY, colorspace="RGB", colorsubsampling="420")
