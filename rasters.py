"""Large rasters read as the model sees them, one window at a time (rasterio): GeoTIFF, COG, JPEG2000 and plain
large JPEG/PNG (in pixel coordinates), several bands, 8 to 32 bits, nodata.

- `--bands` (1-based) picks the three bands that become R, G, B (default: the first three, or the one band repeated):
  a 4-band RGB+NIR image is never read as RGBA;
- 8-bit data is read as it is; wider integer and float data is stretched to 8 bits with ONE stretch per scene: per
  band, its 2nd and 98th percentiles over the valid pixels of a decimated read (at most `STRETCH_SIDE` pixels a side),
  mapped to 0 and 255 (`Stretch`, recorded in every output);
- nodata and masks are respected: a tile's valid share comes from the dataset's mask, and a tile without one valid
  pixel is never scored.

>>> scene = RasterScene("scene.tif", bands=[3, 2, 1])  # doctest: +SKIP
>>> [image for image, _ in scene.tiles(tile_windows(scene.width, scene.height, 512, 64))]  # doctest: +SKIP
"""

from dataclasses import dataclass, field

import numpy as np
import rasterio
from PIL import Image
from rasterio.windows import Window

from tasks.tiling import tile_boxes

STRETCH_SIDE = 1024  # the decimated read the per-scene stretch is computed on
GDAL_CACHE_MB = 64  # GDAL's block cache (default: 5% of the RAM): bounded, so memory does not grow with the scene
PERCENTILES = (2.0, 98.0)


class RasterError(ValueError):
    """A raster that cannot be read as asked: the message names the file, what is wrong and the fix."""


@dataclass
class Stretch:
    """How a scene's values become 8 bits: per output band, `low` -> 0 and `high` -> 255 (None: 8-bit, as is)."""

    bands: list[int]
    low: list[float] | None = None
    high: list[float] | None = None
    rule: str = field(default="8-bit data, read as it is")

    def apply(self, values: np.ndarray) -> np.ndarray:
        """(3, H, W) raw values -> (3, H, W) uint8."""
        if self.low is None:
            return values.astype(np.uint8)  # 8-bit data: as it is, no float copy on the tile path
        low = np.asarray(self.low, dtype=np.float64)[:, None, None]
        span = np.maximum(np.asarray(self.high, dtype=np.float64)[:, None, None] - low, 1e-12)
        return np.clip(np.round((values.astype(np.float64) - low) / span * 255.0), 0, 255).astype(np.uint8)


def parse_bands(text: str | None) -> list[int] | None:
    """'4,3,2' -> [4, 3, 2] (1-based); None: the default."""
    if text is None:
        return None
    try:
        bands = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise RasterError(
            f"--bands {text!r} is invalid. Fix: give 1-based band numbers, e.g. --bands 4,3,2."
        ) from None
    if len(bands) not in (1, 3):
        raise RasterError(f"--bands {text!r}: give one band (shown as grey) or three (R,G,B), e.g. --bands 4,3,2.")
    return bands * 3 if len(bands) == 1 else bands


def tile_windows(width: int, height: int, tile_size: int, overlap: int) -> list[Window]:
    """Windows of `tile_size` source pixels overlapping by `overlap`, covering the scene to its last row and column
    (`tasks.tiling.tile_boxes`: the last ones are moved back to end at the edge; a scene smaller than a tile is one
    window, whole)."""
    if not 0 <= overlap < tile_size:
        raise RasterError(f"--overlap {overlap} must be at least 0 and below --tile_size {tile_size}.")
    return [Window(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in tile_boxes(width, height, tile_size, overlap)]


class RasterScene:
    """An open raster: its size, transform and CRS, the bands read as RGB, and the scene's one stretch."""

    def __init__(self, path, bands: list[int] | None = None):
        self.path = str(path)
        self.env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB).__enter__()
        try:
            self.dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as error:
            self.env.__exit__(None, None, None)
            raise RasterError(f"{self.path}: not a raster GDAL can read ({str(error).splitlines()[0]}).") from error
        count = self.dataset.count
        self.bands = bands or ([1, 2, 3] if count >= 3 else [1, 1, 1])
        unknown = [band for band in self.bands if not 1 <= band <= count]
        if unknown:
            self.close()
            raise RasterError(f"{self.path} has {count} band(s); --bands names {unknown}. Fix: use 1..{count}.")
        self.width, self.height = self.dataset.width, self.dataset.height
        self.transform, self.crs = self.dataset.transform, self.dataset.crs
        self.stretch = self._stretch()

    def close(self) -> None:
        self.dataset.close()
        self.env.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _stretch(self) -> Stretch:
        if all(self.dataset.dtypes[band - 1] == "uint8" for band in self.bands):
            return Stretch(self.bands)
        values, scale = self.overview(STRETCH_SIDE)
        lows, highs = [], []
        for band in values:
            valid = band.compressed()
            low, high = np.percentile(valid, PERCENTILES) if valid.size else (0.0, 1.0)
            lows.append(float(low))
            highs.append(float(high))
        rule = f"per band, percentiles {PERCENTILES[0]:g}-{PERCENTILES[1]:g} of the valid pixels of a 1/{scale} read"
        return Stretch(self.bands, lows, highs, rule)

    def overview(self, max_side: int) -> tuple[np.ma.MaskedArray, int]:
        """(the bands read decimated to at most `max_side` pixels a side, nodata masked: (3, h, w), the factor)."""
        scale = max(1, int(np.ceil(max(self.width, self.height) / max_side)))
        shape = (len(self.bands), max(1, self.height // scale), max(1, self.width // scale))
        return self.dataset.read(self.bands, out_shape=shape, masked=True), scale

    def to_image(self, values: np.ma.MaskedArray) -> tuple[Image.Image, float]:
        """(read values as an RGB PIL image through the scene's stretch, their share of valid pixels); nodata pixels
        are black."""
        valid = ~np.ma.getmaskarray(values).any(axis=0)  # (H, W)
        pixels = self.stretch.apply(np.ma.filled(values, 0)) * valid[None]
        return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB"), float(valid.mean())

    def read(self, window: Window) -> tuple[Image.Image, float]:
        """(the window as an RGB PIL image, its share of valid pixels)."""
        return self.to_image(self.dataset.read(self.bands, window=window, masked=True))  # (3, H, W)

    def tiles(self, windows: list[Window]):
        """(window, image, valid share) of each window that holds a valid pixel, read one at a time."""
        for window in windows:
            image, valid = self.read(window)
            if valid > 0:
                yield window, image, valid
