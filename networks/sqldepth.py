"""SQLdepth's depth networks: fused encoders and the Self Query Layer decoder (spec 3.1-3.4).

SQLdepth (Wang et al., official code hisfog/SfMNeXt-Impl) predicts depth, not disparity:

    image -> encoder (backbone + U-Net style fusion) -> S, model_dim x h x w
          -> SelfQueryDecoder -> {("depth", 0): B x 1 x h x w, metres in (min_depth, max_depth)}

The map comes out at the resolution of S, which is not always the input's: H/2 x W/2 for
ResNet-50 and ConvNeXt-L, H x W for EfficientNet-B5 (``SQLdepthNetwork.output_reduction``).
The loss resizes it to H x W (bilinear, align_corners=False) before warping (spec 3.5).

Encoder contract (as ``ResnetEncoder``): ``num_ch_enc`` and ``reductions`` list channels and
stride per returned feature, finest level first, and ``forward`` returns that list. The fused
SQLdepth encoders return a single level, S; their backbones (``SQLResnetTrunk``, the timm
features model) follow the same contract with five or four levels.

Module and parameter names follow SQLdepth's released files (spec 3.8), so a released folder
loads without renaming: ``encoder.pth`` (minus its ``height``, ``width`` and ``use_stereo``
entries) onto ``SQLdepthNetwork.encoder`` and ``depth.pth`` onto ``SQLdepthNetwork.decoder``.
That is why a few attributes keep their original names (``embedding_convPxP``, ``_net``).

ConvNeXt-L and EfficientNet-B5 come from timm, an optional dependency imported only when one of
them is built: its models are exactly the published architectures, with the key names of the
released files, and their ImageNet weights download through timm's own code.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from .resnet_encoder import INPUT_MEAN, INPUT_STD, resnet_features

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# constants

BACKBONES = ("resnet50", "efficientnet_b5", "convnext_large")
# --backbone name of each (the toolkit's ResNet is "resnet" with --num_layers 50).
SQL_BACKBONES_BY_NAME = {"resnet": "resnet50", "efficientnet_b5": "efficientnet_b5", "convnext_large": "convnext_large"}

# S (and so the depth map) is at H/r x W/r: ResNet-50 fuses down to its stride-2 stem level,
# the timm U-Net adds a skip-less x2 block after its finest level (B5: 2 -> 1, ConvNeXt: 4 -> 2).
OUTPUT_REDUCTIONS = {"resnet50": 2, "efficientnet_b5": 1, "convnext_large": 2}

# SQLdepth's ResNet-50 starts from torchvision's original ImageNet weights (what
# `resnet50(pretrained=True)` gave in torchvision 0.9, the version it was trained with).
RESNET50_WEIGHTS = models.ResNet50_Weights.IMAGENET1K_V1
RESNET50_NUM_CH_ENC = (64, 256, 512, 1024, 2048)
RESNET_REDUCTIONS = (2, 4, 8, 16, 32)

# timm names with explicit pretrained tags. SQLdepth used timm 0.6.7, where the plain names
# meant these weights; since timm 0.9 plain `convnext_large` means the ImageNet-22k fine-tuned
# weights, so the tag is spelt out. `tf_efficientnet_b5_ap` is the AdvProp ("_ap") variant.
TIMM_MODEL_NAMES = {
    "efficientnet_b5": "tf_efficientnet_b5.ap_in1k",
    "convnext_large": "convnext_large.fb_in1k",
}
# Pretrained tags in model names (and the key layout above) need timm 0.9 or newer.
MIN_TIMM_VERSION = (0, 9)

# Published U-Net decoder widths (SQLdepth args files), deepest block first.
TIMM_DECODER_CHANNELS = {
    "efficientnet_b5": (512, 256, 128, 64, 32),
    "convnext_large": (1024, 512, 256, 128),
}

# Transformer feed-forward width: SQLdepth's `_lite` decoder (the ResNet-50 models) and the
# full one (EfficientNet-B5, ConvNeXt-L); the only difference between the two decoders.
LITE_DIM_FEEDFORWARD = 512
FULL_DIM_FEEDFORWARD = 1024

# The positional-encoding table has this many rows, so S may yield at most this many patches.
MAX_TOKENS = 500
NUM_HEADS = 4
NUM_TRANSFORMER_LAYERS = 4
# Hidden widths of the bins MLP: 16 per query, then 16 x 16.
BINS_HIDDEN_PER_QUERY = 16
BINS_SECOND_HIDDEN = 16 * 16
# Added to every ReLU'd bin score before normalising, so that no bin collapses to zero width.
BIN_WIDTH_FLOOR = 0.1

# Every published backbone is stride 32, so inputs must be multiples of it (as elsewhere).
INPUT_MULTIPLE = 32


# ---------------------------------------------------------------------------------------------
# pure functions of the Self Query Layer


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    # Bins and expected depth span the whole depth range: in bfloat16 (8 mantissa bits) an
    # 80 m range would be quantised in steps of about 0.3 m, so they are computed in float32
    # (or float64 when given float64) even under mixed precision.
    return x.to(torch.promote_types(x.dtype, torch.float32))


def bin_edges_from_scores(scores: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Adaptive bin edges from the bins MLP's raw output (``norm='linear'`` of SQLdepth).

    Widths are relu(scores) + 0.1, normalised to sum 1 and scaled to the depth range, so every
    bin is strictly positive and together they tile [min_depth, max_depth] exactly.

    Args:
        scores: B x D, unconstrained.
        min_depth, max_depth: depth range in metres.

    Returns:
        B x (D + 1) edges in metres (float32 at least): edge 0 = min_depth, edge D = max_depth
        (up to rounding), increasing.
    """
    widths = torch.relu(_at_least_float32(scores)) + BIN_WIDTH_FLOOR
    widths = widths / widths.sum(dim=1, keepdim=True) * (max_depth - min_depth)
    first_edge = torch.full_like(widths[:, :1], min_depth)
    return torch.cat([first_edge, min_depth + torch.cumsum(widths, dim=1)], dim=1)


def bin_centres(edges: torch.Tensor) -> torch.Tensor:
    """Midpoints of consecutive bin edges: B x (D + 1) -> B x D (same units)."""
    return 0.5 * (edges[:, :-1] + edges[:, 1:])


def probabilistic_depth(probabilities: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Expected depth under per-pixel bin probabilities.

    Args:
        probabilities: B x D x h x w, summing to 1 over D.
        centres: B x D bin centres in metres.

    Returns:
        B x 1 x h x w, sum_d probabilities_d * centres_d, in metres (float32 at least).
    """
    weighted = _at_least_float32(probabilities) * _at_least_float32(centres)[:, :, None, None]
    return torch.sum(weighted, dim=1, keepdim=True)


def self_cost_volume(
    features: torch.Tensor, queries: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dot products of every pixel with every query, and a per-query summary of the features.

    Args:
        features: B x E x h x w per-pixel embeddings.
        queries: B x Q x E.

    Returns:
        (cost_volume, summaries):
        cost_volume: B x Q x h x w raw dot products (not normalised: SQLdepth's 1 x 1 conv reads
            them as they are);
        summaries: B x Q x E, for each query the features averaged over pixels with weights
            softmax over pixels of that query's dot products.
    """
    if features.shape[1] != queries.shape[2]:
        raise ValueError(
            f"features have {features.shape[1]} channels but queries {queries.shape[2]}: "
            "both must equal the embedding dimension"
        )
    batch, channels, height, width = features.shape
    pixels = features.reshape(batch, channels, height * width).transpose(1, 2)  # B x hw x E
    energies = pixels @ queries.transpose(1, 2)  # B x hw x Q
    weights = torch.softmax(energies, dim=1)  # over pixels
    summaries = weights.transpose(1, 2) @ pixels  # B x Q x E
    cost_volume = energies.transpose(1, 2).reshape(batch, queries.shape[1], height, width)
    return cost_volume, summaries


def check_token_count(height: int, width: int, patch_size: int, num_queries: int) -> int:
    """Number of patches N that S of size ``height x width`` gives; Q <= N <= 500 must hold.

    Returns:
        N = floor(height / patch_size) * floor(width / patch_size).

    Raises:
        ValueError: N < Q (not enough tokens to take the queries from) or N > 500 (more
            tokens than positional encodings); the message gives the sizes and the fix.
    """
    tokens = (height // patch_size) * (width // patch_size)
    if tokens < num_queries:
        raise ValueError(
            f"SQLdepth feature map {height}x{width} with patch size {patch_size} gives "
            f"{tokens} tokens, fewer than the {num_queries} queries (--sql_num_queries) taken from "
            "them: use a larger input (--height, --width), a smaller --sql_patch_size or fewer queries"
        )
    if tokens > MAX_TOKENS:
        raise ValueError(
            f"SQLdepth feature map {height}x{width} with patch size {patch_size} gives "
            f"{tokens} tokens, more than the {MAX_TOKENS} positional encodings: use a larger "
            "--sql_patch_size or a smaller input"
        )
    return tokens


# ---------------------------------------------------------------------------------------------
# Self Query Layer decoder


class SelfQueryOutput(NamedTuple):
    """Everything the Self Query Layer computes for one batch (tensors on the input's device).

    depth: B x 1 x h x w, metres; bin_edges: B x (D + 1), metres; probabilities: B x D x h x w.
    """

    depth: torch.Tensor
    bin_edges: torch.Tensor
    probabilities: torch.Tensor


class SelfQueryDecoder(nn.Module):
    """SQLdepth's Self Query Layer: depth from a self-cost volume and adaptive bins (spec 3.3).

    Steps, for S = features[0] (B x E x h x w):
    1. p x p patch embedding (stride p) -> N tokens, plus learnable positional encodings;
    2. a 4-layer post-norm transformer encoder (4 heads, ReLU, dropout 0.1, sequence first);
       the first Q output tokens, in raster order, are the queries;
    3. S' = 3 x 3 conv of S; self-cost volume of S' against the queries;
    4. bins MLP on the flattened per-query summaries -> D adaptive bins over the depth range;
    5. softmax over bins of a 1 x 1 conv of the cost volume -> expected depth over bin centres.

    Args:
        in_channels: channels of S (SQLdepth: model_dim).
        embedding_dim: E, token width (SQLdepth: model_dim, 32 in every published model).
        patch_size: p.
        num_queries: Q (``--query_nums``).
        num_bins: D (``--dim_out``).
        dim_feedforward: transformer feed-forward width, 512 (lite, ResNet-50 models) or 1024.
        min_depth, max_depth: depth range in metres (``--min_depth``, ``--max_depth``).

    Attributes:
        output_kind: "depth": the output is metric depth, never to be read as disparity.

    Parameter names are those of SQLdepth's ``depth.pth``.
    """

    output_kind = "depth"

    def __init__(
        self,
        in_channels: int = 32,
        embedding_dim: int = 32,
        patch_size: int = 16,
        num_queries: int = 64,
        num_bins: int = 64,
        dim_feedforward: int = LITE_DIM_FEEDFORWARD,
        min_depth: float = 0.001,
        max_depth: float = 80.0,
    ) -> None:
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(
                f"SQLdepth needs 0 < --min_depth < --max_depth (got {min_depth}, {max_depth})"
            )
        if not 0 < num_queries <= MAX_TOKENS:
            raise ValueError(
                f"--query_nums must be between 1 and {MAX_TOKENS} (got {num_queries})"
            )
        if embedding_dim % NUM_HEADS:
            raise ValueError(
                f"--model_dim must be a multiple of the {NUM_HEADS} attention heads "
                f"(got {embedding_dim})"
            )
        self.in_channels = in_channels
        self.embedding_dim = embedding_dim
        self.patch_size = patch_size
        self.num_queries = num_queries
        self.num_bins = num_bins
        self.dim_feedforward = dim_feedforward
        self.min_depth = min_depth
        self.max_depth = max_depth

        self.embedding_convPxP = nn.Conv2d(
            in_channels, embedding_dim, kernel_size=patch_size, stride=patch_size
        )
        # Uniform [0, 1) as SQLdepth initialises them; only the first N rows are used.
        self.positional_encodings = nn.Parameter(torch.rand(MAX_TOKENS, embedding_dim))
        layer = nn.TransformerEncoderLayer(
            embedding_dim, NUM_HEADS, dim_feedforward=dim_feedforward
        )
        # Sequence-first layers cannot use nested tensors; saying so avoids a warning per build.
        self.transformer_encoder = nn.TransformerEncoder(
            layer, num_layers=NUM_TRANSFORMER_LAYERS, enable_nested_tensor=False
        )
        self.conv3x3 = nn.Conv2d(in_channels, embedding_dim, kernel_size=3, padding=1)
        hidden = BINS_HIDDEN_PER_QUERY * num_queries
        self.bins_regressor = nn.Sequential(
            nn.Linear(embedding_dim * num_queries, hidden),
            nn.LeakyReLU(),
            nn.Linear(hidden, BINS_SECOND_HIDDEN),
            nn.LeakyReLU(),
            nn.Linear(BINS_SECOND_HIDDEN, num_bins),
        )
        # Index 0 holds the conv so that its keys read `convert_to_prob.0.*` as in depth.pth.
        self.convert_to_prob = nn.Sequential(
            nn.Conv2d(num_queries, num_bins, kernel_size=1), nn.Softmax(dim=1)
        )

    def forward_with_bins(self, features: Sequence[torch.Tensor]) -> SelfQueryOutput:
        """Run the Self Query Layer and keep the bins and probabilities.

        Args:
            features: encoder output; features[0] is S, B x in_channels x h x w with
                Q <= floor(h/p) * floor(w/p) <= 500.

        Raises:
            ValueError: wrong channel count or token count (the message names the fix).
        """
        s_map = features[0]
        if s_map.dim() != 4 or s_map.shape[1] != self.in_channels:
            raise ValueError(
                f"SelfQueryDecoder expects features[0] of shape B x {self.in_channels} x h x w "
                f"(the encoder's model_dim), got {tuple(s_map.shape)}"
            )
        num_tokens = check_token_count(
            s_map.shape[2], s_map.shape[3], self.patch_size, self.num_queries
        )

        tokens = self.embedding_convPxP(s_map).flatten(2)  # B x E x N, raster order
        tokens = tokens + self.positional_encodings[:num_tokens].T.unsqueeze(0)
        tokens = self.transformer_encoder(tokens.permute(2, 0, 1))  # N x B x E
        queries = tokens[: self.num_queries].permute(1, 0, 2)  # B x Q x E

        cost_volume, summaries = self_cost_volume(self.conv3x3(s_map), queries)
        scores = self.bins_regressor(summaries.flatten(1))
        edges = bin_edges_from_scores(scores, self.min_depth, self.max_depth)
        probabilities = self.convert_to_prob(cost_volume)
        depth = probabilistic_depth(probabilities, bin_centres(edges))
        return SelfQueryOutput(depth, edges, probabilities)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        """Predict depth.

        Args:
            features: encoder output, features[0] = S (B x in_channels x h x w).

        Returns:
            {("depth", 0): B x 1 x h x w depth in metres, in (min_depth, max_depth)}, at the
            resolution of S (SQLdepth stores the same map under ("disp", 0)).
        """
        return {("depth", 0): self.forward_with_bins(features).depth}


# ---------------------------------------------------------------------------------------------
# ResNet-50 encoder with U-Net style fusion (SQLdepth's ResnetEncoderDecoder)


def load_resnet50_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """Download (or read from the torch hub cache) torchvision's ImageNet ResNet-50 weights.

    Raises:
        RuntimeError: neither cached nor downloadable (e.g. offline), or corrupt; the message
            gives the cache path to place the file at.
    """
    url = RESNET50_WEIGHTS.url
    cache_path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    logger.info("loading ImageNet weights for resnet50 from %s", url)
    try:
        # Looked up through torch.hub at call time so tests can substitute the download.
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as err:
        raise RuntimeError(
            f"could not load ImageNet weights for SQLdepth's resnet50 from {url} ({err}). "
            "Either build it with pretrained=False (train from scratch, or load a released "
            f"encoder.pth), or download the file elsewhere and place it at {cache_path}."
        ) from err


class SQLResnetTrunk(nn.Module):
    """torchvision ResNet-50 returning its five feature levels (SQLdepth's ResnetEncoder).

    Unlike ``ResnetEncoder`` the classification head ``fc`` is kept: SQLdepth's released
    ``encoder.pth`` holds it and the published parameter counts include it. It is never used,
    so it is frozen (``requires_grad=False``): optimisers skip it and DistributedDataParallel
    needs no ``find_unused_parameters``.

    Args:
        pretrained: start from torchvision's ImageNet weights (``RESNET50_WEIGHTS``).

    Attributes:
        encoder: the torchvision ResNet-50 (keys ``encoder.conv1.weight``, ...).
        num_ch_enc: [64, 256, 512, 1024, 2048].
        reductions: [2, 4, 8, 16, 32].
    """

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        self.num_ch_enc = list(RESNET50_NUM_CH_ENC)
        self.reductions = list(RESNET_REDUCTIONS)
        self.encoder = models.resnet50(weights=None)
        if pretrained:
            self.encoder.load_state_dict(load_resnet50_imagenet_state_dict(), strict=True)
        self.encoder.fc.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Encode an image.

        Args:
            image: B x 3 x H x W, RGB in [0, 1].

        Returns:
            [f0, ..., f4]; f_i is B x num_ch_enc[i] x H/2^(i+1) x W/2^(i+1).
        """
        # Monodepth2's normalisation; SQLdepth applies it on the ResNet path only.
        return resnet_features(self.encoder, (image - INPUT_MEAN) / INPUT_STD)


class UpsampleFuseBlock(nn.Module):
    """Resize to the skip's size, concatenate it, then [3 x 3 conv, BN, LeakyReLU(0.01)] x 2.

    Args:
        in_channels: channels of the coarser input plus those of the skip.
        out_channels: output channels.

    Shapes:
        x B x C_x x h x w, skip B x C_s x H_s x W_s -> B x out_channels x H_s x W_s.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # Named `_net` for the keys of SQLdepth's encoder.pth (`decoder.up1._net.0.weight`).
        self._net = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self._net(torch.cat([x, skip], dim=1))


class ResnetFusionDecoder(nn.Module):
    """SQLdepth's DecoderBN: fuses the five ResNet-50 levels into S at H/2 (spec 3.2).

    conv2 (1 x 1, 2048 -> F) on f4, then up1..up4 fuse f3, f2, f1, f0 (F -> F/2 -> F/4 -> F/8
    -> F/16), and conv3 (3 x 3, F/16 -> model_dim) gives S.

    conv2 has padding 1 although it is 1 x 1: its output is 2 px larger on each side than f4,
    and those border pixels (bias only) enter up1's resize. Kept so that SQLdepth's released
    weights see the features they were trained on.

    Args:
        num_features: F (``--num_features``; 256 in the published models).
        model_dim: channels of S.
        num_ch_enc: channels of f0..f4.
    """

    def __init__(
        self,
        num_features: int = 256,
        model_dim: int = 32,
        num_ch_enc: Sequence[int] = RESNET50_NUM_CH_ENC,
    ) -> None:
        super().__init__()
        if num_features % 16:
            raise ValueError(f"--num_features must be a multiple of 16 (got {num_features})")
        f = num_features
        self.conv2 = nn.Conv2d(num_ch_enc[4], f, kernel_size=1, padding=1)
        self.up1 = UpsampleFuseBlock(f + num_ch_enc[3], f // 2)
        self.up2 = UpsampleFuseBlock(f // 2 + num_ch_enc[2], f // 4)
        self.up3 = UpsampleFuseBlock(f // 4 + num_ch_enc[1], f // 8)
        self.up4 = UpsampleFuseBlock(f // 8 + num_ch_enc[0], f // 16)
        self.conv3 = nn.Conv2d(f // 16, model_dim, kernel_size=3, padding=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """[f0, ..., f4] (finest first) -> S, B x model_dim x (size of f0)."""
        f0, f1, f2, f3, f4 = features
        x = self.up1(self.conv2(f4), f3)
        x = self.up2(x, f2)
        x = self.up3(x, f1)
        x = self.up4(x, f0)
        return self.conv3(x)


class SQLResnetEncoder(nn.Module):
    """ResNet-50 plus U-Net style fusion: an image to S (SQLdepth's ResnetEncoderDecoder).

    Args:
        pretrained: ImageNet weights for the ResNet-50 (the fusion starts from PyTorch's
            default initialisation, as in SQLdepth).
        num_features: F of ``ResnetFusionDecoder``.
        model_dim: channels of S.

    Attributes:
        encoder: ``SQLResnetTrunk``; decoder: ``ResnetFusionDecoder``. State-dict keys are
            those of SQLdepth's encoder.pth (``encoder.encoder.conv1.weight``,
            ``decoder.up1._net.0.weight``, ...).
        num_ch_enc: [model_dim]; reductions: [2] (S is at H/2 x W/2).
    """

    def __init__(self, pretrained: bool, num_features: int = 256, model_dim: int = 32) -> None:
        super().__init__()
        self.encoder = SQLResnetTrunk(pretrained)
        self.decoder = ResnetFusionDecoder(num_features, model_dim, self.encoder.num_ch_enc)
        self.num_ch_enc = [model_dim]
        self.reductions = [self.encoder.reductions[0]]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """B x 3 x H x W RGB in [0, 1] -> [S], S B x model_dim x H/2 x W/2."""
        return [self.decoder(self.encoder(image))]


# ---------------------------------------------------------------------------------------------
# timm backbones with SQLdepth's U-Net decoder (SQLdepth's Unet)


def import_timm():
    """Import timm (optional, only the EfficientNet-B5 and ConvNeXt-L backbones need it).

    Raises:
        ImportError: timm missing or older than 0.9, with the install command.
    """
    try:
        import timm
    except ImportError as err:
        raise ImportError(
            "the SQLdepth backbones efficientnet_b5 and convnext_large need timm, an optional "
            "dependency: `pip install timm` (0.9 or newer)"
        ) from err
    version = tuple(int(part) for part in timm.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_TIMM_VERSION:
        raise ImportError(
            f"timm {timm.__version__} is too old for the SQLdepth backbones (pretrained tags "
            "need 0.9 or newer): `pip install -U timm`"
        )
    return timm


def create_timm_features(backbone: str, pretrained: bool) -> nn.Module:
    """timm's features-only model for ``backbone`` ("efficientnet_b5" or "convnext_large").

    Raises:
        ImportError: timm is missing (message: `pip install timm`).
        RuntimeError: pretrained weights could not be downloaded (e.g. offline).
    """
    timm = import_timm()
    name = TIMM_MODEL_NAMES[backbone]
    try:
        return timm.create_model(name, features_only=True, pretrained=pretrained)
    except (OSError, RuntimeError, ImportError) as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not load timm's ImageNet weights {name} for SQLdepth's {backbone} ({err}). "
            "timm downloads them from the Hugging Face hub (needs huggingface_hub and network "
            "access, then caches them under $HF_HOME); offline, build with pretrained=False "
            "and load a released encoder.pth instead."
        ) from err


class ConvBnRelu(nn.Module):
    """3 x 3 convolution without bias (BN follows), BatchNorm, ReLU: keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class UnetBlock(nn.Module):
    """One U-Net decoder step: upsample, concatenate the skip (if any), two ``ConvBnRelu``.

    With a skip, x is resized to the skip's size (bilinear, align_corners=True); without one
    (the last block) it is upsampled x2 (bilinear, align_corners=False), as in SQLdepth.

    Shapes:
        x B x C_x x h x w, skip B x C_s x H_s x W_s -> B x out_channels x H_s x W_s;
        without skip -> B x out_channels x 2h x 2w.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBnRelu(in_channels, out_channels)
        self.conv2 = ConvBnRelu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    """SQLdepth's timm U-Net decoder: one block per backbone level, then a 1 x 1 conv.

    Block k fuses the next-finer backbone level; the last block has no skip left and doubles
    the resolution instead, so S ends at half the finest backbone level's stride.

    Args:
        num_ch_enc: backbone channels, finest first (e.g. 192, 384, 768, 1536).
        decoder_channels: output channels per block, deepest first; one per backbone level.
        model_dim: channels of S.
    """

    def __init__(
        self, num_ch_enc: Sequence[int], decoder_channels: Sequence[int], model_dim: int = 32
    ) -> None:
        super().__init__()
        if len(decoder_channels) != len(num_ch_enc):
            raise ValueError(
                f"--dec_channels needs one width per backbone level ({len(num_ch_enc)} for "
                f"channels {list(num_ch_enc)}), got {list(decoder_channels)}"
            )
        deepest_first = list(num_ch_enc)[::-1]
        inputs = [deepest_first[0]] + list(decoder_channels[:-1])
        skips = deepest_first[1:] + [0]
        self.blocks = nn.ModuleList(
            UnetBlock(x_ch + skip_ch, out_ch)
            for x_ch, skip_ch, out_ch in zip(inputs, skips, decoder_channels)
        )
        self.final_conv = nn.Conv2d(decoder_channels[-1], model_dim, kernel_size=1)
        # SQLdepth's init: Kaiming-normal (fan_in, gain for leaky_relu with slope 0) convs and
        # BN at weight 1, bias 0; the final conv keeps PyTorch's default bias init.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Backbone features (finest first) -> S, B x model_dim x (2 x size of features[0])."""
        deepest_first = list(features)[::-1]
        x = deepest_first[0]
        skips = deepest_first[1:]
        for index, block in enumerate(self.blocks):
            x = block(x, skips[index] if index < len(skips) else None)
        return self.final_conv(x)


class SQLTimmEncoder(nn.Module):
    """timm backbone plus SQLdepth's U-Net decoder: an image to S (SQLdepth's Unet).

    The input is **not** normalised: SQLdepth builds this path with ``preprocessing=False``
    and its released weights expect RGB in [0, 1].

    Args:
        backbone: "efficientnet_b5" (S at H x W) or "convnext_large" (S at H/2 x W/2).
        pretrained: timm's ImageNet weights for the backbone.
        decoder_channels: U-Net widths, deepest first (default: the published ones).
        model_dim: channels of S.

    Attributes:
        encoder: timm features-only model (keys of encoder.pth's ``encoder.*``).
        decoder: ``UnetDecoder`` (``decoder.blocks.*``, ``decoder.final_conv.*``).
        num_ch_enc: [model_dim]; reductions: [1] (B5) or [2] (ConvNeXt-L).
    """

    def __init__(
        self,
        backbone: str,
        pretrained: bool,
        decoder_channels: Sequence[int] | None = None,
        model_dim: int = 32,
    ) -> None:
        super().__init__()
        if backbone not in TIMM_MODEL_NAMES:
            raise ValueError(
                f"timm SQLdepth backbone must be one of {sorted(TIMM_MODEL_NAMES)} "
                f"(got {backbone!r})"
            )
        if decoder_channels is None:
            decoder_channels = TIMM_DECODER_CHANNELS[backbone]
        self.backbone = backbone
        self.encoder = create_timm_features(backbone, pretrained)
        backbone_channels = list(self.encoder.feature_info.channels())
        backbone_reductions = list(self.encoder.feature_info.reduction())
        self.decoder = UnetDecoder(backbone_channels, decoder_channels, model_dim)
        self.num_ch_enc = [model_dim]
        # The skip-less last block doubles the finest level's resolution.
        self.reductions = [backbone_reductions[0] // 2]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """B x 3 x H x W RGB in [0, 1] -> [S], S B x model_dim x H/r x W/r (r = reductions[0])."""
        return [self.decoder(self.encoder(image))]


# ---------------------------------------------------------------------------------------------
# whole network, builder and published variants


class SQLdepthNetwork(nn.Module):
    """Encoder + Self Query Layer: an image to metric depth.

    Attributes:
        encoder: ``SQLResnetEncoder`` or ``SQLTimmEncoder``; loads encoder.pth.
        decoder: ``SelfQueryDecoder``; loads depth.pth.
        output_kind: "depth".
        output_reduction: the output is H/output_reduction x W/output_reduction.
    """

    output_kind = "depth"

    def __init__(self, encoder: nn.Module, decoder: SelfQueryDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.output_reduction = encoder.reductions[0]

    def forward(self, image: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
        """Predict depth.

        Args:
            image: B x 3 x H x W, RGB in [0, 1]; H and W multiples of 32.

        Returns:
            {("depth", 0): B x 1 x H/r x W/r depth in metres (r = output_reduction: 2 for
            resnet50 and convnext_large, 1 for efficientnet_b5), in (min_depth, max_depth)}.
        """
        return self.decoder(self.encoder(image))


@dataclass(frozen=True)
class SelfQuerySettings:
    """The Self Query Layer's dimensions as flags and checkpoints carry them (``--sql_<name>``).

    Defaults are SQLdepth's ResNet-50 640 x 192 model. ``dim_feedforward`` 0 means the backbone's
    published width (512, the lite decoder, for ResNet-50; 1024 for the timm backbones).
    """

    patch_size: int = 16
    num_queries: int = 64
    num_bins: int = 64
    model_dim: int = 32
    dim_feedforward: int = 0
    num_features: int = 256

    @classmethod
    def from_prefixed(cls, values, prefix: str = "sql_") -> "SelfQuerySettings":
        """From any object with ``<prefix><field>`` attributes (options, a `ModelSpec`)."""
        return cls(**{f: getattr(values, prefix + f) for f in cls.__dataclass_fields__ if hasattr(values, prefix + f)})

    def network_kwargs(self) -> dict:
        """Keyword arguments of `build_sqldepth_network`."""
        return {"patch_size": self.patch_size, "num_queries": self.num_queries, "num_bins": self.num_bins,
                "model_dim": self.model_dim, "dim_feedforward": self.dim_feedforward or None,
                "num_features": self.num_features}


def default_dim_feedforward(backbone: str) -> int:
    """512 (lite decoder) for resnet50, as SQLdepth's `resnet_lite`; 1024 for the timm ones."""
    return LITE_DIM_FEEDFORWARD if backbone == "resnet50" else FULL_DIM_FEEDFORWARD


def build_sqldepth_network(
    backbone: str,
    pretrained: bool,
    height: int,
    width: int,
    *,
    patch_size: int = 16,
    num_queries: int = 64,
    num_bins: int = 64,
    model_dim: int = 32,
    dim_feedforward: int | None = None,
    min_depth: float = 0.001,
    max_depth: float = 80.0,
    num_features: int = 256,
    decoder_channels: Sequence[int] | None = None,
) -> SQLdepthNetwork:
    """Build an SQLdepth depth network (defaults: the ResNet-50 640 x 192 model's settings).

    Args:
        backbone: one of ``BACKBONES``: "resnet50", "efficientnet_b5", "convnext_large".
        pretrained: start the backbone from ImageNet weights (downloaded).
        height, width: input size, multiples of 32; fixes the token count N, checked here.
        patch_size, num_queries, num_bins: p, Q, D of the Self Query Layer.
        model_dim: channels of S and the embedding dimension E.
        dim_feedforward: transformer feed-forward width; None gives 512 (lite) for resnet50 and
            1024 for the timm backbones, as published.
        min_depth, max_depth: depth range in metres.
        num_features: F of the ResNet fusion decoder (resnet50 only).
        decoder_channels: U-Net widths for the timm backbones, deepest first; None gives the
            published ones (``TIMM_DECODER_CHANNELS``).

    Raises:
        ValueError: unknown backbone, input size not a multiple of 32, or a token count outside
            Q <= N <= 500.
        ImportError: a timm backbone without timm installed (message: `pip install timm`).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"SQLdepth --backbone must be one of {list(BACKBONES)} (got {backbone!r})")
    if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE or height <= 0 or width <= 0:
        raise ValueError(
            f"--height and --width must be positive multiples of {INPUT_MULTIPLE} "
            f"(got {height}x{width})"
        )
    if dim_feedforward is None:
        dim_feedforward = default_dim_feedforward(backbone)
    # Check the token count before building (and maybe downloading) a backbone.
    reduction = OUTPUT_REDUCTIONS[backbone]
    check_token_count(height // reduction, width // reduction, patch_size, num_queries)

    if backbone == "resnet50":
        if decoder_channels is not None:
            raise ValueError("decoder_channels applies to the timm backbones, not resnet50")
        encoder: nn.Module = SQLResnetEncoder(pretrained, num_features, model_dim)
    else:
        encoder = SQLTimmEncoder(backbone, pretrained, decoder_channels, model_dim)
    decoder = SelfQueryDecoder(
        in_channels=model_dim,
        embedding_dim=model_dim,
        patch_size=patch_size,
        num_queries=num_queries,
        num_bins=num_bins,
        dim_feedforward=dim_feedforward,
        min_depth=min_depth,
        max_depth=max_depth,
    )
    return SQLdepthNetwork(encoder, decoder)


@dataclass(frozen=True)
class SQLdepthVariant:
    """Settings of one published SQLdepth model (spec 3.4; SQLdepth's args files).

    ``parameter_count`` is the published size of encoder + decoder (pose net excluded).
    """

    backbone: str
    height: int
    width: int
    patch_size: int
    num_queries: int
    num_bins: int
    min_depth: float
    max_depth: float
    parameter_count: int

    def build_kwargs(self) -> dict:
        """Keyword arguments for ``build_sqldepth_network`` (everything but ``pretrained``)."""
        return {
            "backbone": self.backbone,
            "height": self.height,
            "width": self.width,
            "patch_size": self.patch_size,
            "num_queries": self.num_queries,
            "num_bins": self.num_bins,
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
        }


SQLDEPTH_VARIANTS: dict[str, SQLdepthVariant] = {
    "resnet50_640x192": SQLdepthVariant("resnet50", 192, 640, 16, 64, 64, 0.001, 80.0, 31_051_944),
    # The hisfog args file (and the re-implementation) use min_depth 0.01 for this model; an
    # older args file in the same repository says 0.001.
    "resnet50_1024x320": SQLdepthVariant(
        "resnet50", 320, 1024, 20, 128, 128, 0.01, 80.0, 37_782_824
    ),
    "efficientnet_b5_1024x320": SQLdepthVariant(
        "efficientnet_b5", 320, 1024, 32, 128, 128, 0.001, 80.0, 45_702_416
    ),
    "convnext_large_1024x320": SQLdepthVariant(
        "convnext_large", 320, 1024, 32, 64, 64, 0.001, 80.0, 242_150_304
    ),
}


def build_sqldepth_variant(name: str, pretrained: bool) -> SQLdepthNetwork:
    """Build a published SQLdepth model by name (a key of ``SQLDEPTH_VARIANTS``).

    Raises:
        ValueError: unknown name (the message lists them).
    """
    if name not in SQLDEPTH_VARIANTS:
        raise ValueError(
            f"SQLdepth variant must be one of {sorted(SQLDEPTH_VARIANTS)} (got {name!r})"
        )
    return build_sqldepth_network(pretrained=pretrained, **SQLDEPTH_VARIANTS[name].build_kwargs())
