"""The registry of tasks by name, and the tasks a model recorded. A task module registers its class with
`@register_task`: the modules of this package when `tasks` is imported, a task of your own from any module you
import first (docs/tasks.md).

A trained model's config keeps, per task, what inference needs to ask it again (`TASKS_CONFIG_KEY`), e.g.
`{"caption": {"prompt": "caption en"}, "detect": {"prompt": "detect airplane ; ship", "classes": [...],
"generation": {"num_beams": 1, ...}}}`; models saved before this key keep the same mapping under `task_prompts`.
"""

from .base import Task

TASKS_CONFIG_KEY = "trained_tasks"
LEGACY_CONFIG_KEYS = ("task_prompts",)
DEFAULT_TASK = "caption"  # what a prompt of no other task's kind asks for, and the CLIs' default

_REGISTRY: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make `cls` available by `cls.name` (a second class of the same name is an error)."""
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice ({known.__module__} and {cls.__module__}).")
    _REGISTRY[cls.name] = cls
    return cls


def task_names() -> list[str]:
    """Every registered task's name, in registration order."""
    return list(_REGISTRY)


def get_task(name: str) -> type[Task]:
    """The task class registered as `name`; a ValueError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"task {name!r} is unknown; use one of {task_names()}.") from None


def task_for_prompt(prompt: str) -> Task:
    """The task a PaliGemma prompt asks for (the first registered task that claims it); anything else is the
    default task's (captions, with that prompt)."""
    prompt = prompt.removeprefix("<image>")
    for cls in _REGISTRY.values():
        task = cls.for_prompt(prompt)
        if task is not None:
            return task
    return get_task(DEFAULT_TASK)(prompt)


def recorded_tasks(model_config) -> dict[str, dict]:
    """{task name: record} that a model's config (an object, or config.json's dict) keeps ({} without one)."""
    read = model_config.get if isinstance(model_config, dict) else lambda key: getattr(model_config, key, None)
    return dict(next(filter(None, map(read, (TASKS_CONFIG_KEY, *LEGACY_CONFIG_KEYS))), {}))


def task_from_records(name: str, records: dict[str, dict], **options) -> Task:
    """Task `name` as `records` ({task name: record}) keep it (its defaults when they do not), with the user's
    `options` (`classes`: 'a ; b', `question`)."""
    return get_task(name).from_record(records.get(name) or {}, options)


def task_from_model(name: str, model_config, **options) -> Task:
    """Task `name` as the model recorded it (`task_from_records` of its config's records)."""
    return task_from_records(name, recorded_tasks(model_config), **options)


def run_records(tasks: dict[str, Task]) -> dict[str, dict]:
    """{task name: record} of a run's tasks (dataset name -> task); of two datasets of one task, the first's."""
    records = {}
    for task in tasks.values():
        records.setdefault(task.name, task.to_record())
    return records
