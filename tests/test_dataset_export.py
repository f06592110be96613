"""dataset_builder.export: Parquet shards + card that `datasets.load_dataset` reads back, and push_to_hub."""

import datasets
import pytest

from dataset_builder import SAMPLE_DIR, load_risc
from dataset_builder.__main__ import main as cli_main
from dataset_builder.export import dataset_card, export_parquet, push_to_hub


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return load_risc(SAMPLE_DIR, cache_dir=tmp_path_factory.mktemp("cache"))


def test_export_reads_back_with_load_dataset(sample, tmp_path):
    written = export_parquet(sample, tmp_path / "out", max_shard_size=300_000)
    parquet = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written if p.suffix == ".parquet")
    assert "data/nwpu/test-00000-of-00001.parquet" in parquet
    assert any(p.startswith("data/rsicd/train-") and not p.endswith("of-00001.parquet") for p in parquet)  # sharded
    for config, expected in (("all", {"train": 30, "val": 8, "test": 12}), ("ucm", {"train": 5, "test": 1})):
        ds = datasets.load_dataset(str(tmp_path / "out"), config, cache_dir=str(tmp_path / "hf"))
        assert {split: len(ds[split]) for split in ds} == expected
        assert ds["train"].features == sample["train"].features
    ds = datasets.load_dataset(str(tmp_path / "out"), "all", cache_dir=str(tmp_path / "hf"))
    original = {row["filename"]: row["captions"] for row in sample["test"].remove_columns("image")}
    exported = ds["test"][0]
    assert exported["captions"] == original[exported["filename"]]
    assert exported["image"].size == (224, 224)


def test_card(sample):
    card = dataset_card(sample, repo_id="user/risc")
    assert card.startswith("---\n") and "config_name: ucm" in card and "default: true" in card
    assert "| test | 1 | 10 | 1 | 12 |" in card and "| **total** | 1 | 43 | 6 | 50 |" in card
    assert 'load_dataset("user/risc")' in card
    for key in ("lu2018rsicd", "qu2016ucm", "cheng2022nwpu"):
        assert key in card
    assert "configs" not in dataset_card(sample, parquet_configs=False)


def test_push_to_hub_is_datasets_own(sample, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("api", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs["repo_type"]))

        def upload_file(self, path_or_fileobj, path_in_repo, repo_id, **kwargs):
            calls.append(("upload_file", path_in_repo, b"Splits and sources" in path_or_fileobj))

    def fake_push(self, repo_id, **kwargs):
        calls.append(("push_to_hub", repo_id, kwargs["config_name"], kwargs["set_default"], sorted(self)))

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", fake_push)
    push_to_hub(sample, "user/risc", configs=("all", "nwpu"), token="t")
    assert calls == [
        ("api", "t"),
        ("create_repo", "user/risc", "dataset"),
        ("upload_file", "README.md", True),
        ("push_to_hub", "user/risc", "all", True, ["test", "train", "val"]),
        ("push_to_hub", "user/risc", "nwpu", False, ["test"]),
    ]


def test_cli_export(tmp_path, capsys):
    code = cli_main(
        [
            "export",
            str(SAMPLE_DIR),
            "--output_dir",
            str(tmp_path / "out"),
            "--config",
            "rsicd",
            "--cache_dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out" / "data").iterdir()) == ["rsicd"]
    assert '"RSICD": 25' in capsys.readouterr().out
    assert cli_main(["export", str(SAMPLE_DIR)]) == 1  # needs --output_dir or --push_to_hub
