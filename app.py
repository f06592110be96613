"""The captioner in a web page (Gradio Blocks): locally, and as a Hugging Face Space.

    python app.py [--model examples/rs-mini] [--compare_model MODEL] [--port 7860] [--host 127.0.0.1]

Drop or pick one or more aerial images (the bundled sample is offered as examples), choose the task (caption,
classify the scene, count one class, or detect a list of classes; each with the prompt the model recorded), set the
caption prompt, beams and length, and read the answer under each image or see its boxes drawn on it.
`--compare_model` adds a second model beside the first (before/after fine-tuning, `enhanced` vs `direct`). Any
model folder or Hub id works; the default is the model named in
`app_config.json` (what a Space export writes), else `examples/rs-mini`. Files that are not readable images,
truncated or too large are named in the page; the others are still captioned.
"""

import argparse
import json
import os
from pathlib import Path

import gradio as gr
from PIL import Image

from captioning import (
    ModelNotFoundError,
    check_model_location,
    decoding_settings,
    load_image,
    load_model,
    task_texts,
)
from processing import DEFAULT_PROMPT
from tasks import task_for_prompt
from tasks.recorded import CONFIG_KEY, TASK_KINDS, task_from_record

APP_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = APP_DIR / "dataset_builder" / "sample" / "resized"
DEFAULT_MODEL = "examples/rs-mini"
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # uploads above this are refused with a message, not decoded
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a larger image is refused before it is decoded (decompression bombs)
CAPTIONS_ID = "captions"


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
            image = load_image(path, max_pixels=MAX_IMAGE_PIXELS)
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # not an image, truncated, too large
            problems.append(f"{name}: not a readable image ({error}).")
            continue
        images.append(image)
        names.append(name)
    return images, names, problems


def build_demo(model_name: str, compare_name: str | None = None) -> gr.Blocks:
    models = {model_name: load_model(model_name)}
    if compare_name:
        models[compare_name] = load_model(compare_name)
    # The sliders start at the first model's own decoding (its generation_config): the settings of its scores.
    decoding = decoding_settings(models[model_name][0])
    recorded = getattr(models[model_name][0].config, CONFIG_KEY, None)  # the first model's task prompts

    def caption(paths, task_name, classes, prompt, num_beams, max_new_tokens):
        images, names, problems = read_images(paths)
        try:
            task = (
                task_for_prompt(prompt) if task_name == "caption" else task_from_record(task_name, recorded, classes)
            )
        except ValueError as error:  # no or bad class names
            return (*[[] for _ in models], "", f"- Classes: {error}")
        galleries, lines = [], []
        for name, (model, processor) in models.items():
            texts = task_texts(
                model, processor, images, task, num_beams=int(num_beams), max_new_tokens=int(max_new_tokens)
            )
            results = [task.read(text, *image.size) for text, image in zip(texts, images)]
            galleries.append([task.draw(result, image) for result, image in zip(results, images)])
            column = "" if len(models) == 1 else f"\t{Path(name).name}"
            for image_name, result in zip(names, results):
                if "boxes" not in result:
                    lines.append(f"{image_name}{column}\t{result['caption']}")
                    continue
                boxes = [f"\t{item['label']}\t{','.join(map(str, item['box']))}" for item in result["boxes"]]
                lines += [f"{image_name}{column}{box}" for box in boxes or ["\t-"]]
        message = "\n".join(f"- {problem}" for problem in problems)
        if not paths:
            message = "Add one or more images first."
        return (*galleries, "\n".join(lines), message)

    with gr.Blocks(title="TSN-PaliGemma aerial-image captioner", analytics_enabled=False) as demo:
        gr.Markdown("# TSN-PaliGemma: aerial-image captions\nDrop one or more aerial images, then press **Caption**.")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(
                    file_count="multiple", file_types=["image"], type="filepath", label="Images", elem_id="images"
                )
                task = gr.Radio(list(TASK_KINDS), value="caption", label="Task", elem_id="task")
                classes = gr.Textbox(
                    "airplane ; ship ; storage tank ; vehicle",
                    label="Classes (detect: the classes to find, separated by ;; count: the one class to count)",
                    elem_id="classes",
                )
                prompt = gr.Textbox(DEFAULT_PROMPT, label="Caption prompt (after <image>)", elem_id="prompt")
                num_beams = gr.Slider(1, 8, value=decoding["num_beams"], step=1, label="Beams", elem_id="beams")
                max_new_tokens = gr.Slider(
                    5, 512, value=decoding["max_new_tokens"], step=1, label="Max new tokens", elem_id="max_new_tokens"
                )
                button = gr.Button("Caption", variant="primary", elem_id="caption")
            with gr.Column(scale=2):
                galleries = [
                    gr.Gallery(label=Path(name).name, columns=3, height="auto", elem_id=f"gallery-{i}")
                    for i, name in enumerate(models)
                ]
                message = gr.Markdown(elem_id="message")
                captions = gr.Textbox(
                    label="Results (file, caption; detect: file, label, x1,y1,x2,y2 per box)",
                    lines=4,
                    elem_id=CAPTIONS_ID,
                )
        examples = sorted(SAMPLE_DIR.glob("*.jpg"))[:6]
        if examples:
            gr.Examples([[[str(path)]] for path in examples], inputs=[files], label="Bundled aerial images")
        inputs = [files, task, classes, prompt, num_beams, max_new_tokens]
        button.click(caption, inputs, [*galleries, captions, message])
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
