"""What a task is: ONE class in one module of `tasks/`, registered by name (`tasks.registry`), that declares
everything about itself. Its data (`data_format`, `task_rows`, `row_columns`, `for_run`), a training example
(`prefix`, `suffix`), reading and scoring (`read`, `record`, `score`, `best_metric`, `summary_metrics`,
`headline_metrics`), decoding (`generation`, or a closed set of `answers` ranked instead of generated), what a model
records of it (`to_record`, `from_record`, `for_prompt`), pictures and text (`draw`, `grid_entry`, `write_figures`,
`text_rows`) and the model card (`card_noun`, `hub_task`, `model_index`, `card_row`, `card_template` filled by
`card_values`). Everything outside `tasks/` loops over the registry and asks the task; none of it names one.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

from .card_text import SOURCE_NAMES

CAPTIONS_FORMAT = "captions"  # a RISC-style folder: captions.csv + resized/
BOXES_FORMAT = "boxes"  # a COCO / PaliGemma JSONL detection folder


@dataclass
class RunContext:
    """What a training run gives `Task.for_run`: its data arguments, the processor (token counts), the class names
    of its boxes dataset ([] without one) and the sentence-transformers model that also scores captions."""

    data_args: Any
    processor: Any = None
    classes: list[str] | None = None
    sbert_model: str | None = None


class Task:
    """Base class of the tasks; subclasses set the class attributes and override what differs."""

    name: ClassVar[str]  # registry key: `--task NAME`, mixture entries' `task`, results' "task"
    data_format: ClassVar[str]  # CAPTIONS_FORMAT or BOXES_FORMAT: which dataset loader its rows come from
    default_prompt: ClassVar[str]
    row_columns: ClassVar[tuple[str, ...]] = ("filename", "source")
    best_metric: ClassVar[str]
    greater_is_better: ClassVar[bool] = True
    summary_metrics: ClassVar[tuple[str, ...]] = ()
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    metric_names: ClassVar[dict[str, str]] = {}  # how the card and summaries name its metrics
    sequence_reward: ClassVar[bool] = False  # its outputs have a sequence-level reward (self-critical training)
    generation: dict = {}  # default decoding; empty: the model's own generation_config
    card_noun: ClassVar[str] = "model"  # "An aerial-image captioner and ..."
    hub_task: ClassVar[tuple[str, str]] = ("image-text-to-text", "")  # model-index task type and name
    hub_tags: ClassVar[tuple[str, ...]] = ()
    hub_metrics: ClassVar[tuple[str, ...]] = ()  # the card metadata's `metrics` (Hub metric ids)
    card_template: ClassVar[str] = ""  # Jinja text of its results section; `table(header, rows)` is defined
    usage_template: ClassVar[str] = ""  # Jinja text added to the card's usage section (e.g. how to read boxes)
    scoring_text: ClassVar[str] = ""  # how it is scored, in a few words, for the card's training section
    class_map: ClassVar[bool] = False  # a scene's answers also make a class raster (one pixel per tile)
    token_scores: ClassVar[bool] = False  # `read` takes the generated tokens and their probabilities

    def __init__(self, prompt: str | None = None):
        self.prompt = prompt or self.default_prompt

    # --- data --------------------------------------------------------------------------------------------------
    @classmethod
    def task_rows(cls, splits: dict, data_args, dataset_dir: str) -> dict:
        """{split: this task's rows} of a loaded dataset's {split: rows} (default: the rows as they are)."""
        return splits

    @classmethod
    def for_run(cls, rows, run) -> "Task":
        """The task of a training run, from its training rows (distinct, never decoded images) and `run` (a
        `RunContext`: data arguments, processor, the boxes dataset's classes, ...)."""
        return cls()

    def evaluation_copy(self) -> "Task":
        """The task as evaluation sees it: a fixed suffix for the evaluation loss (default: itself)."""
        return self

    # --- a training example ------------------------------------------------------------------------------------
    tile_size: int | None = None  # source pixels of the tiles its rows are cut into (None: whole images)
    tile_overlap: int | None = None  # of the grid it was evaluated on at `tile_size` (None: `default_overlap`)

    def tile_view(self, row: dict, image) -> tuple:
        """(image, row) as the model sees them: a tile of a row that names one, a random tile of a training row
        when the task is trained on tiles, with the row's annotations moved into it (default: as they are)."""
        return image, row

    def prefix(self, row) -> str:
        return self.prompt

    def suffix(self, row, move=None) -> str:
        raise NotImplementedError

    def cell_targets(self, row, move, grid: int) -> list[float] | None:
        """What each of the `grid` x `grid` image tokens should see of the row's image after `move`, for the
        auxiliary loss of `--cell_loss_weight` (row-major shares in [0, 1]); None: the task has no such target."""
        return None

    # --- reading and scoring -----------------------------------------------------------------------------------
    @property
    def answers(self) -> list[str]:
        """A closed set of answers ranked by likelihood instead of generating (empty: generate)."""
        return []

    def read(self, text: str, width: float, height: float) -> dict:
        """One image's result from the generated text: {"text": the cleaned answer, ...the task's own fields}."""
        return {"text": text}

    def record(self, row, text: str) -> dict:
        """One line of predictions.jsonl: the row's image, what was read and the reference it is scored against."""
        raise NotImplementedError

    def score(self, records: list[dict]) -> dict:
        raise NotImplementedError

    def image_records(self, records: list[dict]) -> list[dict]:
        """One record per image from one per evaluated row (a task evaluated on tiles merges them; default: as
        they are)."""
        return records

    def merged_result(self, features: list[dict]) -> dict:
        """One input's result from its tiles' merged features (`merge_tiles`), for a task that answers a chip in
        tiles (`tile_size`)."""
        return {"text": "", "features": features}

    # --- the model's record of the task ------------------------------------------------------------------------
    def to_record(self) -> dict:
        """What a trained model's config keeps of the task (prompt, classes, decoding)."""
        return {"prompt": self.prompt}

    @classmethod
    def from_record(cls, record: dict, options: dict) -> "Task":
        """The task as a model recorded it (`record`, {} when it did not), with the user's `options` (`classes`:
        'a ; b', `question`)."""
        return cls(record.get("prompt"))

    @classmethod
    def for_prompt(cls, prompt: str) -> "Task | None":
        """The task a user's own prompt asks for, or None when it is not this task's kind of prompt."""
        return None

    # --- pictures and text -------------------------------------------------------------------------------------
    def draw(self, result: dict, image) -> tuple:
        """(picture, text) of one inference result in a grid."""
        return image, result["text"]

    def grid_entry(self, record: dict, image) -> tuple:
        """(picture, text) of one test record in samples.png."""
        return image, f"{record['prediction']}\n[ref] {record.get('reference', '-')}"

    def write_figures(self, records: list[dict], output_dir, stem: str = "") -> None:
        """Figures of a scored split beside samples.png (default: none)."""

    def scene_task(self, records: dict) -> "Task":
        """The task that answers a scene's tiles (`records`: the model's recorded tasks); default: itself."""
        return self

    def scene_summary(self, features: list[dict]) -> dict:
        """What a scene's record adds from its merged features (e.g. a count); default: nothing."""
        return {}

    def merge_tiles(self, tiles: list[tuple[list[float], dict]]) -> list[dict]:
        """A scene's features from its tiles' (tile box [x1, y1, x2, y2] in scene pixels, result): by default one
        per tile, its box the tile's (a scene class, a caption per tile)."""
        return [{"box": list(box), **result} for box, result in tiles]

    text_header: ClassVar[tuple[str, ...]] = ("text",)

    def text_rows(self, result: dict) -> list[list]:
        """The values after the file name of each text/CSV line of one result (a list value, e.g. a box, is one
        text field `a,b,c,d` and as many CSV columns; CSV header: `text_header`)."""
        return [[result["text"]]]

    # --- the model card ----------------------------------------------------------------------------------------
    @classmethod
    def model_index(cls, view: dict) -> list[tuple[str, str, dict]]:
        """(config, dataset name, {metric: value}) sets of its test scores for the card's metadata."""
        test = view["results"]["test"]
        overall = {key: test["overall"].get(key) for key in cls.headline_metrics}
        return [("all", cls.card_dataset(view), overall)]

    @classmethod
    def card_row(cls, view: dict) -> list[str]:
        """(prompt, test score, its baseline) of the card's multi-task table."""
        raise NotImplementedError

    @classmethod
    def card_values(cls, view: dict, card: dict) -> dict[str, Any]:
        """The values `card_template` is filled with (`card`: what the whole card knows)."""
        return {}

    @classmethod
    def card_title(cls) -> str:
        """How the card's first line names a model of this task alone."""
        return f"An aerial-image {cls.card_noun}"

    @classmethod
    def card_dataset(cls, view: dict) -> str:
        """The dataset its scores are named by in the card: its predictions' source (e.g. the boxes dataset)."""
        return view["source"]

    @classmethod
    def train_data_text(cls, images: dict[str, int], risc: bool) -> str:
        """The card's words for its training images ({source: images}; `risc`: the data is RISC's)."""
        if cls.data_format == BOXES_FORMAT:
            return ", ".join(f"{name} {n:,}" for name, n in images.items()) + " with boxes"
        sources = ", ".join(f"{SOURCE_NAMES.get(name, name)} {n:,}" for name, n in images.items())
        return f"{sources}; five captions each" if risc else sources

    @classmethod
    def prompt_text(cls, view: dict) -> str:
        """The prompt the card shows for the task."""
        return view.get("prompt") or cls.default_prompt
