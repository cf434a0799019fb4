"""Frames on the GPU for the prepare stage: nvJPEG decode (torchvision) and tiling without a host round trip.

Needs torch and torchvision (`pip install 'inspection[torch]'`); imported only when
`pipeline.decode=gpu`. Independent of any detector backend: the tiles go to whichever detector
takes device batches (`Detector.takes_device_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..tiling import FrameSizeError, TileGrid


def decode_jpegs_cuda(jpegs: Sequence[bytes], device: str | torch.device = "cuda") -> list[torch.Tensor]:
    """JPEG bytes -> (3, H, W) uint8 RGB tensors on the GPU, one batched nvJPEG call (torchvision)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as exc:
        raise RuntimeError("GPU JPEG decoding needs torchvision (pip install 'inspection[torch]')") from exc
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in jpegs]
    if not data:
        return []
    return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))


def tile_on_gpu(frame: torch.Tensor, grid: TileGrid, out: torch.Tensor | None = None) -> torch.Tensor:
    """A frame on any device -> (num_slots, T, T, 3) uint8 tiles there, blank tiles zero.

    frame: (H, W, 3) or (3, H, W) (as `decode_jpegs_cuda` returns) uint8. One strided copy
    (`unfold` views) for a regular grid, one gather otherwise; `out` is reused when given. With
    `grid.global_view` slot `grid.global_index` gets the whole frame area-averaged to T×T (as
    `TileGrid.global_tile`'s cv2.INTER_AREA on the CPU).
    """
    if frame.ndim != 3 or 3 not in (frame.shape[0], frame.shape[2]):
        raise FrameSizeError(f"frame has shape {tuple(frame.shape)}, expected (H, W, 3) or (3, H, W)")
    hwc = frame.permute(1, 2, 0) if frame.shape[2] != 3 else frame
    h, w = int(hwc.shape[0]), int(hwc.shape[1])
    if (w, h) != (grid.frame_width, grid.frame_height):
        raise FrameSizeError(
            f"frame is {w}×{h}, grid expects {grid.frame_width}×{grid.frame_height} (configs: grid.frame_width / grid.frame_height)"
        )
    if hwc.dtype != torch.uint8:
        raise FrameSizeError(f"frame has dtype {hwc.dtype}, expected uint8")
    t = grid.tile_size
    shape = (grid.num_slots, t, t, 3)
    if out is None:
        out = torch.empty(shape, dtype=torch.uint8, device=hwc.device)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {shape}")
    real = out[: grid.num_tiles]
    if grid.is_regular:
        windows = hwc.unfold(0, t, grid.stride).unfold(1, t, grid.stride)  # (rows, cols, 3, T, T)
        real.view(grid.rows, grid.cols, t, t, 3).copy_(windows.permute(0, 1, 3, 4, 2))
    else:
        origins = torch.as_tensor(grid.origins, device=hwc.device)
        offsets = torch.arange(t, device=hwc.device)
        yy = origins[:, 1, None, None] + offsets[None, :, None]
        xx = origins[:, 0, None, None] + offsets[None, None, :]
        real.copy_(hwc[yy, xx])
    rest = grid.num_tiles
    if grid.global_view:
        chw = hwc.permute(2, 0, 1)[None].float()
        small = torch.nn.functional.interpolate(chw, size=(t, t), mode="area")
        out[rest].copy_(small[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8))
        rest += 1
    out[rest:] = 0
    return out
