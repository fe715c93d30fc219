"""PackNet-SfM's networks: PackNet01 / PackNetSlim01 depth, its GroupNorm pose net, Euler poses.

Methods spec sections 1.1-1.3 and the PackNet pitfalls of section 5. Every submodule carries the
attribute name PackNet-SfM gives it, so a released state_dict, once its ``model.depth_net.`` or
``model.pose_net.`` prefix is stripped, loads with ``load_state_dict(strict=True)``:

- depth: ``pre_calc``, ``pack1..5``, ``conv1..5``, ``unpack5..1``, ``iconv5..1``,
  ``disp4_layer..disp1_layer``; inside them ``conv_base``/``normalize`` (GroupNorm conv),
  ``conv``/``conv3d`` (packing layers), ``conv1``/``conv2``/``conv3`` (residual convs; ``conv3``
  becomes ``conv3.0`` when dropout is on), ``conv1`` (inverse-depth heads);
- pose: ``conv1..conv7`` (each Conv2d ``.0``, GroupNorm ``.1``, ReLU), ``pose_pred``.

Only modules with parameters matter for the keys; parameter-free ones (padding, upsampling) are
plain function calls here.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .pose_decoder import POSE_PARAMS, POSE_SCALE

# Every normalisation in PackNet01, PackNetSlim01 and PackNet's PoseNet is GroupNorm with 16
# groups, so every channel count in them is a multiple of 16.
GROUP_NORM_GROUPS = 16

# Packing folds each 2x2 pixel block into channels; unpacking (pixel shuffle) unfolds it.
PACK_RATIO = 2

# The inverse-depth heads divide a sigmoid by this, so inverse depth lies in (0, 1/MIN_DEPTH) =
# (0, 2) 1/m and depth is above 0.5 m with no upper cap (spec 1.1).
MIN_DEPTH = 0.5

# Depth outputs: scale s is at 1/2^s of the input resolution (PackNet's disp1..disp4).
OUTPUT_SCALES = (0, 1, 2, 3)

# Five packings halve the resolution five times, so input sides must divide by 2^5.
INPUT_MULTIPLE = PACK_RATIO ** 5

_RGB_CHANNELS = 3

# Per-stage numbers shared by PackNet01 and PackNetSlim01 (spec 1.2): residual convs in conv2..5,
# kernels of pack1..5; unpack and iconv kernels are all 3; conv1 has kernel 7, pre_calc 5.
RESIDUAL_CONVS_PER_STAGE = (2, 2, 3, 3)
PACK_KERNELS = (5, 3, 3, 3, 3)
DECODER_KERNEL = 3
PRE_CALC_KERNEL = 5
CONV1_KERNEL = 7

# PackNet's pose net: (output channels, kernel) of its seven stride-2 GroupNorm convolutions.
PACKNET_POSE_LAYERS = ((16, 7), (32, 5), (64, 3), (128, 3), (256, 3), (256, 3), (256, 3))


def packing(x: torch.Tensor, ratio: int = PACK_RATIO) -> torch.Tensor:
    """Space-to-depth: fold each ratio x ratio pixel block into channels.

    Output channel ``c * ratio**2 + dy * ratio + dx`` at (i, j) holds input channel c at
    (ratio * i + dy, ratio * j + dx). That is exactly the order ``F.pixel_shuffle`` reads, so
    ``F.pixel_shuffle(packing(x), ratio)`` returns x (and the order equals ``F.pixel_unshuffle``).

    Args:
        x: B x C x H x W, H and W multiples of ratio.
        ratio: block side r.

    Returns:
        B x (r^2 C) x H/r x W/r.
    """
    b, c, h, w = x.shape
    if h % ratio or w % ratio:
        raise ValueError(f"packing needs H and W divisible by {ratio} (got {h} x {w})")
    # b, c, i, dy, j, dx -> b, c, dy, dx, i, j: c outermost, then dy, then dx.
    blocks = x.reshape(b, c, h // ratio, ratio, w // ratio, ratio)
    return blocks.permute(0, 1, 3, 5, 2, 4).reshape(b, c * ratio * ratio, h // ratio, w // ratio)


def _stack_3d_features(x: torch.Tensor, conv3d: nn.Conv3d) -> torch.Tensor:
    """Conv3d over the channel axis as depth, its d feature maps then flattened as the outer axis.

    Args:
        x: B x C x H x W.
        conv3d: Conv3d(1 -> d, 3x3x3, padding 1).

    Returns:
        B x (d C) x H x W; channels [k C, (k + 1) C) are 3-D feature map k (spec pitfall 2).
    """
    volume = conv3d(x.unsqueeze(1))  # B x d x C x H x W
    b, d, c, h, w = volume.shape
    return volume.reshape(b, d * c, h, w)


class GroupNormConv2d(nn.Module):
    """PackNet's ``Conv2D``: zero-padded k x k convolution (stride 1, bias), GroupNorm(16), ELU.

    Zero padding of k // 2 keeps the spatial size (all kernels here are odd).

    Args:
        in_channels: C_in.
        out_channels: C_out, a multiple of 16.
        kernel_size: k, odd.

    Attributes (checkpoint names): ``conv_base`` (Conv2d), ``normalize`` (GroupNorm).

    Shapes:
        B x C_in x H x W -> B x C_out x H x W.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv_base = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.normalize = nn.GroupNorm(GROUP_NORM_GROUPS, out_channels)
        self.activ = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activ(self.normalize(self.conv_base(x)))


class ResidualConv(nn.Module):
    """PackNet's residual unit: two GroupNorm convs plus a 1x1 shortcut, then GroupNorm + ELU.

    output = ELU(GroupNorm16(conv2(conv1(x)) + conv3(x))).

    Args:
        in_channels: C_in.
        out_channels: C_out, a multiple of 16.
        dropout: Dropout2d probability on the shortcut; 0 or None for none. PackNet wraps the
            shortcut in a Sequential only when dropout is truthy, which renames its checkpoint
            keys from ``conv3.*`` to ``conv3.0.*``; this class does the same.

    Attributes (checkpoint names): ``conv1``, ``conv2`` (GroupNormConv2d, k 3), ``conv3`` (1x1
    Conv2d, or Sequential(Conv2d, Dropout2d)), ``normalize`` (GroupNorm).

    Shapes:
        B x C_in x H x W -> B x C_out x H x W.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float | None = 0.0) -> None:
        super().__init__()
        self.conv1 = GroupNormConv2d(in_channels, out_channels, 3)
        self.conv2 = GroupNormConv2d(out_channels, out_channels, 3)
        shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv3 = nn.Sequential(shortcut, nn.Dropout2d(dropout)) if dropout else shortcut
        self.normalize = nn.GroupNorm(GROUP_NORM_GROUPS, out_channels)
        self.activ = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activ(self.normalize(self.conv2(self.conv1(x)) + self.conv3(x)))


def residual_block(
    in_channels: int, out_channels: int, num_convs: int, dropout: float | None = 0.0
) -> nn.Sequential:
    """PackNet's ``ResidualBlock``: ResidualConv(in -> out), then num_convs - 1 of (out -> out).

    Checkpoint names are the Sequential's indices: ``0.conv1...``, ``1.conv1...``.
    """
    convs = [ResidualConv(in_channels, out_channels, dropout)]
    convs += [ResidualConv(out_channels, out_channels, dropout) for _ in range(num_convs - 1)]
    return nn.Sequential(*convs)


class InvDepthHead(nn.Module):
    """PackNet's ``InvDepth``: zero-padded 3x3 conv to one channel, sigmoid, divided by min_depth.

    Args:
        in_channels: C_in.
        min_depth: smallest representable depth in metres; inverse depth is in (0, 1/min_depth).

    Attributes (checkpoint names): ``conv1`` (Conv2d).

    Shapes:
        B x C_in x H x W -> B x 1 x H x W, inverse depth in 1/m.
    """

    def __init__(self, in_channels: int, min_depth: float = MIN_DEPTH) -> None:
        super().__init__()
        self.min_depth = min_depth
        self.conv1 = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv1(x)) / self.min_depth


class PackLayerConv3d(nn.Module):
    """Packing block: space-to-depth, Conv3d(1 -> d) over channels, GroupNorm conv back to C.

    Halves the resolution without discarding any pixel (unlike striding or pooling): the 2x2
    block becomes 4C channels, the 3-D convolution mixes neighbouring channels and pixels into d
    feature maps (stacked with d outermost), and a k x k conv compresses d 4C channels to C.

    Args:
        channels: C, in and out.
        kernel_size: k of the compressing conv.
        num_3d_features: d (8 in PackNet01, 4 in PackNetSlim01).

    Attributes (checkpoint names): ``conv`` (GroupNormConv2d d 4C -> C), ``conv3d``.

    Shapes:
        B x C x H x W -> B x C x H/2 x W/2.
    """

    def __init__(self, channels: int, kernel_size: int, num_3d_features: int = 8) -> None:
        super().__init__()
        packed = channels * PACK_RATIO ** 2
        self.conv = GroupNormConv2d(packed * num_3d_features, channels, kernel_size)
        self.conv3d = nn.Conv3d(1, num_3d_features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_stack_3d_features(packing(x), self.conv3d))


class UnpackLayerConv3d(nn.Module):
    """Unpacking block: GroupNorm conv to 4C_out/d, Conv3d(1 -> d), pixel shuffle to 2x size.

    Args:
        in_channels: C_in.
        out_channels: C_out; 4 C_out must be divisible by d, and 4 C_out / d by 16.
        kernel_size: k of the first conv.
        num_3d_features: d (8 in PackNet01, 4 in PackNetSlim01).

    Attributes (checkpoint names): ``conv`` (GroupNormConv2d C_in -> 4 C_out / d), ``conv3d``.

    Shapes:
        B x C_in x H x W -> B x C_out x 2H x 2W.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, num_3d_features: int = 8
    ) -> None:
        super().__init__()
        unpacked = out_channels * PACK_RATIO ** 2
        if unpacked % num_3d_features:
            raise ValueError(f"UnpackLayerConv3d: 4 x out_channels = {unpacked} is not divisible "
                             f"by num_3d_features = {num_3d_features}")
        self.conv = GroupNormConv2d(in_channels, unpacked // num_3d_features, kernel_size)
        self.conv3d = nn.Conv3d(1, num_3d_features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(_stack_3d_features(self.conv(x), self.conv3d), PACK_RATIO)


def _init_conv_weights(module: nn.Module) -> None:
    """PackNet's init: Xavier-uniform weights and zero biases for every Conv2d and Conv3d."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_image(image: torch.Tensor, owner: str) -> None:
    if image.dim() != 4 or image.shape[1] != _RGB_CHANNELS:
        raise ValueError(f"{owner} expects B x 3 x H x W RGB images, got {tuple(image.shape)}")


class PackNet(nn.Module):
    """PackNet-SfM's packing encoder-decoder ("01", CVPR 2020), parametrised by its widths.

    Use ``PackNet01`` or ``PackNetSlim01``; this base holds the shared layout (spec 1.2):

    - ``pre_calc`` GroupNormConv2d 3 -> ni (k 5), output = skip 1;
    - ``conv1`` GroupNormConv2d ni -> n1 (k 7); for i = 1..5 ``pack{i}`` (PackLayerConv3d n_i,
      kernels 5, 3, 3, 3, 3) follows ``conv{i}``, and its output feeds ``conv{i+1}``
      (residual blocks n_i -> n_{i+1} of 2, 2, 3, 3 convs) and is skip i + 1 (i <= 4);
    - for levels 5..1: ``unpack{l}`` (UnpackLayerConv3d), fusion with skip l, ``iconv{l}``
      (GroupNormConv2d -> n_l, k 3); levels 4..1 end in ``disp{l}_layer`` (InvDepthHead), whose
      output, nearest-upsampled x2, is also concatenated into the next finer fusion.

    Fusion: version "?A" concatenates (unpacked, skip, upsampled inverse depth) (every shipped
    PackNet config uses "1A"); "?B" adds the skip to the unpacked tensor and then concatenates
    the upsampled inverse depth. The first character of ``version`` is unused, as in PackNet.

    The input is RGB in [0, 1] without mean/std normalisation (pitfall 3).

    Args:
        stem_channels: ni, channels of pre_calc (skip 1).
        stage_channels: n1..n5.
        num_3d_features: d of every packing and unpacking block.
        version: two characters, the second "A" (concatenation) or "B" (addition).
        dropout: Dropout2d probability on every residual shortcut; 0 or None for none
            (PackNet's configs default to 0.0).

    Attributes:
        output_kind: "inv_depth": outputs are inverse depths in 1/m, not sigmoid disparities.
        min_depth: 0.5 m, the depth at the upper inverse-depth bound 2 1/m.
    """

    output_kind = "inv_depth"
    min_depth = MIN_DEPTH

    def __init__(
        self,
        stem_channels: int,
        stage_channels: Sequence[int],
        num_3d_features: int,
        version: str = "1A",
        dropout: float | None = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(version, str) or len(version) != 2 or version[1] not in "AB":
            raise ValueError(f"PackNet version must be two characters ending in A (concatenation, "
                             f"as in PackNet's configs: '1A') or B (addition); got {version!r}")
        if len(stage_channels) != 5:
            raise ValueError(f"PackNet needs 5 stage widths n1..n5, got {list(stage_channels)}")
        self.version = version
        self.concat_skips = version[1] == "A"
        self.dropout = dropout or 0.0
        ni = stem_channels
        n = (None, *stage_channels)  # n[l] for levels 1..5
        # Channels of the skip fused at level l: pre_calc's output, then pack1..4's outputs.
        skip_channels = (None, ni, n[1], n[2], n[3], n[4])
        # Levels 1..3 also receive the coarser level's upsampled inverse depth (1 channel).
        disp_channels = (None, 1, 1, 1, 0, 0)
        if self.concat_skips:
            unpack_out = n
            iconv_in = [None] + [n[l] + skip_channels[l] + disp_channels[l] for l in range(1, 6)]
        else:
            # Addition halves the unpacked width of levels 3..5 so that it matches the skip.
            unpack_out = (None, n[1], n[2], n[3] // 2, n[4] // 2, n[5] // 2)
            mismatched = [l for l in range(1, 6) if unpack_out[l] != skip_channels[l]]
            if mismatched:
                raise ValueError(f"PackNet version {version!r} adds skips, but with widths "
                                 f"ni={ni}, n={list(stage_channels)} the unpacked and skip "
                                 f"channels differ at levels {mismatched}: use version '1A'")
            iconv_in = [None] + [unpack_out[l] + disp_channels[l] for l in range(1, 6)]
        # Decoder input of unpack{l}: pack5's output at level 5, iconv{l+1}'s output below.
        unpack_in = (None, n[2], n[3], n[4], n[5], n[5])

        # Registration order follows PackNet's constructor, so state_dict keys come out in the
        # same order as in its checkpoints.
        self.pre_calc = GroupNormConv2d(_RGB_CHANNELS, ni, PRE_CALC_KERNEL)
        for level in range(1, 6):
            setattr(self, f"pack{level}",
                    PackLayerConv3d(n[level], PACK_KERNELS[level - 1], num_3d_features))
        self.conv1 = GroupNormConv2d(ni, n[1], CONV1_KERNEL)
        for level in range(2, 6):
            setattr(self, f"conv{level}",
                    residual_block(n[level - 1], n[level], RESIDUAL_CONVS_PER_STAGE[level - 2],
                                   dropout))
        for level in range(5, 0, -1):
            setattr(self, f"unpack{level}",
                    UnpackLayerConv3d(unpack_in[level], unpack_out[level], DECODER_KERNEL,
                                      num_3d_features))
        for level in range(5, 0, -1):
            setattr(self, f"iconv{level}",
                    GroupNormConv2d(iconv_in[level], n[level], DECODER_KERNEL))
        for level in range(4, 0, -1):
            setattr(self, f"disp{level}_layer", InvDepthHead(n[level]))
        _init_conv_weights(self)

    def forward(self, image: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
        """Predict multi-scale inverse depth.

        Unlike PackNet, which returns only the finest map in eval mode, all four scales are
        returned in both modes (the coarse heads are a negligible cost).

        Args:
            image: B x 3 x H x W, RGB in [0, 1], not normalised; H and W multiples of 32.

        Returns:
            {("inv_depth", s): B x 1 x H/2^s x W/2^s} for s = 0..3, inverse depth in 1/m, in
            (0, 1/min_depth) = (0, 2).
        """
        _check_image(image, type(self).__name__)
        h, w = image.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(f"{type(self).__name__} needs H and W divisible by {INPUT_MULTIPLE} "
                             f"(five 2x packings), got {h} x {w}: resize the input, e.g. "
                             f"--height 192 --width 640")
        skips = [self.pre_calc(image)]  # skips[l - 1] is fused at level l
        features = skips[0]
        for level in range(1, 6):
            features = getattr(self, f"pack{level}")(getattr(self, f"conv{level}")(features))
            skips.append(features)
        skips.pop()  # pack5's output is the bottleneck, not a skip

        outputs: dict[tuple[str, int], torch.Tensor] = {}
        coarser_inv_depth = None
        for level in range(5, 0, -1):
            unpacked = getattr(self, f"unpack{level}")(features)
            skip = skips[level - 1]
            parts = [unpacked, skip] if self.concat_skips else [unpacked + skip]
            if coarser_inv_depth is not None:
                parts.append(F.interpolate(coarser_inv_depth, scale_factor=2, mode="nearest"))
            features = getattr(self, f"iconv{level}")(torch.cat(parts, dim=1))
            if level <= 4:
                coarser_inv_depth = getattr(self, f"disp{level}_layer")(features)
                outputs[("inv_depth", level - 1)] = coarser_inv_depth
        return {("inv_depth", s): outputs[("inv_depth", s)] for s in OUTPUT_SCALES}


class PackNet01(PackNet):
    """PackNet01 (PN ``networks/depth/PackNet01.py``): ni 64, n 64, 64, 128, 256, 512, d 8.

    128,294,020 parameters for version "1A", 124,164,580 for "1B" (spec 1.2).
    See ``PackNet`` for the layout, input and outputs.
    """

    def __init__(self, version: str = "1A", dropout: float | None = 0.0) -> None:
        super().__init__(64, (64, 64, 128, 256, 512), 8, version=version, dropout=dropout)


class PackNetSlim01(PackNet):
    """PackNetSlim01 (PN ``networks/depth/PackNetSlim01.py``): ni 32, n 32, 64, 128, 256, 512, d 4.

    76,997,796 parameters (version "1A", spec 1.2). Version "B" is refused: its skips cannot be
    added at these widths (PackNet's own class would fail in forward at level 2).
    """

    def __init__(self, version: str = "1A", dropout: float | None = 0.0) -> None:
        super().__init__(32, (32, 64, 128, 256, 512), 4, version=version, dropout=dropout)


def _conv_gn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Stride-2 conv (padding (k - 1) / 2, bias), GroupNorm(16), ReLU; keys ``0.*`` and ``1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=2, padding=(kernel_size - 1) // 2),
        nn.GroupNorm(GROUP_NORM_GROUPS, out_channels),
        nn.ReLU(inplace=True),
    )


class PackNetPoseNet(nn.Module):
    """PackNet-SfM's ``PoseNet``: 6-DoF poses of the context frames from raw stacked pixels.

    Target and contexts are concatenated on channels (target first), then seven stride-2
    GroupNorm + ReLU convolutions (channels 16, 32, 64, 128, 256, 256, 256; kernels 7, 5, 3, ...),
    a 1x1 conv to 6 per context, the spatial mean, times 0.01 (``POSE_SCALE``: an untrained net
    then predicts near-identity motion). 1,592,684 parameters for two contexts (spec 1.3).

    Args:
        num_context_frames: n_ref, the number of context images (PackNet's ``nb_ref_imgs``).

    Attributes (checkpoint names): ``conv1`` .. ``conv7`` (Sequential: ``.0`` Conv2d, ``.1``
    GroupNorm), ``pose_pred`` (1x1 Conv2d 256 -> 6 n_ref).
    """

    def __init__(self, num_context_frames: int = 2) -> None:
        super().__init__()
        if num_context_frames < 1:
            raise ValueError(f"PackNetPoseNet needs at least one context frame "
                             f"(got {num_context_frames})")
        self.num_context_frames = num_context_frames
        in_channels = _RGB_CHANNELS * (1 + num_context_frames)
        for i, (out_channels, kernel) in enumerate(PACKNET_POSE_LAYERS, start=1):
            setattr(self, f"conv{i}", _conv_gn_relu(in_channels, out_channels, kernel))
            in_channels = out_channels
        self.pose_pred = nn.Conv2d(in_channels, POSE_PARAMS * num_context_frames, kernel_size=1)
        _init_conv_weights(self)

    def forward(self, target: torch.Tensor, contexts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Predict the pose of every context frame relative to the target.

        Args:
            target: B x 3 x H x W, RGB in [0, 1], not normalised.
            contexts: n_ref tensors shaped like target, in the order the poses come out.

        Returns:
            B x n_ref x 6, per context [tx, ty, tz, rx, ry, rz]: translation (metres up to the
            unknown scale) then Euler angles in radians, already multiplied by 0.01. Turn a
            vector into the 4 x 4 matrix PackNet warps with by ``euler_pose_to_matrix``.
        """
        if len(contexts) != self.num_context_frames:
            raise ValueError(f"PackNetPoseNet was built for {self.num_context_frames} context "
                             f"frames, got {len(contexts)}")
        _check_image(target, "PackNetPoseNet")
        for context in contexts:
            if context.shape != target.shape:
                raise ValueError(f"PackNetPoseNet: context shape {tuple(context.shape)} differs "
                                 f"from target shape {tuple(target.shape)}")
        x = torch.cat([target, *contexts], dim=1)
        for i in range(1, len(PACKNET_POSE_LAYERS) + 1):
            x = getattr(self, f"conv{i}")(x)
        pose = self.pose_pred(x).mean(dim=(2, 3))
        return POSE_SCALE * pose.view(-1, self.num_context_frames, POSE_PARAMS)


class PackNetStackedPose(PackNetPoseNet):
    """``PackNetPoseNet`` behind the toolkit's pose interface: frames stacked, angles and translations apart.

    The same modules and checkpoint names; ``forward`` takes the frames already concatenated on
    channels (target first, as ``--pose_model_input all`` stacks ``--frame_ids 0 -1 1``) and
    returns what `networks.PoseNetwork` returns, with Euler angles where Monodepth2's networks
    give axis-angles (``parametrisation = "euler"``; `model.pose_matrix` reads it).
    """

    parametrisation = "euler"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """Args: images B x 3 (1 + n_ref) x H x W. Returns (euler, translation), each B x n_ref x 1 x 3."""
        frames = images.split(_RGB_CHANNELS, dim=1)
        pose = super().forward(frames[0], frames[1:])
        return pose[:, :, None, 3:], pose[:, :, None, :3]


def _rotation_about_axis(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """Right-handed rotation by ``angle`` (B, radians) about coordinate axis 0 (x), 1 (y) or 2 (z).

    Returns:
        B x 3 x 3. Built with stack (no in-place writes) so gradients reach the angle.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    if axis == 0:
        rows = [one, zero, zero, zero, cos, -sin, zero, sin, cos]
    elif axis == 1:
        rows = [cos, zero, sin, zero, one, zero, -sin, zero, cos]
    else:
        rows = [cos, -sin, zero, sin, cos, zero, zero, zero, one]
    return torch.stack(rows, dim=-1).view(-1, 3, 3)


def euler_pose_to_matrix(vec: torch.Tensor) -> torch.Tensor:
    """PackNet's pose vector to a 4 x 4 rigid transform (PN ``geometry/pose_utils.py``, 'euler').

    R = Rx(rx) @ Ry(ry) @ Rz(rz), each a right-handed rotation about the camera axis (x right,
    y down, z forward), so a point is rotated about z first, then y, then x; the translation is
    copied as is (not rotated). PackNet uses the result as the context camera's Tcw: it maps a
    point in the target camera's frame into the context camera's frame (spec 1.3).

    Args:
        vec: B x 6, [tx, ty, tz, rx, ry, rz] (translation, then Euler angles in radians), the
            per-context output of ``PackNetPoseNet``.

    Returns:
        B x 4 x 4, [[R, t], [0, 0, 0, 1]], on vec's device and dtype.
    """
    if vec.dim() != 2 or vec.shape[1] != 6:
        raise ValueError(f"euler_pose_to_matrix expects B x 6 [tx, ty, tz, rx, ry, rz], "
                         f"got {tuple(vec.shape)}")
    rotation = (_rotation_about_axis(vec[:, 3], 0)
                @ _rotation_about_axis(vec[:, 4], 1)
                @ _rotation_about_axis(vec[:, 5], 2))
    top = torch.cat([rotation, vec[:, :3].unsqueeze(-1)], dim=2)  # B x 3 x 4
    bottom = torch.zeros_like(top[:, :1])  # B x 1 x 4
    bottom[:, :, 3] = 1.0
    return torch.cat([top, bottom], dim=1)
