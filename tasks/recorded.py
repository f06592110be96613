"""The tasks a model was trained on, as its config records them (`config.task_prompts`), and the task object a user
asks for by name (`inference.py --task count --classes airplane`).

finetune.py writes, per task kind, the prompt it trained with, the classes it knows and its decoding settings:

    {"caption": {"prompt": "caption en"},
     "classify": {"prompt": "answer en what is the scene?", "classes": ["airport", ...]},
     "count": {"prompt": "answer en how many {} are there?", "classes": ["airplane", ...]},
     "detect": {"prompt": "detect airplane ; ship", "classes": ["airplane", "ship"],
                "generation": {"num_beams": 1, "max_new_tokens": 340}}}

A model without the record (any PaliGemma) gets each task's default prompt.
"""

from processing import DEFAULT_PROMPT

from .caption import CaptionTask
from .classify import PROMPT as CLASSIFY_PROMPT
from .classify import ClassifyTask
from .count import COUNT_TEMPLATE, CountTask, plural
from .detect import DetectTask
from .loc_codec import prompt_classes

CONFIG_KEY = "task_prompts"
TASK_KINDS = ("caption", "classify", "count", "detect")


def task_record(task) -> dict:
    """What a model's config keeps of one trained task."""
    record = {"prompt": COUNT_TEMPLATE if task.name == "count" else task.prompt}
    if task.name != "caption":
        record["classes"] = list(task.classes)
    if task.name == "detect":
        record["generation"] = dict(task.generation)
    return record


def recorded_tasks(tasks: dict | None, caption_prompt: str = DEFAULT_PROMPT) -> dict[str, dict]:
    """{task kind: record} of a run's tasks (name -> task object; none: captions with `caption_prompt`); of two
    datasets of one kind, the first's."""
    if not tasks:
        return {"caption": {"prompt": caption_prompt}}
    records = {}
    for task in tasks.values():
        records.setdefault(task.name, task_record(task))
    return records


def _split_classes(classes: str | None) -> list[str]:
    return [name.strip() for name in (classes or "").split(";") if name.strip()]


def task_from_record(kind: str, recorded: dict | None, classes: str | None = None, question: str | None = None):
    """The task `kind` of a model whose config recorded `recorded` (None: the defaults). `classes` (`a ; b`) picks
    the classes to detect or the one to count; `question` is a counting question of the user's own."""
    if kind not in TASK_KINDS:
        raise ValueError(f"--task {kind!r} is invalid; use one of {list(TASK_KINDS)}.")
    record = (recorded or {}).get(kind, {})
    known = list(record.get("classes", []))
    wanted = _split_classes(classes)
    if kind == "caption":
        return CaptionTask(record.get("prompt", DEFAULT_PROMPT))
    if kind == "classify":
        return ClassifyTask(known, prompt=record.get("prompt", CLASSIFY_PROMPT))
    if kind == "count":
        if question:
            question = question if question.startswith("answer ") else f"answer en {question}"
            return CountTask(known, question=question)
        if len(wanted) != 1 and len(known) != 1:
            hint = f" (this model counts {' ; '.join(known)})" if known else ""
            raise ValueError(f"--task count needs one class to count: --classes NAME or --question TEXT{hint}.")
        name = (wanted or known)[0]
        return CountTask(known or [name], question=record.get("prompt", COUNT_TEMPLATE).format(plural(name)))
    task = DetectTask(wanted or known or prompt_classes(record.get("prompt", "detect ")))
    if not task.classes:
        raise ValueError("--task detect needs the classes to find: --classes 'airplane ; ship'.")
    if record.get("generation"):
        task.generation = dict(record["generation"])
    return task
