"""FeatDepth's networks (Shu et al., ECCV 2020; methods spec 2.1-2.3, 2.9).

Two networks live here:

- ``FeatureNet``: the single-image auto-encoder of stage 1, whose encoder (``FeatureEncoder``,
  a ResNet-50 fed *unnormalised* images) supplies the features of the feature-metric loss;
- ``FeatDepthDecoder``: the RefineNet-style depth decoder (chained residual pooling) that sits
  on our ``ResnetEncoder(50)``. Its finest disparity is at half the input resolution.

FeatDepth's pose network is Monodepth2's, so it is not repeated here: a ResNet-18
``ResnetEncoder`` taking the two frames stacked on channels (conv1 tiled and halved, input
normalised) and a ``PoseDecoder`` with ``num_input_features=1, num_frames_to_predict_for=1``,
i.e. ``networks.build_pose_network("separate_resnet", 18, 2, num_frames_to_predict_for=1)``.
The only architectural difference from our pairs default is the single predicted transform
(6 outputs, not 12); the 192 x 640 resize of the pose inputs is the caller's job.

Checkpoint keys (methods spec 2.9). Submodule names follow FeatDepth's, so its mmcv
``state_dict`` maps onto ours by renaming a prefix (FeatDepth key -> key in the state dict
of our module):

- ``Encoder.<k>`` -> ``FeatureNet``'s ``encoder.<k>``, except ``Encoder.encoder.fc.weight``
  and ``.fc.bias`` (the unused classification head, which we do not build): drop those two;
- ``Decoder.<k>`` -> ``FeatureNet``'s ``decoder.<k>``, every key;
- ``extractor.<k>`` (mono_fm files) -> ``FeatureEncoder``'s ``<k>``, minus ``encoder.fc.*``;
- ``DepthEncoder.<k>`` -> ``ResnetEncoder(50)``'s ``<k>``, minus ``encoder.fc.*``;
- ``DepthDecoder.<k>`` -> ``FeatDepthDecoder``'s ``<k>``, every key;
- ``PoseEncoder.<k>`` -> the pose ``ResnetEncoder(18, num_input_images=2)``'s ``<k>``, minus
  ``encoder.fc.*``; ``PoseDecoder.*`` presumably has Monodepth2's ``net.0..3`` layout (not
  verified against a file).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from .blocks import Conv3x3, ConvBlock, upsample
from .resnet_encoder import load_imagenet_state_dict, resnet_features

# --------------------------------------------------------------------------------------------
# FeatureNet: the auto-encoder (methods spec 2.1)
# --------------------------------------------------------------------------------------------

# FeatDepth's extractor is a ResNet-50 in every released configuration.
FEATURE_NET_LAYERS = 50

# Channels of the encoder's five features f0..f4 (ResNet-50: stem, then layer1..layer4).
FEATURE_NUM_CH_ENC = (64, 256, 512, 1024, 2048)

# Width of decoder stage k (k = 1..5, index k - 1). Stage k works at H / 2^(k-1), so stage 1 is
# at full resolution; the widths taper as Monodepth2's decoder does to keep it cheap there.
FEATURE_NUM_CH_DEC = (16, 32, 64, 128, 256)

# Stages whose outputs get an image head; the head of stage k reconstructs scale k - 1.
RECONSTRUCTION_STAGES = (4, 3, 2, 1)

_RGB_CHANNELS = 3


class FeatureEncoder(nn.Module):
    """ResNet-50 trunk that returns five feature levels of an *unnormalised* image.

    Unlike ``ResnetEncoder`` there is no (x - 0.45) / 0.225 step: FeatDepth trains its
    auto-encoder on raw [0, 1] pixels (methods spec 5, FeatDepth pitfall 1), and released
    weights only reproduce its features on the same input.

    The classification head (``fc``, 2,049,000 parameters) is replaced by ``nn.Identity`` for
    the reason ``ResnetEncoder`` gives (every parameter gets a gradient, so DDP needs no
    ``find_unused_parameters``); FeatDepth's files carry it, and a loader drops it by name.

    Args:
        pretrained: start from torchvision's ImageNet ResNet-50 (V1, as FeatDepth's
            ``resnet50.pth``) instead of random initialisation.

    Attributes:
        encoder: the torchvision ResNet-50 (state-dict keys ``encoder.conv1.weight``, ...).
        num_ch_enc: [64, 256, 512, 1024, 2048].
    """

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        self.num_ch_enc = list(FEATURE_NUM_CH_ENC)
        self.encoder = models.resnet50(weights=None)
        self.encoder.fc = nn.Identity()
        if pretrained:
            state_dict = load_imagenet_state_dict(FEATURE_NET_LAYERS)
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
            self.encoder.load_state_dict(state_dict, strict=True)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Encode an image.

        Args:
            image: B x 3 x H x W, RGB in [0, 1], not normalised; H and W multiples of 32.

        Returns:
            [f0, f1, f2, f3, f4] with f_i of B x num_ch_enc[i] x H/2^(i+1) x W/2^(i+1):
            f0 = ReLU(BN(conv1)) 64 x H/2 (stride 2), f1 = layer1(maxpool(f0)) 256 x H/4,
            f2 = layer2 512 x H/8, f3 = layer3 1024 x H/16, f4 = layer4 2048 x H/32.
        """
        if image.dim() != 4 or image.shape[1] != _RGB_CHANNELS:
            raise ValueError(f"FeatureEncoder expects B x 3 x H x W input, got {tuple(image.shape)}")
        return resnet_features(self.encoder, image)  # unnormalised: the auto-encoder sees raw pixels


class FeatureDecoder(nn.Module):
    """FeatDepth's image decoder: five upsampling stages on f4 alone, four image heads.

    There are deliberately no skip connections: the image must be rebuilt from the coarsest
    feature, which pushes the fine features towards describing the image themselves.

    Stage k = 5..1: ``upconv{k}`` ConvBlock (c_in -> c_k), nearest x2, ``iconv{k}`` ConvBlock
    (c_k -> c_k), with c_5..c_1 = 256, 128, 64, 32, 16 and c_in = 2048 for stage 5; stage k
    outputs c_k x H/2^(k-1). Image heads ``disp4``, ``disp3``, ``disp2``, ``disp1`` (padded
    3x3 conv -> 3 channels, then a sigmoid) read stages 4..1 and give scales 3..0. The heads
    keep FeatDepth's names (``disp``) although they output images, so released keys load
    unchanged.

    Args:
        num_ch_enc: channels of the encoder features; only the last (2048) is used.
    """

    def __init__(self, num_ch_enc: Sequence[int] = FEATURE_NUM_CH_ENC) -> None:
        super().__init__()
        self.num_ch_enc = list(num_ch_enc)
        in_ch = self.num_ch_enc[-1]
        for stage in range(len(FEATURE_NUM_CH_DEC), 0, -1):
            width = FEATURE_NUM_CH_DEC[stage - 1]
            self.add_module(f"upconv{stage}", ConvBlock(in_ch, width))
            self.add_module(f"iconv{stage}", ConvBlock(width, width))
            in_ch = width
        for stage in RECONSTRUCTION_STAGES:
            self.add_module(f"disp{stage}", Conv3x3(FEATURE_NUM_CH_DEC[stage - 1], _RGB_CHANNELS))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        """Reconstruct the image at four scales.

        Args:
            features: the encoder's five features; only f4 (B x 2048 x H/32 x W/32) is read.

        Returns:
            {("reconstruction", s): B x 3 x H/2^s x W/2^s in (0, 1)} for s = 0, 1, 2, 3.
        """
        x = features[-1]
        outputs: dict[tuple[str, int], torch.Tensor] = {}
        for stage in range(len(FEATURE_NUM_CH_DEC), 0, -1):
            x = upsample(getattr(self, f"upconv{stage}")(x))
            x = getattr(self, f"iconv{stage}")(x)
            if stage in RECONSTRUCTION_STAGES:
                head = getattr(self, f"disp{stage}")
                outputs[("reconstruction", stage - 1)] = torch.sigmoid(head(x))
        return outputs


class FeatureNet(nn.Module):
    """FeatDepth's auto-encoder: ``FeatureEncoder`` + ``FeatureDecoder`` (methods spec 2.1).

    29,411,452 parameters; FeatDepth's count of 31,460,452 includes the unused fc (2,049,000).

    Args:
        pretrained: start the encoder from ImageNet weights (the decoder is always random).

    Attributes:
        encoder: ``FeatureEncoder`` (FeatDepth's ``Encoder``).
        decoder: ``FeatureDecoder`` (FeatDepth's ``Decoder``).
    """

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        self.encoder = FeatureEncoder(pretrained)
        self.decoder = FeatureDecoder(self.encoder.num_ch_enc)

    def forward(
        self, image: torch.Tensor
    ) -> tuple[list[torch.Tensor], dict[tuple[str, int], torch.Tensor]]:
        """Encode and reconstruct.

        Args:
            image: B x 3 x H x W, RGB in [0, 1] (not normalised); H, W multiples of 32.

        Returns:
            (features, reconstructions): the five encoder features (see
            ``FeatureEncoder.forward``) and {("reconstruction", s): B x 3 x H/2^s x W/2^s}.
        """
        features = self.encoder(image)
        return features, self.decoder(features)


# --------------------------------------------------------------------------------------------
# The depth decoder (methods spec 2.2)
# --------------------------------------------------------------------------------------------

# Working width of every decoder stage (RefineNet's bottleneck).
DEPTH_BOTTLENECK = 256

# The coarsest encoder feature is first reduced to twice the bottleneck; the 3x3 iconv4 then
# brings it down, so that stage sees more of the 2048 channels than a direct 1x1 -> 256 would.
DEPTH_REDUCE4_CH = 512

# Pooling stages in each chained-residual-pooling block.
CRP_STAGES = 4

# 5x5 max-pooling at stride 1 (padding 2 keeps the size): each stage widens the context by 4.
CRP_POOL_KERNEL = 5

# FeatDepth drops half of f3 and f4 during training (plain elementwise dropout).
FEATURE_DROPOUT = 0.5

# Output scales; scale s is at H/2^(s+1).
FEATDEPTH_SCALES = (0, 1, 2, 3)

# FeatDepth's depth range for ``layers.disp_to_depth`` (every configuration except EuRoC, 50 m).
FEATDEPTH_MIN_DEPTH = 0.1
FEATDEPTH_MAX_DEPTH = 100.0

_NUM_ENCODER_LEVELS = 5


class Conv1x1(nn.Module):
    """1x1 convolution without bias.

    Wrapped (rather than a bare ``nn.Conv2d``) so state-dict keys end in ``.conv.weight`` as in
    FeatDepth's files.

    Shapes:
        input B x C_in x H x W -> output B x C_out x H x W.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ChainedResidualPooling(nn.Module):
    """RefineNet's chained residual pooling: ``x + sum_i p_i`` with ``p_i = conv_i(pool(p_{i-1}))``.

    ``p_0 = x``; each stage max-pools the *previous stage's* output (5x5, stride 1), applies a
    1x1 conv without bias and adds the result to the running sum. Repeated pooling gathers
    context from growing windows while the residual sum keeps the original signal.
    The 1x1 convs are registered as ``1_pointwise`` .. ``4_pointwise``, FeatDepth's names.

    Args:
        channels: C, kept through the block.
        stages: number of pooling stages.

    Shapes:
        input B x C x H x W -> output B x C x H x W.
    """

    def __init__(self, channels: int, stages: int = CRP_STAGES) -> None:
        super().__init__()
        self.stages = stages
        for i in range(1, stages + 1):
            self.add_module(f"{i}_pointwise", Conv1x1(channels, channels))
        self.pool = nn.MaxPool2d(CRP_POOL_KERNEL, stride=1, padding=CRP_POOL_KERNEL // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        path = x
        for i in range(1, self.stages + 1):
            path = getattr(self, f"{i}_pointwise")(self.pool(path))
            total = total + path
        return total


class FeatDepthDecoder(nn.Module):
    """FeatDepth's RefineNet-style depth decoder (methods spec 2.2).

    ``output_kind = "disp"``: outputs are sigmoid disparities; depth is
    ``layers.disp_to_depth(disp, FEATDEPTH_MIN_DEPTH, FEATDEPTH_MAX_DEPTH)[1]``.

    **Resolutions differ from Monodepth2's decoder**: the finest map is at *half* the input
    resolution. For an H x W input,

    - ("disp", 0): B x 1 x H/2 x W/2   (stage 1)
    - ("disp", 1): B x 1 x H/4 x W/4   (stage 2)
    - ("disp", 2): B x 1 x H/8 x W/8   (stage 3)
    - ("disp", 3): B x 1 x H/16 x W/16 (stage 4)

    i.e. ("disp", s) is at H/2^(s+1). FeatDepth upsamples every scale to H x W for the
    photometric loss and uses ("disp", 0) directly (with halved intrinsics) for the
    feature-metric loss.

    Stage k = 4..1 (leaky ReLU slope 0.01, "up" = nearest x2):
    ``reduce{k}`` 1x1 (no bias) f_k -> 512 (k = 4) or 256; for k < 4 concatenated with the
    previous stage's output and its disparity (256 + 256 + 1 = 513 channels); ``iconv{k}``
    3x3 -> 256; lrelu; ``crp{k}`` chained residual pooling; ``merge{k}`` 3x3; lrelu; up;
    ``disp{k}`` = sigmoid(3x3 -> 1). f3 and f4 pass through dropout (p = 0.5) in training
    mode; f0 is unused. 9,651,972 parameters for ResNet-50 features.

    Args:
        num_ch_enc: channels of the five encoder features, [64, 256, 512, 1024, 2048] for
            ``ResnetEncoder(50)``.
        scales: the scales returned, a subset of 0..3 (all are computed: each stage feeds the
            next its disparity).

    State-dict keys equal FeatDepth's ``DepthDecoder.*`` keys without the prefix
    (``crp4.0.1_pointwise.conv.weight``: each CRP block sits in a one-element Sequential there).
    """

    output_kind = "disp"

    def __init__(
        self, num_ch_enc: Sequence[int], scales: Sequence[int] = FEATDEPTH_SCALES
    ) -> None:
        super().__init__()
        if len(num_ch_enc) != _NUM_ENCODER_LEVELS:
            raise ValueError(
                f"num_ch_enc must list {_NUM_ENCODER_LEVELS} channel counts, got {list(num_ch_enc)}"
            )
        bad = [s for s in scales if s not in FEATDEPTH_SCALES]
        if bad or not scales:
            raise ValueError(
                f"--scales must be a non-empty subset of {list(FEATDEPTH_SCALES)} for the "
                f"FeatDepth decoder (got {list(scales)})"
            )
        self.num_ch_enc = list(num_ch_enc)
        self.scales = tuple(sorted(set(scales)))
        width = DEPTH_BOTTLENECK

        self.feature_dropout = nn.Dropout(p=FEATURE_DROPOUT)
        for stage in range(4, 0, -1):
            reduced = DEPTH_REDUCE4_CH if stage == 4 else width
            iconv_in = reduced if stage == 4 else width + width + 1
            self.add_module(f"reduce{stage}", Conv1x1(self.num_ch_enc[stage], reduced))
            self.add_module(f"iconv{stage}", Conv3x3(iconv_in, width))
            self.add_module(f"crp{stage}", nn.Sequential(ChainedResidualPooling(width)))
            self.add_module(f"merge{stage}", Conv3x3(width, width))
            self.add_module(f"disp{stage}", nn.Sequential(Conv3x3(width, 1), nn.Sigmoid()))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
        """Decode ResNet features into disparities.

        Args:
            features: five tensors; feature i is B x num_ch_enc[i] x H/2^(i+1) x W/2^(i+1)
                (``ResnetEncoder`` output; H and W multiples of 32).

        Returns:
            A new dict {("disp", s): B x 1 x H/2^(s+1) x W/2^(s+1), sigmoid disparity in
            (0, 1)} for each s in ``scales``.
        """
        if len(features) != _NUM_ENCODER_LEVELS:
            raise ValueError(
                f"FeatDepthDecoder expects {_NUM_ENCODER_LEVELS} features, got {len(features)}"
            )
        levels = list(features)
        levels[3] = self.feature_dropout(levels[3])
        levels[4] = self.feature_dropout(levels[4])

        outputs: dict[tuple[str, int], torch.Tensor] = {}
        previous: list[torch.Tensor] = []
        for stage in range(4, 0, -1):
            x = getattr(self, f"reduce{stage}")(levels[stage])
            x = getattr(self, f"iconv{stage}")(torch.cat([x, *previous], dim=1))
            x = getattr(self, f"crp{stage}")(F.leaky_relu(x))
            x = upsample(F.leaky_relu(getattr(self, f"merge{stage}")(x)))
            disp = getattr(self, f"disp{stage}")(x)
            if stage - 1 in self.scales:
                outputs[("disp", stage - 1)] = disp
            previous = [x, disp]
        return outputs
