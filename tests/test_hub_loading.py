"""Every integration x text model saves, then loads in a FRESH process as Hub custom code with
AutoModel / AutoModelForImageTextToText / AutoModelForCausalLM / AutoProcessor, giving the in-memory model's
logits (max abs diff 0 in fp32) and tokens, and a caption through `pipeline("image-text-to-text")`."""

from pathlib import Path

import pytest
import torch
from conftest import load_as_hub_code_in_a_fresh_process
from PIL import Image

from scripts.make_tiny_checkpoint import TinyCheckpointArguments, build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
INTEGRATIONS = ("enhanced", "adapter", "replace", "direct")
TEXT_MODELS = ("gemma", "gemma2")
CASES = [(integration, text_model) for integration in INTEGRATIONS for text_model in TEXT_MODELS]
PROMPT = "<image>caption en"
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def fresh_process_results(tmp_path_factory, sample_image_paths):
    """Build and save the 8 checkpoints, keep the in-memory models, load them all in ONE fresh process."""
    work = tmp_path_factory.mktemp("hub-loading")
    image = Image.open(sample_image_paths[0]).convert("RGB")
    expected, cases = {}, {}
    for integration, text_model in CASES:
        folder = work / f"{integration}-{text_model}"
        args = TinyCheckpointArguments(output_dir=str(folder), integration=integration, text_model=text_model)
        model, processor = build_tiny_model(args)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        inputs = processor(images=image, text=PROMPT, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits
            generated = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        key = f"{integration}-{text_model}"
        expected[key] = {
            "logits": logits,
            "generated": generated,
            "inputs": dict(inputs),
            "image_seq_length": model.config.image_seq_length,
        }
        cases[key] = {
            "folder": str(folder),
            "image": image,
            "prompt": PROMPT,
            "inputs": dict(inputs),
            "max_new_tokens": MAX_NEW_TOKENS,
        }
    outside = tmp_path_factory.mktemp("elsewhere")  # cwd outside the repo
    return expected, load_as_hub_code_in_a_fresh_process(cases, work, cwd=outside)


@pytest.mark.parametrize("integration,text_model", CASES)
def test_fresh_process_load_matches_in_memory_model(fresh_process_results, integration, text_model):
    expected, results = fresh_process_results
    key = f"{integration}-{text_model}"
    want, got = expected[key], results[key]
    # AutoProcessor from the folder builds the same inputs, with the integration's image token count.
    for name, tensor in want["inputs"].items():
        assert torch.equal(got["inputs"][name], tensor), name
    assert int((want["inputs"]["input_ids"] == got["inputs"]["input_ids"][0, 0]).sum()) == want["image_seq_length"]
    for auto_class in ("AutoModel", "AutoModelForImageTextToText", "AutoModelForCausalLM"):
        assert got["modules"][auto_class].startswith("transformers_modules."), got["modules"][auto_class]
        assert got["modules"][auto_class].endswith("modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration")
        assert (got["logits"][auto_class] - want["logits"]).abs().max().item() == 0.0, auto_class
        assert torch.equal(got["generated"][auto_class], want["generated"]), auto_class
    # The pipeline runs the same model: same tokens, and a decoded caption. (Its text is not compared with ours:
    # it strips the prompt by string search, which random byte-fallback tokens can straddle.)
    assert torch.equal(got["pipeline_tokens"].flatten(), want["generated"][0])
    assert isinstance(got["pipeline_text"], str) and len(got["pipeline_text"]) > 0
    assert len(want["generated"][0]) == want["inputs"]["input_ids"].shape[1] + MAX_NEW_TOKENS
