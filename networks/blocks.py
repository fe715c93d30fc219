"""Small convolutional building blocks shared by the depth decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Every decoder level undoes exactly one stride-2 step of the encoder, so features are
# upsampled by 2 to line up with the skip connection from the next-finer encoder level.
UPSAMPLE_FACTOR = 2.0

# One pixel of padding keeps a 3x3 convolution's output the size of its input.
_PAD_3X3 = 1


class Conv3x3(nn.Module):
    """Padded 3x3 convolution (stride 1, with bias) that keeps the spatial size.

    Reflection padding is the default because zero padding darkens the image border, and a
    depth decoder turns that into spurious near/far edges along the frame.

    Args:
        in_ch: input channels C_in.
        out_ch: output channels C_out.
        use_refl: reflection padding if True, zero padding otherwise.

    Shapes:
        input B x C_in x H x W -> output B x C_out x H x W.
    """

    def __init__(self, in_ch: int, out_ch: int, use_refl: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(_PAD_3X3) if use_refl else nn.ZeroPad2d(_PAD_3X3)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Reflection-padded 3x3 convolution followed by ELU (Monodepth2's decoder block).

    ELU rather than ReLU keeps a non-zero gradient for negative pre-activations, so decoder
    units cannot die early in self-supervised training.

    Args:
        in_ch: input channels C_in.
        out_ch: output channels C_out.

    Shapes:
        input B x C_in x H x W -> output B x C_out x H x W.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = Conv3x3(in_ch, out_ch)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour upsampling by 2 in both spatial dimensions.

    Args:
        x: B x C x H x W.

    Returns:
        B x C x 2H x 2W, each input pixel repeated in a 2x2 block.
    """
    # align_corners is only defined for the (bi)linear modes; None is the value nearest accepts.
    return F.interpolate(x, scale_factor=UPSAMPLE_FACTOR, mode="nearest", align_corners=None)
