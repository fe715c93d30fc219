"""Monodepth2's U-Net style depth decoder: multi-scale sigmoid disparities from five features."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import Conv3x3, ConvBlock, upsample

# Decoder widths per level (level i works at 1/2^i of the input resolution). Half of the
# matching encoder width at the coarse levels, tapering to 16 at full resolution to keep the
# high-resolution convolutions cheap.
NUM_CH_DEC = (16, 32, 64, 128, 256)
NUM_LEVELS = len(NUM_CH_DEC)


class DepthDecoder(nn.Module):
    """Upsampling decoder with skip connections that predicts disparity at several scales.

    For levels i = 4 down to 0: ``upconv_i_0`` (ConvBlock), nearest x2 upsampling, concatenation
    with encoder feature i-1 (when ``use_skips`` and i > 0), ``upconv_i_1`` (ConvBlock), and,
    for i in ``scales``, ``dispconv_i`` (padded 3x3 conv) followed by a sigmoid.

    Args:
        num_ch_enc: channels of the five encoder features, e.g. [64, 64, 128, 256, 512].
        scales: output scales, a subset of 0..4; scale s is at 1/2^s of the input resolution.
        num_output_channels: channels C of each disparity map.
        use_skips: concatenate encoder features into the decoder.

    Layers live in the ``nn.ModuleDict`` ``convs`` under descriptive keys ("upconv_4_0",
    "upconv_4_1", ..., "dispconv_0"), so checkpoint names do not depend on layer order.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        scales: Sequence[int] = (0, 1, 2, 3),
        num_output_channels: int = 1,
        use_skips: bool = True,
    ) -> None:
        super().__init__()
        if len(num_ch_enc) != NUM_LEVELS:
            raise ValueError(f"num_ch_enc must list {NUM_LEVELS} channel counts, got {num_ch_enc}")
        bad = [s for s in scales if s not in range(NUM_LEVELS)]
        if bad or not scales:
            raise ValueError(
                f"--scales must be a non-empty subset of {list(range(NUM_LEVELS))} "
                f"(got {list(scales)})"
            )
        self.num_ch_enc = list(num_ch_enc)
        self.num_ch_dec = list(NUM_CH_DEC)
        self.scales = tuple(sorted(set(scales)))
        self.num_output_channels = num_output_channels
        self.use_skips = use_skips

        convs: dict[str, nn.Module] = {}
        for i in range(NUM_LEVELS - 1, -1, -1):
            in_ch = self.num_ch_enc[-1] if i == NUM_LEVELS - 1 else self.num_ch_dec[i + 1]
            convs[f"upconv_{i}_0"] = ConvBlock(in_ch, self.num_ch_dec[i])
            in_ch = self.num_ch_dec[i]
            if use_skips and i > 0:
                in_ch += self.num_ch_enc[i - 1]
            convs[f"upconv_{i}_1"] = ConvBlock(in_ch, self.num_ch_dec[i])
        for s in self.scales:
            convs[f"dispconv_{s}"] = Conv3x3(self.num_ch_dec[s], num_output_channels)
        self.convs = nn.ModuleDict(convs)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        """Decode encoder features into disparities.

        Args:
            features: five tensors; feature i is B x num_ch_enc[i] x H/2^(i+1) x W/2^(i+1).

        Returns:
            A new dict {("disp", s): B x C x H/2^s x W/2^s in (0, 1)} for each s in ``scales``.
        """
        if len(features) != NUM_LEVELS:
            raise ValueError(f"DepthDecoder expects {NUM_LEVELS} features, got {len(features)}")
        outputs: dict[tuple[str, int], torch.Tensor] = {}
        x = features[-1]
        for i in range(NUM_LEVELS - 1, -1, -1):
            x = self.convs[f"upconv_{i}_0"](x)
            parts = [upsample(x)]
            if self.use_skips and i > 0:
                parts.append(features[i - 1])
            x = self.convs[f"upconv_{i}_1"](torch.cat(parts, dim=1))
            if i in self.scales:
                outputs[("disp", i)] = torch.sigmoid(self.convs[f"dispconv_{i}"](x))
        return outputs
