"""dataset_builder.stats: numbers checked against a direct count of captions.csv and the image files."""

import csv
import json
import re
from collections import Counter

import pytest
from PIL import Image

from dataset_builder import SAMPLE_DIR
from dataset_builder.__main__ import main as cli_main
from dataset_builder.stats import CATEGORIES, compute_stats, tokenize, write_stats


@pytest.fixture(scope="module")
def rsicd_1k_stats(shared_data, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("stats")
    stats, written = write_stats(shared_data / "rsicd-1k", output_dir)
    return shared_data / "rsicd-1k", output_dir, stats, written


def test_tokenize():
    assert tokenize("Many buildings, and 2 trees .") == ["many", "buildings", "and", "2", "trees"]
    assert tokenize("it's a   river") == ["it's", "a", "river"]


def test_stats_files(rsicd_1k_stats):
    _, output_dir, stats, written = rsicd_1k_stats
    names = sorted(path.name for path in written)
    assert names == [
        "caption_length_hist.png",
        "category_coverage.png",
        "split_source_counts.png",
        "stats.json",
        "top_words.png",
    ]
    assert json.loads((output_dir / "stats.json").read_text()) == json.loads(json.dumps(stats))
    for name in (name for name in names if name.endswith(".png")):
        with Image.open(output_dir / name) as image:
            assert image.format == "PNG" and image.width > 300


def test_stats_match_a_direct_count(rsicd_1k_stats):
    data_dir, _, stats, _ = rsicd_1k_stats
    with open(data_dir / "captions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    captions = [row[f"caption_{i}"].strip() for row in rows for i in range(1, 6)]
    words = [word for caption in captions for word in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", caption.lower())]
    counts = Counter(words)

    assert stats["num_images"] == len(rows) == 1000
    assert stats["counts"]["by_split"] == {"train": 700, "val": 150, "test": 150}
    assert stats["counts"]["by_source"] == {"RSICD": 1000}
    assert stats["num_captions"] == 5000
    assert stats["num_distinct_captions"] == len({caption.lower() for caption in captions})
    assert stats["vocabulary"]["size"] == len(counts)
    assert stats["vocabulary"]["num_words"] == len(words)
    assert stats["vocabulary"]["top_words"][0] == list(counts.most_common(1)[0])
    lengths = [len(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", c.lower())) for c in captions]
    assert stats["caption_length"]["mean"] == pytest.approx(sum(lengths) / len(lengths), abs=1e-4)
    assert stats["caption_length"]["max"] == max(lengths) and stats["caption_length"]["min"] == min(lengths)
    assert sum(stats["caption_length"]["histogram"]["counts"]) == 5000
    water = set(CATEGORIES["water"])
    covered = sum(
        1
        for row in rows
        if any(water & set(re.findall(r"[a-z0-9]+", row[f"caption_{i}"].lower())) for i in range(1, 6))
    )
    assert stats["categories"]["water"]["images"] == covered
    images = stats["images"]
    assert images["sizes"] == {"224x224": 1000} and images["modes"] == {"RGB": 1000}
    total = sum((data_dir / "resized" / row["image"]).stat().st_size for row in rows)
    assert images["file_size_bytes"]["total"] == total and images["missing"] == 0


def test_stats_cli_on_sample(tmp_path, capsys):
    assert cli_main(["stats", str(SAMPLE_DIR), "--output_dir", str(tmp_path), "--no_plots"]) == 0
    out = capsys.readouterr().out
    assert "RSICD" in out and "total" in out and "vocabulary" in out
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["by_split_source"]["test"] == {"NWPU": 1, "RSICD": 10, "UCM": 1}
    assert stats == json.loads(json.dumps(compute_stats(SAMPLE_DIR)))
