"""BDEdepth's depth networks: encoders with a full-resolution context branch, and the grid decoder.

Reference spec 4.3-4.5. Parameter names reproduce BDEdepth's released ``encoder``/``depth``
state dicts, so those files load without renaming: the encoder holds the backbone under
``encoder.*`` and the context branch under ``conv1.*``/``bn1.*`` (ResNet) or
``context_conv.*``/``context_bn.*`` (HRNet); the decoder is ``decoder.<index>.*``. The one
difference: our ResNet trunk has no classification head, so released ResNet files carry two extra
keys, ``encoder.fc.weight`` and ``encoder.fc.bias``, to drop.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import hrnet
from .blocks import Conv3x3
from .resnet_encoder import INPUT_MEAN, INPUT_STD, ResnetEncoder

HRNET_NUM_LAYERS = 18

# Grid decoder constants (reference spec 4.5).
GRID_COLUMNS = 3  # parallel decoding paths; each level's j-th column receives the j-th carry
GRID_FINEST_CHANNELS = 16  # level 0 runs at full resolution, so it is kept narrow
PRELU_INIT = 0.25  # PyTorch's PReLU default, one shared slope per module
TRUNC_NORMAL_STD = 0.02  # ViT-style init of every decoder conv, cut at +-2 (absolute)
TRUNC_NORMAL_BOUND = 2.0


def _clone_stem(
    conv: nn.Conv2d, bn: nn.BatchNorm2d, stride: int
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A stride-``stride`` copy of a stem conv + BN: same filters and affine parameters, fresh
    running statistics (the full-resolution responses have statistics of their own).

    Cloning rather than random init starts the context branch with the (ImageNet) stem's filters,
    so at full resolution it already detects the edges the stem detects at half resolution.
    """
    context_conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=stride,
                             padding=conv.padding, bias=False)
    context_bn = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        context_conv.weight.copy_(conv.weight)
        context_bn.weight.copy_(bn.weight)
        context_bn.bias.copy_(bn.bias)
    return context_conv, context_bn


class BDEResnetEncoder(ResnetEncoder):
    """ResNet encoder plus a stride-1 context branch (BDEdepth ``depth_resnet.DepthEncoder``).

    The context branch is a 7x7 stride-1 conv (3 -> 64, no bias) + BN + ReLU, cloned from the
    ResNet stem after any ImageNet weights are loaded. Its modules are called ``conv1`` and
    ``bn1`` at the top level, as in BDEdepth's released files (the trunk's are
    ``encoder.conv1``/``encoder.bn1``).

    Args:
        num_layers: ResNet depth, one of 18, 34, 50, 101, 152.
        pretrained: start from torchvision's ImageNet weights.

    Attributes:
        num_ch_enc: channels of the five trunk features (the context feature has num_ch_enc[0]
            channels and is not listed, as in BDEdepth).
    """

    has_context = True  # the stride-1 context feature comes first (networks.encoder_feature_info)

    def __init__(self, num_layers: int, pretrained: bool) -> None:
        super().__init__(num_layers, pretrained, num_input_images=1)
        self.conv1, self.bn1 = _clone_stem(self.encoder.conv1, self.encoder.bn1, stride=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode an image.

        Args:
            x: B x 3 x H x W, RGB in [0, 1]; H and W multiples of 32.

        Returns:
            [context, f0, ..., f4]: context is B x 64 x H x W; f_i is
            B x num_ch_enc[i] x H/2^(i+1) x W/2^(i+1).
        """
        features = super().forward(x)
        normalised = (x - INPUT_MEAN) / INPUT_STD
        context = F.relu(self.bn1(self.conv1(normalised)))
        return [context] + features


class HRNetEncoder(nn.Module):
    """HRNet-W18 encoder, optionally with BDEdepth's context branch (``depth_hrnet.DepthEncoder``).

    The context branch is a 3x3 stride-1 conv (3 -> 64, no bias) + BN + ReLU cloned from the
    HRNet stem, named ``context_conv``/``context_bn`` as in BDEdepth's released files.

    Args:
        num_layers: must be 18 (HRNet-W18, the only width BDEdepth uses).
        pretrained: start the backbone from ImageNet HRNet-W18-C weights.
        context: add the full-resolution context feature in front of the backbone features.
        weights_url: where the ImageNet weights come from (``file://`` for a local copy);
            None means ``hrnet.HRNET_W18_IMAGENET_URL``, read when the encoder is built.

    Attributes:
        encoder: the ``HRNetW18`` backbone.
        num_ch_enc: [64, 18, 36, 72, 144], the backbone features' channels.
    """

    def __init__(self, num_layers: int, pretrained: bool, context: bool = True,
                 weights_url: str | None = None) -> None:
        super().__init__()
        if num_layers != HRNET_NUM_LAYERS:
            raise ValueError(f"--backbone hrnet is HRNet-W18 only: use --num_layers "
                             f"{HRNET_NUM_LAYERS} (got {num_layers})")
        self.encoder = hrnet.HRNetW18()
        self.num_ch_enc = list(self.encoder.num_ch_enc)
        self.has_context = context
        if pretrained:
            url = weights_url or hrnet.HRNET_W18_IMAGENET_URL
            state_dict = hrnet.load_hrnet_imagenet_state_dict(url)
            hrnet.load_imagenet_weights(self.encoder, state_dict, url)
        if context:
            self.context_conv, self.context_bn = _clone_stem(self.encoder.conv1, self.encoder.bn1,
                                                             stride=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode an image.

        Args:
            x: B x 3 x H x W, RGB in [0, 1]; H and W multiples of 32.

        Returns:
            [context, f0, ..., f4] (context only when built with it): context is
            B x 64 x H x W, f0 B x 64 x H/2 x W/2, f1..f4 B x {18, 36, 72, 144} x H/2^(i+1) x
            W/2^(i+1).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"HRNetEncoder expects B x 3 x H x W input, got {tuple(x.shape)}")
        x = (x - INPUT_MEAN) / INPUT_STD
        features = self.encoder(x)
        if not self.has_context:
            return features
        return [F.relu(self.context_bn(self.context_conv(x)))] + features


def _lateral(in_ch: int, out_ch: int) -> nn.Sequential:
    """PReLU -> 3x3 conv -> PReLU -> 3x3 conv (zero padding, bias). BDEdepth calls it a residual
    block, but there is no skip connection; kept as is so released weights mean the same."""
    return nn.Sequential(
        nn.PReLU(init=PRELU_INIT),
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.PReLU(init=PRELU_INIT),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
    )


def _upconv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Bilinear x2 (align_corners=False, BDEdepth's nn.Upsample default) -> PReLU -> 3x3 conv."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.PReLU(init=PRELU_INIT),
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
    )


class GridDecoder(nn.Module):
    """BDEdepth's grid depth decoder (reference spec 4.5), for either backbone.

    Six levels i = 0..5 (level i at 1/2^i of the input; level 0 is fed by the context feature)
    and three columns. At each level, going coarse to fine, every column applies ``lateral(i, j)``
    to the running feature, adds the j-th carry from the coarser level, and (below level 0) sends
    ``upconv(i-1, j)`` of the result down as the next carry. ``dispconv(i)`` + sigmoid gives
    ``("disp", i)`` for each requested scale.

    Layout: the modules sit in ``self.decoder`` (an ``nn.ModuleList``) in BDEdepth's insertion
    order, so released weights load as they are: for each level, lateral(i,0), upconv(i,0),
    lateral(i,1), upconv(i,1), lateral(i,2), upconv(i,2) (upconvs only below level 5), then
    dispconv(i) if i is a scale. Indices therefore depend on ``scales`` (BDEdepth trains and
    releases scales = (0,)); ``self.index`` maps descriptive names to them.

    Args:
        num_ch_enc: channels of the five backbone features (the context feature is assumed to
            have num_ch_enc[0] channels), e.g. [64, 18, 36, 72, 144] for HRNet-W18.
        scales: output scales, a subset of 0..5.
        num_output_channels: channels of each disparity map.

    Attributes:
        num_ch_enc: E, six entries (context first).
        num_ch_grid: G = E // 2 with G[0] = 16.
    """

    def __init__(self, num_ch_enc: Sequence[int], scales: Sequence[int] = (0,),
                 num_output_channels: int = 1) -> None:
        super().__init__()
        if len(num_ch_enc) != 5:
            raise ValueError(f"num_ch_enc must list the 5 backbone channel counts, "
                             f"got {num_ch_enc}")
        self.num_ch_enc = [num_ch_enc[0]] + list(num_ch_enc)
        self.num_levels = len(self.num_ch_enc)
        bad = [s for s in scales if s not in range(self.num_levels)]
        if bad or not scales:
            raise ValueError(f"--scales must be a non-empty subset of "
                             f"{list(range(self.num_levels))} for --decoder bdedepth "
                             f"(got {list(scales)})")
        self.scales = tuple(sorted(set(scales)))
        self.num_ch_grid = [c // 2 for c in self.num_ch_enc]
        self.num_ch_grid[0] = GRID_FINEST_CHANNELS

        E, G = self.num_ch_enc, self.num_ch_grid
        modules: list[nn.Module] = []
        self.index: dict[str, int] = {}

        def add(name: str, module: nn.Module) -> None:
            self.index[name] = len(modules)
            modules.append(module)

        for i in range(self.num_levels):
            for j in range(GRID_COLUMNS):
                add(f"lateral_{i}_{j}", _lateral(E[i] if j == 0 else G[i], G[i]))
                if i < self.num_levels - 1:
                    add(f"upconv_{i}_{j}", _upconv(G[i + 1], G[i]))
            if i in self.scales:
                add(f"dispconv_{i}", Conv3x3(G[i], num_output_channels))
        self.decoder = nn.ModuleList(modules)
        self.apply(_init_conv)

    def layer(self, name: str) -> nn.Module:
        """The module called ``name`` ("lateral_3_1", "upconv_0_2", "dispconv_0")."""
        return self.decoder[self.index[name]]

    def forward(self, features: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        """Decode [context, f0, ..., f4] into disparities.

        Args:
            features: six tensors; feature i is B x E[i] x H/2^i x W/2^i.

        Returns:
            A new dict {("disp", s): B x C x H/2^s x W/2^s in (0, 1)} for each s in ``scales``.
        """
        if len(features) != self.num_levels:
            raise ValueError(f"GridDecoder expects {self.num_levels} features [context, f0..f4], "
                             f"got {len(features)}: build the encoder with its context branch")
        outputs: dict[tuple[str, int], torch.Tensor] = {}
        carries: list[torch.Tensor] = []
        finest = self.scales[0]
        # Levels finer than the finest requested scale cannot change any output: stop there
        # rather than run the costliest, full-resolution part of the grid for nothing.
        for i in range(self.num_levels - 1, finest - 1, -1):
            x = features[i]
            next_carries = []
            for j in range(GRID_COLUMNS):
                x = self.layer(f"lateral_{i}_{j}")(x)
                if carries:
                    x = x + carries[j]
                if i > finest:
                    next_carries.append(self.layer(f"upconv_{i - 1}_{j}")(x))
            carries = next_carries
            if i in self.scales:
                outputs[("disp", i)] = torch.sigmoid(self.layer(f"dispconv_{i}")(x))
        return outputs


def _init_conv(module: nn.Module) -> None:
    """BDEdepth's decoder init: truncated-normal conv weights (std 0.02), zero biases."""
    if isinstance(module, nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=TRUNC_NORMAL_STD, a=-TRUNC_NORMAL_BOUND,
                              b=TRUNC_NORMAL_BOUND)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
