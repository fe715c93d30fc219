"""Pose decoder: relative camera motions (axis-angle, translation) from encoder features."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# Output scaling of every pose head: a freshly initialised net then predicts rotations and
# translations of order 0.01, i.e. near-identity motion, so the first warps stay close to the
# input images and the photometric loss gives useful gradients from the start.
POSE_SCALE = 0.01

# Six numbers per transform: axis-angle rotation (3) then translation (3).
POSE_PARAMS = 6

# Channels each input's last feature is squeezed to, and the width of the pose convolutions.
SQUEEZE_CH = 256


class PoseDecoder(nn.Module):
    """Predicts N relative poses from the coarsest feature of one or more encoder passes.

    Layers (named attributes): ``squeeze`` 1x1 conv C_enc -> 256 + ReLU, applied to each input
    and concatenated; ``pose0`` 3x3 conv (256 * num_input_features) -> 256 + ReLU; ``pose1``
    3x3 conv 256 -> 256 + ReLU; ``pose2`` 1x1 conv 256 -> 6N. The result is averaged over
    H and W and scaled by ``POSE_SCALE``.

    Args:
        num_ch_enc: channels of the encoder features; only the last entry is used.
        num_input_features: how many feature lists ``forward`` receives (1 when one encoder
            pass sees the stacked frames; the frame count when each frame is encoded alone).
        num_frames_to_predict_for: N, the number of transforms predicted. Defaults to
            ``num_input_features - 1``.
        stride: stride of ``pose0`` and ``pose1``.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        num_input_features: int,
        num_frames_to_predict_for: int | None = None,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if num_frames_to_predict_for is None:
            num_frames_to_predict_for = num_input_features - 1
        if num_input_features < 1 or num_frames_to_predict_for < 1:
            raise ValueError(
                "PoseDecoder needs num_input_features >= 1 and num_frames_to_predict_for >= 1 "
                f"(got {num_input_features} and {num_frames_to_predict_for})"
            )
        self.num_ch_enc = list(num_ch_enc)
        self.num_input_features = num_input_features
        self.num_frames_to_predict_for = num_frames_to_predict_for

        self.squeeze = nn.Conv2d(self.num_ch_enc[-1], SQUEEZE_CH, kernel_size=1)
        self.pose0 = nn.Conv2d(
            num_input_features * SQUEEZE_CH, SQUEEZE_CH, kernel_size=3, stride=stride, padding=1
        )
        self.pose1 = nn.Conv2d(SQUEEZE_CH, SQUEEZE_CH, kernel_size=3, stride=stride, padding=1)
        self.pose2 = nn.Conv2d(SQUEEZE_CH, POSE_PARAMS * num_frames_to_predict_for, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(
        self, input_features: Sequence[Sequence[torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict poses.

        Args:
            input_features: ``num_input_features`` feature lists; of each, only the last
                tensor (B x num_ch_enc[-1] x h x w) is used.

        Returns:
            (axisangle, translation), each B x N x 1 x 3 (radians; translation in the
            network's unscaled units).
        """
        if len(input_features) != self.num_input_features:
            raise ValueError(
                f"PoseDecoder built for {self.num_input_features} feature list(s), "
                f"got {len(input_features)}"
            )
        squeezed = [self.relu(self.squeeze(features[-1])) for features in input_features]
        x = self.relu(self.pose0(torch.cat(squeezed, dim=1)))
        x = self.relu(self.pose1(x))
        x = self.pose2(x)
        pose = POSE_SCALE * x.mean(dim=(2, 3)).view(-1, self.num_frames_to_predict_for, 1, 6)
        return pose[..., :3], pose[..., 3:]
