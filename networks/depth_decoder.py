"""Monodepth2's U-Net style depth decoder: multi-scale sigmoid disparities from four or five features."""

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
    with the encoder feature at 1/2^i of the input resolution (when ``use_skips`` and the encoder
    has one), ``upconv_i_1`` (ConvBlock), and, for i in ``scales``, ``dispconv_i`` (padded 3x3
    conv) followed by a sigmoid. A ResNet's five features (strides 2..32) give Monodepth2's
    decoder exactly; a four-level backbone (strides 4..32, e.g. ConvNeXt) has no skip at level 1.

    Args:
        num_ch_enc: channels of the encoder features, finest first, e.g. [64, 64, 128, 256, 512].
        reductions: stride of each feature (default: 2, 4, 8, 16, 32 for five features, 4..32
            for four); the last must be 32.
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
        reductions: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if len(num_ch_enc) not in (NUM_LEVELS - 1, NUM_LEVELS):
            raise ValueError(f"num_ch_enc must list {NUM_LEVELS - 1} or {NUM_LEVELS} channel counts, got {num_ch_enc}")
        if reductions is None:
            reductions = [2 ** (NUM_LEVELS + 1 - len(num_ch_enc) + i) for i in range(len(num_ch_enc))]
        if len(reductions) != len(num_ch_enc) or reductions[-1] != 2 ** NUM_LEVELS or \
                any(r not in [2 ** (i + 1) for i in range(NUM_LEVELS)] for r in reductions):
            raise ValueError(f"encoder feature strides must be powers of two ending at {2 ** NUM_LEVELS}, one per "
                             f"feature (got {list(reductions)} for {len(num_ch_enc)} features)")
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
        self.reductions = list(reductions)
        # Decoder level i (1/2^i of the input) concatenates the encoder feature of stride 2^i.
        self.skip_at_level = {r.bit_length() - 1: index for index, r in enumerate(self.reductions[:-1])}

        convs: dict[str, nn.Module] = {}
        for i in range(NUM_LEVELS - 1, -1, -1):
            in_ch = self.num_ch_enc[-1] if i == NUM_LEVELS - 1 else self.num_ch_dec[i + 1]
            convs[f"upconv_{i}_0"] = ConvBlock(in_ch, self.num_ch_dec[i])
            in_ch = self.num_ch_dec[i]
            if use_skips and i in self.skip_at_level:
                in_ch += self.num_ch_enc[self.skip_at_level[i]]
            convs[f"upconv_{i}_1"] = ConvBlock(in_ch, self.num_ch_dec[i])
        for s in self.scales:
            convs[f"dispconv_{s}"] = Conv3x3(self.num_ch_dec[s], num_output_channels)
        self.convs = nn.ModuleDict(convs)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        """Decode encoder features into disparities.

        Args:
            features: one tensor per encoder level; feature i is B x num_ch_enc[i] x
                H/reductions[i] x W/reductions[i].

        Returns:
            A new dict {("disp", s): B x C x H/2^s x W/2^s in (0, 1)} for each s in ``scales``.
        """
        if len(features) != len(self.num_ch_enc):
            raise ValueError(f"DepthDecoder expects {len(self.num_ch_enc)} features, got {len(features)}")
        outputs: dict[tuple[str, int], torch.Tensor] = {}
        x = features[-1]
        for i in range(NUM_LEVELS - 1, -1, -1):
            x = self.convs[f"upconv_{i}_0"](x)
            parts = [upsample(x)]
            if self.use_skips and i in self.skip_at_level:
                parts.append(features[self.skip_at_level[i]])
            x = self.convs[f"upconv_{i}_1"](torch.cat(parts, dim=1))
            if i in self.scales:
                outputs[("disp", i)] = torch.sigmoid(self.convs[f"dispconv_{i}"](x))
        return outputs
