"""Demo frames from real photographs bundled with scikit-image: no dataset download, no ground truth.

Only images whose files ship inside the installed `skimage/data` folder are used, so nothing is
ever fetched from the network (scikit-image's other sample images need `pooch` and a download).
Each tile is a random crop of one photograph (side 50–100 % of the photo, optional mirror),
fitted to the tile with the same plain INTER_LINEAR resize the mosaic composer uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from inspection.extras import require
from inspection.tiling import TileGrid

from .compose import check_mosaic_grid, fit_to_tile


def _skimage_data():
    return require("skimage.data", "demo", "the sample photos of the simulated line")


def _first(images: tuple[np.ndarray, ...]) -> np.ndarray:
    return images[0]


# loader name -> (file that must be bundled in skimage/data, how to get one RGB/gray image)
_PHOTOS: dict[str, tuple[str, Callable[[object], np.ndarray]]] = {
    "astronaut": ("astronaut.png", lambda d: d.astronaut()),
    "chelsea": ("chelsea.png", lambda d: d.chelsea()),
    "coffee": ("coffee.png", lambda d: d.coffee()),
    "rocket": ("rocket.jpg", lambda d: d.rocket()),
    "motorcycle": ("motorcycle_left.png", lambda d: _first(d.stereo_motorcycle())),
    "hubble_deep_field": ("hubble_deep_field.jpg", lambda d: d.hubble_deep_field()),
    "immunohistochemistry": ("ihc.png", lambda d: d.immunohistochemistry()),
    "retina": ("retina.jpg", lambda d: d.retina()),
    "camera": ("camera.png", lambda d: d.camera()),
    "coins": ("coins.png", lambda d: d.coins()),
    "moon": ("moon.png", lambda d: d.moon()),
    "clock": ("clock_motion.png", lambda d: d.clock()),
    "brick": ("brick.png", lambda d: d.brick()),
    "grass": ("grass.png", lambda d: d.grass()),
    "gravel": ("gravel.png", lambda d: d.gravel()),
}

MIN_CROP_FRACTION = 0.5


def available_photos() -> tuple[str, ...]:
    """Names of the photographs whose files are bundled in the installed scikit-image wheel."""
    data_dir = Path(_skimage_data().__file__).parent
    return tuple(name for name, (file, _) in _PHOTOS.items() if (data_dir / file).is_file())


def load_photos(names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Load photographs as (H, W, 3) uint8 RGB (grayscale ones expanded), offline only."""
    bundled = available_photos()
    wanted = bundled if names is None else tuple(names)
    unknown = [n for n in wanted if n not in bundled]
    if unknown:
        raise ValueError(f"photo(s) {', '.join(unknown)} not bundled with this scikit-image; available: {', '.join(bundled)}")
    if not wanted:
        raise RuntimeError("no scikit-image sample photograph is bundled in this installation (pip install scikit-image)")
    data = _skimage_data()
    photos = {}
    for name in wanted:
        image = np.asarray(_PHOTOS[name][1](data))
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        photos[name] = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    return photos


class PhotoFrameSource:
    """Line frame source: (car, camera, shot) -> (H, W, 3) uint8 RGB mosaic of photo crops.

    Deterministic: frame content depends only on (seed, car, camera, shot) and the photo set.
    """

    def __init__(self, grid: TileGrid, *, seed: int = 0, names: tuple[str, ...] | None = None) -> None:
        check_mosaic_grid(grid)
        self.grid = grid
        self.seed = seed
        photos = load_photos(names)
        self.names = tuple(photos)
        self._photos = tuple(photos.values())

    def __call__(self, car_index: int, camera: int, shot: int) -> np.ndarray:
        if min(car_index, camera, shot) < 0:
            raise ValueError(f"car={car_index} camera={camera} shot={shot}: indices must be non-negative")
        k = self.grid.num_tiles
        rng = np.random.default_rng([self.seed, car_index, camera, shot])
        which = rng.integers(len(self._photos), size=k)
        fraction = rng.uniform(MIN_CROP_FRACTION, 1.0, size=k)
        corner = rng.uniform(0.0, 1.0, size=(k, 2))
        mirror = rng.integers(2, size=k).astype(bool)
        shapes = np.asarray([p.shape[:2] for p in self._photos])[which]  # (k, 2) h, w
        crop = np.maximum(1, (shapes * fraction[:, None]).astype(np.int64))
        start = ((shapes - crop) * corner).astype(np.int64)
        batch = self.grid.new_batch()
        for slot in range(k):
            (y0, x0), (ch, cw) = start[slot], crop[slot]
            patch = self._photos[which[slot]][y0 : y0 + ch, x0 : x0 + cw]
            fit_to_tile(cv2.flip(patch, 1) if mirror[slot] else patch, self.grid.tile_size, out=batch[slot])
        return self.grid.untile(batch)
