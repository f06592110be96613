"""TSN-PaliGemma configuration: PaliGemma plus a TSN-style multi-scale segment encoder.

Imports only the standard library and the public transformers API, so that it loads as Hub custom code.

Example:

```python
>>> from configuration_tsn_paligemma import TSNPaliGemmaConfig
>>> config = TSNPaliGemmaConfig(tsn_integration="adapter")
>>> config.num_segments, config.image_seq_length
(5, 261)
>>> TSNPaliGemmaConfig(tsn_ratio=1.5)
Traceback (most recent call last):
...
ValueError: tsn_ratio=1.5 is invalid: must be a number in [0, 1] ...
```
"""

from dataclasses import field
from typing import Any

from transformers import PaliGemmaConfig

INTEGRATIONS = ("enhanced", "adapter", "replace", "direct")
BACKBONES = ("resnet18", "inception_v3")
CONSENSUS = ("attention", "average", "max")
FUSIONS = ("gated", "ratio")
BATCHNORM_MODES = ("partial", "frozen", "train")
# Smallest input each torchvision backbone accepts (InceptionV3's stem needs 75 px, see torchvision docs).
MIN_CROP_SIZE = {"resnet18": 32, "inception_v3": 75}
# Channels of the last feature map of each backbone trunk.
BACKBONE_CHANNELS = {"resnet18": 512, "inception_v3": 2048}

AUTO_MAP = {
    "AutoConfig": "configuration_tsn_paligemma.TSNPaliGemmaConfig",
    # AutoModel also maps to the captioning model: users load "the model" and get logits and `generate`.
    "AutoModel": "modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration",
    "AutoModelForImageTextToText": "modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration",
}


def _invalid(name: str, value: Any, rule: str) -> ValueError:
    return ValueError(f"{name}={value!r} is invalid: {rule}. Fix the value in the config or the override you passed.")


def _check_choice(choices: tuple[str, ...]):
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise _invalid(name, value, f"must be one of {list(choices)}")

    return check


def _check_ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise _invalid(name, value, "must be a number in [0, 1]")


def _check_optional_ratio(name: str, value: Any) -> None:
    if value is not None:
        _check_ratio(name, value)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(name, value, "must be an integer >= 1")


def _check_optional_positive_int(name: str, value: Any) -> None:
    if value is not None:
        _check_positive_int(name, value)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _invalid(name, value, "must be true or false")


def _check_dropout(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise _invalid(name, value, "must be a number in [0, 1)")


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _invalid(name, value, "must be a number")


def _check_scales(name: str, value: Any) -> None:
    rule = "must be a non-empty list of distinct [rows, cols] pairs of integers >= 1, e.g. [[1, 1], [2, 2]]"
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise _invalid(name, value, rule)
    seen = set()
    for scale in value:
        if (
            not isinstance(scale, (list, tuple))
            or len(scale) != 2
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in scale)
            or tuple(scale) in seen
        ):
            raise _invalid(name, value, rule)
        seen.add(tuple(scale))


def _check_pruned_layers(name: str, value: Any) -> None:
    rule = 'must be None or {"text": [...], "vision": [...]} with the removed layers\' original indices (ints >= 0)'
    if value is None:
        return
    if not isinstance(value, dict) or set(value) - {"text", "vision"}:
        raise _invalid(name, value, rule)
    for indices in value.values():
        if not isinstance(indices, (list, tuple)) or any(
            isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in indices
        ):
            raise _invalid(name, value, rule)


# One check per TSN field, run on every assignment: at construction and for `from_pretrained(..., **overrides)`,
# which sets overrides with setattr after building the config.
_FIELD_CHECKS = {
    "tsn_integration": _check_choice(INTEGRATIONS),
    "tsn_backbone": _check_choice(BACKBONES),
    "tsn_segment_scales": _check_scales,
    "tsn_crop_size": _check_optional_positive_int,
    "tsn_consensus": _check_choice(CONSENSUS),
    "tsn_fusion": _check_choice(FUSIONS),
    "tsn_original_ratio": _check_ratio,
    "tsn_ratio": _check_ratio,
    "tsn_generation_original_ratio": _check_optional_ratio,
    "tsn_generation_ratio": _check_optional_ratio,
    "tsn_replace_grid_size": _check_positive_int,
    "tsn_dropout": _check_dropout,
    "tsn_batchnorm": _check_choice(BATCHNORM_MODES),
    "tsn_pretrained_backbone": _check_bool,
    "pruned_layers": _check_pruned_layers,
    "image_position_features": _check_bool,
    "image_position_init": _check_number,
}


class TSNPaliGemmaConfig(PaliGemmaConfig):
    r"""
    PaliGemma configuration with a TSN segment encoder on the image path.

    tsn_integration (`str`, defaults to `"enhanced"`):
        `"enhanced"`: segment features fused into the projected SigLIP tokens; `"adapter"`: one extra image token
        per segment after the SigLIP tokens; `"replace"`: no SigLIP tower, image tokens from the backbone's feature
        maps; `"direct"`: no segment encoder (plain PaliGemma, the ablation baseline).
    tsn_backbone (`str`, defaults to `"resnet18"`): `"resnet18"` or `"inception_v3"` (torchvision architectures).
    tsn_segment_scales (`list[list[int]]`, defaults to `[[1, 1], [2, 2]]`): grids `[rows, cols]` the image is cut
        into; every crop of every grid is one segment.
    tsn_crop_size (`int`, *optional*): side in pixels every crop is resized to before the (single, batched) backbone
        call. Defaults to the native size of the finest grid's crops (`image_size // max rows`, 112 px at 224):
        no crop is upsampled, and the encoder costs <= 0.3% of a forward pass (bench/flops.py).
    tsn_consensus (`str`, defaults to `"attention"`): how the segments covering one SigLIP patch (one per scale)
        are combined in `enhanced`: learned attention weights, average, or max.
    tsn_fusion (`str`, defaults to `"gated"`): `"gated"`: `siglip + tanh(gate) * context`, gate initialised to 0;
        `"ratio"`: `tsn_original_ratio * siglip + tsn_ratio * context`.
    tsn_original_ratio, tsn_ratio (`float`, defaults to 0.7 and 0.3): the fixed mix of `ratio` fusion.
    tsn_generation_original_ratio, tsn_generation_ratio (`float`, *optional*): replace the two ratios when the
        model is in eval mode (generation), e.g. to lean more on SigLIP at inference.
    tsn_replace_grid_size (`int`, defaults to 7): `replace` pools each segment's feature map to this square grid;
        the image then takes `num_segments * tsn_replace_grid_size**2` tokens.
    tsn_dropout (`float`, defaults to 0.0): dropout on the projected segment features.
    tsn_batchnorm (`str`, defaults to `"partial"`): the backbone's BatchNorm in training. `"partial"` (TSN's
        partial BN): only the first BN layer updates its statistics, the others keep their (ImageNet) running
        statistics, which small fine-tuning batches would only make noisier; `"frozen"`: no BN layer updates, so
        training does not depend on how a batch is split (DDP gives one process's result); `"train"`: all update.
    tsn_pretrained_backbone (`bool`, defaults to `True`): load torchvision's ImageNet weights into the backbone
        when a TSN model is first built from a base PaliGemma. Never used by `from_pretrained` of a saved TSN model,
        whose backbone weights are in its own checkpoint.
    image_position_features (`bool`, defaults to `False`): add to each SigLIP image token the fixed sine/cosine
        features of its cell in the patch grid (its row in one half of the dimensions, its column in the other,
        each in [-1, 1]), multiplied by a learned per-dimension gate. Where a token lies reaches the language model
        only through what the token holds (its place in the sequence only through relative attention), and writing
        a box needs it; captioning and scene training wash it out of a small model's tokens
        (`scripts/probe_image_tokens.py`). Not for `replace`, whose tokens form no one grid.
    image_position_init (`float`, defaults to 0.0): the gate's value when it is created (a model that gains the
        option, or a new one). 0 leaves a trained model's outputs unchanged, but a gate at 0 barely moves, since
        nothing downstream uses the features yet; 1.0 adds them at full strength from the first step.
    pruned_layers (`dict`, *optional*): set by `prune.py`: the original indices of the language-model (`"text"`)
        and SigLIP (`"vision"`) layers that block-influence pruning removed; `None` for an unpruned model.
    """

    model_type = "tsn_paligemma"

    tsn_integration: str = "enhanced"
    tsn_backbone: str = "resnet18"
    tsn_segment_scales: list[list[int]] = field(default_factory=lambda: [[1, 1], [2, 2]])
    tsn_crop_size: int | None = None
    tsn_consensus: str = "attention"
    tsn_fusion: str = "gated"
    tsn_original_ratio: float = 0.7
    tsn_ratio: float = 0.3
    tsn_generation_original_ratio: float | None = None
    tsn_generation_ratio: float | None = None
    tsn_replace_grid_size: int = 7
    tsn_dropout: float = 0.0
    tsn_batchnorm: str = "partial"
    tsn_pretrained_backbone: bool = True
    pruned_layers: dict | None = None
    image_position_features: bool = False
    image_position_init: float = 0.0

    def __post_init__(self, **kwargs):
        # Saved configs carry their own auto_map; a fresh one gets ours so `save_pretrained` output loads with
        # every Auto class under trust_remote_code.
        if kwargs.get("auto_map") is None:
            kwargs["auto_map"] = dict(AUTO_MAP)
        super().__post_init__(**kwargs)
        self.check_tsn_consistency()

    def __setattr__(self, name: str, value: Any) -> None:
        check = _FIELD_CHECKS.get(name)
        if check is not None:
            check(name, value)
            if isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
        super().__setattr__(name, value)
        # Cross-field rules once every field exists (i.e. for overrides applied after construction).
        if check is not None and self.__dict__.get("_post_init_done", False):
            self.check_tsn_consistency()

    def check_tsn_consistency(self) -> None:
        """Rules that involve several fields; raises ValueError naming the field, the value and the fix."""
        minimum = MIN_CROP_SIZE[self.tsn_backbone]
        if self.tsn_integration != "direct" and self.crop_size < minimum:
            raise _invalid(
                "tsn_crop_size",
                self.tsn_crop_size,
                f"tsn_backbone={self.tsn_backbone!r} needs crops of at least {minimum} px "
                f"(the crop size resolves to {self.crop_size})",
            )
        if self.image_position_features and self.tsn_integration == "replace":
            raise _invalid(
                "image_position_features",
                True,
                "tsn_integration='replace' has no grid of SigLIP tokens to place; use it with enhanced, adapter or "
                "direct",
            )

    @property
    def crop_size(self) -> int:
        """`tsn_crop_size`, or the native side of the finest grid's crops when it is None."""
        if self.tsn_crop_size is not None:
            return self.tsn_crop_size
        finest = max(max(rows, cols) for rows, cols in self.tsn_segment_scales)
        return self.vision_config.image_size // finest

    @property
    def num_segments(self) -> int:
        """Crops per image over all scales, e.g. 1 + 4 = 5 for [[1, 1], [2, 2]]."""
        return sum(rows * cols for rows, cols in self.tsn_segment_scales)

    @property
    def num_siglip_tokens(self) -> int:
        return (self.vision_config.image_size // self.vision_config.patch_size) ** 2

    @property
    def image_seq_length(self) -> int:
        """Image tokens the processor must insert for this integration."""
        if self.tsn_integration == "adapter":
            return self.num_siglip_tokens + self.num_segments
        if self.tsn_integration == "replace":
            return self.num_segments * self.tsn_replace_grid_size**2
        return self.num_siglip_tokens


TSNPaliGemmaConfig.register_for_auto_class()

__all__ = ["TSNPaliGemmaConfig"]
