"""inference.py: inputs (files, folders, globs), image modes, captions equal to a direct `generate`, output formats,
unreadable files (named, skipped, exit status 1), picture grid."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import inference
from inference import collect_inputs, load_image, parse_args
from inference_core import caption_images
from scripts.make_tiny_checkpoint import TinyCheckpointArguments, build_tiny_model
from tasks.caption import postprocess_caption

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_NEW_TOKENS = "6"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint whose random weights are large enough (std 0.3) that captions are non-empty and differ
    from image to image (the default 0.02 init only ever emits newlines, which would make every caption "")."""
    folder = tmp_path_factory.mktemp("tiny-lively")
    model, processor = build_tiny_model(TinyCheckpointArguments(output_dir=str(folder)))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2 and not name.startswith("model.tsn."):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "tokenizer.model").unlink(missing_ok=True)
    return folder


@pytest.fixture(scope="module")
def loaded(checkpoint):
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    return model, processor


def reference_caption(model, processor, image: Image.Image, prompt: str = "caption en") -> str:
    """One image, batch 1, straight through processor -> generate -> decode: what inference.py must reproduce."""
    inputs = processor(images=image, text="<image>" + prompt, return_tensors="pt")
    inputs.pop("labels", None)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=int(MAX_NEW_TOKENS), do_sample=False)
    text = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return postprocess_caption(text, prompt)


def run(capsys, *argv) -> tuple[int, str, str]:
    status = inference.main([*map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory, sample_image_paths) -> Path:
    """A 256x256 TIFF, a grayscale PNG, an RGBA PNG, a 16-bit PNG (all cut from real aerial images), a corrupt .jpg
    and a text file that a folder scan must ignore."""
    folder = tmp_path_factory.mktemp("odd")
    aerial = Image.open(sample_image_paths[0]).convert("RGB")
    aerial.resize((256, 256)).save(folder / "a_tiff.tif")
    Image.open(sample_image_paths[1]).convert("L").save(folder / "b_gray.png")
    rgba = Image.open(sample_image_paths[2]).convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:, : rgba.size[0] // 2] = 0  # left half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(folder / "c_rgba.png")
    gray = np.asarray(Image.open(sample_image_paths[3]).convert("L"), dtype=np.uint16)
    Image.fromarray((gray * 8 + 1000).astype(np.uint16)).save(folder / "d_16bit.png")  # 12-bit-like range
    (folder / "e_corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(2048))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_odd_modes_load_as_rgb(odd_folder, tmp_path):
    tiff = load_image(odd_folder / "a_tiff.tif")
    assert (tiff.mode, tiff.size) == ("RGB", (256, 256))
    gray = np.asarray(load_image(odd_folder / "b_gray.png"))
    assert gray.ndim == 3 and (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    rgba = np.asarray(load_image(odd_folder / "c_rgba.png"))
    assert (rgba[:, : rgba.shape[1] // 2] == 255).all()  # transparent half composited on white
    assert rgba[:, rgba.shape[1] // 2 :].std() > 10  # opaque half keeps the aerial picture
    assert Image.open(odd_folder / "d_16bit.png").mode.startswith("I")
    stretched = np.asarray(load_image(odd_folder / "d_16bit.png"))[..., 0]
    assert stretched.min() == 0 and stretched.max() == 255  # stretched from its own range, not divided by 257
    Image.open(odd_folder / "a_tiff.tif").convert("P").save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").mode == "RGB"
    with pytest.raises(OSError):
        load_image(odd_folder / "e_corrupt.jpg")


def test_collect_inputs_files_folders_globs(odd_folder, sample_image_paths, capsys):
    sample = sample_image_paths[0].parent
    found = collect_inputs(
        [
            str(odd_folder),
            str(sample / "RSICD_0000[12].jpg"),
            str(sample_image_paths[0]),
            str(odd_folder / "a_tiff.tif"),
        ]
    )
    names = [path.name for path in found]
    # Folder: images only, sorted; glob: sorted; repeated files kept once, in first-seen order.
    assert names == [
        "a_tiff.tif",
        "b_gray.png",
        "c_rgba.png",
        "d_16bit.png",
        "e_corrupt.jpg",
        "RSICD_00001.jpg",
        "RSICD_00002.jpg",
        sample_image_paths[0].name,
    ]
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        collect_inputs([str(odd_folder / "nothing_here*.jpg")])
    status, out, err = run(capsys, odd_folder / "nothing_here", "--model", "unused")
    assert status == 2 and out == "" and "nothing_here" in err


def test_positionals_before_or_after_options():
    assert parse_args(["a.jpg", "b/", "--model", "m", "--num_beams", "3"]).inputs == ["a.jpg", "b/"]
    args = parse_args(["--model", "m", "--format", "csv", "a.jpg", "b.jpg"])
    assert (args.inputs, args.format, args.model) == (["a.jpg", "b.jpg"], "csv", "m")
    for bad in (
        ["a.jpg"],
        ["--model", "m"],
        ["a.jpg", "--model", "m", "--batch_size", "0"],
        ["a.jpg", "--model", "m", "--format", "xml"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_sample_images_match_direct_generate(checkpoint, loaded, sample_image_paths, capsys):
    paths = sample_image_paths[:6]  # batches of 4 + 2
    status, out, err = run(
        capsys,
        *paths,
        "--model",
        checkpoint,
        "--format",
        "jsonl",
        "--batch_size",
        "4",
        "--max_new_tokens",
        MAX_NEW_TOKENS,
    )
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [record["file"] for record in records] == [str(path) for path in paths]
    model, processor = loaded
    expected = [reference_caption(model, processor, Image.open(path).convert("RGB")) for path in paths]
    assert [record["text"] for record in records] == expected
    assert all(expected) and len(set(expected)) > 1  # real, image-dependent text, not six empty strings
    # The library function gives the same captions with another batch size.
    images = [load_image(path) for path in paths]
    assert caption_images(model, processor, images, batch_size=3, max_new_tokens=int(MAX_NEW_TOKENS)) == expected


def test_odd_inputs_captioned_and_corrupt_file_reported(checkpoint, loaded, odd_folder, capsys):
    status, out, err = run(capsys, odd_folder, "--model", checkpoint, "--max_new_tokens", MAX_NEW_TOKENS)
    assert status == 1
    rows = [line.split("\t") for line in out.splitlines()]
    good = ["a_tiff.tif", "b_gray.png", "c_rgba.png", "d_16bit.png"]
    assert [Path(file).name for file, _ in rows] == good  # one record per readable image, the corrupt one skipped
    model, processor = loaded
    expected = [reference_caption(model, processor, load_image(odd_folder / name)) for name in good]
    assert [caption for _, caption in rows] == expected
    assert "e_corrupt.jpg" in err and "UnidentifiedImageError" in err
    assert "notes.txt" not in out + err  # not an image extension: never read


def test_formats_agree_and_parse(checkpoint, sample_image_paths, capsys):
    paths = sample_image_paths[6:9]
    outputs = {}
    for output_format in ("text", "jsonl", "csv"):
        status, out, _ = run(
            capsys, *paths, "--model", checkpoint, "--format", output_format, "--max_new_tokens", MAX_NEW_TOKENS
        )
        assert status == 0
        outputs[output_format] = out
    text = [tuple(line.split("\t")) for line in outputs["text"].splitlines()]
    jsonl = [json.loads(line) for line in outputs["jsonl"].splitlines()]
    reader = csv.DictReader(io.StringIO(outputs["csv"]))
    rows = list(reader)
    assert reader.fieldnames == ["file", "text"]
    assert [(row["file"], row["text"]) for row in rows] == text
    assert [(record["file"], record["text"]) for record in jsonl] == text
    assert [file for file, _ in text] == [str(path) for path in paths]


def test_grid_png_is_written_and_not_blank(checkpoint, sample_image_paths, tmp_path, capsys):
    grid = tmp_path / "out" / "grid.png"
    status, out, _ = run(
        capsys,
        *sample_image_paths[:5],
        "--model",
        checkpoint,
        "--grid",
        grid,
        "--grid_max_images",
        "3",
        "--max_new_tokens",
        MAX_NEW_TOKENS,
    )
    assert status == 0 and len(out.splitlines()) == 5
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.width > 0 and image.height > 0
        pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    assert pixels.var() > 0
    # The aerial photos are drawn, not only text: a sizeable share of pixels is coloured (R != G).
    assert (pixels[..., 0] != pixels[..., 1]).mean() > 0.1
    # 3 images in a row of 3 columns: wider than tall.
    assert pixels.shape[1] > pixels.shape[0]


def test_render_grid_of_pil_images_keeps_line_breaks(sample_images, tmp_path):
    """finetune.py's samples.png path: PIL images, captions with a line break, 4 columns."""
    images = [*sample_images, sample_images[0]]  # 5 images -> 2 rows of 4
    captions = [f"generated caption {index}\n[ref] a reference long enough to be wrapped" for index in range(5)]
    out = inference.render_grid(images, captions, tmp_path / "samples.png", columns=4, wrap=36)
    with Image.open(out) as image:
        assert image.size == (4 * 320, 2 * 460)  # 3.2 x 4.6 inches per cell at 100 dpi
        assert np.asarray(image.convert("L")).var() > 0
    with pytest.raises(ValueError, match="as many captions as images"):
        inference.render_grid(images, captions[:2], tmp_path / "bad.png")


def test_shared_data_images(checkpoint, shared_data, capsys):
    folder = shared_data / "risc-mini" / "resized"
    expected = sorted(path.name for path in folder.glob("*.jpg"))
    status, out, err = run(
        capsys,
        folder,
        "--model",
        checkpoint,
        "--format",
        "jsonl",
        "--batch_size",
        "8",
        "--max_new_tokens",
        MAX_NEW_TOKENS,
    )
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(record["file"]).name for record in records] == expected
    assert all(record["text"] for record in records)


def test_process_exit_status_is_1_after_writing_good_records(checkpoint, odd_folder, sample_image_paths, tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "inference.py"),
            str(odd_folder / "e_corrupt.jpg"),
            str(sample_image_paths[0]),
            "--model",
            str(checkpoint),
            "--format",
            "csv",
            "--max_new_tokens",
            "3",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 1, completed.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(completed.stdout)))
    assert [row["file"] for row in rows] == [str(sample_image_paths[0])]
    assert "e_corrupt.jpg" in completed.stderr and "1 of 2 files could not be read" in completed.stderr


@pytest.mark.parametrize(
    "reference", ["/nonexistent/model", "./missing-model", "outputs-missing/run/merged", "~/nope"]
)
def test_a_missing_model_folder_is_one_line_and_no_network(reference, sample_image_paths, monkeypatch, capsys):
    """Online (as in a venv activated by hand), a reference shaped like a local path never reaches the Hub client."""
    from huggingface_hub import constants

    def no_loading(*args, **kwargs):
        raise AssertionError("from_pretrained was called for a missing local folder")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", no_loading)
    status, out, err = run(capsys, sample_image_paths[0], "--model", reference)
    assert status == 2 and out == ""
    assert err == (
        f"inference.py: error: --model {reference!r}: the folder does not exist. Fix: pass an existing model folder "
        "(e.g. examples/rs-mini; `python -m scripts.make_tiny_checkpoint DIR` builds a random test model) or a Hub "
        "id owner/name.\n"
    )


def test_a_folder_that_is_not_a_model_is_named(sample_image_paths, tmp_path, capsys):
    status, _, err = run(capsys, sample_image_paths[0], "--model", tmp_path)
    assert status == 2 and err.count("\n") == 1 and f"{str(tmp_path)!r} is a folder without config.json" in err


def test_a_missing_file_among_good_ones_is_reported_and_the_others_answered(checkpoint, sample_image_paths, capsys):
    good = [str(path) for path in sample_image_paths[:2]]
    status, out, err = run(
        capsys, good[0], "gone/missing.jpg", good[1], "--model", checkpoint, "--max_new_tokens", "3"
    )
    assert status == 1
    assert [line.split("\t")[0] for line in out.splitlines()] == good
    assert "skipped: input 'gone/missing.jpg' matches no image" in err and "1 of 3 files could not be read" in err
