"""Depth and pose networks, their plain-dict registries, and the builders the scripts use.

Registries map the names accepted on the command line to factories with one signature each:

- ``DEPTH_ENCODERS[name](num_layers, pretrained, context)`` -> encoder with ``num_ch_enc``;
  with ``context=True`` it returns a full-resolution context feature in front of its five
  features (BDEdepth, reference spec 4.3);
- ``DEPTH_DECODERS[name](num_ch_enc, scales, reductions)`` -> decoder returning
  {("disp", s): ...}; decoders listed in ``CONTEXT_DECODERS`` read the context feature;
- ``POSE_NETWORKS[name](num_layers, pretrained, num_input_frames, num_frames_to_predict_for)``
  -> ``PoseNetwork``.

The encoder contract (checked by `check_encoder_contract`, described by `encoder_feature_info`
as timm's ``feature_info`` does): ``forward(image B x 3 x H x W)`` returns a list of features,
finest first; the encoder declares ``num_ch_enc`` (channels per level) and may declare
``reductions`` (stride per level; default 2, 4, 8, 16, 32 for five levels, 4..32 for four, as a
ConvNeXt has) and ``has_context`` (a stride-1 context feature of ``num_ch_enc[0]`` channels in
front, BDEdepth). Decoders take the channels and strides, so a four-level backbone plugs into
the Monodepth2 decoder.

New backbones and decoders are added by adding entries; option parsers use
``choices=sorted(REGISTRY)``. ``DEPTH_NETWORK_COMBINATIONS`` lists the (backbone, decoder) pairs
that are supported; ``check_depth_network_choice`` turns any other into an error naming the fix.

``DEPTH_NETWORKS[name]()`` holds backbones that are whole encoder-decoders with their own
decoder (``--decoder packnet``); each declares ``output_kind`` (see `DepthNetwork`).

The depth networks (README, "Depth networks"):

- ``--backbone resnet --decoder monodepth2``: Monodepth2 (the default);
- ``--backbone resnet --decoder bdedepth``: BDEdepth-ResNet (context branch + grid decoder);
- ``--backbone hrnet --decoder bdedepth``: BDEdepth-HRNet-W18 (``--num_layers 18``);
- ``--backbone resnet --num_layers 50 --decoder featdepth``: FeatDepth's RefineNet-style decoder
  (chained residual pooling), whose finest disparity is at half the input resolution;
- ``--backbone packnet --decoder packnet`` (and ``packnet_slim``): PackNet01 / PackNetSlim01;
- ``--decoder sql`` with ``--backbone resnet --num_layers 50``, ``efficientnet_b5`` or
  ``convnext_large``: SQLdepth (its encoder-decoder and Self Query Layer, ``SQL_BACKBONES``), one
  depth map at the fused feature's resolution; built from the input size and depth range.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .bde_depth import HRNET_NUM_LAYERS, BDEResnetEncoder, GridDecoder, HRNetEncoder
from .blocks import Conv3x3, ConvBlock, upsample
from .depth_decoder import DepthDecoder
from .featdepth import FEATURE_NET_LAYERS, FeatDepthDecoder
from .packnet import PackNet01, PackNetSlim01, PackNetStackedPose
from .pose_cnn import PoseCNN
from .pose_decoder import POSE_SCALE, PoseDecoder
from .sqldepth import SQL_BACKBONES_BY_NAME, SelfQuerySettings, build_sqldepth_network
from .resnet_encoder import INPUT_MEAN, INPUT_STD, ResnetEncoder

__all__ = [
    "CONTEXT_DECODERS",
    "DEPTH_DECODERS",
    "DEPTH_ENCODERS",
    "DEPTH_NETWORK_COMBINATIONS",
    "DEPTH_NETWORKS",
    "INPUT_MEAN",
    "INPUT_STD",
    "POSE_NETWORKS",
    "POSE_SCALE",
    "BDEResnetEncoder",
    "Conv3x3",
    "ConvBlock",
    "DepthDecoder",
    "DepthNetwork",
    "GridDecoder",
    "HRNetEncoder",
    "PoseCNN",
    "PoseDecoder",
    "PoseNetwork",
    "ResnetEncoder",
    "SQL_BACKBONES",
    "SelfQuerySettings",
    "build_depth_network",
    "check_depth_network_choice",
    "check_encoder_contract",
    "depth_backbone_choices",
    "depth_decoder_choices",
    "encoder_feature_info",
    "build_pose_network",
    "upsample",
]

# Monodepth2 builds its pose decoder for 2 transforms even in pairs mode, where only the first
# is used; keeping 2 keeps checkpoints interchangeable with the reference.
PAIRS_NUM_FRAMES_TO_PREDICT_FOR = 2


class DepthNetwork(nn.Module):
    """Encoder + decoder: an image to multi-scale disparities.

    Attributes:
        encoder: maps B x 3 x H x W to a feature list.
        decoder: maps that list to {("disp", s): B x 1 x H/2^s x W/2^s}.
        output_kind: what the outputs are, and their key: "disp" (sigmoid disparity, turned into
            depth with the model's depth range), "inv_depth" (inverse depth in 1/m) or "depth"
            (metres); every depth network declares it (`model.output_to_depth` reads it).
    """

    output_kind = "disp"

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, image: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
        """Predict disparities.

        Args:
            image: B x 3 x H x W, RGB in [0, 1]; H and W multiples of 32.

        Returns:
            {("disp", s): B x 1 x H/2^s x W/2^s, sigmoid disparity in (0, 1)} per decoder scale.
        """
        return self.decoder(self.encoder(image))


class PoseNetwork(nn.Module):
    """Pose predictor for n frames stacked on the channel axis.

    Attributes:
        encoder: a ``ResnetEncoder`` taking 3n channels, or None when ``decoder`` works on
            pixels directly (PoseCNN).
        decoder: ``PoseDecoder`` (fed ``[encoder(images)]``) or ``PoseCNN`` (fed the images).
    """

    def __init__(self, encoder: nn.Module | None, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def parametrisation(self) -> str:
        """How the rotations are given: "axisangle" (Monodepth2's networks) or "euler" (PackNet's)."""
        return getattr(self.decoder, "parametrisation", "axisangle")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict relative poses.

        Args:
            images: B x 3n x H x W, n frames concatenated on channels in temporal order, RGB in
                [0, 1].

        Returns:
            (axisangle, translation), each B x N x 1 x 3.
        """
        if self.encoder is None:
            return self.decoder(images)
        return self.decoder([self.encoder(images)])


def _resnet_depth_encoder(num_layers: int, pretrained: bool, context: bool = False) -> nn.Module:
    if context:
        return BDEResnetEncoder(num_layers, pretrained)
    return ResnetEncoder(num_layers, pretrained, num_input_images=1)


def _hrnet_depth_encoder(num_layers: int, pretrained: bool, context: bool = False) -> nn.Module:
    return HRNetEncoder(num_layers, pretrained, context=context)


def _monodepth2_decoder(num_ch_enc: Sequence[int], scales: Sequence[int],
                        reductions: Sequence[int] | None = None) -> nn.Module:
    return DepthDecoder(num_ch_enc, scales=scales, reductions=reductions)


def _featdepth_decoder(num_ch_enc: Sequence[int], scales: Sequence[int],
                       reductions: Sequence[int] | None = None) -> nn.Module:
    if reductions is not None and list(reductions) != [2, 4, 8, 16, 32]:
        raise ValueError(f"the FeatDepth decoder needs five features of strides 2..32 (got {list(reductions)})")
    return FeatDepthDecoder(num_ch_enc, scales=scales)


def _bdedepth_decoder(num_ch_enc: Sequence[int], scales: Sequence[int],
                      reductions: Sequence[int] | None = None) -> nn.Module:
    if reductions is not None and list(reductions) != [2, 4, 8, 16, 32]:
        raise ValueError(f"the BDEdepth grid decoder needs five features of strides 2..32 (got {list(reductions)})")
    return GridDecoder(num_ch_enc, scales=scales)


def _separate_resnet_pose(
    num_layers: int,
    pretrained: bool,
    num_input_frames: int,
    num_frames_to_predict_for: int | None = None,
) -> PoseNetwork:
    if num_frames_to_predict_for is None:
        num_frames_to_predict_for = max(PAIRS_NUM_FRAMES_TO_PREDICT_FOR, num_input_frames - 1)
    encoder = ResnetEncoder(num_layers, pretrained, num_input_images=num_input_frames)
    decoder = PoseDecoder(
        encoder.num_ch_enc,
        num_input_features=1,
        num_frames_to_predict_for=num_frames_to_predict_for,
    )
    return PoseNetwork(encoder, decoder)


def _posecnn_pose(
    num_layers: int,
    pretrained: bool,
    num_input_frames: int,
    num_frames_to_predict_for: int | None = None,
) -> PoseNetwork:
    # PoseCNN has no backbone: num_layers and pretrained do not apply to it.
    decoder = PoseCNN(num_input_frames)
    if num_frames_to_predict_for not in (None, decoder.num_frames_to_predict_for):
        raise ValueError(
            f"posecnn always predicts num_input_frames - 1 = {decoder.num_frames_to_predict_for} "
            f"poses (asked for {num_frames_to_predict_for})"
        )
    return PoseNetwork(None, decoder)


DEPTH_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "resnet": _resnet_depth_encoder,
    "hrnet": _hrnet_depth_encoder,
}

DEPTH_DECODERS: dict[str, Callable[[Sequence[int], Sequence[int]], nn.Module]] = {
    "monodepth2": _monodepth2_decoder,
    "bdedepth": _bdedepth_decoder,
    "featdepth": _featdepth_decoder,
}

# Whole encoder-decoder networks, by --backbone; their decoder is their own (OWN_DECODER).
DEPTH_NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "packnet": PackNet01,
    "packnet_slim": PackNetSlim01,
}
OWN_DECODER = "packnet"

# SQLdepth's encoder-decoders by --backbone (--decoder sql); the ResNet is its ResNet-50 only.
SQL_DECODER = "sql"
SQL_BACKBONES = SQL_BACKBONES_BY_NAME
SQL_RESNET_LAYERS = 50

# Decoders whose first input is the encoder's full-resolution context feature.
CONTEXT_DECODERS = frozenset({"bdedepth"})

# Supported (backbone, decoder) pairs: the reference models, each pinned by a parameter-count
# test. HRNet with the Monodepth2 decoder would build, but no reference trains it.
DEPTH_NETWORK_COMBINATIONS = frozenset({
    ("resnet", "monodepth2"),
    ("resnet", "bdedepth"),
    ("hrnet", "bdedepth"),
    ("resnet", "featdepth"),
    ("packnet", OWN_DECODER),
    ("packnet_slim", OWN_DECODER),
    *((backbone, SQL_DECODER) for backbone in SQL_BACKBONES),
})


def depth_backbone_choices() -> list[str]:
    """Every --backbone: encoders and whole networks."""
    return sorted({*DEPTH_ENCODERS, *DEPTH_NETWORKS, *SQL_BACKBONES})


def depth_decoder_choices() -> list[str]:
    """Every --decoder: the registered decoders, a whole network's own and the Self Query Layer."""
    return sorted({*DEPTH_DECODERS, OWN_DECODER, SQL_DECODER})

def _packnet_pose(
    num_layers: int,
    pretrained: bool,
    num_input_frames: int,
    num_frames_to_predict_for: int | None = None,
) -> PoseNetwork:
    # PackNet's pose net works on pixels (no backbone) and predicts every context at once.
    if num_frames_to_predict_for not in (None, num_input_frames - 1):
        raise ValueError(f"the packnet pose net predicts num_input_frames - 1 = {num_input_frames - 1} poses "
                         f"(asked for {num_frames_to_predict_for})")
    return PoseNetwork(None, PackNetStackedPose(num_input_frames - 1))


POSE_NETWORKS: dict[str, Callable[..., PoseNetwork]] = {
    "separate_resnet": _separate_resnet_pose,
    "posecnn": _posecnn_pose,
    "packnet": _packnet_pose,
}


def encoder_feature_info(encoder: nn.Module) -> list[dict[str, int]]:
    """``[{"num_chs": C, "reduction": r}, ...]``: what each feature of ``encoder``'s output is.

    The context feature (``has_context``) comes first at stride 1, then one entry per level of
    ``num_ch_enc`` with its stride from ``reductions`` (default 2^(i+1) for five levels, 4..32
    for four).
    """
    channels = list(encoder.num_ch_enc)
    reductions = getattr(encoder, "reductions", None)
    if reductions is None:
        reductions = [2 ** (6 - len(channels) + i) for i in range(len(channels))]
    info = [{"num_chs": c, "reduction": r} for c, r in zip(channels, reductions)]
    if getattr(encoder, "has_context", False):
        info.insert(0, {"num_chs": channels[0], "reduction": 1})
    return info


def check_encoder_contract(encoder: nn.Module, height: int = 64, width: int = 64) -> None:
    """Run ``encoder`` on a zero image and compare each feature with `encoder_feature_info`.

    Raises:
        ValueError: naming the level whose channels or size differ from what the encoder declares.
    """
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        features = encoder(torch.zeros(1, 3, height, width))
    encoder.train(was_training)
    declared = encoder_feature_info(encoder)
    if len(features) != len(declared):
        raise ValueError(f"{type(encoder).__name__} returns {len(features)} features but declares {len(declared)}")
    for level, (feature, info) in enumerate(zip(features, declared)):
        expected = (1, info["num_chs"], height // info["reduction"], width // info["reduction"])
        if tuple(feature.shape) != expected:
            raise ValueError(f"{type(encoder).__name__} feature {level}: shape {tuple(feature.shape)}, declared "
                             f"{expected} (num_chs {info['num_chs']}, stride {info['reduction']})")


def _lookup(registry: dict[str, Callable], name: str, flag: str) -> Callable:
    if name not in registry:
        raise ValueError(f"{flag} must be one of {sorted(registry)} (got {name!r})")
    return registry[name]


def check_depth_network_choice(backbone: str, num_layers: int, decoder: str) -> None:
    """Refuse unknown names and unsupported combinations with a message naming the fix.

    Raises:
        ValueError: unknown --backbone/--decoder, an unsupported pair, or HRNet with
            --num_layers other than 18.
    """
    _lookup(dict.fromkeys(depth_backbone_choices()), backbone, "--backbone")
    _lookup(dict.fromkeys(depth_decoder_choices()), decoder, "--decoder")
    if (backbone, decoder) not in DEPTH_NETWORK_COMBINATIONS:
        supported = sorted(d for b, d in DEPTH_NETWORK_COMBINATIONS if b == backbone)
        raise ValueError(f"--backbone {backbone} does not go with --decoder {decoder}: use "
                         f"--decoder {' or '.join(supported)}")
    if decoder == SQL_DECODER and backbone == "resnet" and num_layers != SQL_RESNET_LAYERS:
        raise ValueError(f"--decoder sql with --backbone resnet is SQLdepth's ResNet-50: use --num_layers "
                         f"{SQL_RESNET_LAYERS} (got {num_layers}); --pose_num_layers sets the pose ResNet")
    if decoder == "featdepth" and num_layers != FEATURE_NET_LAYERS:
        raise ValueError(f"--decoder featdepth sits on FeatDepth's ResNet-50: use --num_layers {FEATURE_NET_LAYERS} "
                         f"(got {num_layers}); --pose_num_layers 18 keeps its ResNet-18 pose net")
    if backbone == "hrnet" and num_layers != HRNET_NUM_LAYERS:
        raise ValueError(f"--backbone hrnet is HRNet-W18: use --num_layers {HRNET_NUM_LAYERS} "
                         f"(got {num_layers}; it also sets the pose ResNet depth)")


def build_depth_network(
    backbone: str = "resnet",
    num_layers: int = 18,
    decoder: str = "monodepth2",
    scales: Sequence[int] = (0, 1, 2, 3),
    pretrained: bool = False,
    height: int = 192,
    width: int = 640,
    min_depth: float = 0.1,
    max_depth: float = 100.0,
    sql: SelfQuerySettings | None = None,
) -> nn.Module:
    """Build the depth network from registry names.

    Args:
        backbone: key of ``DEPTH_ENCODERS`` (then a `DepthNetwork`), of ``DEPTH_NETWORKS``
            (that whole network, with ``decoder`` its own) or of ``SQL_BACKBONES`` with ``decoder="sql"``.
        num_layers: backbone depth (ResNet: 18, 34, 50, 101, 152; HRNet: 18; unused by whole networks).
        decoder: key of ``DEPTH_DECODERS``, ``OWN_DECODER`` for a whole network, or "sql".
        scales: output scales of the decoder ((0,) only for "sql").
        pretrained: start the backbone from ImageNet weights.
        height, width: input size (the Self Query Layer's token count depends on it).
        min_depth, max_depth: depth range; the Self Query Layer's bins span it.
        sql: the Self Query Layer's dimensions (default: SQLdepth's ResNet-50 640 x 192 model).

    Raises:
        ValueError: unknown backbone/decoder (the message lists the choices), an unsupported
            combination, bad num_layers, or scales the network does not predict.
    """
    check_depth_network_choice(backbone, num_layers, decoder)
    if decoder == SQL_DECODER:
        if tuple(scales) != (0,):
            raise ValueError(f"--decoder sql predicts one depth map: use --num_scales 1 (got scales {list(scales)})")
        sql = sql or SelfQuerySettings()
        return build_sqldepth_network(SQL_BACKBONES[backbone], pretrained, height, width, min_depth=min_depth,
                                      max_depth=max_depth, **sql.network_kwargs())
    if backbone in DEPTH_NETWORKS:
        # Its own decoder, scales (0..3) and initialisation; no ImageNet weights exist for it.
        return DEPTH_NETWORKS[backbone]()
    make_encoder = DEPTH_ENCODERS[backbone]
    make_decoder = DEPTH_DECODERS[decoder]
    encoder = make_encoder(num_layers, pretrained, context=decoder in CONTEXT_DECODERS)
    return DepthNetwork(encoder, make_decoder(encoder.num_ch_enc, scales, getattr(encoder, "reductions", None)))


def build_pose_network(
    pose_model_type: str = "separate_resnet",
    num_layers: int = 18,
    num_input_frames: int = 2,
    pretrained: bool = False,
    num_frames_to_predict_for: int | None = None,
) -> PoseNetwork:
    """Build the pose network from a registry name.

    Args:
        pose_model_type: key of ``POSE_NETWORKS``.
        num_layers: depth of the pose ResNet (ignored by posecnn).
        num_input_frames: n, frames stacked on the channel axis (2 for pairs).
        pretrained: start the pose ResNet from ImageNet weights (ignored by posecnn).
        num_frames_to_predict_for: N transforms to predict. None gives the reference's choice:
            separate_resnet predicts max(2, n - 1) (2 for pairs, of which only index 0 is used);
            posecnn always predicts n - 1.

    Raises:
        ValueError: unknown pose_model_type (the message lists the choices) or bad sizes.
    """
    make_pose = _lookup(POSE_NETWORKS, pose_model_type, "--pose_model_type")
    return make_pose(num_layers, pretrained, num_input_frames, num_frames_to_predict_for)
