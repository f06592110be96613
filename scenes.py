"""Every task over a large scene: tiles read one at a time (`rasters`), answered in batches by the inference core,
merged by the task itself (`Task.merge_tiles`: boxes back to scene pixels and merged across overlaps, one class or
caption per tile), and written where a GIS opens them (`geo_outputs`). The conventions are those of geoai's
`detect_sliding_window`, Raster Vision's `predict_scene_od` and SAHI's sliced prediction: a window size and an
overlap in source pixels, a border of context shared by neighbouring tiles, merging by a library's NMS.

>>> with RasterScene("scene.tif") as scene:  # doctest: +SKIP
...     answer = answer_scene(model, processor, scene, task, tile_size=512, overlap=64)
>>> len(answer["features"]), answer["tiles"]  # doctest: +SKIP
(12, 64)
"""

import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from geo_outputs import output_paths, outputs_complete
from inference_core import run_task
from rasters import RasterError, RasterScene, parse_bands, tile_windows
from tasks import recorded_tasks
from tasks.tiling import chosen_overlap

DEFAULT_TILE = 1024  # source pixels of a tile when neither the user nor the model's record gives one
WHOLE_LIMIT = 4  # an input of more than this many tiles' pixels is tiled even when not asked to


def needs_tiles(width: int, height: int, tile_size: int | None) -> bool:
    """Tile when asked (`tile_size`) or when the input is too large to be one input (more than WHOLE_LIMIT times a
    DEFAULT_TILE tile's pixels); a chip stays one input, as the model was trained."""
    return tile_size is not None or width * height > WHOLE_LIMIT * DEFAULT_TILE**2


def answer_scene(model, processor, scene: RasterScene, task, tile_size=None, overlap=0, batch_size=8, **decoding):
    """{"features": the task's merged features (boxes in scene pixels), "tiles": tiles scored, "nodata_tiles": tiles
    skipped for holding no valid pixel, "windows": [(x1, y1, x2, y2), result] per scored tile, "stretch"}."""
    windows = tile_windows(scene.width, scene.height, tile_size or DEFAULT_TILE, overlap)
    runner = task.scene_task(recorded_tasks(model.config))  # e.g. counting: detection, then the merged boxes counted
    scored, batch = [], []

    def flush():
        results = run_task(model, processor, [image for _, image in batch], runner, batch_size, **decoding)
        scored.extend((box, result) for (box, _), result in zip(batch, results))
        batch.clear()

    progress = tqdm(scene.tiles(windows), total=len(windows), desc=scene.path, unit="tile", file=sys.stderr)
    for window, image, _ in progress:
        box = [window.col_off, window.row_off, window.col_off + window.width, window.row_off + window.height]
        batch.append((box, image))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    features = runner.merge_tiles(scored)
    return {
        "grid": (sorted({w.row_off for w in windows}), sorted({w.col_off for w in windows})),  # tile rows, columns
        "features": features,
        **task.scene_summary(features),
        "tiles": len(scored),
        "nodata_tiles": len(windows) - len(scored),
        "windows": scored,
        "stretch": vars(scene.stretch),
    }


def draw_scene(scene: RasterScene, features: list[dict], path, max_side: int = 1600):
    """A PNG of the scene (decimated to at most `max_side` pixels a side, the scene's stretch) with each feature's
    box and its label (or text) drawn over it."""
    from PIL import ImageDraw

    values, scale = scene.overview(max_side)
    image, _ = scene.to_image(values)
    draw = ImageDraw.Draw(image)
    for feature in features:
        x1, y1, x2, y2 = (value / scale for value in feature["box"])
        draw.rectangle((x1, y1, x2, y2), outline="red", width=2)
        draw.text((x1 + 4, y1 + 3), str(feature.get("label") or feature.get("text", "")), fill="yellow")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return Path(path)


def scene_record(file: str, task, answer: dict) -> dict:
    """The JSONL record of a scene: its merged features in scene pixels, the tiles scored and skipped, the stretch."""
    skipped = ("grid", "windows")
    return {"file": file, "task": task.name, **{key: value for key, value in answer.items() if key not in skipped}}


def write_scene_outputs(output_dir: Path, path: Path, task, scene, answer: dict, vector_format: str, step: int):
    """DIR/<stem>.geojson (or .gpkg) and, for a task with classes (scene classes), DIR/<stem>.tif."""
    from geo_outputs import write_class_map, write_vectors

    paths = output_paths(output_dir, path, vector_format, class_map=task.class_map)
    write_vectors(paths[0], answer["features"], scene.transform, scene.crs, vector_format)
    if task.class_map:
        write_class_map(paths[1], answer["windows"], answer["grid"], step, scene, task.answers)
    return paths


def answer_scenes(model, processor, paths: list[Path], task, args, out, errors) -> int:
    """Each input as a scene (tiles, merged, outputs); returns how many were answered. A re-run with --output_dir
    skips the inputs whose outputs are complete; a raster that cannot be read is named on `errors` and skipped."""
    answered = 0
    tiled_as = task.scene_task(recorded_tasks(model.config))  # a count's scene is detected, so tiled as detection
    tile_size = args.tile_size or tiled_as.tile_size or DEFAULT_TILE  # the user's, else the one trained at
    overlap = chosen_overlap(tiled_as, tile_size, args.overlap)
    for path in paths:
        done = output_paths(Path(args.output_dir), path, args.vector_format, task.class_map) if args.output_dir else []
        if done and outputs_complete(done):
            errors.write(f"{path}: outputs complete in {args.output_dir}, skipped.\n")
            answered += 1
            continue
        try:
            with RasterScene(path, parse_bands(args.bands)) as scene:
                decoding = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens}
                answer = answer_scene(model, processor, scene, task, tile_size, overlap, args.batch_size, **decoding)
                if not answer["tiles"]:
                    errors.write(f"{path}: every tile is nodata; its outputs are empty.\n")
                if args.grid:  # the scene with its answers drawn (one picture per scene when there are several)
                    picture = Path(args.grid)
                    picture = picture if len(paths) == 1 else picture.with_name(f"{picture.stem}_{path.stem}.png")
                    draw_scene(scene, answer["features"], picture)
                if args.output_dir:
                    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
                    step = tile_size - overlap
                    write_scene_outputs(Path(args.output_dir), path, task, scene, answer, args.vector_format, step)
        except RasterError as error:
            errors.write(f"unreadable raster {path}: {error}\n")
            continue
        out.write(json.dumps(scene_record(str(path), task, answer)) + "\n")
        answered += 1
    return answered
