"""What a GIS opens, for one scene: its features as GeoJSON or GeoPackage in the raster's CRS (geopandas, through
pyogrio: the vector writer the geospatial Python stack already uses), and for scene classes a class raster (one
pixel per tile step, the class names in its metadata, a colour table). Every box goes through the raster's affine
transform at its four corners, so rotated transforms give the right polygon; a raster without a CRS gives pixel
coordinates, with a warning. Files are written under a temporary name and renamed, so a killed run leaves no
half-written output and a re-run knows which inputs are done (`outputs_complete`)."""

import json
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

VECTOR_FORMATS = {"geojson": ("GeoJSON", ".geojson"), "gpkg": ("GPKG", ".gpkg")}


def output_paths(output_dir: Path, source: str, vector_format: str, class_map: bool) -> list[Path]:
    """The files one input gives: its vectors, and its class raster for scene classes."""
    stem = Path(source).stem
    paths = [output_dir / f"{stem}{VECTOR_FORMATS[vector_format][1]}"]
    return [*paths, output_dir / f"{stem}.tif"] if class_map else paths


def outputs_complete(paths: list[Path]) -> bool:
    return all(path.is_file() for path in paths)


def _write_atomically(path: Path, write) -> Path:
    """`write(temporary path)`, then the rename: the final name exists only once the file is whole."""
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    temporary.unlink(missing_ok=True)
    write(temporary)
    os.replace(temporary, path)
    return path


def _properties(feature: dict) -> dict:
    """A feature's attributes: scalars as they are; the box in scene pixels as text (`x1,y1,x2,y2`)."""
    values = {
        key: value for key, value in feature.items() if key not in ("box", "boxes") and not isinstance(value, dict)
    }
    return {**values, "pixel_box": ",".join(f"{value:g}" for value in feature["box"])}


def write_vectors(path: Path, features: list[dict], transform, crs, vector_format: str) -> Path:
    """One polygon per feature (a box, or a tile), in the raster's CRS through `transform`."""
    import geopandas
    from shapely.geometry import Polygon

    if crs is None:
        logger.warning("%s: the raster has no CRS; the features are in pixel coordinates.", path.name)
    polygons = []
    for feature in features:
        x1, y1, x2, y2 = feature["box"]
        polygons.append(Polygon([transform * corner for corner in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]))
    frame = geopandas.GeoDataFrame([_properties(f) for f in features], geometry=polygons, crs=crs)
    driver = VECTOR_FORMATS[vector_format][0]
    if frame.empty:  # an empty layer still carries its CRS and one text column, so that a GIS opens it
        frame = geopandas.GeoDataFrame({"text": []}, geometry=[], crs=crs)
    return _write_atomically(path, lambda temporary: frame.to_file(temporary, driver=driver))


def write_class_map(path: Path, windows: list, grid: tuple[list, list], step: int, scene, classes: list[str]) -> Path:
    """A uint8 GeoTIFF of the tile grid (`grid`: the tiles' row and column offsets): each pixel the class index of
    its tile (255: no answer, e.g. an all-nodata tile), `step` source pixels a side from the scene's origin, the
    class names in the metadata and a colour table."""
    import rasterio
    from rasterio.transform import Affine

    names = list(dict.fromkeys([*classes, *(result["text"] for _, result in windows)]))
    rows, columns = grid
    values = np.full((len(rows), len(columns)), 255, dtype=np.uint8)
    for (x1, y1, _, _), result in windows:
        values[rows.index(y1), columns.index(x1)] = names.index(result["text"])
    profile = dict(driver="GTiff", height=len(rows), width=len(columns), count=1, dtype="uint8", nodata=255)
    profile.update(crs=scene.crs, transform=scene.transform * Affine.scale(step))
    colours = np.random.default_rng(0).integers(0, 256, size=(len(names), 3))

    def write(temporary: Path) -> None:
        with rasterio.open(temporary, "w", **profile) as raster:
            raster.write(values, 1)
            raster.write_colormap(1, {index: (*map(int, colour), 255) for index, colour in enumerate(colours)})
            raster.update_tags(classes=json.dumps(names))

    return _write_atomically(path, write)
