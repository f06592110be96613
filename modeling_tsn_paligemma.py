"""TSN-PaliGemma: PaliGemma with a TSN-style multi-scale segment encoder on its image path.

The image is cut into grids (default 1x1 and 2x2); every crop of every grid (a "segment") goes through a
torchvision CNN in ONE batched call. The segment features then reach the language model in one of four ways
(`config.tsn_integration`): fused into the SigLIP tokens (`enhanced`), appended as extra image tokens
(`adapter`), replacing SigLIP altogether (`replace`), or not at all (`direct`, plain PaliGemma).

Imports only the standard library, torch, torchvision and the public transformers API, so the file runs as Hub
custom code: `AutoModel.from_pretrained(repo, trust_remote_code=True)`.
"""

import math
import os

import torch
import torch.nn.functional as F
import torchvision
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
    from .configuration_tsn_paligemma import BACKBONE_CHANNELS, TSNPaliGemmaConfig
except ImportError:  # imported from the repo root (tests, scripts) rather than as a Hub module
    from configuration_tsn_paligemma import BACKBONE_CHANNELS, TSNPaliGemmaConfig

logger = logging.get_logger(__name__)

# PaliGemma's image processor maps pixels to [-1, 1] (mean 0.5, std 0.5); torchvision backbones expect ImageNet
# normalisation. The encoder converts with one affine map per channel.
SIGLIP_MEAN, SIGLIP_STD = 0.5, 0.5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Keys of original Hub PaliGemma checkpoints (saved before transformers 4.52) -> current module names.
LEGACY_PALIGEMMA_KEYS = {
    r"^language_model\.model\.": "model.language_model.",
    r"^vision_tower\.": "model.vision_tower.",
    r"^multi_modal_projector\.": "model.multi_modal_projector.",
    r"^language_model\.lm_head\.": "lm_head.",
}

TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "inception_v3": "Inception_V3_Weights"}


class TSNPaliGemmaBackbone(nn.Module):
    """A torchvision CNN without its classifier: (N, 3, H, W) ImageNet-normalised -> (N, C, h, w) feature map.

    The torchvision module is kept as `net` with its own parameter names, so torchvision's ImageNet state dict
    loads into it directly (minus the classifier).
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        if name == "resnet18":
            self.net = torchvision.models.resnet18(weights=None)
            self.net.fc = None
            self.net.avgpool = None
            self.stages = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        elif name == "inception_v3":
            # init_weights=False: skip torchvision's slow truncated-normal init, `_init_weights` does it.
            self.net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
            self.net.fc = None
            self.net.avgpool = None
            self.net.dropout = None
            self.stages = (
                "Conv2d_1a_3x3",
                "Conv2d_2a_3x3",
                "Conv2d_2b_3x3",
                "maxpool1",
                "Conv2d_3b_1x1",
                "Conv2d_4a_3x3",
                "maxpool2",
                "Mixed_5b",
                "Mixed_5c",
                "Mixed_5d",
                "Mixed_6a",
                "Mixed_6b",
                "Mixed_6c",
                "Mixed_6d",
                "Mixed_6e",
                "Mixed_7a",
                "Mixed_7b",
                "Mixed_7c",
            )
        else:
            raise ValueError(f"tsn_backbone={name!r} is not supported; use 'resnet18' or 'inception_v3'.")
        self.out_channels = BACKBONE_CHANNELS[name]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = images
        for stage in self.stages:
            hidden = getattr(self.net, stage)(hidden)
        return hidden

    def load_torchvision_weights(self) -> None:
        """Load torchvision's ImageNet weights; offline or failed downloads raise an error that says what to do."""
        weights = getattr(torchvision.models, TORCHVISION_WEIGHTS[self.name]).IMAGENET1K_V1
        file_name = os.path.basename(weights.url)
        cached_path = os.path.join(torch.hub.get_dir(), "checkpoints", file_name)
        cached = os.path.isfile(cached_path)
        offline = any(os.environ.get(var, "0") not in ("0", "") for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        fix = (
            f"Download {weights.url} on a machine with internet access and put it at {cached_path} "
            "(torch.hub's cache; set TORCH_HOME to move it), or build with tsn_pretrained_backbone=False."
        )
        if not cached and offline:
            raise RuntimeError(
                f"ImageNet weights for tsn_backbone={self.name!r} are not cached and this run is offline. {fix}"
            )
        try:
            state_dict = weights.get_state_dict(progress=False, check_hash=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash is a RuntimeError
            raise RuntimeError(
                f"Could not load ImageNet weights for tsn_backbone={self.name!r}: {error}. {fix}"
            ) from error
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("fc.", "AuxLogits."))}
        self.net.load_state_dict(state_dict, strict=True)
        logger.info("Loaded torchvision ImageNet weights %s into the TSN backbone.", file_name)


class TSNPaliGemmaSegmentEncoder(nn.Module):
    """Cuts images into segments, encodes all of them in one backbone call, and turns them into LM-sized tokens.

    Shapes: B images, S segments per image (sum of rows*cols over scales), C backbone channels, D = projection_dim.
    """

    def __init__(self, config):
        super().__init__()
        self.scales = [tuple(scale) for scale in config.tsn_segment_scales]
        self.num_segments = config.num_segments
        self.crop_size = config.crop_size
        self.integration = config.tsn_integration
        self.fusion = config.tsn_fusion
        self.consensus = config.tsn_consensus
        self.original_ratio, self.tsn_ratio = config.tsn_original_ratio, config.tsn_ratio
        self.generation_original_ratio = config.tsn_generation_original_ratio
        self.generation_ratio = config.tsn_generation_ratio
        self.replace_grid_size = config.tsn_replace_grid_size
        hidden_size = config.projection_dim

        self.backbone = TSNPaliGemmaBackbone(config.tsn_backbone)
        channels = self.backbone.out_channels
        self.norm = nn.LayerNorm(channels)
        self.proj = nn.Linear(channels, hidden_size)
        self.dropout = nn.Dropout(config.tsn_dropout)
        # SigLIP [-1, 1] -> ImageNet normalisation: x * input_scale + input_shift, per channel. Set in _init_weights.
        self.register_buffer("input_scale", torch.empty(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", torch.empty(1, 3, 1, 1), persistent=False)

        if self.integration == "enhanced":
            grid = config.vision_config.image_size // config.vision_config.patch_size
            self.siglip_grid = grid
            # For each SigLIP patch (row-major), the segment index that covers it at each scale. Set in _init_weights.
            self.register_buffer(
                "patch_segments", torch.empty(grid * grid, len(self.scales), dtype=torch.long), persistent=False
            )
            if self.consensus == "attention":
                # Each SigLIP token (query) scores the segments covering its patch (keys): small key dim, cheap.
                key_dim = min(64, hidden_size)
                self.consensus_query = nn.Linear(hidden_size, key_dim, bias=False)
                self.consensus_key = nn.Linear(hidden_size, key_dim, bias=False)
            if self.fusion == "gated":
                # tanh(0) = 0: a freshly built model has exactly the base PaliGemma's image features.
                self.gate = nn.Parameter(torch.zeros(hidden_size))
        self.batchnorm = config.tsn_batchnorm
        self.gradient_checkpointing = False

    def train(self, mode: bool = True):
        """TSN's partial BN: in training, BN layers past the first (all of them with "frozen") keep their running
        statistics; their affine weights still train."""
        super().train(mode)
        if mode and self.batchnorm != "train":
            norms = [module for module in self.backbone.modules() if isinstance(module, nn.BatchNorm2d)]
            for norm in norms[1 if self.batchnorm == "partial" else 0 :]:
                norm.eval()
        return self

    def patch_segment_index(self) -> torch.Tensor:
        """(N, num_scales) index of the segment covering each SigLIP patch at each scale."""
        grid = self.siglip_grid
        rows = torch.arange(grid).repeat_interleave(grid)
        cols = torch.arange(grid).repeat(grid)
        index, offset = [], 0
        for scale_rows, scale_cols in self.scales:
            cell = (rows * scale_rows // grid) * scale_cols + cols * scale_cols // grid
            index.append(offset + cell)
            offset += scale_rows * scale_cols
        return torch.stack(index, dim=1)

    def crops(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B * S, 3, crop, crop), segments of one image contiguous, scales in config order."""
        batch, channels, height, width = pixel_values.shape
        per_scale = []
        for rows, cols in self.scales:
            if height % rows or width % cols:
                raise ValueError(
                    f"Image of {height}x{width} px cannot be cut into a {rows}x{cols} grid of equal crops; "
                    "choose tsn_segment_scales that divide the vision image_size."
                )
            tiles = pixel_values.reshape(batch, channels, rows, height // rows, cols, width // cols)
            tiles = tiles.permute(0, 2, 4, 1, 3, 5).reshape(
                batch, rows * cols, channels, height // rows, width // cols
            )
            tiles = tiles.flatten(0, 1)
            if tiles.shape[-1] != self.crop_size or tiles.shape[-2] != self.crop_size:
                # fp32: CPU has no antialiased bilinear kernel for bf16.
                tiles = F.interpolate(
                    tiles.float(),
                    size=(self.crop_size, self.crop_size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                ).to(tiles.dtype)
            per_scale.append(tiles.unflatten(0, (batch, rows * cols)))
        return torch.cat(per_scale, dim=1).flatten(0, 1)

    def feature_maps(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) SigLIP-normalised -> (B * S, C, h, w): one backbone call for every crop of every scale."""
        dtype = self.proj.weight.dtype
        images = self.crops(pixel_values.to(dtype)) * self.input_scale.to(dtype) + self.input_shift.to(dtype)
        if self.gradient_checkpointing and self.training:
            return self._gradient_checkpointing_func(self.backbone.__call__, images)
        return self.backbone(images)

    def segment_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, S, D): one pooled, projected token per segment."""
        maps = self.feature_maps(pixel_values)
        pooled = maps.mean(dim=(2, 3)).unflatten(0, (pixel_values.shape[0], self.num_segments))  # (B, S, C)
        return self.dropout(self.proj(self.norm(pooled)))

    def replace_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, S * g * g, D): every segment's feature map pooled to a g x g grid of tokens."""
        maps = F.adaptive_avg_pool2d(self.feature_maps(pixel_values), self.replace_grid_size)  # (B*S, C, g, g)
        tokens = maps.flatten(2).transpose(1, 2).reshape(pixel_values.shape[0], -1, maps.shape[1])
        return self.dropout(self.proj(self.norm(tokens)))

    def context(self, siglip_features: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """Spatially aware context: each SigLIP token combines the segments that cover its patch, one per scale.

        siglip_features (B, N, D), segments (B, S, D) -> (B, N, D).
        """
        covering = segments[:, self.patch_segments]  # (B, N, num_scales, D)
        if self.consensus == "average":
            return covering.mean(dim=2)
        if self.consensus == "max":
            return covering.amax(dim=2)
        query = self.consensus_query(siglip_features).unsqueeze(2)  # (B, N, 1, k)
        keys = self.consensus_key(covering)  # (B, N, num_scales, k)
        weights = ((query * keys).sum(-1) / math.sqrt(keys.shape[-1])).softmax(dim=-1)  # (B, N, num_scales)
        return (weights.unsqueeze(-1) * covering).sum(dim=2)

    def fuse(self, siglip_features: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """`enhanced`: (B, N, D) SigLIP tokens and (B, S, D) segment tokens -> (B, N, D)."""
        context = self.context(siglip_features, segments)
        if self.fusion == "gated":
            return siglip_features + torch.tanh(self.gate).to(siglip_features.dtype) * context
        original_ratio, tsn_ratio = self.original_ratio, self.tsn_ratio
        if not self.training:
            if self.generation_original_ratio is not None:
                original_ratio = self.generation_original_ratio
            if self.generation_ratio is not None:
                tsn_ratio = self.generation_ratio
        return original_ratio * siglip_features + tsn_ratio * context

    def forward(self, pixel_values: torch.Tensor, siglip_features: torch.Tensor | None = None) -> torch.Tensor:
        """The image tokens of the integration: (B, 3, H, W) [+ (B, N, D) SigLIP tokens] -> (B, image_seq_length, D).

        The single entry point on purpose: PEFT's `modules_to_save` wraps this module and routes only `forward` to
        the trained copy.
        """
        if self.integration == "replace":
            return self.replace_tokens(pixel_values)
        segments = self.segment_tokens(pixel_values).to(siglip_features.dtype)
        if self.integration == "adapter":
            return torch.cat([siglip_features, segments], dim=1)
        return self.fuse(siglip_features, segments)


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
            imagenet_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            imagenet_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            # x01 = x * SIGLIP_STD + SIGLIP_MEAN; backbone input = (x01 - mean) / std
            init.copy_(module.input_scale, SIGLIP_STD / imagenet_std)
            init.copy_(module.input_shift, (SIGLIP_MEAN - imagenet_mean) / imagenet_std)
            if hasattr(module, "patch_segments"):
                init.copy_(module.patch_segments, module.patch_segment_index())
            if hasattr(module, "gate"):
                init.zeros_(module.gate)


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
        self.text_config_dtype = self.config.text_config.dtype or self.dtype
        self.post_init()

    @can_return_tuple
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """(B, 3, H, W) -> output whose `pooler_output` holds the (B, image_seq_length, D) image tokens."""
        if self.config.tsn_integration == "replace":
            tokens = self.tsn(pixel_values)
            return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens)
        outputs = PaliGemmaModel.get_image_features(self, pixel_values, **kwargs)
        if self.config.tsn_integration != "direct":
            outputs.pooler_output = self.tsn(pixel_values, outputs.pooler_output)
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
        `tsn_*` keyword arguments set the TSN options; the rest go to `from_pretrained` (`dtype`, `device_map`,
        `revision`, ...). `quantization_config` quantizes the base; the segment encoder, projector and
        LM head should be listed in its skip modules (see `finetune.py`).

        ```python
        >>> model = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(  # doctest: +SKIP
        ...     "google/paligemma-3b-pt-224", tsn_integration="enhanced", dtype=torch.bfloat16)
        ```
        """
        tsn_options = {key: kwargs.pop(key) for key in list(kwargs) if key.startswith("tsn_")}
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
