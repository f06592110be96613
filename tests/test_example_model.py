"""examples/rsicd-mini, the shipped captioner: it loads the way users load models (inference.py, the Auto class with
trust_remote_code in a fresh process), its logits on a fixed image stay pinned as the model code evolves, and its
captions differ by image."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import inference

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "rsicd-mini"
SAMPLE_IMAGES = REPO_ROOT / "dataset_builder" / "sample" / "resized"
# Bundled RSICD images outside RSICD's training split: the shipped model never trained on them.
HELD_OUT = [
    "RSICD_00743.jpg",
    "RSICD_00750.jpg",
    "RSICD_square_54.jpg",
    "RSICD_square_73.jpg",
    "RSICD_stadium_57.jpg",
    "RSICD_storagetanks_53.jpg",
    "RSICD_viaduct_408.jpg",
    "RSICD_viaduct_47.jpg",
]
PINNED_IMAGE = SAMPLE_IMAGES / "RSICD_stadium_57.jpg"
PROMPT = "<image>caption en"
# Logits of the last prompt position (the first caption token), computed in float32 on CPU from the bf16 weights.
PINNED_TOP5_IDS = [1955, 345, 283, 330, 400]  # "a", "some", "many", "the", "several"
PINNED_TOP5_LOGITS = [7.8856, 7.2705, 7.1798, 7.0699, 6.8806]
PINNED_CAPTION = "some green trees are near a stadium with a football field in it ."

FRESH_PROCESS = r"""
import json, sys
for name in ("configuration_tsn_paligemma", "modeling_tsn_paligemma", "segment_encoder_tsn_paligemma", "processing"):
    sys.modules[name] = None  # as on a machine without the repo: only the folder's code can be used
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

folder, image = sys.argv[1], sys.argv[2]
model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = processor(images=Image.open(image).convert("RGB"), text="<image>caption en", return_tensors="pt")
with torch.no_grad():
    output = model.generate(**inputs, max_new_tokens=40, num_beams=3, do_sample=False)
caption = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
print(json.dumps({"module": type(model).__module__, "caption": caption}))
"""


@pytest.fixture(scope="module")
def example():
    model = AutoModelForImageTextToText.from_pretrained(EXAMPLE, trust_remote_code=True, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(EXAMPLE, trust_remote_code=True)


def test_the_folder_is_small_bf16_and_has_no_second_copy_of_the_code():
    weights = EXAMPLE / "model.safetensors"
    assert weights.stat().st_size < 50e6
    config = json.loads((EXAMPLE / "config.json").read_text())
    assert config["torch_dtype" if "torch_dtype" in config else "dtype"] == "bfloat16"
    for name in ("configuration_tsn_paligemma.py", "modeling_tsn_paligemma.py", "segment_encoder_tsn_paligemma.py"):
        link = EXAMPLE / name
        assert link.is_symlink() and link.resolve() == REPO_ROOT / name


def test_logits_on_a_fixed_image_are_pinned(example):
    model, processor = example
    inputs = processor(images=Image.open(PINNED_IMAGE).convert("RGB"), text=PROMPT, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    top = logits.topk(5)
    assert top.indices.tolist() == PINNED_TOP5_IDS
    torch.testing.assert_close(top.values, torch.tensor(PINNED_TOP5_LOGITS), rtol=0, atol=1e-3)


def test_inference_cli_captions_differ_by_image(capsys):
    images = [SAMPLE_IMAGES / name for name in HELD_OUT]
    status = inference.main(
        [*map(str, images), "--model", str(EXAMPLE), "--num_beams", "3", "--max_new_tokens", "40", "--format", "jsonl"]
    )
    assert status == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    captions = [record["caption"] for record in records]
    assert len(captions) == 8 and all(captions)
    assert len(set(captions)) >= 4, captions  # captions of what is seen, not one sentence under every image
    assert records[[Path(r["file"]).name for r in records].index(PINNED_IMAGE.name)]["caption"] == PINNED_CAPTION


def test_auto_class_with_trust_remote_code_in_a_fresh_process(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    completed = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PROCESS, str(EXAMPLE), str(PINNED_IMAGE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["module"].startswith("transformers_modules.")
    assert result["caption"] == PINNED_CAPTION
