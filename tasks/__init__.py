"""One module per task. A task owns four things: how a row becomes a training example (`prefix`, `suffix`), its
prompt, how generated text is read back (`record`: one line of predictions.jsonl with the parsed output and the
reference it is scored against) and how those records are scored (`score`). Collators, the trainer and the CLIs ask
the task; none of them knows what a caption or a box is.

>>> from tasks import CaptionTask
>>> CaptionTask("caption en", caption_choice="first").suffix({"captions": ["a plane .", "an airport ."]})
'a plane .'
"""

import re

from .caption import CaptionTask
from .classify import ClassifyTask, classification_metrics
from .count import CountTask, count_metrics
from .detect import DetectTask, detection_metrics
from .loc_codec import detect_prompt, encode_objects, parse_objects, prompt_classes

TASK_NAMES = ("caption", "detect", "classify", "count")
COUNT_QUESTION = re.compile(r"^answer en how many (.+) are there\?$")


def task_for_prompt(prompt: str):
    """The task a PaliGemma prompt asks for: `detect a ; b` detects those classes, `answer en what is the scene?`
    names the scene, `answer en how many ... are there?` counts; anything else is captioned."""
    prompt = prompt.removeprefix("<image>")
    if prompt.startswith("detect "):
        return DetectTask(prompt_classes(prompt))
    if prompt == ClassifyTask().prompt:
        return ClassifyTask()
    if COUNT_QUESTION.match(prompt):
        return CountTask([], question=prompt)
    return CaptionTask(prompt)


__all__ = [
    "TASK_NAMES",
    "CaptionTask",
    "ClassifyTask",
    "CountTask",
    "DetectTask",
    "classification_metrics",
    "count_metrics",
    "detect_prompt",
    "detection_metrics",
    "encode_objects",
    "parse_objects",
    "prompt_classes",
    "task_for_prompt",
]
