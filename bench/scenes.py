"""Scene inference in tiles: tiles per second and peak memory for a 2,048 x 2,048 and an 8,192 x 8,192 scene, each
in a fresh process (peak resident memory is per process). The scenes are GeoTIFFs (tiled, deflate) of a real aerial
image of the bundled sample repeated; the model is the tiny random checkpoint, so the figures measure reading,
tiling, batching and merging, and show that memory does not grow with the scene (windowed reads).

    python -m bench.scenes [--sizes 2048,8192] [--tile_size 512] [--overlap 64] [--batch_size 8]

Prints one JSON object as its last line.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import HfArgumentParser

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "dataset_builder" / "sample" / "resized" / "RSICD_storagetanks_124.jpg"


@dataclass
class SceneBenchArguments:
    sizes: str = field(default="2048,8192", metadata={"help": "Scene sides in pixels, comma-separated."})
    tile_size: int = field(default=512, metadata={"help": "Tile side in source pixels."})
    overlap: int = field(default=64, metadata={"help": "Tile overlap in source pixels."})
    batch_size: int = field(default=8, metadata={"help": "Tiles per batch."})
    one: str | None = field(default=None, metadata={"help": "(internal) measure this scene and model only."})


def write_scene(path: Path, side: int) -> Path:
    """A `side` x `side` 3-band uint8 GeoTIFF of the sample image repeated, written one block row at a time."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    tile = np.asarray(Image.open(SAMPLE).convert("RGB").resize((256, 256))).transpose(2, 0, 1)  # (3, 256, 256)
    profile = {"driver": "GTiff", "count": 3, "height": side, "width": side, "dtype": "uint8", "tiled": True}
    profile |= {"compress": "deflate", "crs": "EPSG:32650", "transform": from_origin(400000, 3400000, 0.5, 0.5)}
    row = np.tile(tile, (1, 1, side // 256))  # (3, 256, side)
    with rasterio.open(path, "w", **profile) as raster:
        for top in range(0, side, 256):
            raster.write(row, window=Window(0, top, side, 256))
    return path


def measure_one(scene_path: str, model_dir: str, args: SceneBenchArguments) -> dict:
    """In this process: the scene answered in tiles (captions, 4 new tokens); tiles/s and peak resident memory."""
    from inference_core import load_model
    from rasters import RasterScene
    from scenes import answer_scene
    from tasks import task_for_prompt

    model, processor = load_model(model_dir)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with RasterScene(scene_path) as scene:
        answer = answer_scene(
            model, processor, scene, task_for_prompt("caption en"), args.tile_size, args.overlap, args.batch_size,
            num_beams=1, max_new_tokens=4,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "tiles": answer["tiles"],
        "seconds": round(seconds, 2),
        "tiles_per_s": round(answer["tiles"] / seconds, 2),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_rss_after_model_load_mb": round(before / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(SceneBenchArguments).parse_args_into_dataclasses(args=argv)
    if args.one:
        scene_path, model_dir = args.one.split("::")
        print(json.dumps(measure_one(scene_path, model_dir, args)))
        return
    from scripts.make_tiny_checkpoint import TinyCheckpointArguments, make_tiny_checkpoint

    results = {}
    with tempfile.TemporaryDirectory() as work:
        model_dir = str(make_tiny_checkpoint(TinyCheckpointArguments(output_dir=f"{work}/tiny")))
        for side in map(int, args.sizes.split(",")):
            scene = write_scene(Path(work) / f"scene_{side}.tif", side)
            options = ["--tile_size", str(args.tile_size), "--overlap", str(args.overlap)]
            command = [sys.executable, "-m", "bench.scenes", *options, "--batch_size", str(args.batch_size)]
            completed = subprocess.run(
                [*command, "--one", f"{scene}::{model_dir}"], cwd=REPO_ROOT, capture_output=True, text=True
            )
            if completed.returncode:
                raise RuntimeError(completed.stderr[-3000:])
            results[f"{side}x{side}"] = json.loads(completed.stdout.splitlines()[-1])
    print(json.dumps({"bench": "scenes", "tile_size": args.tile_size, "overlap": args.overlap, "results": results}))


if __name__ == "__main__":
    main()
