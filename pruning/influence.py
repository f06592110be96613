"""Block influence of every decoder layer: 1 - cos(layer input, layer output), averaged over the tokens that matter
(the caption tokens for the language model, every patch for SigLIP). A layer that barely turns its input is the
cheapest to remove (ShortGPT, arXiv 2403.03853)."""

import torch

PARTS = ("text", "vision")


def decoder_layers(model, part: str) -> torch.nn.ModuleList:
    """The language model's (`text`) or SigLIP's (`vision`) layer list of a TSN-PaliGemma (PEFT-wrapped or not)."""
    inner = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    if part == "text":
        return inner.language_model.layers
    if part == "vision":
        if not hasattr(inner, "vision_tower"):
            raise ValueError("This model has no SigLIP tower (tsn_integration='replace'): score part='text' only.")
        return inner.vision_tower.encoder.layers
    raise ValueError(f"part={part!r} is invalid; use one of {PARTS}.")


class _InfluenceMeter:
    """Forward hooks on every layer of one part; sums 1 - cos(input, output) over the selected token positions."""

    def __init__(self, layers: torch.nn.ModuleList):
        self.totals = torch.zeros(len(layers), dtype=torch.float64)
        self.count = 0
        self.positions: torch.Tensor | None = None  # (B, L) bool, or None: every position
        self.handles = [layer.register_forward_hook(self._hook(i), with_kwargs=True) for i, layer in enumerate(layers)]

    def _hook(self, index: int):
        def record(module, args, kwargs, output):
            hidden_in = args[0] if args else kwargs["hidden_states"]  # (B, L, D)
            hidden_out = output[0] if isinstance(output, tuple) else output  # (B, L, D)
            cosine = torch.nn.functional.cosine_similarity(hidden_in.double(), hidden_out.double(), dim=-1)  # (B, L)
            selected = cosine if self.positions is None else cosine[self.positions.to(cosine.device)]
            self.totals[index] += (1.0 - selected).sum().cpu()
            if index == 0:
                self.count += selected.numel()

        return record

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def block_influence(model, batches, part: str = "text") -> list[float]:
    """Mean block influence of each layer of `part` over `batches` (training-collator batches with `labels`).

    For `text` the mean is over the caption tokens (labels != -100) of every image; for `vision` over every patch
    token. Returns one score per layer, in layer order.
    """
    meter = _InfluenceMeter(decoder_layers(model, part))
    model.eval()
    try:
        for batch in batches:
            labels = batch["labels"]
            meter.positions = labels != -100 if part == "text" else None
            inputs = {key: value.to(model.device) for key, value in batch.items() if key != "labels"}
            model(**inputs, use_cache=False)
    finally:
        meter.remove()
    if meter.count == 0:
        raise ValueError("No tokens were scored: the batches hold no caption tokens (labels are all -100).")
    return (meter.totals / meter.count).tolist()
