"""RISC remote-sensing captions as a `datasets.DatasetDict`: builder, importers, validation, statistics, export.

>>> from dataset_builder import load_risc, SAMPLE_DIR
>>> ds = load_risc(SAMPLE_DIR)
>>> ds["train"][0]["captions"][0]
'a football field with several buildiings surroudned .'
"""

from pathlib import Path

from .builder import CITATION, CONFIG_NAMES, FEATURES, RISC, RISCConfig, load_risc
from .layout import KNOWN_SOURCES, RISC_SOURCES, SPLITS, RISCRow, fingerprint, read_captions_csv
from .validation import Problem, RISCValidationError, ValidationReport, validate_risc

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

__all__ = [
    "CITATION",
    "CONFIG_NAMES",
    "FEATURES",
    "KNOWN_SOURCES",
    "RISC",
    "RISC_SOURCES",
    "SAMPLE_DIR",
    "SPLITS",
    "Problem",
    "RISCConfig",
    "RISCRow",
    "RISCValidationError",
    "ValidationReport",
    "fingerprint",
    "load_risc",
    "read_captions_csv",
    "validate_risc",
]
