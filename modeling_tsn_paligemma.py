"""TSN-PaliGemma: PaliGemma with a TSN-style multi-scale segment encoder on its image path.

The image is cut into grids (default 1x1 and 2x2); every crop of every grid (a "segment") goes through a
torchvision CNN in ONE batched call. The segment features then reach the language model in one of four ways
(`config.tsn_integration`): fused into the SigLIP tokens (`enhanced`), appended as extra image tokens
(`adapter`), replacing SigLIP altogether (`replace`), or not at all (`direct`, plain PaliGemma).

Imports only the standard library, torch, torchvision, the public transformers API and its two siblings (the
configuration and the segment encoder), so the three files run as Hub custom code:
`AutoModel.from_pretrained(repo, trust_remote_code=True)`.
"""

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    PaliGemmaForConditionalGeneration,
    PaliGemmaModel,
    PaliGemmaPreTrainedModel,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.paligemma.modeling_paligemma import (
    PaliGemmaCausalLMOutputWithPast,
    PaliGemmaMultiModalProjector,
)
from transformers.utils import can_return_tuple, logging

try:
    from .configuration_tsn_paligemma import TSNPaliGemmaConfig
    from .segment_encoder_tsn_paligemma import TSNPaliGemmaBackbone, TSNPaliGemmaSegmentEncoder, siglip_to_imagenet
except ImportError:  # imported from the repo root (tests, scripts) rather than as a Hub module
    from configuration_tsn_paligemma import TSNPaliGemmaConfig
    from segment_encoder_tsn_paligemma import TSNPaliGemmaBackbone, TSNPaliGemmaSegmentEncoder, siglip_to_imagenet

logger = logging.get_logger(__name__)

# Keys of original Hub PaliGemma checkpoints (saved before transformers 4.52) -> current module names.
LEGACY_PALIGEMMA_KEYS = {
    r"^language_model\.model\.": "model.language_model.",
    r"^vision_tower\.": "model.vision_tower.",
    r"^multi_modal_projector\.": "model.multi_modal_projector.",
    r"^language_model\.lm_head\.": "lm_head.",
}


class TSNPaliGemmaPreTrainedModel(PaliGemmaPreTrainedModel):
    config_class = TSNPaliGemmaConfig
    _no_split_modules = ["PaliGemmaMultiModalProjector", "TSNPaliGemmaSegmentEncoder"]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, TSNPaliGemmaBackbone):
            # torchvision's own scheme for CNN trunks (the generic init above uses std 0.02 for convs).
            for layer in module.modules():
                if isinstance(layer, nn.Conv2d):
                    init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, TSNPaliGemmaSegmentEncoder):
            scale, shift = siglip_to_imagenet()
            init.copy_(module.input_scale, scale)
            init.copy_(module.input_shift, shift)
            if hasattr(module, "patch_segments"):
                init.copy_(module.patch_segments, module.patch_segment_index())
            if hasattr(module, "gate"):
                init.zeros_(module.gate)
        elif isinstance(module, TSNPaliGemmaImagePositions):
            init.constant_(module.gate, module.initial_gate)  # 0: a model that gains the option keeps its outputs


def grid_position_features(grid: int, dim: int) -> torch.Tensor:
    """(grid * grid, dim) sine/cosine features of each cell of a grid, row-major as SigLIP's tokens: the cell's row
    in the first half of the dimensions, its column in the second, each as sin/cos pairs at geometric frequencies
    (periods from 2 cells up to about 10,000). `dim` must be a multiple of 4.

    >>> grid_position_features(8, 16).shape
    torch.Size([64, 16])
    """
    if dim % 4:
        raise ValueError(f"image position features need a hidden size divisible by 4, not {dim}.")
    quarter = dim // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    halves = []
    for index in (rows.reshape(-1), columns.reshape(-1)):
        angles = index[:, None].float() * frequencies[None, :] * torch.pi
        halves += [angles.sin(), angles.cos()]
    return torch.cat(halves, dim=1)


class TSNPaliGemmaImagePositions(nn.Module):
    """`config.image_position_features`: each SigLIP token (the first `num_siglip_tokens`; `adapter`'s segment
    tokens follow them) plus `gate * grid_position_features`, the gate learned per dimension from
    `config.image_position_init`. A module (not a bare parameter) so that LoRA strategies train and save it
    (`modules_to_save`)."""

    def __init__(self, config):
        super().__init__()
        self.num_tokens = config.num_siglip_tokens
        self.initial_gate = float(config.image_position_init)
        self.gate = nn.Parameter(torch.full((config.text_config.hidden_size,), self.initial_gate))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        features = grid_position_features(int(self.num_tokens**0.5), tokens.shape[-1]).to(tokens.device, tokens.dtype)
        placed = tokens[:, : self.num_tokens] + self.gate.to(tokens.dtype) * features
        return torch.cat([placed, tokens[:, self.num_tokens :]], dim=1)


class TSNPaliGemmaModel(TSNPaliGemmaPreTrainedModel, PaliGemmaModel):
    """PaliGemma's inner model with the segment encoder at `self.tsn` and the image path in `get_image_features`.

    `generate` calls `get_image_features` once, before prefill and before beams expand the batch, so the segment
    encoder runs once per `generate` call on the un-expanded batch.
    """

    def __init__(self, config):
        # PreTrainedModel's init, not PaliGemmaModel's: the sub-modules depend on the integration.
        PreTrainedModel.__init__(self, config)
        if config.tsn_integration != "replace":
            self.vision_tower = AutoModel.from_config(config.vision_config)
            self.multi_modal_projector = PaliGemmaMultiModalProjector(config)
        if config.tsn_integration != "direct":
            self.tsn = TSNPaliGemmaSegmentEncoder(config)
        self.vocab_size = config.text_config.vocab_size
        self.language_model = AutoModel.from_config(config.text_config)
        if config.image_position_features:
            self.image_positions = TSNPaliGemmaImagePositions(config)
        self.text_config_dtype = self.config.text_config.dtype or self.dtype
        self.post_init()

    @can_return_tuple
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """(B, 3, H, W) -> output whose `pooler_output` holds the (B, image_seq_length, D) image tokens."""
        if self.config.tsn_integration == "replace":
            tokens = self.tsn(pixel_values)
            return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens)
        outputs = super().get_image_features(pixel_values, **kwargs)
        if self.config.tsn_integration != "direct":
            outputs.pooler_output = self.tsn(pixel_values, outputs.pooler_output)
        if self.config.image_position_features:
            outputs.pooler_output = self.image_positions(outputs.pooler_output)
        return outputs


class TSNPaliGemmaForConditionalGeneration(TSNPaliGemmaPreTrainedModel, PaliGemmaForConditionalGeneration):
    """TSN-PaliGemma for captioning: PaliGemma's LM head, loss and generation on top of `TSNPaliGemmaModel`.

    Example (offline, with a checkpoint from `scripts/make_tiny_checkpoint.py`):

    ```python
    >>> from transformers import AutoModel, AutoProcessor
    >>> model = AutoModel.from_pretrained("tiny-tsn", trust_remote_code=True)  # doctest: +SKIP
    >>> processor = AutoProcessor.from_pretrained("tiny-tsn")  # doctest: +SKIP
    >>> inputs = processor(images=image, text="<image>caption en", return_tensors="pt")  # doctest: +SKIP
    >>> output = model.generate(**inputs, max_new_tokens=20)  # doctest: +SKIP
    ```
    """

    def __init__(self, config):
        PreTrainedModel.__init__(self, config)
        self.model = TSNPaliGemmaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> PaliGemmaCausalLMOutputWithPast:
        """PaliGemma's forward, where `logits_to_keep` may also be a (B, L) boolean mask: the LM head then runs
        only on the True positions and `logits` is (M, V), the M positions in row-major order.

        Training passes the positions whose next-token label is not -100 (the caption): at PaliGemma size the head
        (2048 x 257,152) is about a fifth of the forward FLOPs and its (B, L, V) logits the largest activation of a
        step, while the loss reads ~20 of ~280 positions. The caller computes the loss from these logits.
        """
        inputs = {
            "input_ids": input_ids,
            "pixel_values": pixel_values,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "cache": cache,
            "token_type_ids": token_type_ids,
            "inputs_embeds": inputs_embeds,
            "mm_encoder_outputs": mm_encoder_outputs,
        }
        if not (torch.is_tensor(logits_to_keep) and logits_to_keep.dtype == torch.bool):
            return super().forward(
                **inputs, labels=labels, use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs
            )
        if labels is not None:
            raise ValueError(
                "A boolean logits_to_keep takes no labels: the loss is the caller's, computed on the kept positions "
                "(finetuning.trainer.causal_lm_loss)."
            )
        outputs = self.model(**inputs, use_cache=bool(use_cache), **kwargs)
        hidden_states = outputs.last_hidden_state[logits_to_keep.to(outputs.last_hidden_state.device)]  # (M, D)
        logits = self.lm_head(hidden_states)  # (M, V)
        softcapping = getattr(self.config.get_text_config(), "final_logit_softcapping", None)
        if softcapping is not None:
            logits = torch.tanh(logits / softcapping) * softcapping
        return PaliGemmaCausalLMOutputWithPast(
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
        )

    @classmethod
    def from_base_pretrained(cls, base_model_name_or_path, quantization_config=None, **kwargs):
        """Build a TSN-PaliGemma from a base PaliGemma checkpoint (Hub id or local folder).

        The base weights are loaded (also from original Hub checkpoints with pre-4.52 key names), the TSN weights
        are initialised, and with `tsn_pretrained_backbone=True` (default) torchvision's ImageNet weights go into
        the backbone (unless the checkpoint is a TSN-PaliGemma with the same backbone, whose weights are kept). A TSN
        checkpoint whose segment encoder has another shape (backbone, scales) gets that encoder re-initialised.
        `tsn_*` and `image_position_*` keyword arguments set the model's options; the rest go to `from_pretrained`
        (`dtype`, `device_map`, `revision`, ...). `quantization_config` quantizes the base; the segment encoder,
        projector and LM head should be listed in its skip modules (see `finetune.py`).

        ```python
        >>> model = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(  # doctest: +SKIP
        ...     "google/paligemma-3b-pt-224", tsn_integration="enhanced", dtype=torch.bfloat16)
        ```
        """
        tsn_options = {key: kwargs.pop(key) for key in list(kwargs) if key.startswith(("tsn_", "image_position_"))}
        hub_options = {
            key: kwargs[key] for key in ("revision", "token", "cache_dir", "local_files_only") if key in kwargs
        }
        config_dict, _ = cls.config_class.get_config_dict(base_model_name_or_path, **hub_options)
        model_type = config_dict.get("model_type")
        if model_type == "tsn_paligemma":  # our own class: no remote code to trust
            base_config = cls.config_class.from_pretrained(base_model_name_or_path, **hub_options)
        elif model_type == "paligemma":
            base_config = AutoConfig.from_pretrained(base_model_name_or_path, **hub_options)
        else:
            raise ValueError(
                f"{base_model_name_or_path!r} is a {model_type!r} checkpoint; from_base_pretrained "
                "needs a PaliGemma checkpoint (e.g. google/paligemma-3b-pt-224 or google/paligemma2-3b-pt-448)."
            )
        config_dict = base_config.to_dict()
        for key in ("model_type", "auto_map", "architectures", "transformers_version"):
            config_dict.pop(key, None)
        config = cls.config_class(**{**config_dict, **tsn_options})
        config.architectures = [cls.__name__]
        if base_config.model_type == "tsn_paligemma":  # changed TSN options may change the encoder's shapes
            kwargs.setdefault("ignore_mismatched_sizes", True)
        model = cls.from_pretrained(
            base_model_name_or_path,
            config=config,
            quantization_config=quantization_config,
            key_mapping=LEGACY_PALIGEMMA_KEYS,
            **kwargs,
        )
        # A TSN checkpoint with the same backbone already holds trained backbone weights: keep them.
        backbone_saved = (
            base_config.model_type == "tsn_paligemma"
            and base_config.tsn_integration != "direct"
            and base_config.tsn_backbone == config.tsn_backbone
        )
        if config.tsn_integration != "direct" and config.tsn_pretrained_backbone and not backbone_saved:
            model.model.tsn.backbone.load_torchvision_weights()
        return model


TSNPaliGemmaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = [
    "TSNPaliGemmaBackbone",
    "TSNPaliGemmaSegmentEncoder",
    "TSNPaliGemmaPreTrainedModel",
    "TSNPaliGemmaModel",
    "TSNPaliGemmaForConditionalGeneration",
]
