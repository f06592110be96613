"""A small georeferenced scene from the bundled sample's real aerial images, to try scene inference on:

    python -m scripts.make_sample_scene outputs/sample_scene.tif
    python inference.py outputs/sample_scene.tif --model examples/rs-mini --task classify --tile_size 224 \\
        --overlap 0 --output_dir outputs/scene --grid outputs/scene/classes.png

Twelve sample images (224 px) in a 4 x 3 mosaic, written as a tiled GeoTIFF in UTM zone 50N (EPSG:32650) at 0.5 m
per pixel, with an origin chosen for the example only: the images come from different places, so the map is not a
real location.
"""

import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

SAMPLE = Path(__file__).resolve().parents[1] / "dataset_builder" / "sample" / "resized"
NAMES = (
    "RSICD_storagetanks_124.jpg",
    "RSICD_viaduct_25.jpg",
    "RSICD_square_54.jpg",
    "RSICD_stadium_57.jpg",
    "RSICD_viaduct_231.jpg",
    "RSICD_storagetanks_300.jpg",
    "RSICD_square_99.jpg",
    "NWPU_stadium_644.jpg",
    "RSICD_storagetanks_33.jpg",
    "RSICD_square_73.jpg",
    "RSICD_viaduct_408.jpg",
    "RSICD_storagetanks_62.jpg",
)
SIDE, COLUMNS = 224, 4
TRANSFORM = from_origin(400000.0, 3400000.0, 0.5, 0.5)


def make_sample_scene(path: str | Path) -> Path:
    tiles = [np.asarray(Image.open(SAMPLE / name).convert("RGB").resize((SIDE, SIDE))) for name in NAMES]
    rows = [np.hstack(tiles[start : start + COLUMNS]) for start in range(0, len(tiles), COLUMNS)]
    pixels = np.vstack(rows).transpose(2, 0, 1)  # (3, H, W)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "count": 3, "height": pixels.shape[1], "width": pixels.shape[2], "dtype": "uint8"}
    profile |= {"crs": "EPSG:32650", "transform": TRANSFORM, "tiled": True, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as raster:
        raster.write(pixels)
    return path


if __name__ == "__main__":
    print(make_sample_scene(sys.argv[1] if len(sys.argv) > 1 else "outputs/sample_scene.tif"))
