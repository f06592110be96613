"""Measure a captioning model's characteristics (parameters, GFLOPs per caption, latency) and print them as JSON:

    python characteristics.py MODEL_DIR IMAGE_OR_FOLDER_OR_GLOB... [--num_images 8] [--num_beams 1]
        [--max_new_tokens 30] [--fixed_length false]

The measurement itself is `model_cost.measure_characteristics`, which finetune.py runs on every trained model.
"""

import json
import sys
from dataclasses import dataclass, field

from command_line import parse_command_line
from images import collect_inputs, load_image
from inference_core import load_model
from model_cost import measure_characteristics
from tasks import DEFAULT_PROMPT


@dataclass
class CharacteristicsArguments:
    model: str = field(metadata={"help": "Checkpoint folder or Hub id (loaded like inference.py does)."})
    images: list[str] = field(
        default_factory=list, metadata={"help": "Image files, folders or glob patterns to time on."}
    )
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "Task prompt; '<image>' is prepended."})
    num_images: int = field(default=8, metadata={"help": "Timed images (after one warm-up)."})
    num_beams: int | None = field(default=None, metadata={"help": "Beams (default: the model's generation_config)."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Longest caption in tokens (default: the model's generation_config)."}
    )
    fixed_length: bool = field(default=False, metadata={"help": "Force every caption to max_new_tokens tokens."})
    repeats: int = field(default=3, metadata={"help": "Timed rounds over the images (the median is reported)."})


def main(argv: list[str] | None = None) -> int:
    """`python characteristics.py MODEL IMAGES... [--num_images 8]`: prints the characteristics as JSON."""
    args = parse_command_line(
        CharacteristicsArguments,
        argv,
        positional=("model",),
        variadic="images",
        variadic_missing="no images given: pass image files, folders or glob patterns after MODEL.",
        usage="characteristics.py MODEL IMAGES... [options]",
    )
    try:
        paths = collect_inputs(args.images)[: args.num_images]
    except FileNotFoundError as error:
        print(f"characteristics.py: error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    model, processor = load_model(args.model)
    # every option but the model and the images is a keyword argument of measure_characteristics
    options = {name: value for name, value in vars(args).items() if name not in ("model", "images")}
    result = measure_characteristics(model, processor, [load_image(path) for path in paths], **options)
    print(json.dumps(result, indent=2))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
