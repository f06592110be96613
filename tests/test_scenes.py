"""rasters.py, scenes.py and geo_outputs.py: large georeferenced scenes built here from real aerial images (the
bundled sample placed in a mosaic, written with a known transform and CRS), read in windows (bands, a 16-bit stretch,
nodata), answered in tiles by inference.py and written as GeoJSON / GeoPackage / a class map a GIS opens."""

import json
import shutil
from pathlib import Path

import geopandas
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine, from_origin

import inference
from geo_outputs import write_vectors
from rasters import RasterScene, tile_windows
from tasks.detect import DetectTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CRS = "EPSG:32633"
TRANSFORM = from_origin(500000.0, 4100000.0, 0.5, 0.5)  # UTM 33N, 0.5 m pixels


def mosaic(sample_image_paths, columns: int = 3, rows: int = 2, side: int = 224) -> np.ndarray:
    """(H, W, 3) uint8: real aerial images side by side."""
    tiles = [np.asarray(Image.open(path).convert("RGB").resize((side, side))) for path in sample_image_paths]
    return np.vstack([np.hstack(tiles[row * columns : (row + 1) * columns]) for row in range(rows)])


def write_geotiff(path: Path, bands: np.ndarray, nodata=None, transform=TRANSFORM, crs=CRS) -> Path:
    """(C, H, W) array as a tiled GeoTIFF with `transform` and `crs`."""
    profile = {"driver": "GTiff", "count": bands.shape[0], "height": bands.shape[1], "width": bands.shape[2]}
    profile |= {"dtype": str(bands.dtype), "transform": transform, "crs": crs, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as raster:
        raster.write(bands)
    return path


def test_tiles_cover_the_scene_with_their_overlap():
    windows = tile_windows(1000, 600, 256, 32)
    columns = sorted({w.col_off for w in windows})
    assert columns == [0, 224, 448, 672, 744] and sorted({w.row_off for w in windows}) == [0, 224, 344]
    assert all(w.width == w.height == 256 for w in windows)
    assert [(w.col_off, w.width, w.height) for w in tile_windows(200, 100, 256, 32)] == [(0, 200, 100)]  # whole


def test_an_8bit_geotiff_gives_the_pixels_of_the_same_image_as_png(sample_image_paths, tmp_path):
    pixels = mosaic(sample_image_paths)
    Image.fromarray(pixels).save(tmp_path / "scene.png")
    write_geotiff(tmp_path / "scene.tif", pixels.transpose(2, 0, 1))
    for name in ("scene.tif", "scene.png"):
        with RasterScene(tmp_path / name) as scene:
            image, valid = scene.read(tile_windows(scene.width, scene.height, 4096, 0)[0])
            assert valid == 1.0 and scene.stretch.low is None
            np.testing.assert_array_equal(np.asarray(image), pixels)


def test_a_4band_uint16_scene_with_a_nodata_strip_reads_its_rgb_and_skips_nodata_tiles(sample_image_paths, tmp_path):
    pixels = mosaic(sample_image_paths).transpose(2, 0, 1).astype(np.uint16) * 40 + 1000  # 12-bit-like reflectance
    nir = pixels.mean(axis=0, keepdims=True).astype(np.uint16)
    bands = np.concatenate([pixels, nir])  # (4, 448, 672): R, G, B, NIR
    bands[:, :, :256] = 0  # a nodata strip: the first 256 columns
    path = write_geotiff(tmp_path / "rgbn.tif", bands, nodata=0)
    with RasterScene(path, bands=[1, 2, 3]) as scene:
        windows = tile_windows(scene.width, scene.height, 128, 0)
        tiles = list(scene.tiles(windows))
        assert len(windows) == 4 * 6 and len(tiles) == 4 * 4  # the 2 columns of tiles inside the strip: never read
        assert all(window.col_off >= 256 for window, _, _ in tiles)
        valid = bands[:3, :, 256:].astype(float)
        assert scene.stretch.low == pytest.approx(list(np.percentile(valid.reshape(3, -1), 2, axis=1)), rel=0.02)
        image, _ = scene.read(windows[0])
        assert np.asarray(image).max() == 0  # nodata stays black
    with pytest.raises(ValueError, match=r"has 4 band\(s\); --bands names \[5\]. Fix: use 1..4"):
        RasterScene(path, bands=[5, 2, 1])


def test_two_overlapping_tiles_that_see_one_object_give_one_box():
    task = DetectTask(["airplane", "ship"])
    seen_by_a = {"boxes": [{"label": "airplane", "box": [300.0, 300.0, 340.0, 342.0]}]}
    seen_by_b = {
        "boxes": [{"label": "airplane", "box": [45.0, 44.0, 84.0, 86.0]}, {"label": "ship", "box": [0, 0, 9, 9]}]
    }
    merged = task.merge_tiles([([0, 0, 512, 512], seen_by_a), ([256, 256, 768, 768], seen_by_b)])
    assert [(item["label"], item["box"]) for item in merged] == [
        ("airplane", [300.0, 300.0, 340.0, 342.0]),
        ("ship", [256, 256, 265, 265]),
    ]


def test_box_corners_go_through_the_transform_also_when_it_is_rotated(tmp_path):
    rotated = TRANSFORM * Affine.rotation(30)
    features = [{"label": "ship", "score": 1.0, "box": [10.0, 20.0, 50.0, 80.0]}]
    for transform in (TRANSFORM, rotated):
        path = write_vectors(tmp_path / "boxes.geojson", features, transform, CRS, "geojson")
        frame = geopandas.read_file(path)
        corners = [transform * corner for corner in ((10, 20), (50, 20), (50, 80), (10, 80))]
        got = list(frame.geometry[0].exterior.coords)[:4]
        assert np.allclose(got, corners, rtol=0, atol=1e-6)
        assert frame.crs == CRS and frame["label"][0] == "ship" and frame["pixel_box"][0] == "10,20,50,80"


def test_a_scene_is_answered_in_tiles_into_geojson_and_a_class_map(
    tiny_checkpoint, sample_image_paths, tmp_path, capsys
):
    path = write_geotiff(tmp_path / "scene.tif", mosaic(sample_image_paths).transpose(2, 0, 1))
    out = tmp_path / "out"
    argv = [str(path), "--model", str(tiny_checkpoint()), "--task", "caption", "--tile_size", "224", "--overlap", "0"]
    assert inference.main([*argv, "--output_dir", str(out), "--max_new_tokens", "3"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["tiles"] == 6 and record["nodata_tiles"] == 0 and len(record["features"]) == 6
    frame = geopandas.read_file(out / "scene.geojson")
    assert frame.crs == CRS and len(frame) == 6 and list(frame["text"]) == [f["text"] for f in record["features"]]
    for feature, geometry in zip(record["features"], frame.geometry):
        x1, y1, x2, y2 = feature["box"]
        assert geometry.bounds == pytest.approx((*(TRANSFORM * (x1, y2)), *(TRANSFORM * (x2, y1))))
    # A re-run finds the outputs complete and redoes nothing; a corrupt file is named and skipped.
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00 not a tiff")
    assert inference.main([*argv, str(tmp_path / "corrupt.tif"), "--output_dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "outputs complete" in err and "unreadable raster" in err and "corrupt.tif" in err
    assert sorted(p.name for p in out.iterdir()) == ["scene.geojson"]  # nothing half-written


def test_scene_classes_write_a_class_raster_on_the_tile_grid(tiny_checkpoint, sample_image_paths, tmp_path, capsys):
    path = write_geotiff(tmp_path / "scene.tif", mosaic(sample_image_paths).transpose(2, 0, 1))
    out = tmp_path / "out"
    argv = [str(path), "--model", str(tiny_checkpoint()), "--prompt", "answer en what is the scene?"]
    assert inference.main([*argv, "--tile_size", "224", "--overlap", "0", "--output_dir", str(out)]) == 0
    with rasterio.open(out / "scene.tif") as raster:
        assert (raster.width, raster.height) == (3, 2) and raster.crs == CRS
        assert raster.transform == TRANSFORM * Affine.scale(224)
        names = json.loads(raster.tags()["classes"])
        values = raster.read(1)
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [names[v] for v in values.reshape(-1)] == [feature["text"] for feature in record["features"]]


def test_accelerate_launch_over_two_processes_writes_what_one_process_writes(
    tiny_checkpoint, sample_image_paths, tmp_path
):
    import os
    import socket
    import subprocess
    import sys

    scenes = [
        write_geotiff(tmp_path / f"scene{index}.tif", mosaic(sample_image_paths[index:]).transpose(2, 0, 1))
        for index in range(3)
    ]
    common = ["--model", str(tiny_checkpoint()), "--tile_size", "224", "--overlap", "0", "--max_new_tokens", "3"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        str(port),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for folder, entry in (("one", []), ("two", launch)):
        command = [sys.executable, *entry, str(Path(inference.__file__)), *map(str, scenes), *common]
        completed = subprocess.run(
            [*command, "--output_dir", str(tmp_path / folder)], env=env, capture_output=True, text=True
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        records = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith('{"file"')]
        assert sorted(record["file"] for record in records) == sorted(map(str, scenes))  # each scene once
        assert "outputs complete" not in completed.stderr
    for scene in scenes:
        one = geopandas.read_file(tmp_path / "one" / f"{scene.stem}.geojson")
        two = geopandas.read_file(tmp_path / "two" / f"{scene.stem}.geojson")
        assert one.to_json() == two.to_json() and len(one) == 6


def test_an_all_nodata_scene_writes_empty_outputs_and_says_so(tiny_checkpoint, tmp_path, capsys):
    path = write_geotiff(tmp_path / "empty.tif", np.zeros((3, 300, 400), dtype=np.uint16), nodata=0)
    out = tmp_path / "out"
    argv = [str(path), "--model", str(tiny_checkpoint()), "--tile_size", "128", "--output_dir", str(out)]
    assert inference.main([*argv, "--bands", "3,2,1"]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out.splitlines()[-1])
    assert record["tiles"] == 0 and record["nodata_tiles"] == 12 and record["features"] == []
    assert "every tile is nodata" in captured.err
    frame = geopandas.read_file(out / "empty.geojson")
    assert len(frame) == 0 and frame.crs == CRS


def test_a_killed_run_over_an_archive_resumes_without_redoing_finished_scenes(
    tiny_checkpoint, sample_image_paths, tmp_path
):
    import os
    import signal
    import subprocess
    import sys
    import time

    pixels = mosaic(sample_image_paths, columns=4, rows=3).transpose(2, 0, 1)
    scenes = [write_geotiff(tmp_path / f"scene{index}.tif", pixels) for index in range(8)]
    out = tmp_path / "out"
    command = [sys.executable, str(Path(inference.__file__)), *map(str, scenes), "--model", str(tiny_checkpoint())]
    command += ["--tile_size", "112", "--overlap", "16", "--max_new_tokens", "12", "--output_dir", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "scene0.geojson").is_file() and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # mid-archive: between or inside scenes
    process.wait()
    # Finished scenes have their final name; one killed while writing left at most a hidden partial file.
    finished = {path.name: path.stat().st_mtime_ns for path in out.glob("scene*.geojson")}
    assert "scene0.geojson" in finished
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stderr.count("outputs complete") == len(finished)  # nothing finished is redone
    assert sorted(path.name for path in out.glob("scene*.geojson")) == [f"scene{index}.geojson" for index in range(8)]
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in finished.items())
    assert not list(out.glob(".*"))  # no partial file left behind


def test_a_scene_count_is_the_number_of_merged_boxes_not_a_sum_over_tiles(
    tiny_checkpoint, sample_image_paths, tmp_path, capsys
):
    from tasks import task_from_records

    records = {"count": {"prompt": "answer en how many {} are there?", "classes": ["ship", "car"]}}
    records["detect"] = {
        "prompt": "detect ship ; car",
        "classes": ["ship", "car"],
        "generation": {"max_new_tokens": 9},
        "tile_size": 512,
        "tile_overlap": 128,
    }
    task = task_from_records("count", records, classes="ship")
    runner = task.scene_task(records)
    assert (
        isinstance(runner, DetectTask) and runner.prompt == "detect ship" and runner.generation["max_new_tokens"] == 9
    )
    assert (runner.tile_size, runner.tile_overlap) == (512, 128)  # the scene is tiled as detection was trained
    overlapping = [([0, 0, 512, 512], {"boxes": [{"label": "ship", "box": [300, 300, 340, 342]}]})]
    overlapping.append(([256, 256, 768, 768], {"boxes": [{"label": "ship", "box": [45, 44, 84, 86]}]}))
    assert task.scene_summary(runner.merge_tiles(overlapping)) == {"count": 1}  # two tiles, one ship
    path = write_geotiff(tmp_path / "scene.tif", mosaic(sample_image_paths).transpose(2, 0, 1))
    argv = [str(path), "--model", str(tiny_checkpoint()), "--task", "count", "--classes", "ship", "--tile_size", "224"]
    assert inference.main([*argv, "--max_new_tokens", "20"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["task"] == "count" and record["count"] == len(record["features"])
    assert all(feature["label"] == "ship" for feature in record["features"])
    # without --tile_size the scene is tiled as the model recorded detection: 224-px tiles, overlap 0, 3 x 2 of them
    recorded = tmp_path / "recorded"
    shutil.copytree(tiny_checkpoint(), recorded)
    config = json.loads((recorded / "config.json").read_text())
    config["trained_tasks"] = {**records, "detect": {**records["detect"], "tile_size": 224, "tile_overlap": 0}}
    (recorded / "config.json").write_text(json.dumps(config))
    argv = [str(path), "--model", str(recorded), "--task", "count", "--classes", "ship", "--output_dir", str(tmp_path)]
    assert inference.main([*argv, "--max_new_tokens", "20"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["tiles"] == 6


def test_a_chip_is_answered_in_the_tiles_the_model_was_trained_at(
    tiny_checkpoint, sample_image_paths, tmp_path, capsys
):
    """A model that records a detection tile size answers a chip larger than a tile in those tiles, merged (the
    same result as its tiles answered one by one and merged by the task); --tile_size 0 answers it whole."""
    import shutil

    from inference_core import load_model, run_task
    from tasks.tiling import tile_boxes

    model_dir = tmp_path / "tiled-model"
    shutil.copytree(tiny_checkpoint(), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    record = {"prompt": "detect ship ; car", "classes": ["ship", "car"], "generation": {"max_new_tokens": 20}}
    config["trained_tasks"] = {"detect": {**record, "tile_size": 112}}
    (model_dir / "config.json").write_text(json.dumps(config))
    chip = sample_image_paths[0]
    argv = [str(chip), "--model", str(model_dir), "--task", "detect", "--format", "jsonl"]
    assert inference.main(argv) == 0
    tiled = json.loads(capsys.readouterr().out)
    model, processor = load_model(str(model_dir))
    task = DetectTask(["ship", "car"], {"num_beams": 1, "max_new_tokens": 20}, tile_size=112)
    image = Image.open(chip).convert("RGB")
    tiles = tile_boxes(*image.size, 112, 14)  # 224 px in 112-px tiles overlapping by 14: 3 x 3
    assert len(tiles) == 9
    answers = run_task(model, processor, [image.crop(tile) for tile in tiles], task)
    expected = task.merge_tiles(list(zip(tiles, answers)))
    assert tiled["boxes"] == json.loads(json.dumps(expected)) and tiled["text"] == f"{len(expected)} boxes"
    assert inference.main([*argv, "--tile_size", "0"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["boxes"] == json.loads(json.dumps(run_task(model, processor, [image], task)[0]["boxes"]))
