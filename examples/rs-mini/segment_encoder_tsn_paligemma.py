"""The TSN segment encoder of TSN-PaliGemma: every crop of every grid (a "segment") through one torchvision CNN in
ONE batched call, then the segment features shaped for the chosen integration (fused into the SigLIP tokens,
appended as tokens, or replacing them).

A sibling of modeling_tsn_paligemma.py: it imports only the standard library, torch, torchvision and the model's
configuration, so it ships with the model as Hub custom code.
"""

import math
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from transformers.utils import logging

try:
    from .configuration_tsn_paligemma import BACKBONE_CHANNELS
except ImportError:  # imported from the repo root (tests, scripts) rather than as a Hub module
    from configuration_tsn_paligemma import BACKBONE_CHANNELS

logger = logging.get_logger(__name__)

# PaliGemma's image processor maps pixels to [-1, 1] (mean 0.5, std 0.5); torchvision backbones expect ImageNet
# normalisation. The encoder converts with one affine map per channel.
SIGLIP_MEAN, SIGLIP_STD = 0.5, 0.5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "inception_v3": "Inception_V3_Weights"}


def siglip_to_imagenet() -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (1, 3, 1, 1): backbone input = siglip pixels * scale + shift.

    x01 = x * SIGLIP_STD + SIGLIP_MEAN, and the backbone wants (x01 - mean) / std.
    """
    imagenet_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    imagenet_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return SIGLIP_STD / imagenet_std, (SIGLIP_MEAN - imagenet_mean) / imagenet_std


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
