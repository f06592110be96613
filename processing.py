"""Processor construction, training/evaluation collators and caption post-processing for TSN-PaliGemma.

Rows come from `dataset_builder.load_risc` (`image`, `captions` = 5 strings, `source`, `filename`), or are
task-tagged rows of `finetuning.data` (detection, mixtures) whose `task` column names the task (`tasks/`) that
writes their prefix and suffix.

```python
>>> from transformers import AutoConfig, AutoProcessor
>>> config = AutoConfig.from_pretrained("tiny-tsn", trust_remote_code=True)  # doctest: +SKIP
>>> processor = processor_for_config(AutoProcessor.from_pretrained("tiny-tsn"), config)  # doctest: +SKIP
>>> batch = TSNPaliGemmaTrainCollator(processor)(rows)  # doctest: +SKIP
```
"""

import copy
import random
import re
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import PaliGemmaProcessor

DEFAULT_PROMPT = "caption en"
IMAGE_TOKEN = "<image>"
# "all" makes one row per caption before batching (finetuning.data); a collator then sees "first"-like rows.
CAPTION_CHOICES = ("random", "all", "first")
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
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass
class TSNPaliGemmaTrainCollator:
    """Training batches: `"<image>" + prefix`, then the suffix; labels only on the suffix.

    Each row's task (`tasks/`) gives its prefix and suffix: the row's `task` column names one of `tasks`; rows
    without it belong to the captioning task built from `prompt` and `caption_choice` ("random": one of the row's
    captions each time it is seen, drawn with python's `random`, whose state the Trainer checkpoints, so a resumed
    run draws the same; "first": caption 1). augment: each image gets one of the 8 rotations/flips of the square,
    drawn with python's `random` too, and the task writes its suffix for the moved image (boxes move with it).
    """

    processor: PaliGemmaProcessor
    prompt: str = DEFAULT_PROMPT
    caption_choice: str = "random"
    max_length: int | None = None
    augment: bool = False
    tasks: dict | None = None  # task name -> task object; None: captioning only

    def __post_init__(self):
        from tasks import CaptionTask  # tasks/caption.py reads this module's caption post-processing

        # CaptionTask checks the choice ("all" rows arrive expanded, each with its `caption`).
        self.caption_task = CaptionTask(self.prompt, self.caption_choice)

    def task_of(self, row: dict):
        name = row.get("task")
        if name is None:
            return self.caption_task
        if not self.tasks or name not in self.tasks:
            raise ValueError(f"row of task {name!r}, but this run has tasks {sorted(self.tasks or ['caption'])}.")
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
        images = self._images(rows, moves)
        tasks = [self.task_of(row) for row in rows]
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
        return dict(batch)


@dataclass
class TSNPaliGemmaEvalCollator(TSNPaliGemmaTrainCollator):
    """Evaluation batches: the training batch (loss on prompt + caption 1) plus prompt-only `gen_*` tensors.

    `gen_input_ids`, `gen_attention_mask`, `gen_token_type_ids` hold `"<image>" + prompt` alone, left-padded, so
    generation never sees a reference caption. `pixel_values` is shared by both. Every row carries its `row_index`
    (its position in the evaluated split), returned as a (B, 1) tensor so that each generated caption finds its
    references again after a distributed gather.
    """

    caption_choice: str = "first"

    def task_of(self, row: dict):
        """The row's task, a caption task always with caption 1: a mixture's caption task draws a random caption
        for training, which would make the evaluation loss change from one evaluation to the next."""
        task = super().task_of(row)
        if getattr(task, "caption_choice", "first") == "first":
            return task
        first = copy.copy(task)
        first.caption_choice = "first"
        return first

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
    """Self-critical training batches: `"<image>" + prompt` alone (the model samples the captions) and every
    reference caption of each image, for the reward.

    Every row has the same prompt, so no row is padded: the prompt is `input_ids[:, :P]` of every row. Images get
    the training augmentation; `references` is a list (one list of captions per image) that the trainer reads.
    """

    def __call__(self, rows: list[dict]) -> dict:
        text = [IMAGE_TOKEN + self.prompt] * len(rows)
        images = self._images(rows, self._moves(len(rows)))
        batch = dict(self.processor(text=text, images=images, return_tensors="pt", padding="longest"))
        batch.pop("labels", None)
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])  # all prefix: the bidirectional block
        batch["references"] = [list(row["captions"]) for row in rows]
        return batch


def postprocess_caption(text: str, prompt: str | None = DEFAULT_PROMPT) -> str:
    """Clean one decoded caption: drop an echoed prompt, leftover special tokens and extra whitespace.

    >>> postprocess_caption("caption en\\n many  green trees <eos>")
    'many green trees'
    """
    text = re.sub(r"<(?:image|bos|eos|pad|unk|loc\d{4}|seg\d{3})>", " ", text)
    text = text.strip()
    if prompt and text.startswith(prompt):
        text = text[len(prompt) :]
    return " ".join(text.split())


def decode_captions(
    processor: PaliGemmaProcessor, sequences: torch.Tensor, prompt_length: int, prompt: str | None = DEFAULT_PROMPT
) -> list[str]:
    """Decode `generate` output: slice off the (left-padded) prompt of `prompt_length` tokens, then clean up."""
    texts = processor.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)
    return [postprocess_caption(text, prompt) for text in texts]


__all__ = [
    "DEFAULT_PROMPT",
    "TSNPaliGemmaEvalCollator",
    "TSNPaliGemmaSCSTCollator",
    "TSNPaliGemmaTrainCollator",
    "decode_captions",
    "postprocess_caption",
    "processor_for_config",
]
