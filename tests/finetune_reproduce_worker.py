"""Run in a FRESH process: caption the test images with a finetune.py `merged/` folder loaded as Hub custom code.

The repo's model modules are made unimportable, so only the code saved next to the weights can be used. Generation
uses the folder's own generation_config.json (the settings finetune.py evaluated with).

usage: python finetune_reproduce_worker.py MERGED_DIR IMAGE_DIR PREDICTIONS.jsonl BATCH_SIZE OUT.json
"""

import json
import sys

for name in (
    "configuration_tsn_paligemma",
    "modeling_tsn_paligemma",
    "segment_encoder_tsn_paligemma",
    "collators",
    "finetune",
    "finetuning",
):
    sys.modules[name] = None

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402


def main() -> None:
    merged_dir, image_dir, predictions_path, batch_size, out_path = sys.argv[1:]
    # float32, as finetune.py evaluates on the CPU (the weights may be stored in bf16, the base's dtype)
    model = AutoModelForImageTextToText.from_pretrained(merged_dir, trust_remote_code=True, dtype=torch.float32)
    model = model.eval()
    processor = AutoProcessor.from_pretrained(merged_dir, trust_remote_code=True)
    names = [json.loads(line)["image"] for line in open(predictions_path)]
    texts = []
    for start in range(0, len(names), int(batch_size)):
        images = [Image.open(f"{image_dir}/{name}").convert("RGB") for name in names[start : start + int(batch_size)]]
        inputs = processor(images=images, text=["<image>caption en"] * len(images), return_tensors="pt")
        with torch.no_grad():
            sequences = model.generate(**inputs)
        texts += processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    json.dump({"texts": texts, "module": type(model).__module__}, open(out_path, "w"))


if __name__ == "__main__":
    main()
