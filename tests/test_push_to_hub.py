"""push_to_hub.py: the dry-run export of a finetune.py output_dir loads in a FRESH process as Hub custom code and
reproduces the in-memory model; uploads through the real huggingface_hub client to a local stand-in Hub
(tests/fake_hub.py) are byte-identical to the dry run; every precondition fails fast with a clear message and
leaves nothing on the Hub."""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from fake_hub import FakeHub
from huggingface_hub import ModelCard, constants
from PIL import Image, ImageDraw
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

import publishing
import push_to_hub
from metrics import caption_metrics, java_available
from qlora import apply_lora
from scripts.make_tiny_checkpoint import TinyCheckpointArguments, build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "dataset_builder" / "sample"
PROMPT = "caption en"
MAX_NEW_TOKENS = 6
REPO_ID = "alice/tsn-paligemma-risc"
HUB_BASE = "google/paligemma-3b-pt-224"  # named with --base_model for the adapter card; the worker swaps in the base
MERGED_FILES = {
    "README.md",
    "config.json",
    "configuration_tsn_paligemma.py",
    "eval_results.json",
    "example.jpg",
    "generation_config.json",
    "model.safetensors",
    "modeling_tsn_paligemma.py",
    "processor_config.json",
    "segment_encoder_tsn_paligemma.py",
    "samples.png",
    "tokenizer.json",
    "tokenizer_config.json",
}
ADAPTER_FILES = {
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "config.json",
    "configuration_tsn_paligemma.py",
    "eval_results.json",
    "modeling_tsn_paligemma.py",
    "processor_config.json",
    "segment_encoder_tsn_paligemma.py",
    "samples.png",
    "tokenizer.json",
    "tokenizer_config.json",
}


# ------------------------------------------------------------------------------------- a finetune.py output_dir
@dataclass
class FabricatedRun:
    output_dir: Path
    base_dir: Path  # the plain PaliGemma the "training" started from (outside output_dir)
    model: torch.nn.Module  # the merged model, in memory
    processor: object
    image_path: Path  # first test image (the card's example)
    generated: torch.Tensor  # greedy tokens of `model` on image_path, prompt included


def _sample_rows(split: str) -> list[dict]:
    with (SAMPLE_DIR / "captions.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split]
    return [
        {"image": row["image"], "source": row["source"], "references": [row[f"caption_{i}"] for i in range(1, 6)]}
        for row in rows
    ]


def _generate(model, processor, image_path: Path) -> tuple[torch.Tensor, str]:
    inputs = processor(images=Image.open(image_path).convert("RGB"), text="<image>" + PROMPT, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False)
    caption = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    return output, caption


def _predict(model, processor, rows: list[dict], known: dict[str, str] | None = None) -> list[dict]:
    """Prediction records (predictions.jsonl's format) for `rows`: one batched greedy generate (one prompt, so no
    padding), `known` captions reused."""
    known = known or {}
    todo = [row for row in rows if row["image"] not in known]
    if todo:
        images = [Image.open(SAMPLE_DIR / "resized" / row["image"]).convert("RGB") for row in todo]
        inputs = processor(images=images, text=["<image>" + PROMPT] * len(todo), return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False)
        captions = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        known = {**known, **{row["image"]: caption.strip() for row, caption in zip(todo, captions)}}
    return [{**row, "prediction": known[row["image"]]} for row in rows]


def _score(sets: dict[str, list[dict]]) -> dict[str, dict]:
    """eval_results.json's R for each set of records, from ONE caption_metrics call (one Java start): every record
    appears once per set and once per set/source group, and caption_metrics scores each group as if alone."""
    predictions, references, groups = [], [], []
    for name, records in sets.items():
        for record in records:
            for group in (name, f"{name}/{record['source']}"):
                predictions.append(record["prediction"])
                references.append(record["references"])
                groups.append(group)
    metrics = ("bleu", "meteor", "rouge", "cider") if java_available() else ("bleu", "rouge", "cider")
    scores = caption_metrics(predictions, references, groups=groups, metrics=metrics)["groups"]
    results = {}
    for name, records in sets.items():
        per_source = {group.split("/", 1)[1]: value for group, value in scores.items() if group.startswith(name + "/")}
        results[name] = {"task": "caption", "loss": None, "num_samples": len(records), "overall": scores[name]}
        results[name]["groups"] = per_source
    return results


def _write_jsonl(records: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _plain_paligemma(tsn_model) -> PaliGemmaForConditionalGeneration:
    """The base the TSN model was built from: PaliGemma with the same weights, no segment encoder."""
    config = tsn_model.config
    base_config = PaliGemmaConfig(
        text_config=config.text_config.to_dict(),
        vision_config=config.vision_config.to_dict(),
        projection_dim=config.projection_dim,
        hidden_size=config.hidden_size,
        vocab_size=config.text_config.vocab_size,
        image_token_index=config.image_token_index,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=config.tie_word_embeddings,
    )
    base = PaliGemmaForConditionalGeneration(base_config).eval()
    state = {key: value for key, value in tsn_model.state_dict().items() if not key.startswith("model.tsn.")}
    base.load_state_dict(state, strict=True)
    return base


def fabricate_output_dir(work: Path) -> FabricatedRun:
    """A finetune.py output_dir with real content: a tiny TSN-PaliGemma "trained" (seeded LoRA + segment encoder
    changes), merged/ and adapter/ as finetune.py saves them, real predictions on the bundled sample scored by
    metrics.caption_metrics (fine-tuned and zero-shot), samples.png, characteristics.json, a checkpoint-*/."""
    output_dir, base_dir = work / "run", work / "base-paligemma"
    model, processor = build_tiny_model(TinyCheckpointArguments(output_dir=str(work / "tokenizer")))
    _plain_paligemma(model).save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    # Few images (generation is the slow part on 2 shared cores): every source in test, two val images.
    test_rows = [row for row in _sample_rows("test") if row["source"] != "RSICD"] + [
        row for row in _sample_rows("test") if row["source"] == "RSICD"
    ][:4]
    val_rows = _sample_rows("val")[:3]
    baseline_records = _predict(model, processor, test_rows)  # zero-shot: gate 0, so exactly the base PaliGemma

    peft_model = apply_lora(model, quantized=False, gradient_checkpointing=False)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # "training": every trainable tensor (LoRA A/B, the segment encoder's copy) moves
        for name, parameter in peft_model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
                if name.endswith(".gate"):
                    parameter.fill_(0.5)  # the segment encoder now reaches the language model
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    adapter_dir, merged_dir = output_dir / "adapter", output_dir / "merged"
    peft_model.save_pretrained(adapter_dir)  # also writes PEFT's own README.md, which is never published
    processor.save_pretrained(adapter_dir)
    peft_model.base_model.model.config.save_pretrained(adapter_dir)
    merged = peft_model.merge_and_unload().eval()
    merged.generation_config.max_new_tokens = MAX_NEW_TOKENS
    merged.save_pretrained(merged_dir)
    processor.save_pretrained(merged_dir)

    image_path = SAMPLE_DIR / "resized" / test_rows[0]["image"]
    start = time.perf_counter()
    generated, caption = _generate(merged, processor, image_path)
    latency_ms = (time.perf_counter() - start) * 1000
    test_records = _predict(merged, processor, test_rows, known={image_path.name: caption})
    val_records = _predict(merged, processor, val_rows)
    results = _score({"test": test_records, "val": val_records, "baseline_test": baseline_records})
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
    _write_jsonl(test_records, output_dir / "predictions.jsonl")
    _write_jsonl(val_records, output_dir / "val_predictions.jsonl")
    tsn = {key: value for key, value in merged.config.to_dict().items() if key.startswith("tsn_")}
    finetune_config = {
        "model_name_or_path": str(base_dir),
        "quantization": "4bit",
        "lora_r": 32,
        "lora_alpha": 64,
        "lora_dropout": 0.1,
        "learning_rate": 0.0002,
        "lr_scheduler_type": "cosine",
        "num_train_epochs": 3,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 4,
        "weight_decay": 0.05,
        "label_smoothing_factor": 0.1,
        "num_beams": 1,
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompt": PROMPT,
        "dataset_dir": str(SAMPLE_DIR),
        "output_dir": str(output_dir),
        "bf16": False,
        "seed": 42,
        "caption_choice": "random",
        "some_future_key": [1, 2],
        **tsn,
    }
    (output_dir / "finetune_config.yaml").write_text(yaml.safe_dump(finetune_config, sort_keys=False))

    grid = Image.new("RGB", (4 * 96, 140), "white")  # the picture grid: images with their generated captions
    for i, record in enumerate(test_records[:4]):
        grid.paste(Image.open(SAMPLE_DIR / "resized" / record["image"]).convert("RGB").resize((96, 96)), (i * 96, 0))
        ImageDraw.Draw(grid).text((i * 96 + 2, 100), record["prediction"][:16], fill="black")
    grid.save(output_dir / "samples.png")
    characteristics = {
        "total_parameters": sum(p.numel() for p in merged.parameters()),
        "trainable_parameters": trainable,
        "gflops_per_caption": 0.0123,
        "latency_ms_mean": latency_ms,
        "latency_ms_p95": latency_ms,
        "num_images": 1,
        "num_beams": 1,
        "max_new_tokens": MAX_NEW_TOKENS,
        "device": "cpu",
        "dtype": "float32",
    }
    (output_dir / "characteristics.json").write_text(json.dumps(characteristics, indent=2))
    (output_dir / "checkpoint-10").mkdir()
    (output_dir / "checkpoint-10" / "optimizer.pt").write_bytes(b"never published")
    return FabricatedRun(output_dir, base_dir, merged, processor, image_path, generated)


# ----------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> FabricatedRun:
    return fabricate_output_dir(tmp_path_factory.mktemp("push-to-hub"))


@pytest.fixture(scope="module")
def merged_export(run, tmp_path_factory) -> Path:
    export_dir = tmp_path_factory.mktemp("export") / "merged"
    assert push_to_hub.main([str(run.output_dir), "--repo_id", REPO_ID, "--dry_run", str(export_dir)]) == 0
    return export_dir


@pytest.fixture(scope="module")
def adapter_export(run, tmp_path_factory) -> Path:
    export_dir = tmp_path_factory.mktemp("export") / "adapter"
    argv = [
        str(run.output_dir),
        "--repo_id",
        REPO_ID,
        "--adapter_only",
        "--base_model",
        HUB_BASE,
        "--dry_run",
        str(export_dir),
    ]
    assert push_to_hub.main(argv) == 0
    return export_dir


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def _local_paths(run: FabricatedRun) -> list[str]:
    return [str(run.output_dir), str(run.base_dir), str(SAMPLE_DIR), str(run.output_dir.parent), "/tmp/"]


# ------------------------------------------------------------------------------------------------------ dry run
def test_dry_run_writes_exactly_the_merged_model_files(run, merged_export):
    files = _folder_files(merged_export)
    assert set(files) == MERGED_FILES
    merged = run.output_dir / "merged"
    for name in (
        "model.safetensors",
        "configuration_tsn_paligemma.py",
        "modeling_tsn_paligemma.py",
        "segment_encoder_tsn_paligemma.py",
        "generation_config.json",
        "tokenizer.json",
        "processor_config.json",
    ):
        assert files[name] == (merged / name).read_bytes(), name
    assert files["samples.png"] == (run.output_dir / "samples.png").read_bytes()
    assert files["example.jpg"] == run.image_path.read_bytes()
    assert files["eval_results.json"] == (run.output_dir / "eval_results.json").read_bytes()
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModel"] == "modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration"
    assert config["auto_map"]["AutoModelForImageTextToText"].endswith("TSNPaliGemmaForConditionalGeneration")
    # tokenizer_config.json as saved here holds the absolute path of the vocab file and "how I was loaded" flags
    local_tokenizer_config = json.loads((merged / "tokenizer_config.json").read_text())
    assert any(isinstance(v, str) and v.startswith("/") for v in local_tokenizer_config.values())
    tokenizer_config = json.loads(files["tokenizer_config.json"])
    assert "is_local" not in tokenizer_config and "local_files_only" not in tokenizer_config
    assert tokenizer_config["tokenizer_class"] == local_tokenizer_config["tokenizer_class"]
    for name, data in files.items():  # no local path in anything published
        if not name.endswith((".safetensors", ".png", ".jpg")):
            for path in _local_paths(run):
                assert path.encode() not in data, (name, path)


def test_dry_run_adapter_only_writes_only_the_adapter(run, adapter_export):
    files = _folder_files(adapter_export)
    assert set(files) == ADAPTER_FILES
    adapter = run.output_dir / "adapter"
    assert files["adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
    assert files["modeling_tsn_paligemma.py"] == (run.output_dir / "merged" / "modeling_tsn_paligemma.py").read_bytes()
    adapter_config = json.loads(files["adapter_config.json"])
    assert adapter_config["base_model_name_or_path"] == HUB_BASE  # PEFT's base pointer: the Hub id
    assert adapter_config["modules_to_save"] == ["tsn"] and adapter_config["r"] == 32
    tsn = {k: v for k, v in json.loads(files["config.json"]).items() if k.startswith("tsn_")}
    assert tsn["tsn_integration"] == "enhanced" and tsn["tsn_segment_scales"] == [[1, 1], [2, 2]]
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == HUB_BASE and card.data.library_name == "peft"
    assert "PeftModel.from_pretrained" in card.text and "from_base_pretrained" in card.text
    for name, data in files.items():
        if not name.endswith((".safetensors", ".png")):
            for path in _local_paths(run):
                assert path.encode() not in data, (name, path)


def test_dry_run_card_model_index_equals_eval_results(run, merged_export):
    card = ModelCard.load(merged_export / "README.md")
    results = json.loads((run.output_dir / "eval_results.json").read_text())["test"]
    expected = {("all", key): value for key, value in results["overall"].items()}
    expected |= {
        (group.lower(), key): value for group, scores in results["groups"].items() for key, value in scores.items()
    }
    got = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == expected and len(got) == len(results["overall"]) * 4  # all sources + NWPU, RSICD, UCM
    assert all(r.dataset_split == "test" for r in card.data.eval_results)
    assert card.data.license == "gemma" and card.data.pipeline_tag == "image-text-to-text"
    assert card.data.base_model is None  # started from a local folder, no --base_model
    assert "a local PaliGemma checkpoint" in card.text
    assert card.data.widget[0]["src"].endswith(f"{REPO_ID}/resolve/main/example.jpg")


WORKER = r'''
import os, re, sys
for name in ("configuration_tsn_paligemma", "modeling_tsn_paligemma", "segment_encoder_tsn_paligemma", "processing",
             "qlora", "publishing", "push_to_hub", "scripts", "metrics", "fake_hub"):
    sys.modules[name] = None  # as on a machine without the repo: only the exported files can be used
import torch
from PIL import Image
from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor, pipeline

job = torch.load(sys.argv[1], weights_only=False)
repo_dirs = {job["repo_root"], os.path.join(job["repo_root"], "tests")}
assert not [p for p in sys.path if os.path.abspath(p or os.getcwd()) in repo_dirs], sys.path


def card_code(folder, replacements):
    """The python blocks of the card's Usage section, with the repo id (and base) pointing at local folders."""
    text = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    usage = text.split("\n## Usage\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", usage, flags=re.S)
    for old, new in replacements.items():
        blocks = [block.replace(old, new) for block in blocks]
    return blocks


result = {}
image = Image.open("aerial.jpg").convert("RGB")
merged, adapter = job["merged"], job["adapter"]
namespace = {}
for block in card_code(merged, {'"%s"' % job["repo_id"]: repr(merged)}):
    exec(block, namespace)
inputs = namespace["inputs"]
with torch.no_grad():
    result["card"] = {"output": namespace["output"], "caption": namespace["caption"],
                      "logits": namespace["model"](**inputs).logits,
                      "module": type(namespace["model"]).__module__ + "." + type(namespace["model"]).__name__}
    result["card_pipeline_text"] = namespace["result"][0]["generated_text"]
    model = AutoModel.from_pretrained(merged, trust_remote_code=True).eval()
    result["AutoModel"] = {"module": type(model).__module__ + "." + type(model).__name__,
                           "logits": model(**inputs).logits}
# The card's pipeline again, asked for tokens (its text strips the prompt by string search: not comparable).
tokens = namespace["captioner"](images=image, text=job["prompt"], max_new_tokens=job["max_new_tokens"],
                                return_tensors=True)
result["pipeline_tokens"] = torch.as_tensor(tokens[0]["generated_token_ids"])

namespace = {}
for block in card_code(adapter, {'"%s"' % job["repo_id"]: repr(adapter), '"%s"' % job["hub_base"]: repr(job["base"])}):
    exec(block, namespace)
with torch.no_grad():
    result["adapter"] = {"output": namespace["output"], "logits": namespace["model"](**namespace["inputs"]).logits,
                         "module": type(namespace["model"]).__module__}
torch.save(result, sys.argv[2])
'''


def test_dry_run_loads_in_a_fresh_process_and_reproduces_the_model(run, merged_export, adapter_export, tmp_path):
    """The card's own usage code (merged, and the adapter rebuild recipe), AutoModel, AutoModelForImageTextToText and
    the pipeline, in a fresh `python -I` whose cwd is outside the repo: same tokens as the in-memory model."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "aerial.jpg").write_bytes(run.image_path.read_bytes())
    job, result_file = tmp_path / "job.pt", tmp_path / "result.pt"
    torch.save(
        {
            "repo_root": str(REPO_ROOT),
            "merged": str(merged_export),
            "adapter": str(adapter_export),
            "base": str(run.base_dir),
            "repo_id": REPO_ID,
            "hub_base": HUB_BASE,
            "prompt": "<image>" + PROMPT,
            "max_new_tokens": MAX_NEW_TOKENS,
        },
        job,
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, "-I", "-c", WORKER, str(job), str(result_file)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    got = torch.load(result_file, weights_only=False)

    inputs = run.processor(
        images=Image.open(run.image_path).convert("RGB"), text="<image>" + PROMPT, return_tensors="pt"
    )
    with torch.no_grad():
        logits = run.model(**inputs).logits
    # The card's code (AutoModelForImageTextToText) and AutoModel reproduce the in-memory model exactly.
    for name in ("card", "AutoModel"):
        assert got[name]["module"].startswith("transformers_modules."), name
        assert got[name]["module"].endswith("modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration"), name
        assert (got[name]["logits"] - logits).abs().max().item() == 0.0, name
    assert torch.equal(got["card"]["output"], run.generated)
    prediction = json.loads((run.output_dir / "predictions.jsonl").read_text().splitlines()[0])
    assert prediction["image"] == run.image_path.name and got["card"]["caption"] == prediction["prediction"]
    assert isinstance(got["card_pipeline_text"], str)
    assert torch.equal(got["pipeline_tokens"].flatten(), run.generated[0])
    # Adapter repo: from_base_pretrained(plain PaliGemma, tsn_*) + PeftModel + merge == the published merged model.
    assert got["adapter"]["module"].startswith("transformers_modules.")
    assert torch.allclose(got["adapter"]["logits"], logits, atol=1e-5), (got["adapter"]["logits"] - logits).abs().max()
    assert torch.equal(got["adapter"]["output"], run.generated)


# ------------------------------------------------------------------------------------------- upload (fake Hub)
def test_upload_is_one_commit_byte_identical_to_the_dry_run(run, merged_export, hub, capsys):
    argv = [str(run.output_dir), "--repo_id", REPO_ID, "--private", "--commit_message", "First release"]
    assert push_to_hub.main(argv) == 0
    assert hub.files(REPO_ID) == _folder_files(merged_export)
    assert hub.repos[REPO_ID].private is True
    assert hub.calls("create_repo")[0].json["visibility"] == "private"
    history = hub.history(REPO_ID)
    assert [commit.summary for commit in history] == ["First release", "initial commit"]  # ONE commit
    assert "cider" in history[0].description
    assert {"model.safetensors", "samples.png", "example.jpg"} <= hub.lfs_paths(REPO_ID)
    assert "README.md" not in hub.lfs_paths(REPO_ID)
    assert not hub.calls("xet")  # plain LFS
    assert f'revision="{history[0].oid}"' in capsys.readouterr().out  # tells the user which commit to pin


def test_upload_to_a_new_branch_leaves_main_alone(run, merged_export, hub):
    assert push_to_hub.main([str(run.output_dir), "--repo_id", REPO_ID, "--revision", "v1-candidate"]) == 0
    assert hub.calls("create_branch")[0].path.endswith("/branch/v1-candidate")
    branch, exported = hub.files(REPO_ID, "v1-candidate"), _folder_files(merged_export)
    assert set(branch) == set(exported)
    assert all(branch[name] == exported[name] for name in exported if name != "README.md")  # the card names the branch
    assert hub.files(REPO_ID, "main") == {}
    assert "visibility" not in hub.calls("create_repo")[0].json  # no --private: the namespace's default
    card = ModelCard(hub.files(REPO_ID, "v1-candidate")["README.md"].decode())
    assert 'revision = "v1-candidate"' in card.text
    assert card.data.widget[0]["src"].endswith("/resolve/v1-candidate/example.jpg")


def test_upload_adapter_only(run, adapter_export, hub):
    argv = [str(run.output_dir), "--repo_id", REPO_ID, "--adapter_only", "--base_model", HUB_BASE]
    assert push_to_hub.main(argv) == 0
    files = hub.files(REPO_ID)
    assert set(files) == ADAPTER_FILES
    assert files == _folder_files(adapter_export)


def test_cli_uploads_with_hf_endpoint_in_a_subprocess(run, merged_export, tmp_path):
    """The user's command line: HF_ENDPOINT and HF_TOKEN from the environment, a second run re-commits nothing."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    with FakeHub(tokens={"hf_cli_token"}) as fake:
        env.update(
            HF_ENDPOINT=fake.url,
            HF_TOKEN="hf_cli_token",
            HF_HUB_DISABLE_XET="1",
            HF_HOME=str(tmp_path / "hf"),
            HF_HUB_DISABLE_PROGRESS_BARS="1",
        )
        command = [sys.executable, str(REPO_ROOT / "push_to_hub.py"), str(run.output_dir), "--repo_id", REPO_ID]
        completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert completed.returncode == 0, completed.stderr[-4000:]
        assert fake.files(REPO_ID) == _folder_files(merged_export)
        assert f"{fake.url}/{REPO_ID}/commit/" in completed.stdout
        assert all(request.token == "hf_cli_token" for request in fake.requests if request.endpoint == "commit")


# ------------------------------------------------------------------------------------------------- fail fast
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fails(argv: list[str], capsys) -> str:
    assert push_to_hub.main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize("repo_id", ["tsn-paligemma", "alice/tsn/paligemma", "alice/tsn paligemma", "alice/--x"])
def test_malformed_repo_id_fails_before_any_work(run, hub, capsys, repo_id, tmp_path):
    error = _fails([str(run.output_dir), "--repo_id", repo_id], capsys)
    assert repr(repo_id) in error and "`user/name`" in error
    assert hub.requests == []
    assert _fails([str(run.output_dir), "--repo_id", repo_id, "--dry_run", str(tmp_path / "x")], capsys)
    assert not (tmp_path / "x").exists()


def test_no_token_fails_before_any_request(run, hub, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-login"))
    error = _fails([str(run.output_dir), "--repo_id", REPO_ID], capsys)
    assert "HF_TOKEN" in error and "hf auth login" in error and "huggingface-cli login" in error
    assert hub.requests == []


def test_offline_mode_fails_before_any_request(run, hub, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    error = _fails([str(run.output_dir), "--repo_id", REPO_ID], capsys)
    assert "HF_HUB_OFFLINE" in error and "unset" in error
    assert hub.requests == []


def test_missing_output_dir_or_file_fails_before_any_request(run, hub, capsys, tmp_path):
    error = _fails([str(tmp_path / "nowhere"), "--repo_id", REPO_ID], capsys)
    assert "nowhere does not exist" in error and "finetune.py" in error
    partial = tmp_path / "partial"
    (partial / "merged").mkdir(parents=True)
    for name in ("eval_results.json", "finetune_config.yaml"):
        (partial / name).write_bytes((run.output_dir / name).read_bytes())
    error = _fails([str(partial), "--repo_id", REPO_ID], capsys)
    assert "merged/model.safetensors" in error and "finetune.py" in error and "--adapter_only" in error
    error = _fails([str(partial), "--repo_id", REPO_ID, "--adapter_only"], capsys)
    assert "adapter/adapter_config.json is missing" in error
    assert hub.requests == []


def test_dry_run_into_a_non_empty_folder_fails(run, capsys, tmp_path):
    (tmp_path / "old.txt").write_text("x")
    error = _fails([str(run.output_dir), "--repo_id", REPO_ID, "--dry_run", str(tmp_path)], capsys)
    assert "not an empty folder" in error and sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]


def test_unreachable_endpoint_fails_cleanly(run, online, monkeypatch, capsys):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    error = _fails([str(run.output_dir), "--repo_id", REPO_ID], capsys)
    assert endpoint in error and REPO_ID in error and "ConnectError" in error and "Nothing was committed" in error


def test_failed_commit_leaves_nothing_on_main(run, hub, capsys):
    hub.fail("commit", 500)
    error = _fails([str(run.output_dir), "--repo_id", REPO_ID], capsys)
    assert "HTTP 500" in error and f"{hub.url}/api/models/{REPO_ID}/commit/main" in error
    assert "Nothing was committed to main" in error
    assert hub.lfs_objects  # the weights were uploaded to LFS storage ...
    assert hub.files(REPO_ID) == {} and len(hub.history(REPO_ID)) == 1  # ... but main got no commit
    hub.reset_failures()
    assert push_to_hub.main([str(run.output_dir), "--repo_id", REPO_ID]) == 0  # the same command then succeeds
    assert set(hub.files(REPO_ID)) == MERGED_FILES


def test_rejected_token_is_reported(run, online, monkeypatch, capsys):
    with FakeHub(tokens={"the-right-token"}) as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        error = _fails([str(run.output_dir), "--repo_id", REPO_ID, "--token", "a-wrong-token"], capsys)
        assert "HTTP 401" in error and "token" in error and fake.files(REPO_ID) == {}
        assert re.search(r"Publishing alice/tsn-paligemma-risc to http://127\.0\.0\.1:\d+ failed", error)


def test_fake_hub_refuses_xet_loudly(run, online, monkeypatch, capsys):
    """hf_xet picks Xet on the client side; the fake Hub does not speak it and says so instead of hanging."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        error = _fails([str(run.output_dir), "--repo_id", REPO_ID], capsys)
        assert "xet-write-token" in error and fake.files(REPO_ID) == {} and fake.calls("xet")


def test_a_local_path_in_a_published_file_stops_the_export(run, tmp_path):
    """Known keys are cleaned (tokenizer_config's vocab_file, adapter_config's base); anything else that would
    publish a local folder stops the export before a byte is written."""
    template = run.output_dir / "merged" / "chat_template.jinja"
    template.write_text("{# written in " + str(run.output_dir) + " #}{{ messages }}")
    try:
        with pytest.raises(publishing.PublishError, match="chat_template.jinja would publish the local path"):
            publishing.publish(run.output_dir, REPO_ID, dry_run=tmp_path / "export")
    finally:
        template.unlink()
    assert not (tmp_path / "export").exists()
    source = tmp_path / "tokenizer_config.json"
    source.write_text(
        json.dumps(
            {
                "vocab_file": "outputs/tiny-base/tokenizer.model",
                "name_or_path": HUB_BASE,
                "local_files_only": True,
                "tokenizer_class": "GemmaTokenizer",
            }
        )
    )
    cleaned = json.loads(publishing.public_json("tokenizer_config.json", source, None))
    assert cleaned == {"name_or_path": HUB_BASE, "tokenizer_class": "GemmaTokenizer"}
