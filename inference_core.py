"""The inference core under inference.py, the app, the benches and the published model's measurements: load a model
as Hub code on the right device, choose the task a user asks for (as the model recorded it), decode as the task
recorded unless the user says otherwise, run it on a batch of images (generate from the prompt alone, or rank a
closed set of answers), and give each result as a record and as text lines.

```python
>>> model, processor = load_model("examples/rs-mini")  # doctest: +SKIP
>>> task = choose_task(model.config, "classify")  # doctest: +SKIP
>>> run_task(model, processor, [load_image("RSICD_stadium_57.jpg")], task)  # doctest: +SKIP
[{'text': 'stadium'}]
```
"""

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from collators import IMAGE_TOKEN
from tasks import DEFAULT_PROMPT, Task, task_for_prompt, task_from_model
from tasks.likelihood import answer_probabilities, answer_tokens, scored_pieces
from tasks.tiling import chosen_overlap, tile_boxes

# Used only where neither the user, the task nor the model's generation_config names a value.
FALLBACK_DECODING = {"num_beams": 1, "max_new_tokens": 30}


def choose_task(model_config, name: str, classes: str | None = None, question: str | None = None, prompt=None):
    """The task of a run: a user's own `prompt`'s (`tasks.task_for_prompt`) when given, else task `name` as the
    model recorded it (`classes`: 'a ; b' to detect, or the one to count; `question`: a question of your own)."""
    if prompt is not None:
        return task_for_prompt(prompt)
    return task_from_model(name, model_config, classes=classes, question=question)


def decoding_settings(
    model, task: Task | None = None, num_beams: int | None = None, max_new_tokens: int | None = None
) -> dict[str, int]:
    """{"num_beams", "max_new_tokens"}: the given values, else the task's recorded decoding (`Task.generation`:
    detection greedy with room for every box), else the model's own `generation_config` (what a finetune.py run
    saves: the decoding its reported caption scores were measured with)."""
    config = getattr(model, "generation_config", None)
    recorded = dict(getattr(task, "generation", None) or {})
    given = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
    return {
        name: int(
            value
            if value is not None
            else recorded.get(name) or getattr(config, name, None) or FALLBACK_DECODING[name]
        )
        for name, value in given.items()
    }


def generation_inputs(model, processor, images: Sequence[Image.Image], prompt: str) -> dict[str, torch.Tensor]:
    """`"<image>" + prompt` for every image, on the model's device (pixels in its dtype): what `generate` takes."""
    images = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
    text = [IMAGE_TOKEN + prompt.removeprefix(IMAGE_TOKEN)] * len(images)
    inputs = processor(images=images, text=text, return_tensors="pt", padding="longest")
    return {
        key: value.to(model.device, dtype=model.dtype if key == "pixel_values" else None)
        for key, value in inputs.items()
        if key in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")  # not the empty `labels`
    }


def generate_texts(
    model,
    processor,
    images: Sequence[Image.Image],
    prompt: str = DEFAULT_PROMPT,
    batch_size: int = 8,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    **generate_kwargs,
) -> list[str]:
    """The decoded text generated for each RGB PIL image from `"<image>" + prompt` only, the prompt sliced off
    (`<loc>` tokens kept: detection reads them).

    Decoding is deterministic (no sampling); `num_beams` / `max_new_tokens` left as None take the model's
    `generation_config` (`decoding_settings`), as do its other settings. Extra keyword arguments go to `generate`.
    """
    prompt = prompt.removeprefix(IMAGE_TOKEN)
    decoding = decoding_settings(model, None, num_beams, max_new_tokens)
    texts: list[str] = []
    for start in range(0, len(images), batch_size):
        inputs = generation_inputs(model, processor, images[start : start + batch_size], prompt)
        with torch.inference_mode():
            sequences = model.generate(**inputs, do_sample=False, **decoding, **generate_kwargs)
        # Every row has the same prompt, so the (left-padded) prompt length is the input width.
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :]
        texts += [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return texts


def choose_answers(
    model, processor, images: Sequence[Image.Image], prompt: str, answers: Sequence[str], batch_size: int = 8
) -> list[tuple[str, float]]:
    """For each RGB PIL image, the likeliest of the closed set `answers` after `"<image>" + prompt` (e.g. the scene
    among the classes the model was trained on; `tasks.likelihood`), always one of them, never free text, with its
    score: its probability normalised over the candidates (`answer_probabilities`)."""
    tokens, lengths = answer_tokens(processor.tokenizer, answers)  # once: every batch ranks the same answers
    chosen: list[tuple[str, float]] = []
    for start in range(0, len(images), batch_size):
        inputs = generation_inputs(model, processor, images[start : start + batch_size], prompt)
        with torch.inference_mode():
            probabilities = answer_probabilities(model, inputs, tokens, lengths)
        best, index = probabilities.max(dim=1)
        chosen += [(answers[i], round(float(p), 4)) for i, p in zip(index.tolist(), best.tolist())]
    return chosen


def generate_scored(
    model,
    processor,
    images: Sequence[Image.Image],
    prompt: str,
    batch_size: int = 8,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
):
    """(text, [(token text, probability), ...]) per RGB PIL image: what `generate_texts` generates (same arguments),
    with each new token's probability under the decoding that chose it (`compute_transition_scores`, beams too)."""
    settings = decoding_settings(model, None, num_beams, max_new_tokens)
    tokenizer, answers = processor.tokenizer, []
    for start in range(0, len(images), batch_size):
        inputs = generation_inputs(
            model, processor, images[start : start + batch_size], prompt.removeprefix(IMAGE_TOKEN)
        )
        with torch.inference_mode():
            out = model.generate(
                **inputs, do_sample=False, output_scores=True, return_dict_in_generate=True, **settings
            )
            log_probs = model.compute_transition_scores(
                out.sequences, out.scores, out.get("beam_indices"), normalize_logits=True
            )  # (B, T)
        new_tokens = out.sequences[:, inputs["input_ids"].shape[1] :]
        for ids, row in zip(new_tokens.tolist(), log_probs.exp().tolist()):
            answers.append(
                (tokenizer.decode(ids, skip_special_tokens=True).strip(), scored_pieces(tokenizer, ids, row))
            )
    return answers


def run_task(model, processor, images: Sequence[Image.Image], task: Task, batch_size: int = 8, **decoding):
    """Each RGB PIL image's result for `task` (`Task.read`: {"text", ...its own fields}): boxes in the image's
    pixels, scored from their tokens' probabilities for a task that reads them; a ranked answer with its "score".
    `decoding`: `num_beams` / `max_new_tokens` of the user's, else the task's recorded decoding."""
    if task.token_scores and not task.answers:
        settings = decoding_settings(model, task, **decoding)
        scored = generate_scored(model, processor, images, task.prompt, batch_size, **settings)
        return [task.read(text, *image.size, tokens=tokens) for (text, tokens), image in zip(scored, images)]
    if task.answers:  # a closed set, ranked: each answer with its normalised probability
        ranked = choose_answers(model, processor, images, task.prompt, task.answers, batch_size)
        return [{**task.read(text, *image.size), "score": score} for (text, score), image in zip(ranked, images)]
    settings = decoding_settings(model, task, **decoding)
    texts = generate_texts(model, processor, images, task.prompt, batch_size, **settings)
    return [task.read(text, *image.size) for text, image in zip(texts, images)]


def run_tiled(model, processor, images, task: Task, tile_size: int, overlap=None, batch_size: int = 8, **decoding):
    """Each RGB PIL image's result answered in tiles of `tile_size` pixels (`tasks.tiling.tile_boxes`, overlap
    default `chosen_overlap`: the task's recorded one, else 1/8 tile) and merged by the task (`Task.merge_tiles`,
    `Task.merged_result`); an image no larger than a tile is one input."""
    overlap = chosen_overlap(task, tile_size, overlap)
    results = []
    for image in images:
        tiles = tile_boxes(*image.size, tile_size, overlap)
        if len(tiles) == 1:
            results.extend(run_task(model, processor, [image], task, batch_size, **decoding))
            continue
        answers = run_task(model, processor, [image.crop(tile) for tile in tiles], task, batch_size, **decoding)
        results.append(task.merged_result(task.merge_tiles(list(zip(tiles, answers)))))
    return results


def result_record(file: str, task: Task, result: dict) -> dict:
    """One JSONL record of inference: {"file", "task", "text", ...the task's own fields}."""
    return {"file": file, "task": task.name, **result}


def text_lines(file: str, task: Task, result: dict) -> list[str]:
    """The text form of one result: `file<TAB>value<TAB>...` per line (`Task.text_rows`: one line per box for
    detection, its box as `x1,y1,x2,y2`)."""
    lines = []
    for row in task.text_rows(result):
        values = [",".join(map(str, value)) if isinstance(value, list) else str(value) for value in row]
        lines.append("\t".join([file, *values]))
    return lines


def csv_rows(file: str, task: Task, result: dict) -> list[list]:
    """The CSV form of one result: `[file, *values]` per line, a box's coordinates in columns of their own
    (header: "file" + `Task.text_header`)."""
    rows = []
    for row in task.text_rows(result):
        rows.append([file, *(item for value in row for item in (value if isinstance(value, list) else [value]))])
    return rows


def caption_images(model, processor, images: Sequence[Image.Image], prompt: str = DEFAULT_PROMPT, *args, **kwargs):
    """The texts `prompt`'s task reads (captions, cleaned) from what `generate_texts` (same arguments, `generate`
    keywords included) generates for RGB PIL images."""
    task = task_for_prompt(prompt)
    texts = generate_texts(model, processor, images, task.prompt, *args, **kwargs)
    return [task.read(text, *image.size)["text"] for text, image in zip(texts, images)]


def pick_device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA in bf16 where supported (fp32 otherwise), else CPU in fp32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.device("cpu"), torch.float32


class ModelNotFoundError(FileNotFoundError):
    """A model reference that names no saved model: the message says why and how to fix it, in one line."""


def check_model_location(name: str, revision: str | None = None) -> None:
    """Raise ModelNotFoundError (message: what is wrong and the fix) for a model reference that cannot load, before
    any network call: a path that looks local but is not a model folder, or an uncached Hub id while offline.

    A Hub id is `owner/name`; anything else (absolute, ./ or ~, more than one '/', or an `owner` that is a folder
    here, such as outputs/...) is a local path, and a missing local path never reaches the Hub client's retries.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{name!r} is a folder without config.json, not a saved model. Fix: pass the folder that "
                "save_pretrained wrote (e.g. a run's output_dir/merged)."
            )
        return
    looks_local = (
        path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1 or Path(name.split("/")[0]).is_dir()
    )
    if looks_local:
        raise ModelNotFoundError(
            f"{name!r}: the folder does not exist. Fix: pass an existing model folder (e.g. examples/rs-mini; "
            "`python -m scripts.make_tiny_checkpoint DIR` builds a random test model) or a Hub id owner/name."
        )
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if constants.HF_HUB_OFFLINE and not isinstance(cached, str):
        raise ModelNotFoundError(
            f"{name!r} is not a local folder, and as a Hub id it is not in the cache while HF_HUB_OFFLINE=1. "
            "Fix: download it once online (unset HF_HUB_OFFLINE; `make` sets it), or pass a local folder."
        )


def load_adapter(folder: Path, dtype: torch.dtype):
    """A PEFT LoRA folder (finetune.py's output_dir/adapter, what QLoRA users keep): the base it names rebuilt with
    the adapter's TSN settings (its config.json), the adapter merged into it in float32 (as publishing merges)."""
    from peft import PeftConfig, PeftModel

    from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

    base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    try:
        check_model_location(base)
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"{str(folder)!r} is a LoRA adapter of the base {base!r}, which cannot be loaded here ({error}) Fix: pass "
            "the run's merged/ folder instead, or make the base available at that path."
        ) from error
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    options = {key: value for key, value in config.items() if key.startswith("tsn_")}
    model = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(
        base, dtype=torch.float32, **{**options, "tsn_pretrained_backbone": False}
    )
    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload().to(dtype)


def load_model(model_name_or_path: str):
    """(model in eval mode on the automatic device/dtype, processor) from a folder or Hub id, as Hub custom code; a
    LoRA adapter folder loads its base with the adapter merged (`load_adapter`).

    A reference that cannot load raises ModelNotFoundError before any network call (`check_model_location`)."""
    check_model_location(model_name_or_path)
    device, dtype = pick_device_and_dtype()
    folder = Path(model_name_or_path).expanduser()
    try:
        if (folder / "adapter_config.json").is_file():
            model = load_adapter(folder, dtype)
        else:
            model = AutoModelForImageTextToText.from_pretrained(
                model_name_or_path, trust_remote_code=True, dtype=dtype
            )
        processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=True)
    except OSError as error:  # a Hub id that is unreachable, unknown or gated: transformers says which
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelNotFoundError(f"{model_name_or_path!r} could not be loaded: {reason}") from error
    return model.to(device).eval(), processor
