"""The tasks of TSN-PaliGemma, one module each, registered by name (`tasks.registry`). Importing the package
registers every task module in it: adding a task is adding a module (a `Task` subclass under `@register_task`).

>>> from tasks import get_task, task_for_prompt
>>> get_task("caption")("caption en", caption_choice="first").suffix({"captions": ["a plane .", "an airport ."]})
'a plane .'
>>> type(task_for_prompt("detect airplane ; ship")).__name__, task_for_prompt("detect airplane ; ship").classes
('DetectTask', ['airplane', 'ship'])
"""

import importlib
import pkgutil

from .base import RunContext, Task
from .registry import (
    DEFAULT_TASK,
    TASKS_CONFIG_KEY,
    get_task,
    recorded_tasks,
    register_task,
    run_records,
    task_for_prompt,
    task_from_model,
    task_from_records,
    task_names,
)

# Helpers of the task modules, not tasks: imported by them, never registered.
_HELPERS = {"answers", "base", "box_merging", "card_text", "likelihood", "loc_codec", "registry", "rows", "tiling"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS:
        importlib.import_module(f"{__name__}.{_module.name}")

DEFAULT_PROMPT = get_task(DEFAULT_TASK).default_prompt  # the CLIs' default prompt

__all__ = [
    "DEFAULT_PROMPT",
    "DEFAULT_TASK",
    "TASKS_CONFIG_KEY",
    "RunContext",
    "Task",
    "get_task",
    "recorded_tasks",
    "register_task",
    "run_records",
    "task_for_prompt",
    "task_from_model",
    "task_from_records",
    "task_names",
]
