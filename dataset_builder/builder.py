"""RISC as a `datasets.GeneratorBasedBuilder`, used directly (datasets 5 runs no loading scripts).

    >>> from dataset_builder import load_risc
    >>> ds = load_risc("dataset_builder/sample", config="all")
    >>> sorted(ds), ds["train"].features["captions"].length
    (['test', 'train', 'val'], 5)

`load_risc` builds the Arrow cache once per (data folder, config, skip_invalid, folder fingerprint) under
`cache_dir` (default: `HF_DATASETS_CACHE`) and memory-maps it afterwards. The image bytes are stored in the
cache as they are on disk (no re-encoding), so a cached dataset does not depend on the data folder any more
and exports to Parquet unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets

from .layout import SPLITS, find_image_dir, fingerprint
from .validation import RISCValidationError, log_skipped, log_skipped_csv, validate_risc

logger = logging.getLogger(__name__)

REPORT_FILE = "invalid_rows.csv"

_DESCRIPTION = """\
RISC (Remote sensing Image Captioning): 44,521 aerial images from NWPU-Captions, RSICD and UCM-Captions,
each with five human captions and a fixed train/val/test split.
"""

CITATION = """\
@article{lu2018rsicd,
  title   = {Exploring Models and Data for Remote Sensing Image Caption Generation},
  author  = {Lu, Xiaoqiang and Wang, Binqiang and Zheng, Xiangtao and Li, Xuelong},
  journal = {IEEE Transactions on Geoscience and Remote Sensing},
  volume  = {56},
  number  = {4},
  pages   = {2183--2195},
  year    = {2018}
}
@inproceedings{qu2016ucm,
  title     = {Deep Semantic Understanding of High Resolution Remote Sensing Image},
  author    = {Qu, Bo and Li, Xuelong and Tao, Dacheng and Lu, Xiaoqiang},
  booktitle = {International Conference on Computer, Information and Telecommunication Systems (CITS)},
  pages     = {1--5},
  year      = {2016}
}
@article{cheng2022nwpu,
  title   = {NWPU-Captions Dataset and MLCA-Net for Remote Sensing Image Captioning},
  author  = {Cheng, Qimin and Huang, Haiyan and Xu, Yuan and Zhou, Yuzhuo and Li, Huanying and Wang, Zhongyuan},
  journal = {IEEE Transactions on Geoscience and Remote Sensing},
  volume  = {60},
  pages   = {1--19},
  year    = {2022}
}
"""

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "captions": datasets.List(datasets.Value("string"), length=5),
        "source": datasets.Value("string"),
        "filename": datasets.Value("string"),
    }
)


@dataclass
class RISCConfig(datasets.BuilderConfig):
    """A RISC config: which sources to load and what to do with invalid rows.

    Args:
        sources: sources kept (None = all of them).
        skip_invalid: skip invalid rows (logged and written to `invalid_rows.csv` in the cache folder)
            instead of raising one `RISCValidationError` that lists them all.
    """

    sources: tuple[str, ...] | None = None
    skip_invalid: bool = False


_VERSION = datasets.Version("1.0.0")
CONFIG_NAMES = ("all", "nwpu", "rsicd", "ucm", "sydney")


class RISC(datasets.GeneratorBasedBuilder):
    """RISC builder. Use it directly (or through `load_risc`)::

    builder = RISC(config_name="ucm", data_dir="path/to/RISC", cache_dir="/tmp/cache")
    builder.download_and_prepare()
    ds = builder.as_dataset()
    """

    VERSION = _VERSION
    BUILDER_CONFIG_CLASS = RISCConfig
    BUILDER_CONFIGS = [
        RISCConfig(name="all", version=_VERSION, description="All sources."),
        RISCConfig(name="nwpu", version=_VERSION, sources=("NWPU",), description="NWPU-Captions images only."),
        RISCConfig(name="rsicd", version=_VERSION, sources=("RSICD",), description="RSICD images only."),
        RISCConfig(name="ucm", version=_VERSION, sources=("UCM",), description="UCM-Captions images only."),
        RISCConfig(
            name="sydney", version=_VERSION, sources=("SYDNEY",), description="Sydney-Captions (imported) only."
        ),
    ]
    DEFAULT_CONFIG_NAME = "all"
    # Rows carry ~10-100 kB of image bytes each; small writer batches keep the memory flat.
    DEFAULT_WRITER_BATCH_SIZE = 100

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("dataset_name", "risc")
        super().__init__(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=_DESCRIPTION, features=FEATURES, citation=CITATION)

    def _split_generators(self, dl_manager):
        data_dir = self.config.data_dir
        if not data_dir:
            raise ValueError(
                "RISC needs data_dir=None to be a RISC folder (captions.csv + resized/). "
                "Fix: RISC(data_dir='path/to/RISC', ...) or load_risc('path/to/RISC')."
            )
        report = validate_risc(data_dir, sources=self.config.sources, cache_dir=self._cache_dir_root)
        if not report.ok:
            if not self.config.skip_invalid:
                raise RISCValidationError(report)
            # _output_dir is the temporary folder that becomes the cache folder once the build succeeds
            report.write_csv(Path(self._output_dir) / REPORT_FILE)
            log_skipped(report, Path(self._cache_dir) / REPORT_FILE)
        rows = [row for row in report.good_rows if self.config.sources is None or row.source in self.config.sources]
        if not rows:
            present = sorted({row.source for row in report.rows}) or ["none"]
            raise ValueError(
                f"config={self.config.name!r} selects no valid row in data_dir={data_dir!r} "
                f"(sources with rows: {', '.join(present)}). Fix: pick a config among "
                f"{', '.join(CONFIG_NAMES)} that matches the data."
            )
        image_dir = find_image_dir(data_dir)
        generators = []
        for split in SPLITS:
            split_rows = [row for row in rows if row.split == split]
            if split_rows:
                generators.append(
                    datasets.SplitGenerator(name=split, gen_kwargs={"rows": split_rows, "image_dir": str(image_dir)})
                )
            else:
                logger.info("config %s of %s has no %s rows; the split is left out", self.config.name, data_dir, split)
        return generators

    def _generate_examples(self, rows, image_dir):
        for index, row in enumerate(rows):
            # The bytes are stored as they are (no re-encoding); path=None because datasets would drop the bytes
            # of a relative path that happens to exist in the working directory.
            image = {"bytes": Path(image_dir, row.image).read_bytes(), "path": None}
            yield index, {"image": image, "captions": list(row.captions), "source": row.source, "filename": row.image}


def load_risc(
    data_dir: str | os.PathLike,
    config: str = "all",
    skip_invalid: bool = False,
    cache_dir: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    force_rebuild: bool = False,
) -> datasets.DatasetDict:
    """Load a RISC folder as a `DatasetDict` with columns image, captions (5 str), source, filename.

    Args:
        data_dir: RISC folder: `captions.csv` (source,split,image,caption_1..caption_5) and `resized/`
            (`imgs/` and `images/` are accepted too).
        config: "all", "nwpu", "rsicd", "ucm" (or "sydney" for imported Sydney-Captions).
        skip_invalid: False (default) raises one `RISCValidationError` listing every invalid row; True skips
            them, logs the count per reason and writes them to a CSV report.
        cache_dir: datasets cache root (default `HF_DATASETS_CACHE`).
        report_path: where to copy the skipped-rows report (it always lives in the cache folder too).
        force_rebuild: rebuild the Arrow cache even if it is up to date.

    A second call with unchanged data neither validates nor re-reads an image (see the module docstring).

    Example:
        >>> ds = load_risc("dataset_builder/sample", config="ucm")
        >>> set(ds["train"]["source"])
        {'UCM'}
    """
    if config not in CONFIG_NAMES:
        raise ValueError(f"config={config!r} is not a RISC config. Fix: use one of {', '.join(CONFIG_NAMES)}.")
    data_dir = Path(data_dir).expanduser().resolve()
    builder = RISC(
        config_name=config,
        data_dir=str(data_dir),
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        hash=fingerprint(data_dir),
        skip_invalid=bool(skip_invalid),
    )
    was_cached = not force_rebuild and (Path(builder.cache_dir) / "dataset_info.json").is_file()
    builder.download_and_prepare(download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD if force_rebuild else None)
    dataset = builder.as_dataset()
    cached_report = Path(builder.cache_dir) / REPORT_FILE
    if skip_invalid and cached_report.is_file():
        if report_path is not None:
            Path(report_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached_report, report_path)
        if was_cached:  # the build logged it already; a cached load logs it again: skipped rows are never silent
            log_skipped_csv(cached_report, data_dir, report_path or cached_report)
    return dataset
