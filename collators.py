"""The processor a model needs, and the collators that turn rows into training, evaluation and self-critical
batches.

Each row's task (`tasks/`) writes its prefix and suffix: rows of one dataset (e.g. `dataset_builder.load_risc`'s
`image`, `captions`, `source`, `filename`) belong to the collator's `task`; task-tagged rows of `finetuning.data`
(mixtures, boxes) name theirs in a `task` column, one of `tasks` (dataset name -> task object).

```python
>>> from transformers import AutoConfig, AutoProcessor
>>> config = AutoConfig.from_pretrained("tiny-tsn", trust_remote_code=True)  # doctest: +SKIP
>>> processor = processor_for_config(AutoProcessor.from_pretrained("tiny-tsn"), config)  # doctest: +SKIP
>>> batch = TSNPaliGemmaTrainCollator(processor)(rows)  # doctest: +SKIP
```
"""

import copy
import random
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import PaliGemmaProcessor

from images import to_rgb
from tasks import DEFAULT_TASK, Task, get_task

IMAGE_TOKEN = "<image>"
# The 8 symmetries of the square (identity, 3 rotations, 4 flips): an aerial image has no canonical orientation.
DIHEDRAL_TRANSFORMS = (None, *Image.Transpose)


def processor_for_config(processor: PaliGemmaProcessor, config) -> PaliGemmaProcessor:
    """A processor whose image size and image token count match `config` (adapter and replace differ from base).

    `config` is a TSNPaliGemmaConfig (uses `image_seq_length`) or a plain PaliGemmaConfig.
    """
    image_seq_length = getattr(config, "image_seq_length", None)
    if image_seq_length is None:  # plain PaliGemma: one token per SigLIP patch
        vision = config.vision_config
        image_seq_length = (vision.image_size // vision.patch_size) ** 2
    size = config.vision_config.image_size
    image_processor = copy.deepcopy(processor.image_processor)
    image_processor.image_seq_length = image_seq_length
    image_processor.size = {"height": size, "width": size}
    return PaliGemmaProcessor(
        image_processor=image_processor, tokenizer=processor.tokenizer, chat_template=processor.chat_template
    )


def _rgb(image: Any) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"Expected a PIL image in the row's 'image' column, got {type(image).__name__}.")
    return to_rgb(image)  # as inference reads a file (images.py): training and evaluation see the same pixels


@dataclass
class TSNPaliGemmaTrainCollator:
    """Training batches: `"<image>" + prefix`, then the suffix; labels only on the suffix.

    `task` (default: the default task with its default prompt) writes the prefix and suffix of rows without a
    `task` column; a task-tagged row's comes from `tasks`. A caption task draws one of the row's captions each time
    it is seen (python's `random`, whose state the Trainer checkpoints, so a resumed run draws the same).
    augment: each image gets one of the 8 rotations/flips of the square, drawn with python's `random` too, and the
    task writes its suffix for the moved image (boxes move with it). A task trained on tiles gets its row's tile
    first (a random one for training rows, from python's `random` as well).
    """

    processor: PaliGemmaProcessor
    task: Task | None = None
    max_length: int | None = None
    augment: bool = False
    tasks: dict | None = None  # dataset name -> task object of task-tagged rows
    cell_grid: int = 0  # > 0: add `cell_targets` (B, cell_grid ** 2) for the auxiliary image-token loss

    def __post_init__(self):
        self.task = self.task or get_task(DEFAULT_TASK)()

    def task_of(self, row: dict) -> Task:
        name = row.get("task")
        if name is None:
            return self.task
        if not self.tasks or name not in self.tasks:
            raise ValueError(f"row of task {name!r}, but this run has tasks {sorted(self.tasks or [])}.")
        return self.tasks[name]

    def _text_kwargs(self) -> dict:
        if self.max_length is None:
            return {"padding": "longest"}
        return {"padding": "longest", "truncation": "only_second", "max_length": self.max_length}

    def _moves(self, count: int) -> list:
        """One rotation/flip per image when `augment` is on (None: as is)."""
        return [random.choice(DIHEDRAL_TRANSFORMS) for _ in range(count)] if self.augment else [None] * count

    def _images(self, rows: list[dict], moves: list) -> list[Image.Image]:
        images = [_rgb(row["image"]) for row in rows]
        return [image if move is None else image.transpose(move) for image, move in zip(images, moves)]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        moves = self._moves(len(rows))
        tasks = [self.task_of(row) for row in rows]
        # A task trained on tiles cuts its row's tile here (`Task.tile_view`): the boxes move into it before the
        # rotation/flip moves them again.
        views = [task.tile_view(row, _rgb(row["image"])) for task, row in zip(tasks, rows)]
        rows = [row for _, row in views]
        images = [image if move is None else image.transpose(move) for (image, _), move in zip(views, moves)]
        batch = self.processor(
            text=[IMAGE_TOKEN + task.prefix(row) for task, row in zip(tasks, rows)],
            images=images,
            suffix=[task.suffix(row, move) for task, row, move in zip(tasks, rows, moves)],
            return_tensors="pt",
            padding_side="right",  # positions must not shift under the prefix: pad after the suffix
            **self._text_kwargs(),
        )
        # The processor masks the prefix (token_type_ids == 0); padding is masked here explicitly.
        batch["labels"] = batch["labels"].masked_fill(batch["attention_mask"] == 0, -100)
        if self.cell_grid:
            batch["cell_targets"] = self._cell_targets(tasks, rows, moves)
        return dict(batch)

    def _cell_targets(self, tasks: list[Task], rows: list[dict], moves: list) -> torch.Tensor:
        """(B, cell_grid ** 2): each row's task's `cell_targets` of the moved image; -1 (ignored) for a row whose
        task has none (e.g. a caption in a mixture)."""
        targets = torch.full((len(rows), self.cell_grid**2), -1.0)
        for index, (task, row, move) in enumerate(zip(tasks, rows, moves)):
            cells = task.cell_targets(row, move, self.cell_grid)
            if cells is not None:
                targets[index] = torch.tensor(cells)
        return targets


@dataclass
class TSNPaliGemmaEvalCollator(TSNPaliGemmaTrainCollator):
    """Evaluation batches: the training batch (loss on prompt + caption 1) plus prompt-only `gen_*` tensors.

    `gen_input_ids`, `gen_attention_mask`, `gen_token_type_ids` hold `"<image>" + prompt` alone, left-padded, so
    generation never sees a reference caption. `pixel_values` is shared by both. Every row carries its `row_index`
    (its position in the evaluated split), returned as a (B, 1) tensor so that each generated caption finds its
    references again after a distributed gather.
    """

    def task_of(self, row: dict) -> Task:
        """The row's task as evaluation sees it (`Task.evaluation_copy`): a fixed suffix, so that the evaluation
        loss of the same weights does not change from one evaluation to the next."""
        return super().task_of(row).evaluation_copy()

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(rows)
        # The prompt is exactly the prefix (token type 0) of the training sequence: reuse those ids, left-padded.
        is_prompt = (batch["token_type_ids"] == 0) & (batch["attention_mask"] == 1)
        prompts = [ids[mask] for ids, mask in zip(batch["input_ids"], is_prompt)]
        length = max(len(prompt) for prompt in prompts)
        gen_input_ids = torch.full((len(prompts), length), self.processor.tokenizer.pad_token_id, dtype=torch.long)
        gen_attention_mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for index, prompt in enumerate(prompts):
            gen_input_ids[index, length - len(prompt) :] = prompt
            gen_attention_mask[index, length - len(prompt) :] = 1
        batch["gen_input_ids"] = gen_input_ids
        batch["gen_attention_mask"] = gen_attention_mask
        batch["gen_token_type_ids"] = torch.zeros_like(gen_input_ids)  # all prefix: the bidirectional block
        if any("row_index" not in row for row in rows):
            raise ValueError(
                "evaluation rows need a `row_index` column, their position in the split "
                "(dataset.add_column('row_index', list(range(len(dataset)))); finetuning.data.load_splits adds it)."
            )
        batch["row_index"] = torch.tensor([[row["row_index"]] for row in rows], dtype=torch.long)
        return batch


@dataclass
class TSNPaliGemmaSCSTCollator(TSNPaliGemmaTrainCollator):
    """Self-critical training batches: `"<image>" + prompt` (the task's) alone, the model samples the outputs, and
    every reference caption of each image, for the reward.

    Every row has the same prompt, so no row is padded: the prompt is `input_ids[:, :P]` of every row. Images get
    the training augmentation; `references` is a list (one list of captions per image) that the trainer reads.
    """

    def __call__(self, rows: list[dict]) -> dict:
        text = [IMAGE_TOKEN + self.task.prompt] * len(rows)
        images = self._images(rows, self._moves(len(rows)))
        batch = dict(self.processor(text=text, images=images, return_tensors="pt", padding="longest"))
        batch.pop("labels", None)
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])  # all prefix: the bidirectional block
        batch["references"] = [list(row["captions"]) for row in rows]
        return batch


__all__ = [
    "IMAGE_TOKEN",
    "TSNPaliGemmaEvalCollator",
    "TSNPaliGemmaSCSTCollator",
    "TSNPaliGemmaTrainCollator",
    "processor_for_config",
]
