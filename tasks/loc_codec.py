"""PaliGemma's `<loc>` box codec: four `<locNNNN>` tokens per box, y_min x_min y_max x_max, then the label; objects
joined by " ; ".

Bin convention (big_vision's `pp/proj/paligemma` encoder and its detection/segmentation evaluators): a coordinate
normalised to [0, 1] by the image side becomes bin `round(v * 1023)`, clipped to 0..1023, and bin `b` decodes to
`b / 1023`. The model sees the whole image stretched to its square input, so a coordinate normalised by the
original side is also normalised by the model's side: pixels go in and come back in the original image's pixels.

>>> encode_objects([(10.0, 20.0, 110.0, 70.0)], ["airplane"], width=200, height=100)
'<loc0205><loc0051><loc0716><loc0563> airplane'
>>> box = parse_objects('<loc0205><loc0051><loc0716><loc0563> airplane', width=200, height=100).boxes[0]
>>> [round(value, 2) for value in box]  # back to within half a bin (0.1 px on 200 px) of the pixels put in
[9.97, 20.04, 110.07, 69.99]
"""

import re
from dataclasses import dataclass, field

NUM_BINS = 1024
OBJECT_SEPARATOR = " ; "
# Four loc tokens, then the label up to the next loc token or separator.
_OBJECT = re.compile(r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>\s*([^<;]*)")


def to_bin(value: float, side: float) -> int:
    """The bin of a pixel coordinate along a side of `side` pixels."""
    return min(max(round(value / side * (NUM_BINS - 1)), 0), NUM_BINS - 1)


def from_bin(index: int, side: float) -> float:
    """The pixel coordinate of bin `index` along a side of `side` pixels."""
    return index / (NUM_BINS - 1) * side


def loc_tokens(box: tuple[float, float, float, float], width: float, height: float) -> str:
    """`<loc>` tokens of one (x1, y1, x2, y2) pixel box, in PaliGemma's y_min, x_min, y_max, x_max order."""
    x1, y1, x2, y2 = box
    bins = (to_bin(y1, height), to_bin(x1, width), to_bin(y2, height), to_bin(x2, width))
    return "".join(f"<loc{index:04d}>" for index in bins)


def encode_objects(boxes, labels, width: float, height: float) -> str:
    """The detection suffix of an image: `<loc>` x 4 + label per object, joined by " ; " ("" for no object)."""
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels: give one label per box.")
    return OBJECT_SEPARATOR.join(f"{loc_tokens(box, width, height)} {label}" for box, label in zip(boxes, labels))


@dataclass
class ParsedObjects:
    """Objects read back from generated text, in the original image's pixels, and what had to be dropped."""

    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # (x1, y1, x2, y2)
    labels: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def parse_objects(text: str, width: float, height: float, classes=None) -> ParsedObjects:
    """Boxes and labels of generated detection text; never raises on bad model output.

    Every group of four `<loc>` tokens and the label after it is an object, with or without the " ; " between
    objects. Dropped and counted: text that is no such group (`malformed`, e.g. a group of fewer than four locs),
    a label not in `classes` when given (`unknown_label`), a box whose y_max <= y_min or x_max <= x_min
    (`zero_area`).
    """
    parsed = ParsedObjects()
    known = None if classes is None else set(classes)
    position = 0
    for match in _OBJECT.finditer(text):
        _count_malformed(text[position : match.start()], parsed)
        position = match.end()
        y_min, x_min, y_max, x_max = (int(group) for group in match.groups()[:4])
        label = " ".join(match.group(5).split())
        if not label or (known is not None and label not in known):
            parsed.drop("unknown_label")
        elif y_max <= y_min or x_max <= x_min:
            parsed.drop("zero_area")
        else:
            parsed.boxes.append(
                (from_bin(x_min, width), from_bin(y_min, height), from_bin(x_max, width), from_bin(y_max, height))
            )
            parsed.labels.append(label)
    _count_malformed(text[position:], parsed)
    return parsed


def _count_malformed(gap: str, parsed: ParsedObjects) -> None:
    """Text between objects that is more than separators: one malformed object per ';'-separated piece."""
    for piece in gap.split(";"):
        if piece.strip():
            parsed.drop("malformed")


def detect_prompt(classes) -> str:
    """PaliGemma's detection prefix: `detect a ; b`."""
    classes = [name.strip() for name in classes]
    if not classes or any(not name or ";" in name or "<" in name for name in classes):
        raise ValueError(f"detection classes {classes!r}: give non-empty names without ';' or '<'.")
    return "detect " + OBJECT_SEPARATOR.join(classes)


def prompt_classes(prompt: str) -> list[str]:
    """The class names of a `detect a ; b` prompt."""
    if not prompt.startswith("detect "):
        raise ValueError(f"{prompt!r} is not a detection prompt; write it as 'detect airplane ; ship'.")
    return [name.strip() for name in prompt[len("detect ") :].split(";") if name.strip()]
