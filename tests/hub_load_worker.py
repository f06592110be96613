"""Run in a FRESH process by test_hub_loading.py: load saved checkpoints as Hub custom code and record outputs.

The repo's own copies of the model files are made unimportable, so only the files saved next to the weights
(loaded by transformers as `transformers_modules.*`) can be used.

usage: python hub_load_worker.py JOB.pt RESULT.pt
"""

import os
import sys

for name in ("configuration_tsn_paligemma", "modeling_tsn_paligemma", "segment_encoder_tsn_paligemma", "processing"):
    sys.modules[name] = None  # `import name` now raises ImportError, as on a machine without the repo

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    pipeline,
)


def run_one(case: dict) -> dict:
    folder = case["folder"]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = processor(images=case["image"], text=case["prompt"], return_tensors="pt")
    result = {"inputs": {key: value for key, value in inputs.items()}, "logits": {}, "generated": {}, "modules": {}}
    for auto_class in (AutoModel, AutoModelForImageTextToText, AutoModelForCausalLM):
        model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            result["logits"][auto_class.__name__] = model(**case["inputs"]).logits
            generated = model.generate(**case["inputs"], max_new_tokens=case["max_new_tokens"], do_sample=False)
        result["generated"][auto_class.__name__] = generated
        result["modules"][auto_class.__name__] = type(model).__module__ + "." + type(model).__name__
    captioner = pipeline("image-text-to-text", model=folder, trust_remote_code=True)
    output = captioner(
        images=case["image"], text=case["prompt"], max_new_tokens=case["max_new_tokens"], return_full_text=False
    )
    result["pipeline_text"] = output[0]["generated_text"]
    tokens = captioner(
        images=case["image"], text=case["prompt"], max_new_tokens=case["max_new_tokens"], return_tensors=True
    )
    result["pipeline_tokens"] = torch.as_tensor(tokens[0]["generated_token_ids"])
    return result


def main() -> None:
    job = torch.load(sys.argv[1], weights_only=False)
    repo_dirs = {job["repo_root"], os.path.join(job["repo_root"], "tests"), os.path.join(job["repo_root"], "scripts")}
    leaked = [entry for entry in sys.path if os.path.abspath(entry or os.getcwd()) in repo_dirs]
    if leaked:
        raise SystemExit(f"sys.path must not contain the repo: {leaked}")
    torch.save({key: run_one(case) for key, case in job["cases"].items()}, sys.argv[2])


if __name__ == "__main__":
    main()
