"""Monodepth2's PoseCNN: a small stand-alone pose network on channel-stacked frames."""

from __future__ import annotations

import torch
from torch import nn

from .pose_decoder import POSE_PARAMS, POSE_SCALE

# (output channels, kernel size) of the seven stride-2 convolutions; input size shrinks by
# 2^7 = 128, after which the mean over the remaining grid pools the motion estimate.
POSE_CNN_LAYERS = ((16, 7), (32, 5), (64, 3), (128, 3), (256, 3), (256, 3), (256, 3))
_STRIDE = 2
_RGB_CHANNELS = 3


class PoseCNN(nn.Module):
    """Predicts the poses of frames 1..n-1 of a stack of n frames, from raw pixels.

    The input is used as it is, RGB in [0, 1], without the encoders' (x - 0.45) / 0.225
    normalisation: Monodepth2 feeds PoseCNN raw images, the network has no BatchNorm and no
    pretrained weights whose input statistics it would have to match, and keeping the raw
    input reproduces the reference's PoseCNN results.

    Layers: ``convs`` ("conv0" .. "conv6") each a stride-2 conv (padding k // 2) + ReLU, then
    ``pose_conv`` 1x1 256 -> 6(n-1); mean over H, W; times ``POSE_SCALE``.

    Args:
        num_input_frames: n >= 2, the number of RGB frames stacked on the channel axis.
    """

    def __init__(self, num_input_frames: int) -> None:
        super().__init__()
        if num_input_frames < 2:
            raise ValueError(f"PoseCNN needs at least 2 input frames (got {num_input_frames})")
        self.num_input_frames = num_input_frames
        self.num_frames_to_predict_for = num_input_frames - 1

        convs: dict[str, nn.Module] = {}
        in_ch = _RGB_CHANNELS * num_input_frames
        for i, (out_ch, k) in enumerate(POSE_CNN_LAYERS):
            convs[f"conv{i}"] = nn.Conv2d(in_ch, out_ch, k, stride=_STRIDE, padding=k // 2)
            in_ch = out_ch
        self.convs = nn.ModuleDict(convs)
        self.pose_conv = nn.Conv2d(in_ch, POSE_PARAMS * self.num_frames_to_predict_for, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict poses.

        Args:
            images: B x 3n x H x W, n frames in temporal order, RGB in [0, 1].

        Returns:
            (axisangle, translation), each B x (n-1) x 1 x 3.
        """
        expected = _RGB_CHANNELS * self.num_input_frames
        if images.dim() != 4 or images.shape[1] != expected:
            raise ValueError(
                f"PoseCNN built for {self.num_input_frames} frames expects B x {expected} x H x W "
                f"input, got {tuple(images.shape)}"
            )
        x = images
        for conv in self.convs.values():
            x = self.relu(conv(x))
        x = self.pose_conv(x)
        pose = POSE_SCALE * x.mean(dim=(2, 3)).view(-1, self.num_frames_to_predict_for, 1, 6)
        return pose[..., :3], pose[..., 3:]
