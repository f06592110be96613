"""examples/rs-mini, the shipped multi-task model: it loads the way users load models (inference.py, the Auto class
with trust_remote_code in a fresh process), its logits for every task prompt on a fixed image stay pinned as the model
code evolves, its captions differ by image, and `--task classify` answers unseen RSICD images as its run scored
them."""

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
from tasks import recorded_tasks, task_from_model

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "rs-mini"
# Its test predictions per task: `finetune.py --do_train false` on the merged model it was exported from.
RUN_RESULTS = REPO_ROOT / "docs" / "results" / "rs-mini" / "shipped"
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
PINNED_IMAGE = SAMPLE_IMAGES / HELD_OUT[0]
PROMPT = "<image>caption en"
# Per task kind: the prompt the model's config records (count: for airplanes) and the logits of the last prompt
# position (the answer's first token), top 5, computed in float32 on CPU from the bf16 weights.
TASK_PINS = {
    "caption": ("caption en", [283, 1955, 345, 330, 412], [8.7829, 8.1655, 8.0616, 7.8194, 7.5524]),  # "many", "a"
    "classify": (
        "answer en what is the scene?",
        [1959, 297, 1967, 1485, 352],  # "s", "me", "m", "res", "ch"
        [10.8098, 10.7862, 9.4539, 8.9049, 8.2208],
    ),
    "count": (
        "answer en how many airplanes are there?",
        [1987, 1984, 1996, 57, 1997],  # "1", "2", "3", "5", "4"
        [11.7766, 9.7557, 9.1749, 8.3026, 7.1552],
    ),
    "detect": (
        "detect airplane ; ship ; storage tank ; baseball diamond ; tennis court ; basketball court ; "
        "ground track field ; harbor ; bridge ; vehicle",
        [2470, 2347, 2266, 2240, 2169],  # <loc0468>, <loc0345>, <loc0264>, <loc0238>, <loc0167>
        [7.6867, 6.827, 6.75, 6.5394, 6.5281],
    ),
}
PINNED_CAPTION = "some buildings and many green trees are in a medium residential area ."  # 3 beams, its setting
GREEDY_CAPTION = "many green trees are around a building ."  # 1 beam: not what the reported scores used
# The scenes `inference.py --task classify` names for the bundled named images outside RSICD's training split, all
# but the stadium from the classes it confuses most (docs/studies/four-task-model.md): right for the stadium only.
HELD_OUT_SCENES = {
    "RSICD_square_54.jpg": "viaduct",
    "RSICD_square_73.jpg": "railway station",
    "RSICD_stadium_57.jpg": "stadium",
    "RSICD_storagetanks_53.jpg": "dense residential",
    "RSICD_viaduct_408.jpg": "medium residential",
    "RSICD_viaduct_47.jpg": "parking",
}

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


@pytest.mark.parametrize("kind", sorted(TASK_PINS))
def test_logits_of_every_task_prompt_are_pinned(example, kind):
    model, processor = example
    prompt, top_ids, top_logits = TASK_PINS[kind]
    task = task_from_model(kind, model.config, classes="airplane" if kind == "count" else None)
    assert task.prompt == prompt
    inputs = processor(images=Image.open(PINNED_IMAGE).convert("RGB"), text="<image>" + prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    top = logits.topk(5)
    assert top.indices.tolist() == top_ids
    torch.testing.assert_close(top.values, torch.tensor(top_logits), rtol=0, atol=1e-3)


def test_the_model_records_its_four_tasks_and_the_classes_it_knows(example):
    model, _ = example
    records = recorded_tasks(model.config)
    assert sorted(records) == ["caption", "classify", "count", "detect"]
    assert len(records["classify"]["classes"]) == 30 and "dense residential" in records["classify"]["classes"]
    nwpu = ["airplane", "ship", "storage tank", "baseball diamond", "tennis court", "basketball court"]
    assert records["count"]["classes"][:6] == records["detect"]["classes"][:6] == nwpu
    assert records["detect"]["prompt"] == "detect " + " ; ".join(records["detect"]["classes"])


def test_classify_on_unseen_rsicd_test_images_answers_as_the_run_scored_them(shared_data, capsys):
    """`inference.py --task classify` on the first four named images per class of RSICD's test half (120 images the
    model never trained on): the answers its evaluation recorded for them; 59 right (49%; 55.3% on the whole half),
    where always answering one class gets 4."""
    recorded = {}
    for line in (RUN_RESULTS / "predictions_scenes.jsonl").read_text().splitlines():
        record = json.loads(line)
        recorded[record["image"]] = record
    by_class = {}
    for name in sorted(recorded):
        by_class.setdefault(recorded[name]["reference"], []).append(name)
    chosen = [name for names in by_class.values() for name in names[:4]]
    assert len(by_class) == 30 and len(chosen) == 120
    images = [str(shared_data / "rsicd" / "resized" / name) for name in chosen]
    assert inference.main([*images, "--model", str(EXAMPLE), "--task", "classify", "--format", "jsonl"]) == 0
    answers = {Path(r["file"]).name: r["text"] for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert answers == {name: recorded[name]["prediction"] for name in chosen}
    right = sum(answers[name] == recorded[name]["reference"] for name in chosen)
    assert right == 59


def test_classify_on_the_bundled_images_outside_the_training_split(capsys):
    images = [str(SAMPLE_IMAGES / name) for name in HELD_OUT_SCENES]
    assert inference.main([*images, "--model", str(EXAMPLE), "--task", "classify"]) == 0
    answers = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert {Path(path).name: answer for path, answer in answers.items()} == HELD_OUT_SCENES


def test_inference_cli_captions_differ_by_image(capsys):
    images = [SAMPLE_IMAGES / name for name in HELD_OUT]
    status = inference.main(
        [*map(str, images), "--model", str(EXAMPLE), "--num_beams", "3", "--max_new_tokens", "40", "--format", "jsonl"]
    )
    assert status == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    captions = [record["text"] for record in records]
    assert len(captions) == 8 and all(captions)
    assert len(set(captions)) >= 4, captions  # captions of what is seen, not one sentence under every image
    assert records[[Path(r["file"]).name for r in records].index(PINNED_IMAGE.name)]["text"] == PINNED_CAPTION


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

    demo = app.build_demo(str(EXAMPLE))  # beams and length start at 0: as the model recorded the task
    sliders = {
        block.elem_id: block.value for block in demo.blocks.values() if block.elem_id in ("beams", "max_new_tokens")
    }
    assert sliders == {"beams": 0, "max_new_tokens": 0}
    models = {str(EXAMPLE): app.load_model(str(EXAMPLE))}
    _, lines, _ = app.answer(models, [str(PINNED_IMAGE)], "caption", "", "", 0, 0)
    assert lines == f"{PINNED_IMAGE.name}\t{PINNED_CAPTION}"  # 3 beams, 40 tokens: the generation_config's
    _, lines, _ = app.answer(models, [str(PINNED_IMAGE)], "caption", "", "", 1, 0)
    assert lines == f"{PINNED_IMAGE.name}\t{GREEDY_CAPTION}"


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


def test_detections_carry_a_score_from_their_tokens_and_the_same_boxes_as_the_text():
    """The scored path reads exactly the boxes the text path reads from the same generation, each with a score in
    [0, 1] (the mean probability of its tokens)."""
    from images import load_image
    from inference_core import choose_task, decoding_settings, generate_texts, load_model, run_task

    model, processor = load_model(str(EXAMPLE))
    task = choose_task(model.config, "detect")
    images = [load_image(SAMPLE_IMAGES / name) for name in HELD_OUT[:3]]
    scored = run_task(model, processor, images, task, max_new_tokens=60)
    texts = generate_texts(
        model, processor, images, task.prompt, 8, **decoding_settings(model, task, max_new_tokens=60)
    )
    plain = [task.read(text, *image.size) for text, image in zip(texts, images)]
    assert [result["text"] for result in scored] == texts
    assert [[b["box"] for b in r["boxes"]] for r in scored] == [[b["box"] for b in r["boxes"]] for r in plain]
    scores = [box["score"] for result in scored for box in result["boxes"]]
    assert scores and all(0 < score <= 1 for score in scores)
