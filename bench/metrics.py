"""Time the coco-caption metrics on a RISC-test-sized set: `metrics.caption_metrics` against pycocoevalcap.

4,454 predictions x 5 real references (the RISC test split's size): NWPU-Captions test (3,150 images), RSICD test
(1,093) and UCM-Captions test (210) plus the first UCM val image, from the real annotation files
(`DATA_DIR/annotations`). The prediction of an image is the first human caption of the next image of the same dataset
(usually the same scene class), a realistic stand-in for a captioner's output that is never one of its own references.

Each round times, in alternation, pycocoevalcap the way coco-caption's eval.py runs it (PTBTokenizer on the
references and on the predictions, then `Bleu(4)`, `Meteor`, `Rouge`, `Cider`, the METEOR JVM started inside the
timing) and `caption_metrics` (one tokenization, overall scores); the median of the rounds is reported. Both start
their Java processes cold in every round. The one-time indexing of METEOR's paraphrase table that the first ever
`caption_metrics` call does (then cached on disk) is timed separately. The last line printed is a JSON object.

    python -m bench.metrics [--rounds 3] [--data_dir DATA_DIR]
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCORE_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")


@dataclass
class BenchArguments:
    data_dir: str = field(
        default=str(ROOT / "data"),
        metadata={
            "help": "Folder holding annotations/: the published caption files of NWPU-Captions, RSICD, UCM-Captions."
        },
    )
    rounds: int = field(default=3, metadata={"help": "Timed rounds of each implementation (median reported)."})


def _coco_captions(path: Path) -> list[list[str]]:
    """References per image, in the file's image order, from a COCO captions JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    captions: dict[int, list[str]] = {}
    for annotation in data["annotations"]:
        captions.setdefault(annotation["image_id"], []).append(annotation["caption"])
    return [captions[image["id"]] for image in data["images"]]


def load_references(data_dir: Path) -> dict[str, list[list[str]]]:
    """The real test references (5 per image) of NWPU-Captions, RSICD and UCM-Captions, and UCM's val ones."""
    annotations = Path(data_dir) / "annotations"
    nwpu = annotations / "lowlorenz+remote-sensing-image-captioning"
    columns = [(nwpu / f"test_references_{k}.txt").read_text(encoding="utf-8").split("\n") for k in range(5)]
    count = len((nwpu / "test_images.txt").read_text(encoding="utf-8").splitlines())
    ucm = annotations / "xiaoyuan1996+RemoteSensingCaptions"
    return {
        "NWPU": [[column[i] for column in columns] for i in range(count)],
        "RSICD": _coco_captions(annotations / "jwdevx+RSICD_multimodal_image_captioning" / "captions_test2017.json"),
        "UCM": _coco_captions(ucm / "data_test_UCM.json"),
        "UCM_val": _coco_captions(ucm / "data_val_UCM.json"),
    }


def risc_test_sized(data_dir: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """(predictions, references, sources) for 4,454 images: see the module docstring."""
    sets = load_references(data_dir)
    sets["UCM"] = sets["UCM"] + sets.pop("UCM_val")[:1]
    predictions, references, sources = [], [], []
    for source, images in sets.items():
        predictions += [images[(i + 1) % len(images)][0] for i in range(len(images))]
        references += images
        sources += [source] * len(images)
    return predictions, references, sources


def pycocoevalcap_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """coco-caption's evaluation, as its eval.py runs it."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": ref} for ref in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": prediction}] for i, prediction in enumerate(predictions)})
    bleu, meteor, rouge, cider = Bleu(4), Meteor(), Rouge(), Cider()  # set up together, as eval.py does
    scores = dict(zip(SCORE_KEYS[:4], bleu.compute_score(gts, res, verbose=0)[0]))
    scores["meteor"] = meteor.compute_score(gts, res)[0]
    scores["rouge_l"] = rouge.compute_score(gts, res)[0]
    scores["cider"] = cider.compute_score(gts, res)[0]
    del meteor  # Meteor.__del__ stops its JVM
    return {key: float(value) for key, value in scores.items()}


def main() -> None:
    from transformers import HfArgumentParser

    from metrics import caption_metrics
    from metrics._java import meteor_dir
    from metrics._paraphrase import load_index

    logging.basicConfig(level=logging.WARNING)
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses()
    if not (Path(args.data_dir) / "annotations").is_dir():
        print(
            json.dumps({"benchmark": "metrics", "skipped": f"no annotations/ folder in {args.data_dir} (--data_dir)"})
        )
        return
    predictions, references, sources = risc_test_sized(Path(args.data_dir))
    start = time.perf_counter()
    load_index(meteor_dir() / "data" / "paraphrase-en.gz")  # builds the on-disk index if this is the first use ever
    index_s = time.perf_counter() - start
    load_index.cache_clear()  # every timed call below loads it again

    ours_s, reference_s, grouped_s = [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        reference = pycocoevalcap_scores(predictions, references)
        reference_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = caption_metrics(predictions, references)["overall"]
        ours_s.append(time.perf_counter() - start)
        load_index.cache_clear()
        start = time.perf_counter()
        grouped = caption_metrics(predictions, references, sources)
        grouped_s.append(time.perf_counter() - start)
        load_index.cache_clear()
        print(f"pycocoevalcap {reference_s[-1]:.2f} s, ours {ours_s[-1]:.2f} s, ours per source {grouped_s[-1]:.2f} s")
    result = {
        "n_predictions": len(predictions),
        "n_references_each": 5,
        "composition": {source: sources.count(source) for source in dict.fromkeys(sources)},
        "ours_s": round(statistics.median(ours_s), 3),
        "pycocoevalcap_s": round(statistics.median(reference_s), 3),
        "ratio": round(statistics.median(ours_s) / statistics.median(reference_s), 3),
        "ours_with_groups_s": round(statistics.median(grouped_s), 3),
        "one_time_paraphrase_index_s": round(index_s, 3),
        "rounds": args.rounds,
        "max_abs_diff": {key: abs(ours[key] - reference[key]) for key in SCORE_KEYS},
        "max_abs_diff_groups_overall": max(abs(grouped["overall"][key] - reference[key]) for key in SCORE_KEYS),
        "scores": ours,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
