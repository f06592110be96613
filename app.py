"""The model in a web page (Gradio Blocks): locally, and as a Hugging Face Space.

    python app.py [--model examples/rs-mini] [--compare_model MODEL] [--port 7860] [--host 127.0.0.1]

Drop or pick one or more aerial images (the bundled sample is offered as examples), choose the task (every task of
`tasks/`: caption, name the scene, count one class, detect a list of classes, ...), optionally a prompt of your own,
and read the answer under each image or see its boxes drawn on it. The page runs the same inference core as
inference.py: each task is asked as the model recorded it and decoded as it recorded it (detection: greedy, room
for every box), unless beams or length are set above 0. `--compare_model` adds a second model beside the first
(before/after fine-tuning, `enhanced` vs `direct`). Any model folder or Hub id works; the default is the model named
in `app_config.json` (what a Space export writes), else `examples/rs-mini`. Files that are not readable images,
truncated or too large are named in the page; the others are still answered.
"""

import argparse
import json
import os
from pathlib import Path

import gradio as gr

from images import IMAGE_ERRORS, load_image
from inference_core import ModelNotFoundError, check_model_location, choose_task, load_model, run_task, text_lines
from tasks import DEFAULT_TASK, task_names

APP_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = APP_DIR / "dataset_builder" / "sample" / "resized"
DEFAULT_MODEL = "examples/rs-mini"
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # uploads above this are refused with a message, not decoded
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a larger image is refused before it is decoded (decompression bombs)
RESULTS_ID = "captions"


def default_model() -> str:
    """app_config.json's model (what a Space export writes), else the shipped example."""
    config = APP_DIR / "app_config.json"
    if config.is_file():
        return json.loads(config.read_text())["model"]
    return str(APP_DIR / DEFAULT_MODEL)


def read_images(paths: list[str]) -> tuple[list, list[str], list[str]]:
    """(RGB images, their names, one problem line per file that is not a usable image)."""
    images, names, problems = [], [], []
    for path in paths or []:
        name = Path(path).name
        size = os.path.getsize(path)
        if size > MAX_IMAGE_BYTES:
            problems.append(f"{name}: {size / 1e6:.1f} MB is over the {MAX_IMAGE_BYTES / 1e6:.0f} MB limit.")
            continue
        try:
            images.append(load_image(path, max_pixels=MAX_IMAGE_PIXELS))
        except IMAGE_ERRORS as error:  # not an image, truncated, too large
            problems.append(f"{name}: not a readable image ({error}).")
            continue
        names.append(name)
    return images, names, problems


def answer(models: dict, paths, task_name: str, classes: str, prompt: str, num_beams: float, max_new_tokens: float):
    """(one gallery per model, the results as text lines, a message): every image through the inference core. A
    beams or length of 0 decodes as the model recorded the task."""
    images, names, problems = read_images(paths)
    decoding = {"num_beams": int(num_beams) or None, "max_new_tokens": int(max_new_tokens) or None}
    galleries, lines = [], []
    for model_name, (model, processor) in models.items():
        try:
            task = choose_task(model.config, task_name, classes, prompt=prompt.strip() or None)
        except ValueError as error:  # no or bad class names
            return (*[[] for _ in models], "", f"- Task: {error}")
        results = run_task(model, processor, images, task, **decoding)
        galleries.append([task.draw(result, image) for result, image in zip(results, images)])
        column = [] if len(models) == 1 else [Path(model_name).name]
        for image_name, result in zip(names, results):
            lines += text_lines("\t".join([image_name, *column]), task, result)
    message = "\n".join(f"- {problem}" for problem in problems)
    return (*galleries, "\n".join(lines), message if paths else "Add one or more images first.")


def _settings_column():
    """The inputs: images, task, classes, an own prompt, decoding (0: as recorded), and the button."""
    files = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Images", elem_id="images")
    task = gr.Radio(task_names(), value=DEFAULT_TASK, label="Task", elem_id="task")
    classes = gr.Textbox(
        "airplane ; ship ; storage tank ; vehicle",
        label="Classes (detect: the classes to find, separated by ;; count: the one class to count)",
        elem_id="classes",
    )
    prompt = gr.Textbox("", label="Your own prompt after <image> (optional; it picks the task)", elem_id="prompt")
    num_beams = gr.Slider(0, 8, value=0, step=1, label="Beams (0: as the model recorded the task)", elem_id="beams")
    max_new_tokens = gr.Slider(
        0, 1024, value=0, step=1, label="Max new tokens (0: as the model recorded the task)", elem_id="max_new_tokens"
    )
    button = gr.Button("Run", variant="primary", elem_id="run")
    return button, [files, task, classes, prompt, num_beams, max_new_tokens]


def build_demo(model_name: str, compare_name: str | None = None) -> gr.Blocks:
    models = {name: load_model(name) for name in dict.fromkeys([model_name, compare_name]) if name}
    with gr.Blocks(title="TSN-PaliGemma aerial-image model", analytics_enabled=False) as demo:
        gr.Markdown("# TSN-PaliGemma: aerial images\nDrop one or more aerial images, pick a task, press **Run**.")
        with gr.Row():
            with gr.Column(scale=1):
                button, inputs = _settings_column()
            with gr.Column(scale=2):
                galleries = [
                    gr.Gallery(label=Path(name).name, columns=3, height="auto", elem_id=f"gallery-{index}")
                    for index, name in enumerate(models)
                ]
                message = gr.Markdown(elem_id="message")
                results = gr.Textbox(
                    label="Results (file, answer; detect: file, label, x1,y1,x2,y2 per box)",
                    lines=4,
                    elem_id=RESULTS_ID,
                )
        examples = sorted(SAMPLE_DIR.glob("*.jpg"))[:6]
        if examples:
            gr.Examples([[[str(path)]] for path in examples], inputs=[inputs[0]], label="Bundled aerial images")
        button.click(lambda *values: answer(models, *values), inputs, [*galleries, results, message])
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model folder or Hub id (default: the shipped example).")
    parser.add_argument("--compare_model", default=None, help="A second model shown beside the first.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    model = args.model or default_model()
    for option, name in (("--model", model), ("--compare_model", args.compare_model)):
        try:
            if name:
                check_model_location(name)
        except ModelNotFoundError as error:
            parser.error(f"{option} {error}")
    demo = build_demo(model, args.compare_model)
    # Gradio's own upload cap sits above ours, so an oversized image gets this app's message in the page.
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        ssr_mode=False,
        max_file_size=5 * MAX_IMAGE_BYTES,
        allowed_paths=[str(SAMPLE_DIR)],
    )


if __name__ == "__main__":
    main()
