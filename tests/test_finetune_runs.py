"""finetune.py end to end, as subprocesses on the bundled sample (CPU, 4-bit). One run of the demo as `make demo`
runs it (QLoRA on the shipped captioner) serves every demo test: loss falls, metrics rise, every output, captions
differ by image, the card states what the run was, the exported merged model reproduces its predictions in a fresh
process, a re-run with other settings stops. On the tiny checkpoint: kill + resume equals an uninterrupted run, DDP
on CPU equals one process, and the HPO search."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tasks.caption import postprocess_caption

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = str(REPO_ROOT / "configs" / "demo.yaml")
SAMPLE = REPO_ROOT / "dataset_builder" / "sample"
# Short runs: 2 epochs of the 30 training images at batch 4 = 16 steps, no evaluation during training.
SHORT = [
    "--num_train_epochs",
    "2",
    "--eval_strategy",
    "no",
    "--load_best_model_at_end",
    "false",
    "--evaluate_before_training",
    "false",
    "--logging_steps",
    "2",
]

pytestmark = pytest.mark.slow


def run_finetune(args: list[str], entry: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, *(entry or [str(REPO_ROOT / "finetune.py")]), *args]
    # No timeout: on a loaded machine a run takes longer, and CI's own limit stops a hung one.
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)


def check(completed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    return completed


def reproduce_in_a_fresh_process(model_dir: Path, output_dir: Path, tmp_path: Path) -> dict:
    """finetune_reproduce_worker.py on `model_dir` (outside the repo, as Hub code): its module name and captions of the
    first 8 test images of `output_dir`'s predictions.jsonl."""
    out = tmp_path / "reproduced.json"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    worker = str(REPO_ROOT / "tests" / "finetune_reproduce_worker.py")
    arguments = [str(model_dir), str(SAMPLE / "resized"), str(output_dir / "predictions.jsonl"), "8", str(out)]
    completed = subprocess.run(
        [sys.executable, "-I", worker, *arguments], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def tiny_base(tiny_checkpoint) -> str:
    return str(tiny_checkpoint())


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """configs/demo.yaml exactly as `make demo` runs it (QLoRA on examples/rs-mini), into a fresh output_dir: ONE
    run that every demo test reads."""
    output_dir = tmp_path_factory.mktemp("demo") / "out"
    completed = check(run_finetune([DEMO, "--output_dir", str(output_dir)]))
    return output_dir, completed.stdout


def test_demo_learns_and_writes_every_output(demo_run):
    output_dir, stdout = demo_run
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "adapter/config.json",
        "merged/model.safetensors",
        "merged/config.json",
        "merged/modeling_tsn_paligemma.py",
        "merged/segment_encoder_tsn_paligemma.py",
        "merged/configuration_tsn_paligemma.py",
        "merged/tokenizer.json",
        "merged/processor_config.json",
        "merged/generation_config.json",
        "finetune_config.yaml",
        "eval_results.json",
        "predictions.jsonl",
        "val_predictions.jsonl",
        "samples.png",
        "characteristics.json",
        "training_summary.json",
    ):
        assert (output_dir / name).is_file(), name
    assert list(output_dir.glob("checkpoint-*/adapter_model.safetensors"))
    assert json.loads((output_dir / "merged" / "config.json").read_text())["auto_map"]["AutoModel"]
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["last_train_loss"] < summary["first_train_loss"]
    results = json.loads((output_dir / "eval_results.json").read_text())
    before, after = results["baseline_test"], results["test"]
    assert after["loss"] < before["loss"]  # the test captions become likelier; their scores need not rise (README)
    for name in ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider"):
        assert before["overall"][name] > 0 and after["overall"][name] > 0, name
    assert set(after["groups"]) == {"NWPU", "RSICD", "UCM"} and after["num_samples"] == 12
    assert "test cider" in stdout and "before" in stdout  # the summary table
    records = [json.loads(line) for line in (output_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(len(record["references"]) == 5 for record in records)
    assert not any(record["prediction"].startswith("caption en") for record in records)  # never echoes the prompt
    config = yaml.safe_load((output_dir / "finetune_config.yaml").read_text())
    assert config["tsn_integration"] == "enhanced" and config["quantization"] == "4bit"


def test_a_caption_fine_tune_keeps_the_bases_other_tasks_and_its_dtype(demo_run):
    """The demo trains captions only on the four-task shipped model: the merged model keeps the base's records of
    scenes, counts and boxes (it can still do them), stores its weights in the base's bf16, and still ranks the 30
    scene classes."""
    from tasks import recorded_tasks, task_from_model

    output_dir, _ = demo_run
    merged = json.loads((output_dir / "merged" / "config.json").read_text())
    base = json.loads((REPO_ROOT / "examples" / "rs-mini" / "config.json").read_text())
    records = merged["trained_tasks"]
    assert sorted(records) == ["caption", "classify", "count", "detect"] and "task_prompts" not in merged
    assert {name: records[name] for name in ("classify", "count", "detect")} == {
        name: base["task_prompts"][name] for name in ("classify", "count", "detect")
    }
    assert recorded_tasks(merged) == records and len(task_from_model("classify", merged).answers) == 30
    weights = load_file(output_dir / "merged" / "model.safetensors")
    assert {str(tensor.dtype) for tensor in weights.values() if tensor.is_floating_point()} == {"torch.bfloat16"}
    assert merged["dtype"] == "bfloat16"
    size = (output_dir / "merged" / "model.safetensors").stat().st_size
    assert abs(size - (REPO_ROOT / "examples" / "rs-mini" / "model.safetensors").stat().st_size) < 1e6


def test_inference_loads_the_adapter_folder_with_its_base(demo_run, capsys):
    """--model output_dir/adapter (PEFT's folder): the base it names, the adapter merged; its first next-token
    choice on a test image equals the merged model's."""
    import torch
    from PIL import Image

    import inference
    from inference_core import load_model

    output_dir, _ = demo_run
    image = next((SAMPLE / "resized").glob("*.jpg"))
    assert inference.main([str(image), "--model", str(output_dir / "adapter"), "--max_new_tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith(f"{image}\t")
    adapter, processor = load_model(str(output_dir / "adapter"))
    merged, _ = load_model(str(output_dir / "merged"))
    inputs = processor(images=Image.open(image).convert("RGB"), text="<image>caption en", return_tensors="pt")
    with torch.no_grad():
        first, second = adapter(**inputs).logits[0, -1], merged(**inputs).logits[0, -1]
    assert first.argmax() == second.argmax()
    torch.testing.assert_close(first, second, atol=0.15, rtol=0)  # the merged model is stored in bf16


def test_the_demo_writes_captions_that_differ_by_image_and_a_card_of_what_it_did(demo_run):
    output_dir, _ = demo_run
    records = [json.loads(line) for line in (output_dir / "predictions.jsonl").read_text().splitlines()]
    captions = [record["prediction"] for record in records]
    assert len(captions) == 12 and all(captions)
    assert len(set(captions)) >= 6, captions
    before = [json.loads(line)["prediction"] for line in (output_dir / "baseline_test_predictions.jsonl").open()]
    assert len(set(before)) >= 6, before  # the shipped model already describes what it sees
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["train_images"] == {"RSICD": 25, "UCM": 5}
    characteristics = json.loads((output_dir / "characteristics.json").read_text())
    # The base's own parameter count (not LoRA's, nor PEFT's copy of the encoder): the merged model's, here.
    assert summary["base_model"] == {
        "name": "rs-mini",
        "local": True,
        "model_type": "tsn_paligemma",
        "license": "apache-2.0",
        "parameters": characteristics["total_parameters"],
    }
    # The card says what this run was: the shipped small model, 30 sample images, 128 px, its base's license.
    from huggingface_hub import ModelCard

    from publishing import render_model_card

    card = render_model_card(output_dir, "someone/tsn-demo")
    assert ModelCard(card).data.license == "apache-2.0" and "Gemma terms" not in card
    assert "224x224" not in card and "224 px" not in card
    assert "trained from a local TSN-PaliGemma checkpoint `rs-mini` of 19.40 M parameters with QLoRA on 30" in card
    assert "| image size | 128x128 px |" in card and "| **test, NWPU-Captions** | 1 (few) |" in card
    # The base already captioned: its row is "before this training", not a zero-shot base; the tasks it knew and this
    # run did not train are listed as inherited, not scored.
    assert "| before this training | 12 (few) |" in card and "zero-shot" not in card
    assert "This run trained and scored: caption. Inherited from its base, and neither trained nor scored" in card
    assert "classify (`answer en what is the scene?`), count (`answer en how many <class> are there?`)" in card
    assert f"| schedule as run | {summary['global_step']} steps," in card and "| epochs | 4 |" not in card
    assert characteristics["repeats"] == 3 and characteristics["latency_ms_median"] > 0
    assert f"| latency per image, median | {characteristics['latency_ms_median']:.1f} ms |" in card


def test_a_demo_rerun_with_another_learning_rate_stops_before_loading_and_writes_nothing(demo_run):
    output_dir, _ = demo_run
    files = {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    rerun = run_finetune([DEMO, "--output_dir", str(output_dir), "--learning_rate", "0.002"])
    assert rerun.returncode == 2 and "learning_rate: 0.0005 -> 0.002" in rerun.stderr
    assert "Resuming" not in rerun.stderr and rerun.stderr.count("finetune.py: error:") == 1
    assert {path: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()} == files


def assert_a_killed_run_resumes_like_an_uninterrupted_one(common: list[str], tmp_path: Path, steps: int, kill_at: int):
    """Run `common` uninterrupted; run it again, SIGKILLed right after checkpoint-`kill_at`; rerun the same command:
    it resumes there, and its final adapter equals the uninterrupted run's."""
    reference = tmp_path / "uninterrupted"
    check(run_finetune([*common, "--output_dir", str(reference)]))
    resumed = tmp_path / "killed"
    worker = [str(REPO_ROOT / "tests" / "finetune_kill_worker.py"), str(kill_at)]
    killed = run_finetune([*common, "--output_dir", str(resumed)], entry=worker)
    assert killed.returncode == -9  # SIGKILL, right after checkpoint-`kill_at` was saved
    assert f"checkpoint-{kill_at}" in [path.name for path in resumed.glob("checkpoint-*")]
    assert not (resumed / "adapter").exists()
    check(run_finetune([*common, "--output_dir", str(resumed)]))  # the same command again
    summary = json.loads((resumed / "training_summary.json").read_text())
    assert summary["resumed_from"].endswith(f"checkpoint-{kill_at}") and summary["global_step"] == steps
    expected = load_file(reference / "adapter" / "adapter_model.safetensors")
    actual = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert expected.keys() == actual.keys() and any("tsn" in key for key in expected)
    for key in expected:
        assert (expected[key] - actual[key]).abs().max() <= 1e-5, key
    return reference, resumed


def test_killed_run_resumes_at_its_checkpoint_and_ends_like_an_uninterrupted_one(tiny_base, tmp_path):
    common = [DEMO, "--model_name_or_path", tiny_base, *SHORT, "--save_steps", "4", "--save_total_limit", "10"]
    common += ["--do_eval", "false", "--do_predict", "false"]
    _, resumed = assert_a_killed_run_resumes_like_an_uninterrupted_one(common, tmp_path, steps=16, kill_at=8)
    assert sorted(path.name for path in resumed.glob("checkpoint-*")) == [f"checkpoint-{n}" for n in (12, 16, 4, 8)]
    state = json.loads((resumed / "checkpoint-16" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == list(range(2, 17, 2))


def test_a_run_killed_mid_scst_resumes_exactly(tmp_path):
    """SCST on the shipped captioner (its samples get real, different rewards): the sampling RNG is in the
    checkpoint, so the resumed run samples what the uninterrupted one sampled."""
    common = [DEMO, "--train_objective", "scst", "--scst_samples", "3", "--scst_max_new_tokens", "12"]
    common += ["--max_train_samples", "8", "--max_steps", "4", "--save_steps", "2", "--save_total_limit", "10"]
    common += ["--eval_strategy", "no", "--load_best_model_at_end", "false", "--evaluate_before_training", "false"]
    common += ["--logging_steps", "1", "--do_eval", "false", "--do_predict", "false"]
    reference, resumed = assert_a_killed_run_resumes_like_an_uninterrupted_one(common, tmp_path, steps=4, kill_at=2)
    logs = [json.loads((folder / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
            for folder in (reference, resumed)]  # fmt: skip
    rewards = [[entry["scst_reward"] for entry in log if "scst_reward" in entry] for log in logs]
    assert len(rewards[0]) == 4 and rewards[0][2:] == rewards[1][2:]  # steps 3-4: the same samples, same rewards
    assert len(set(rewards[0])) > 1 and all(reward > 0 for reward in rewards[0])
    results = yaml.safe_load((resumed / "finetune_config.yaml").read_text())
    assert results["train_objective"] == "scst" and results["scst_samples"] == 3 and results["scst_baseline"] == "mean"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_on_cpu_gives_the_weights_and_metrics_of_one_process(tiny_base, tmp_path):
    """2 processes x 2 images = 1 process x 4 images: same data order (seedable sampler), gradients averaged over
    the global batch. Caption 1, no LoRA dropout, and frozen BN statistics, so nothing depends on the process split
    (with the default partial BN, the first BN layer normalizes each process's half batch). After 2 steps the
    weights agree to float precision; the test split is then scored by both (sharded over 2 processes in DDP)."""
    common = [
        DEMO,
        "--model_name_or_path",
        tiny_base,
        *SHORT,
        "--max_steps",
        "2",
        "--save_strategy",
        "no",
        "--do_eval",
        "false",
        "--caption_choice",
        "first",
        "--lora_dropout",
        "0",
        "--tsn_batchnorm",
        "frozen",
        "--logging_steps",
        "1",
    ]
    single = tmp_path / "single"
    check(run_finetune([*common, "--output_dir", str(single), "--per_device_train_batch_size", "4"]))
    ddp = tmp_path / "ddp"
    # accelerate 1.15 starts ONE process for `--cpu --num_processes 2` (multi-CPU needs an mpirun hostfile);
    # the torchrun launcher of --multi_gpu gives 2 gloo processes, and use_cpu (demo.yaml) keeps them on the CPU.
    launch = [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        str(REPO_ROOT / "finetune.py"),
    ]
    check(run_finetune([*common, "--output_dir", str(ddp), "--per_device_train_batch_size", "2"], entry=launch))
    summary = json.loads((ddp / "training_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["world_size"] == 2
    expected = load_file(single / "adapter" / "adapter_model.safetensors")
    actual = load_file(ddp / "adapter" / "adapter_model.safetensors")
    for key in expected:
        assert (expected[key] - actual[key]).abs().max() <= 1e-6, key
    one, two = (json.loads((folder / "eval_results.json").read_text())["test"] for folder in (single, ddp))
    assert one["num_samples"] == two["num_samples"] == 12
    # The Trainer's eval loss is a mean of per-batch token means, and the batches differ (8 + 4 vs 6 and 6 on two
    # processes): close, not equal. The captions, hence every metric, are the same.
    assert abs(one["loss"] - two["loss"]) < 0.02 * one["loss"]
    for name, value in one["overall"].items():
        assert abs(value - two["overall"][name]) < 1e-6, (name, value, two["overall"][name])


def test_hpo_writes_a_best_config_that_trains(tiny_base, tmp_path):
    output_dir = tmp_path / "hpo"
    check(
        run_finetune(
            [
                DEMO,
                "--model_name_or_path",
                tiny_base,
                "--output_dir",
                str(output_dir),
                "--hpo_trials",
                "2",
                "--hpo_max_train_samples",
                "8",
                "--num_train_epochs",
                "1",
                "--max_eval_samples",
                "4",
                "--max_test_samples",
                "4",
            ]
        )
    )
    best = yaml.safe_load((output_dir / "best_config.yaml").read_text())
    assert best["hpo_trials"] == 0 and best["lora_r"] in (8, 16, 32, 64) and best["tsn_backbone"]
    assert not list(output_dir.glob("**/checkpoint-*"))  # trials keep no checkpoints
    check(
        run_finetune(
            [
                str(output_dir / "best_config.yaml"),
                *SHORT,
                "--max_steps",
                "2",
                "--do_eval",
                "false",
                "--do_predict",
                "false",
            ]
        )
    )
    trained = Path(best["output_dir"])
    assert (trained / "adapter" / "adapter_model.safetensors").is_file()
    assert yaml.safe_load((trained / "finetune_config.yaml").read_text())["lora_r"] == best["lora_r"]


def test_demo_output_publishes_a_model_that_loads_and_reproduces_its_predictions(demo_run, tmp_path):
    """On a REAL finetune.py output: `push_to_hub.py --dry_run` writes the card, weights, config
    with auto_map, both code files and the processor; the card's model-index equals eval_results.json; the export
    loads in a fresh process as Hub code and reproduces predictions.jsonl."""
    from huggingface_hub import ModelCard

    import push_to_hub

    output_dir, _ = demo_run
    export = tmp_path / "export"
    assert push_to_hub.main([str(output_dir), "--repo_id", "someone/tsn-demo", "--dry_run", str(export)]) == 0
    for name in (
        "README.md",
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "modeling_tsn_paligemma.py",
        "segment_encoder_tsn_paligemma.py",
        "configuration_tsn_paligemma.py",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "samples.png",
        "eval_results.json",
    ):
        assert (export / name).is_file(), name
    assert json.loads((export / "config.json").read_text())["auto_map"]["AutoModelForImageTextToText"]
    card_text = (export / "README.md").read_text()
    assert str(output_dir) not in card_text and str(REPO_ROOT) not in card_text and "/tmp/" not in card_text
    card = ModelCard(card_text)
    test = json.loads((output_dir / "eval_results.json").read_text())["test"]
    expected = {("all", key): value for key, value in test["overall"].items()}
    expected.update(
        {(group.lower(), key): value for group, scores in test["groups"].items() for key, value in scores.items()}
    )
    assert {
        (result.dataset_config, result.metric_type): result.metric_value for result in card.data.eval_results
    } == expected
    assert card.data.pipeline_tag == "image-text-to-text" and "remote-sensing" in card.data.tags

    # The export is merged/ plus the card: loaded as Hub code in a fresh process, it writes predictions.jsonl again.
    reproduced = reproduce_in_a_fresh_process(export, output_dir, tmp_path)
    assert reproduced["module"].startswith("transformers_modules.")
    saved = [json.loads(line)["prediction"] for line in (output_dir / "predictions.jsonl").read_text().splitlines()]
    assert [postprocess_caption(text, "caption en") for text in reproduced["texts"]] == saved
    assert any(saved)  # a real caption, not an empty string reproduced
