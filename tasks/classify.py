"""Scene classification: `answer en what is the scene?` -> the scene class in plain words (`dense residential`);
scored by top-1 accuracy overall and per class, beside the majority-class baseline, with a confusion matrix.

Rows are caption rows (a RISC folder) whose scene is read from the file name: `RSICD_airport_12.jpg` and
`airport_12.jpg` are `airport`; RSICD's numbered images (`RSICD_00012.jpg`) name no scene and are skipped
(`scene_of`). The class a row is trained on is its `label` column.
"""

import re
from collections import Counter

NAME = "classify"
PROMPT = "answer en what is the scene?"
SUMMARY_METRICS = ("accuracy", "majority_accuracy")
ROW_COLUMNS = ("filename", "source", "label")

# `<optional source prefix>_<scene>_<number>.<ext>`: RSICD, UCM and NWPU-RESISC45 name their scene images so.
SCENE_PATTERN = r"^(?:[A-Za-z]+_)?([a-z]+)_\d+\.\w+$"

# File names write a scene as one word; the model learns (and users read) the words.
SCENE_WORDS = {
    "bareland": "bare land",
    "baseballfield": "baseball field",
    "denseresidential": "dense residential",
    "mediumresidential": "medium residential",
    "railwaystation": "railway station",
    "sparseresidential": "sparse residential",
    "storagetanks": "storage tanks",
}


def scene_of(filename: str, pattern: str = SCENE_PATTERN) -> str | None:
    """The scene class in plain words that `filename` names (its regex group 1), or None when it names none."""
    match = re.match(pattern, filename)
    if match is None:
        return None
    name = match.group(1).lower()
    return SCENE_WORDS.get(name, name.replace("_", " ").replace("-", " "))


def normalize_answer(text: str) -> str:
    """An answer as it is compared: lower case, special tokens, punctuation and extra spaces removed."""
    text = re.sub(r"<[^>]*>", " ", text.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


class ClassifyTask:
    """Closed-set scene classification over `classes`; `majority` is the training split's most frequent class, the
    baseline that always answers it. With `classes` known, evaluation and inference answer by ranking them
    (`tasks.likelihood.likeliest_answers`), so every answer is a class; without, by generating (`generation`)."""

    name = NAME
    row_columns = ROW_COLUMNS
    summary_metrics = SUMMARY_METRICS
    generation = {"num_beams": 1, "max_new_tokens": 8}  # a class is a few words

    def __init__(self, classes=(), majority: str | None = None, prompt: str = PROMPT):
        self.classes = list(classes)
        self.majority = majority
        self.prompt = prompt

    @property
    def answers(self) -> list[str]:
        """The closed set answers are ranked among (empty: generate freely)."""
        return self.classes

    def prefix(self, row) -> str:
        return self.prompt

    def suffix(self, row, move=None) -> str:
        """A scene does not change when the image is rotated or flipped."""
        return row["label"]

    def read(self, text: str, width: float, height: float) -> dict:
        """What inference writes for one image: the answer, cleaned."""
        return {"caption": normalize_answer(text)}

    def record(self, row, text: str) -> dict:
        return {
            "image": row["filename"],
            "source": row["source"],
            "task": NAME,
            "prediction": normalize_answer(text),
            "reference": row["label"],
        }

    def score(self, records: list[dict]) -> dict:
        return classification_metrics(records, self.majority)

    def draw(self, read: dict, image) -> tuple:
        return image, read["caption"]

    def write_figures(self, records: list[dict], output_dir, stem: str = "") -> None:
        """confusion{stem}.png beside the sample grid."""
        write_confusion_matrix(records, f"{output_dir}/confusion{stem}.png")

    def grid_entry(self, record: dict, image) -> tuple:
        mark = "right" if record["prediction"] == record["reference"] else "wrong"
        return image, f"{record['prediction']} ({mark})\n[ref] {record['reference']}"


def classification_metrics(records: list[dict], majority: str | None = None) -> dict:
    """{"overall": {accuracy, majority_accuracy, images, outside_classes}, "groups": {class: {accuracy, images}}}:
    top-1 accuracy of the normalised answer against the reference class; `majority_accuracy` is that of always
    answering `majority` (None without one); `outside_classes` counts answers that are no reference class at all."""
    classes = sorted({record["reference"] for record in records})
    right = [record["prediction"] == record["reference"] for record in records]
    groups = {}
    for name in classes:
        mine = [hit for hit, record in zip(right, records) if record["reference"] == name]
        groups[name] = {"accuracy": sum(mine) / len(mine), "images": len(mine)}
    known = set(classes) | ({majority} if majority else set())
    overall = {
        "accuracy": sum(right) / len(records) if records else None,
        "majority_accuracy": (
            sum(record["reference"] == majority for record in records) / len(records) if records and majority else None
        ),
        "images": len(records),
        "outside_classes": sum(record["prediction"] not in known for record in records),
    }
    return {"overall": overall, "groups": groups}


def confusion_counts(records: list[dict]) -> tuple[list[str], list[list[int]]]:
    """(classes, counts): counts[i][j] = images of reference class i answered as class j; answers that are no
    reference class are the last column, `other`."""
    classes = sorted({record["reference"] for record in records})
    column = {name: index for index, name in enumerate(classes)}
    counts = [[0] * (len(classes) + 1) for _ in classes]
    for record in records:
        counts[column[record["reference"]]][column.get(record["prediction"], len(classes))] += 1
    return classes, counts


def write_confusion_matrix(records: list[dict], path) -> None:
    """The confusion matrix as a PNG: rows are reference classes, columns answers (the last: other); a cell's
    colour is its share of its row, its number the image count."""
    from matplotlib.figure import Figure  # object API: no pyplot state, renders with Agg

    classes, counts = confusion_counts(records)
    side = 2.5 + 0.32 * len(classes)
    figure = Figure(figsize=(side + 0.3, side))
    axes = figure.add_subplot()
    shares = [[count / max(sum(row), 1) for count in row] for row in counts]
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row, values in enumerate(counts):
        for col, count in enumerate(values):
            if count:
                color = "white" if shares[row][col] > 0.5 else "black"
                axes.text(col, row, str(count), ha="center", va="center", fontsize=6, color=color)
    axes.set_xticks(range(len(classes) + 1), [*classes, "other"], rotation=90, fontsize=7)
    axes.set_yticks(range(len(classes)), classes, fontsize=7)
    axes.set_xlabel("answer")
    axes.set_ylabel("reference")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def majority_class(labels) -> str | None:
    """The most frequent label (ties: the first in sorted order), the majority baseline's answer."""
    counts = Counter(labels)
    return min(counts, key=lambda name: (-counts[name], name)) if counts else None
