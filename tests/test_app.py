"""app.py in a real browser (headless Chromium): the caption in the page equals inference.py's for the same image
and settings, and bad uploads get a message in the page while good images are still captioned. Without Chromium
the browser tests skip with the reason; the file checks run everywhere."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import app
import inference
from scripts.app_browser import browser_missing, caption_in_page, chromium, running_app

REPO_ROOT = Path(__file__).resolve().parents[1]
BEAMS, MAX_NEW_TOKENS = 2, 10
needs_browser = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


def inference_lines(model: Path, images: list[Path], *options: str) -> list[str]:
    command = [
        sys.executable,
        str(REPO_ROOT / "inference.py"),
        *map(str, images),
        "--model",
        str(model),
        "--num_beams",
        str(BEAMS),
        "--max_new_tokens",
        str(MAX_NEW_TOKENS),
        *options,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout.splitlines()


def inference_captions(model: Path, images: list[Path]) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in inference_lines(model, images))


def page_captions(text: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in text.splitlines())


@pytest.fixture(scope="module")
def browser_app(tiny_checkpoint):
    model = tiny_checkpoint()
    with running_app(model) as url, chromium() as driver:
        yield model, url, driver


@needs_browser
def test_caption_in_the_browser_equals_inference_py(browser_app, sample_image_paths):
    model, url, driver = browser_app
    images = sample_image_paths[:3]
    captions, message = caption_in_page(driver, url, images, num_beams=BEAMS, max_new_tokens=MAX_NEW_TOKENS)
    expected = inference_captions(model, images)
    assert page_captions(captions) == {Path(path).name: caption for path, caption in expected.items()}
    assert any(expected.values()) and message.strip() == ""


@needs_browser
def test_detect_in_the_browser_equals_inference_py(browser_app, sample_image_paths):
    model, url, driver = browser_app
    images = sample_image_paths[:2]
    results, message = caption_in_page(
        driver, url, images, num_beams=1, max_new_tokens=MAX_NEW_TOKENS, detect_classes="airplane ; storage tank"
    )
    expected = inference_lines(model, images, "--prompt", "detect airplane ; storage tank", "--num_beams", "1")
    # one line per box (file, label, x1,y1,x2,y2), or "file<TAB>-" for an image without one
    names = {str(path): Path(path).name for path in images}
    assert results.splitlines() == [names[line.split("\t", 1)[0]] + "\t" + line.split("\t", 1)[1] for line in expected]
    assert message.strip() == ""


@needs_browser
def test_bad_uploads_get_a_message_and_good_images_still_caption(browser_app, sample_image_paths, tmp_path):
    model, url, driver = browser_app
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_image_paths[0].read_bytes()[:600])
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is a text file, not an image\n")
    good = sample_image_paths[1]
    captions, message = caption_in_page(
        driver, url, [truncated, not_an_image, good], num_beams=BEAMS, max_new_tokens=MAX_NEW_TOKENS
    )
    assert "truncated.jpg: not a readable image" in message and "notes.png: not a readable image" in message
    assert page_captions(captions) == {good.name: inference_captions(model, [good])[str(good)]}
    # The app is still alive: a good upload alone captions again, without a message.
    again, message = caption_in_page(driver, url, [good], num_beams=BEAMS, max_new_tokens=MAX_NEW_TOKENS)
    assert page_captions(again) == page_captions(captions) and message.strip() == ""


def test_read_images_refuses_oversized_files_and_pixel_counts(sample_image_paths, tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 3000), "white").save(big)
    monkeypatch.setattr(app, "MAX_IMAGE_PIXELS", 2000 * 2000)
    images, names, problems = app.read_images([str(big), str(sample_image_paths[0])])
    assert names == [sample_image_paths[0].name] and len(images) == 1
    assert problems == ["big.png: not a readable image (3000x3000 pixels is over the limit of 4,000,000 pixels)."]
    monkeypatch.setattr(app, "MAX_IMAGE_BYTES", 1000)
    _, names, problems = app.read_images([str(sample_image_paths[0])])
    assert names == [] and "MB is over the" in problems[0]


def test_the_apps_detection_decodes_as_the_model_recorded_it(
    tiny_checkpoint, sample_image_paths, tmp_path, monkeypatch
):
    """Beams and length left at 0 take the task's recorded decoding (greedy, room for every box), as inference.py
    does; set above 0 they win."""
    import json
    import shutil

    import inference_core

    model_dir = Path(shutil.copytree(tiny_checkpoint(), tmp_path / "detector"))
    config = json.loads((model_dir / "config.json").read_text())
    generation = {"num_beams": 1, "max_new_tokens": 23}
    config["trained_tasks"] = {
        "detect": {"prompt": "detect ship ; car", "classes": ["ship", "car"], "generation": generation}
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    decoded = []

    def recording(model, processor, images, prompt, batch_size, num_beams, max_new_tokens, **kwargs):
        decoded.append((prompt, num_beams, max_new_tokens))
        return original(model, processor, images, prompt, batch_size, num_beams, max_new_tokens, **kwargs)

    original = inference_core.generate_scored  # detection generates with its tokens' probabilities (box scores)
    monkeypatch.setattr(inference_core, "generate_scored", recording)
    models = {str(model_dir): app.load_model(str(model_dir))}
    image = str(sample_image_paths[0])
    _, lines, message = app.answer(models, [image], "detect", "", "", 0, 0)
    assert decoded == [("detect ship ; car", 1, 23)] and message == ""
    assert inference.main([image, "--model", str(model_dir), "--task", "detect"]) in (0,)
    assert decoded[-1] == ("detect ship ; car", 1, 23)
    app.answer(models, [image], "detect", "", "", 2, 7)
    assert decoded[-1] == ("detect ship ; car", 2, 7)
    assert all(line.startswith(f"{Path(image).name}\t") for line in lines.splitlines())
