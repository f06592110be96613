"""examples/rsicd-mini, the shipped captioner: it loads the way users load models (inference.py, the Auto class with
trust_remote_code in a fresh process), its logits on a fixed image stay pinned as the model code evolves, and its
captions differ by image."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import inference
from publishing.run_folder import CODE_FILES

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
PINNED_TOP5_IDS = [1955, 283, 330, 345, 400]  # "a", "many", "the", "some", "several"
PINNED_TOP5_LOGITS = [7.9397, 7.3562, 7.2711, 7.2571, 6.9323]
PINNED_CAPTION = "a football field is in the middle of a white stadium ."  # 3 beams, the model's setting
GREEDY_CAPTION = "a football field is in a white stadium ."  # 1 beam: not what the reported scores used

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


def test_the_folder_is_small_bf16_and_its_code_files_equal_the_repositorys():
    """Real files (a `cp -r` of the folder keeps working), byte-identical to the code the tests run."""
    weights = EXAMPLE / "model.safetensors"
    assert weights.stat().st_size < 50e6
    config = json.loads((EXAMPLE / "config.json").read_text())
    assert config["torch_dtype" if "torch_dtype" in config else "dtype"] == "bfloat16"
    for name in CODE_FILES:
        copy = EXAMPLE / name
        assert copy.is_file() and not copy.is_symlink(), f"{copy} must be a real file"
        assert copy.read_bytes() == (REPO_ROOT / name).read_bytes(), f"{copy} differs. Fix: cp {name} {EXAMPLE}/"


def test_a_copy_of_the_folder_loads_and_captions_like_the_original(tmp_path, example):
    model, processor = example
    copied = Path(shutil.copytree(EXAMPLE, tmp_path / "copied", symlinks=True))  # as `cp -r` copies it
    again = AutoModelForImageTextToText.from_pretrained(copied, trust_remote_code=True, dtype=torch.float32).eval()
    image = Image.open(PINNED_IMAGE).convert("RGB")
    inputs = processor(images=image, text=PROMPT, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, again(**inputs).logits)


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
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["module"].startswith("transformers_modules.")
    assert result["caption"] == PINNED_CAPTION


def test_inference_and_the_app_decode_with_the_models_generation_config_by_default(capsys):
    """No decoding option: the model's generation_config (3 beams, as every reported score); --num_beams 1 still
    gives greedy decoding when asked for."""
    config = json.loads((EXAMPLE / "generation_config.json").read_text())
    assert (config["num_beams"], config["max_new_tokens"]) == (3, 40)
    assert inference.main([str(PINNED_IMAGE), "--model", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == f"{PINNED_IMAGE}\t{PINNED_CAPTION}\n"
    assert inference.main([str(PINNED_IMAGE), "--model", str(EXAMPLE), "--num_beams", "1"]) == 0
    assert capsys.readouterr().out == f"{PINNED_IMAGE}\t{GREEDY_CAPTION}\n"
    import app

    demo = app.build_demo(str(EXAMPLE))
    sliders = {
        block.elem_id: block.value for block in demo.blocks.values() if block.elem_id in ("beams", "max_new_tokens")
    }
    assert sliders == {"beams": 3, "max_new_tokens": 40}


def test_the_readmes_first_code_block_runs_as_written_and_prints_its_comment(tmp_path):
    """README.md's first Python block, run from the repository root in a fresh process, prints the caption its last
    comment line shows."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    expected = block.strip().splitlines()[-1].removeprefix("# ")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run([sys.executable, "-c", block], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == expected == PINNED_CAPTION
