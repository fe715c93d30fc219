"""HRNet-W18 backbone as BDEdepth uses it, with its ImageNet weights.

Written here rather than taken from timm (see README, "Depth networks"): BDEdepth fuses branches
with bilinear upsampling (``align_corners=True``) to the exact size of the finer branch, timm's
``hrnet_w18`` with nearest upsampling by a power of two, so timm's features differ from the ones
BDEdepth's released weights were trained on; timm would also add three runtime dependencies.

Module and parameter names follow the official HRNet classification code, which BDEdepth's
``networks/hrnet.py`` and timm's converted checkpoints share (``conv1``, ``layer1.0.conv1``,
``transition1.1.0.0``, ``stage2.0.branches.0.0.conv1``, ``stage2.0.fuse_layers.1.0.0.0``, ...), so
both the ImageNet files and BDEdepth's released depth encoders load without renaming keys.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

logger = logging.getLogger(__name__)

# ImageNet HRNet-W18-C (the HRNet authors' classification model, converted by timm): the
# original HRNet classification state-dict names, a plain torch.save file, and a SHA-256 prefix
# in the name that torch.hub verifies. BDEdepth read the same architecture's
# "cosinelr_cutmix_300epoch" retraining from a CWD-relative file instead; see README.
HRNET_W18_IMAGENET_URL = (
    "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-hrnet/"
    "hrnetv2_w18-8cb57bb9.pth"
)

# The classification head of the ImageNet files (HRNet-W18-C), which the depth backbone does not
# have. Dropped by name so that any *other* key mismatch is an error (BDEdepth dropped all
# unknown keys silently, reference spec W20).
IMAGENET_HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")

# HRNet-W18 layout (HRNet paper, "W18" = width of the highest-resolution branch): stem of two
# stride-2 3x3 convs with 64 channels; stage 1 of 4 Bottlenecks (64 -> 256 channels); stages 2-4
# with 1, 4 and 3 modules of 4 BasicBlocks per branch and branch widths W, 2W, 4W, 8W.
STEM_CHANNELS = 64
STAGE1_BLOCKS = 4
BRANCH_CHANNELS = (18, 36, 72, 144)
STAGE_MODULES = (1, 4, 3)  # stages 2, 3, 4
BLOCKS_PER_BRANCH = 4

# Channels of the five returned features [f0 (stem), f1..f4 (stage-4 branches)].
HRNET_W18_NUM_CH_ENC = (STEM_CHANNELS,) + BRANCH_CHANNELS


def _conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int, relu: bool) -> nn.Sequential:
    """Bias-free conv + BatchNorm (+ ReLU); index 0 is the conv and 1 the BN, as in the
    checkpoints. "Same" padding for odd kernels."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FuseUp(nn.Module):
    """1x1 conv + BN of a coarser branch, then bilinear upsampling to the finer branch's size.

    BDEdepth's choice: bilinear with ``align_corners=True`` to the exact target size (the
    original HRNet uses nearest upsampling by 2^(j-i)); the released weights expect it.
    Parameter names ``0.*`` (conv) and ``1.*`` (BN) match the checkpoints.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.add_module("0", nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False))
        self.add_module("1", nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """B x C_in x h x w -> B x C_out x size[0] x size[1]."""
        y = self._modules["1"](self._modules["0"](x))
        return F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=True)


def _fuse_down(in_ch: int, out_ch: int, steps: int) -> nn.Sequential:
    """``steps`` stride-2 3x3 convs from a finer branch to a coarser one: the intermediate ones
    keep ``in_ch`` with ReLU, the last maps to ``out_ch`` without ReLU (the sum is activated)."""
    return nn.Sequential(*[
        _conv_bn(in_ch, out_ch if k == steps - 1 else in_ch, 3, 2, relu=k < steps - 1)
        for k in range(steps)
    ])


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by an all-to-all multi-resolution fusion.

    Args:
        channels: width of each branch, finest first (branch b works at 1/2^b of branch 0).

    Shapes:
        list of B x channels[b] x H/2^b x W/2^b -> a new list of the same shapes.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(BLOCKS_PER_BRANCH)]) for c in channels
        )
        # fuse_layers[i][j] brings branch j to branch i. Identity (no parameters) on the diagonal
        # keeps every index where the checkpoints expect it.
        self.fuse_layers = nn.ModuleList()
        for i, c_i in enumerate(channels):
            row = nn.ModuleList()
            for j, c_j in enumerate(channels):
                if j > i:
                    row.append(FuseUp(c_j, c_i))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    row.append(_fuse_down(c_j, c_i, i - j))
            self.fuse_layers.append(row)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        ys = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for i, row in enumerate(self.fuse_layers):
            size = ys[i].shape[-2:]
            total = ys[i]
            for j, layer in enumerate(row):
                if j > i:
                    total = total + layer(ys[j], size)
                elif j < i:
                    total = total + layer(ys[j])
            fused.append(F.relu(total))
        return fused


def _transition(prev_channels: Sequence[int], new_channels: Sequence[int]) -> nn.ModuleList:
    """Map the branches of one stage to the next: change widths where they differ and add one new
    branch by a stride-2 conv from the coarsest. The new branch is wrapped in one more
    ``nn.Sequential`` (``transition1.1.0.0.weight``), as in the checkpoints."""
    layers = nn.ModuleList()
    for b, out_ch in enumerate(new_channels):
        if b < len(prev_channels):
            if prev_channels[b] == out_ch:
                layers.append(nn.Identity())
            else:
                layers.append(_conv_bn(prev_channels[b], out_ch, 3, 1, relu=True))
        else:
            layers.append(nn.Sequential(_conv_bn(prev_channels[-1], out_ch, 3, 2, relu=True)))
    return layers


class HRNetW18(nn.Module):
    """HRNet-W18 feature extractor without classification head (reference spec 4.4).

    Input normalisation is the caller's job (the depth encoders normalise once and share the
    normalised image with their context branch).

    Attributes:
        num_ch_enc: [64, 18, 36, 72, 144], channels of the five returned features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.num_ch_enc = list(HRNET_W18_NUM_CH_ENC)
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS)

        expanded = STEM_CHANNELS * Bottleneck.expansion
        downsample = _conv_bn(STEM_CHANNELS, expanded, 1, 1, relu=False)
        self.layer1 = nn.Sequential(
            Bottleneck(STEM_CHANNELS, STEM_CHANNELS, downsample=downsample),
            *[Bottleneck(expanded, STEM_CHANNELS) for _ in range(STAGE1_BLOCKS - 1)],
        )

        prev = [expanded]
        for stage, num_modules in enumerate(STAGE_MODULES, start=2):
            channels = list(BRANCH_CHANNELS[:stage])
            setattr(self, f"transition{stage - 1}", _transition(prev, channels))
            setattr(self, f"stage{stage}",
                    nn.Sequential(*[HighResolutionModule(channels) for _ in range(num_modules)]))
            prev = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode a normalised image.

        Args:
            x: B x 3 x H x W, already normalised; H and W multiples of 32 for exact strides.

        Returns:
            [f0, f1, f2, f3, f4]: f0 is the stem output (B x 64 x H/2 x W/2); f1..f4 are the
            stage-4 branches, B x {18, 36, 72, 144} x H/2^(i+1) x W/2^(i+1).
        """
        f0 = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(f0)))
        xs = [self.layer1(x)]
        for stage in range(2, 2 + len(STAGE_MODULES)):
            transition = getattr(self, f"transition{stage - 1}")
            # A new branch grows from the coarsest existing one; the others pass through their
            # own transition (an identity where the width does not change).
            xs = [layer(xs[min(b, len(xs) - 1)]) for b, layer in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)
        return [f0] + xs


def load_hrnet_imagenet_state_dict(url: str = HRNET_W18_IMAGENET_URL) -> dict[str, torch.Tensor]:
    """Fetch ImageNet HRNet-W18 weights (torch hub cache first, then ``url``), head removed.

    ``url`` may be ``file://`` for a local copy. Checkpoints that wrap the weights in
    ``{"state_dict": ...}`` are unwrapped.

    Raises:
        RuntimeError: not cached and not downloadable (e.g. offline), corrupt, or unsafe (pickled
            objects are refused, never run); the message says where to put the file or how to
            train without it.
    """
    from networks.resnet_encoder import load_hub_state_dict

    logger.info("loading ImageNet HRNet-W18 weights from %s", url)
    state: Any = load_hub_state_dict(url, "ImageNet HRNet-W18 weights")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RuntimeError(f"{url} holds a {type(state).__name__}, not a state dict of HRNet-W18 weights")
    return {k: v for k, v in state.items() if not k.startswith(IMAGENET_HEAD_PREFIXES)}


def load_imagenet_weights(
    model: HRNetW18, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Load ImageNet weights into ``model``; any key mismatch is an error naming the keys."""
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"{source} does not hold HRNet-W18 weights: missing {result.missing_keys[:5]} "
            f"({len(result.missing_keys)} in all), unexpected {result.unexpected_keys[:5]} "
            f"({len(result.unexpected_keys)} in all). Use the ImageNet HRNet-W18-C file "
            f"({HRNET_W18_IMAGENET_URL}) or `--weights_init scratch`."
        )
