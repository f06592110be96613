"""ROUGE-L exactly as coco-caption (pycocoevalcap `Rouge`) computes it: an `evaluate` module, card README.md."""

import json
import sys
from pathlib import Path

try:  # the project is installed, or its root is on sys.path (the code of all four modules: metrics/_evaluate.py)
    from metrics import _evaluate
except ModuleNotFoundError:  # evaluate.load() runs a cached copy of this file; the JSON beside it names the original
    _origin = json.loads(Path(__file__).with_suffix(".json").read_text())["original file path"]
    sys.path.insert(0, str(Path(_origin).resolve().parents[2]))
    from metrics import _evaluate

Rouge = _evaluate.Rouge
