"""Remove decoder layers from a TSN-PaliGemma in place and record it in the config (`pruned_layers`), so the saved
folder loads as Hub code with exactly the layers kept."""

import torch

from .influence import decoder_layers


def choose_layers(
    scores: list[float], num_layers_to_remove: int, argument: str = "--num_layers_to_remove"
) -> list[int]:
    """The `num_layers_to_remove` lowest-scoring layer indices, ascending; at least one layer must stay."""
    count = len(scores)
    if isinstance(num_layers_to_remove, bool) or not isinstance(num_layers_to_remove, int):
        raise ValueError(f"{argument}={num_layers_to_remove!r} must be an integer.")
    if not 0 <= num_layers_to_remove < count:
        raise ValueError(
            f"{argument}={num_layers_to_remove} is out of range: the model has {count} layers and must keep at "
            f"least one. Fix: use 0..{count - 1}."
        )
    order = sorted(range(count), key=lambda index: (scores[index], index))
    return sorted(order[:num_layers_to_remove])


def remove_layers(model, text: list[int] = (), vision: list[int] = ()):
    """Drop the given original layer indices of the language model and of SigLIP; returns the same model."""
    config = model.config
    recorded = dict(getattr(config, "pruned_layers", None) or {})  # configs saved before the field existed lack it
    for part, removed, part_config in (("text", text, config.text_config), ("vision", vision, config.vision_config)):
        if not removed:
            continue
        layers = decoder_layers(model, part)
        kept = [index for index in range(len(layers)) if index not in set(removed)]
        new_layers = torch.nn.ModuleList(layers[index] for index in kept)
        for position, layer in enumerate(new_layers):  # attention modules index the KV cache by `layer_idx`
            for module in layer.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = position
        parent = model.model.language_model if part == "text" else model.model.vision_tower.encoder
        parent.layers = new_layers
        part_config.num_hidden_layers = len(kept)
        if getattr(part_config, "layer_types", None):  # Gemma 2: sliding / full attention per layer
            part_config.layer_types = [part_config.layer_types[index] for index in kept]
        # Indices of the ORIGINAL model, also when a pruned model is pruned again.
        original = [i for i in range(len(layers) + len(recorded.get(part, []))) if i not in recorded.get(part, [])]
        recorded[part] = sorted([*recorded.get(part, []), *(original[index] for index in removed)])
    config.pruned_layers = recorded or None
    return model
