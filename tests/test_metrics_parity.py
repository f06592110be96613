"""Parity of metrics/ with pycocoevalcap on REAL references (UCM, RSICD and NWPU test splits): leave-one-out and
perturbed predictions, overall and per source, directly and through `evaluate.load` in a fresh offline process.

Reference = pycocoevalcap's `Bleu(4)`, `Meteor`, `Rouge`, `Cider` on its `PTBTokenizer` output, run here. Subsets of
each test split (every k-th image, ~100 per source) keep this file fast; bench/metrics.py checks all 4,454 images.
"""

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import metrics

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
TOLERANCE = {key: 1e-9 for key in KEYS} | {"meteor": 1e-6}
STRIDE = {"UCM": 2, "RSICD": 11, "NWPU": 31}  # 105 + 100 + 102 images, spread over the scene classes

pytestmark = [
    pytest.mark.skipif(not (DATA / "annotations").is_dir(), reason=f"the real annotation files are absent ({DATA})"),
    pytest.mark.skipif(not metrics.java_available(), reason="METEOR and the PTB jar need a Java runtime"),
]


def _bench_module():
    """bench/metrics.py, which reads the real test references."""
    return importlib.import_module("bench.metrics")


def _perturb(caption: str, rng: random.Random, i: int) -> str:
    """Words dropped/swapped, punctuation and case changed, contractions, odd spacing, empty strings."""
    if i % 17 == 0:
        return ""
    if i % 41 == 0:
        return rng.choice([" ", ". , !", "(", "''"])
    words = caption.split()
    k = rng.randrange(max(1, len(words) - 1))
    kind = i % 8
    if kind == 0 and len(words) > 1:
        del words[k]
    elif kind == 1 and len(words) > 2:
        words[k], words[k + 1] = words[k + 1], words[k]
    elif kind == 2:
        return caption.upper() if i % 16 == 2 else caption.title()
    elif kind == 3:
        words[k] += rng.choice([",", ";", ":", "!", "?", "..."])
    elif kind == 4:
        return caption.rstrip(" .") + rng.choice(["", ".", "!", " ?"])
    elif kind == 5:
        words[k] = rng.choice(['"{}"', "({})", "'{}'", "[{}]", "{}'s", "{}n't"]).format(words[k])
    elif kind == 6 and len(words) > 2:
        words[k : k + 2] = [words[k] + rng.choice(["-", "/", "&", "'"]) + words[k + 1]]
    else:
        return "  " + "  ".join(words) + "\t "
    return " ".join(words)


@pytest.fixture(scope="module")
def sets() -> dict[str, tuple[list[str], list[list[str]], list[str]]]:
    """name -> (predictions, references, sources): "loo" (reference 1 vs references 2-5) and "perturbed"."""
    references = _bench_module().load_references(DATA)
    loo, perturbed, rng = ([], [], []), ([], [], []), random.Random(0)
    for source, stride in STRIDE.items():
        for i, captions in enumerate(references[source][::stride]):
            for target, prediction in ((loo, captions[0]), (perturbed, _perturb(captions[0], rng, i))):
                target[0].append(prediction)
                target[1].append(captions[1:])
                target[2].append(source)
    return {"loo": loo, "perturbed": perturbed}


@pytest.fixture(scope="module")
def reference_meteor():
    """pycocoevalcap's Meteor, one JVM for all reference scores; started first, it loads (~10 s) meanwhile."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    yield meteor
    meteor.meteor_p.kill()
    meteor.meteor_p.wait()


@pytest.fixture(scope="module")
def reference(sets, reference_meteor) -> dict[str, dict]:
    """pycocoevalcap's scores of each set: {"overall": {...}, "groups": {source: {...}}}."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    meteor, tokenizer = reference_meteor, PTBTokenizer()

    def score(gts: dict, res: dict) -> dict[str, float]:
        values = dict(zip(KEYS[:4], Bleu(4).compute_score(gts, res, verbose=0)[0]))
        values["meteor"] = meteor.compute_score(gts, res)[0]
        values["rouge_l"] = Rouge().compute_score(gts, res)[0]
        values["cider"] = Cider().compute_score(gts, res)[0]
        return values

    results = {}
    for name, (predictions, references, sources) in sets.items():
        gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
        res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
        results[name] = {"overall": score(gts, res), "groups": {}}
        for source in STRIDE:  # each source alone, tokenized alone, as a paper reporting it would
            ids = [i for i, label in enumerate(sources) if label == source]
            gts_alone = tokenizer.tokenize({i: [{"caption": r} for r in references[i]] for i in ids})
            res_alone = tokenizer.tokenize({i: [{"caption": predictions[i]}] for i in ids})
            results[name]["groups"][source] = score(gts_alone, res_alone)
    return results


def _assert_equal(ours: dict, expected: dict, where: str) -> None:
    assert list(ours) == list(KEYS), where
    for key in KEYS:
        assert abs(ours[key] - expected[key]) <= TOLERANCE[key], f"{where} {key}: {ours[key]} vs {expected[key]}"


@pytest.fixture(scope="module")
def ours(sets, reference_meteor) -> dict[str, dict]:
    """caption_metrics of each set, per source (computed while the reference METEOR JVM loads)."""
    return {name: metrics.caption_metrics(*sets[name]) for name in sets}


@pytest.mark.parametrize("name", ["loo", "perturbed"])
def test_caption_metrics_equal_pycocoevalcap(name, sets, ours, reference):
    predictions = sets[name][0]
    if name == "perturbed":
        assert "" in predictions and any(p != p.lower() for p in predictions)
    _assert_equal(ours[name]["overall"], reference[name]["overall"], f"{name} overall")
    assert list(ours[name]["groups"]) == list(STRIDE)
    for source in STRIDE:  # each source scored as if alone: pycocoevalcap on that source's images only
        _assert_equal(ours[name]["groups"][source], reference[name]["groups"][source], f"{name} {source}")


def test_groups_equal_each_group_scored_alone(sets, ours):
    predictions, references, sources = sets["perturbed"]
    for source in STRIDE:
        ids = [i for i, label in enumerate(sources) if label == source]
        alone = metrics.caption_metrics([predictions[i] for i in ids], [references[i] for i in ids])
        assert alone["groups"] == {}
        assert alone["overall"] == ours["perturbed"]["groups"][source], source  # the very same numbers


_FRESH_PROCESS = """
import json, sys
import evaluate
sets, root = json.load(open(sys.argv[1])), sys.argv[2]
modules = [evaluate.load(f"{root}/metrics/{name}") for name in ("bleu", "meteor", "rouge", "cider")]
combined = evaluate.combine(modules)
output = {"names": [module.name for module in modules]}
for name, (predictions, references) in sets.items():
    output[name] = combined.compute(predictions=predictions, references=references)
print(json.dumps(output))
"""


def test_evaluate_load_in_a_fresh_offline_process(sets, reference, tmp_path):
    inputs = {}
    for name, (predictions, references, sources) in sets.items():
        ids = [i for i, source in enumerate(sources) if source == "RSICD"]
        inputs[name] = [[predictions[i] for i in ids], [references[i] for i in ids]]
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    # cwd outside the repository: evaluate imports its cached copy of each module, which must find the package
    process = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(tmp_path / "inputs.json"), str(ROOT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    output = json.loads(process.stdout.strip().splitlines()[-1])
    assert output["names"] == ["bleu", "meteor", "rouge", "cider"]
    for name in sets:
        _assert_equal(output[name], reference[name]["groups"]["RSICD"], f"{name} through evaluate.load")
