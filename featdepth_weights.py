"""FeatDepth's released mmcv checkpoints as our checkpoint payload, tensor by tensor (methods spec 2.9).

An mmcv ``epoch_N.pth`` is ``{"meta": {...}, "state_dict": {...}, "optimizer": {...}}``, read here with
``torch.load(weights_only=True)`` (`checkpoints.load_checkpoint`): it holds tensors and plain values
only. The state dict's keys are prefixed by FeatDepth's submodule names; each prefix maps onto one of
our checkpoint entries (`FEATDEPTH_PREFIXES`), the rest of the key unchanged, because our FeatDepth
modules (`networks.featdepth`) keep FeatDepth's layer names:

    DepthEncoder.*  -> "encoder"            ResnetEncoder(50)
    DepthDecoder.*  -> "depth"              FeatDepthDecoder
    PoseEncoder.*   -> "pose_encoder"       ResnetEncoder(18, two frames)
    PoseDecoder.*   -> "pose"               PoseDecoder (Monodepth2's net.0..3, one transform)
    extractor.*     -> "feature_extractor"  FeatureEncoder (mono_fm's frozen auto-encoder encoder)
    Encoder.*       -> "feature_net" encoder.*   FeatureNet (the stage-1 autoencoder file)
    Decoder.*       -> "feature_net" decoder.*

The unused ImageNet classification heads (``*.encoder.fc.*``), which our encoders do not build, are
left out by name; any other tensor that maps nowhere, or a network whose tensors do not fit ours
exactly (missing, unexpected, other shape), is an error naming the tensors: nothing is skipped
silently. `FeatDepthTensorReport` lists what happened to every tensor, and is logged.

A depth file (mono_fm) becomes a depth checkpoint of ``--decoder featdepth``: FeatDepth's KITTI
configurations are mono+stereo with a 0.015 baseline (evaluated x36) and pose inputs at 192 x 640,
which the files do not record, so they are assumed (and logged), with the size given by
``image_shape`` (default 320 x 1024, cfg_kitti_fm's). An autoencoder file becomes a stage-1
checkpoint (``model_spec.method == "autoencoder"``), which ``--feature_net_path`` reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from checkpoints import CHECKPOINT_FORMAT, ModelSpec
from released_layouts import meta_state_shapes

logger = logging.getLogger(__name__)

# FeatDepth's prefix -> (our checkpoint entry, the prefix of the key inside it).
FEATDEPTH_PREFIXES = {
    "DepthEncoder.": ("encoder", ""),
    "DepthDecoder.": ("depth", ""),
    "PoseEncoder.": ("pose_encoder", ""),
    "PoseDecoder.": ("pose", ""),
    "extractor.": ("feature_extractor", ""),
    "Encoder.": ("feature_net", "encoder."),
    "Decoder.": ("feature_net", "decoder."),
}
# The classification head of a torchvision ResNet inside an entry (our encoders replace it).
CLASSIFIER_PREFIXES = ("encoder.fc.", "encoder.encoder.fc.")

# What FeatDepth's files do not record, assumed for a depth file (cfg_kitti_fm, methods spec 2.5).
FEATDEPTH_IMAGE_SHAPE = (320, 1024)
FEATDEPTH_AUTOENCODER_SHAPE = (256, 800)
FEATDEPTH_STEREO_BASELINE = 0.015
FEATDEPTH_POSE_INPUT_SIZE = [192, 640]
FEATDEPTH_DEPTH_RANGE = (0.1, 100.0)


@dataclass
class FeatDepthTensorReport:
    """What happened to every tensor of a FeatDepth state dict.

    Attributes:
        loaded: {our entry: number of tensors loaded into it}.
        left_out: {FeatDepth key: why it was not loaded} (the classification heads).
    """

    loaded: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)

    def summary(self) -> str:
        text = "loaded " + ", ".join(f"{name} {count} tensors" for name, count in self.loaded.items())
        if self.left_out:
            text += f"; {len(self.left_out)} tensor(s) left out: " + ", ".join(
                f"{k} ({why})" for k, why in sorted(self.left_out.items()))
        return text


def featdepth_state_dict(raw: dict) -> dict | None:
    """The state dict of a FeatDepth mmcv file (``raw["state_dict"]``, or ``raw`` itself), or None."""
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict):
        return None
    keys = [_strip_module(k) for k in state if isinstance(k, str)]
    if keys and any(k.startswith(("DepthEncoder.", "Encoder.", "extractor.")) for k in keys):
        return state
    return None


def _strip_module(key: str) -> str:
    # A state dict saved from a DDP-wrapped model carries "module." in front of every key.
    return key[len("module."):] if key.startswith("module.") else key


def split_featdepth_state(state: dict, source: str, report: FeatDepthTensorReport) -> dict[str, dict]:
    """``{our entry: {key: tensor}}`` by `FEATDEPTH_PREFIXES`; classification heads left out by name.

    Raises:
        ValueError: a key under no known prefix, or a value that is not a tensor (each named).
    """
    entries: dict[str, dict] = {}
    unknown = []
    for raw_key, value in state.items():
        key = _strip_module(str(raw_key))
        prefix = next((p for p in FEATDEPTH_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: {key} holds a {type(value).__name__} where a tensor should be; "
                             "refusing the file")
        entry, inner_prefix = FEATDEPTH_PREFIXES[prefix]
        inner = inner_prefix + key[len(prefix):]
        if inner.startswith(CLASSIFIER_PREFIXES):
            report.left_out[key] = "ImageNet classification head, unused by the network"
            continue
        entries.setdefault(entry, {})[inner] = value
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} tensor(s) under no FeatDepth network this toolkit knows "
                         f"({', '.join(sorted(FEATDEPTH_PREFIXES))}): {', '.join(sorted(unknown)[:12])}"
                         f"{' ...' if len(unknown) > 12 else ''}")
    return entries


def check_fits(tensors: dict, build: Callable[[], torch.nn.Module], what: str, source: str) -> None:
    """Raise unless ``tensors`` are exactly the state dict of ``build()`` (names and shapes)."""
    expected = meta_state_shapes(build)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshapen = sorted(f"{k} {tuple(tensors[k].shape)} (ours {tuple(expected[k])})"
                       for k in set(tensors) & set(expected) if tensors[k].shape != expected[k])
    if missing or unexpected or misshapen:
        problems = [f"{len(v)} {kind}: {', '.join(v[:12])}{' ...' if len(v) > 12 else ''}"
                    for kind, v in (("missing", missing), ("unexpected", unexpected),
                                    ("with another shape", misshapen)) if v]
        raise ValueError(f"{source}: the {what} tensors do not fit ours: " + "; ".join(problems))


def _resnet_channels(layers: int) -> list[int]:
    """The five feature widths of a ResNet of that depth (built on the meta device)."""
    from networks import ResnetEncoder

    with torch.device("meta"):
        return list(ResnetEncoder(layers, False).num_ch_enc)


def convert_featdepth_checkpoint(raw: dict, source: str, image_shape: tuple[int, int] | None = None
                                 ) -> tuple[dict, FeatDepthTensorReport]:
    """A FeatDepth mmcv checkpoint's contents as our payload, with the tensor report.

    Args:
        raw: the loaded file (``{"meta", "state_dict", ...}``) or its bare state dict.
        source: the file, for messages.
        image_shape: (H, W) the model runs at; None: cfg_kitti_fm's 320 x 1024 for a depth file,
            cfg_kitti_autoencoder's 256 x 800 for an autoencoder file (logged).

    Returns:
        (payload, report): a depth payload (``encoder``, ``depth``, optionally ``pose_encoder``,
        ``pose`` and ``feature_extractor``) or an autoencoder payload (``feature_net``).

    Raises:
        ValueError: no FeatDepth state dict, unknown tensors, or a network whose tensors do not fit.
    """
    from networks import ResnetEncoder
    from networks.featdepth import FeatDepthDecoder, FeatureEncoder, FeatureNet
    from released_layouts import infer_resnet_layers

    state = featdepth_state_dict(raw)
    if state is None:
        raise ValueError(f"{source} holds no FeatDepth state dict (no DepthEncoder., Encoder. or extractor. tensors)")
    report = FeatDepthTensorReport()
    entries = split_featdepth_state(state, source, report)
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT}
    if "encoder" in entries:
        if "depth" not in entries:
            raise ValueError(f"{source}: a DepthEncoder without a DepthDecoder")
        layers = infer_resnet_layers(entries["encoder"], source)
        check_fits(entries["encoder"], lambda: ResnetEncoder(layers, False), f"DepthEncoder (ResNet-{layers})", source)
        num_ch_enc = _resnet_channels(layers)
        check_fits(entries["depth"], lambda: FeatDepthDecoder(num_ch_enc), "DepthDecoder", source)
        height, width = image_shape or FEATDEPTH_IMAGE_SHAPE
        spec = ModelSpec(backbone="resnet", num_layers=layers, decoder="featdepth", height=height, width=width,
                         min_depth=FEATDEPTH_DEPTH_RANGE[0], max_depth=FEATDEPTH_DEPTH_RANGE[1], use_stereo=True,
                         stereo_baseline=FEATDEPTH_STEREO_BASELINE, frame_ids=[0, -1, 1],
                         pose_input_size=list(FEATDEPTH_POSE_INPUT_SIZE))
        payload["encoder"], payload["depth"] = entries["encoder"], entries["depth"]
        if "pose_encoder" in entries or "pose" in entries:
            _add_featdepth_pose(payload, spec, entries, source)
        if "feature_extractor" in entries:
            check_fits(entries["feature_extractor"], FeatureEncoder, "extractor", source)
            payload["feature_extractor"] = entries["feature_extractor"]
        logger.info("%s: FeatDepth depth weights; assumed (the file does not record them): %d x %d input, "
                    "mono+stereo with baseline %g (evaluated x%g), pose inputs at %d x %d", source, height, width,
                    FEATDEPTH_STEREO_BASELINE, spec.metric_depth_scale, *FEATDEPTH_POSE_INPUT_SIZE)
    elif "feature_net" in entries:
        check_fits(entries["feature_net"], FeatureNet, "autoencoder (Encoder/Decoder)", source)
        height, width = image_shape or FEATDEPTH_AUTOENCODER_SHAPE
        spec = ModelSpec(method="autoencoder", height=height, width=width, frame_ids=[0])
        payload["feature_net"] = entries["feature_net"]
    else:
        check_fits(entries["feature_extractor"], FeatureEncoder, "extractor", source)
        raise ValueError(f"{source} holds FeatDepth's extractor alone: give it to --feature_net_path")
    leftover = sorted(set(entries) - set(payload))
    if leftover:
        raise ValueError(f"{source}: FeatDepth networks {leftover} do not belong with the others in this file")
    report.loaded = {name: len(payload[name]) for name in payload if isinstance(payload[name], dict)}
    payload["model_spec"] = spec.to_dict()
    logger.info("%s: %s", source, report.summary())
    return payload, report


def _add_featdepth_pose(payload: dict, spec: ModelSpec, entries: dict, source: str) -> None:
    """FeatDepth's pose network: a two-frame ResNet encoder and Monodepth2's decoder for one transform."""
    from networks import PoseDecoder, ResnetEncoder
    from released_layouts import convert_monodepth2_pose, infer_resnet_layers

    if "pose_encoder" not in entries or "pose" not in entries:
        raise ValueError(f"{source}: half a pose network (PoseEncoder and PoseDecoder go together)")
    layers = infer_resnet_layers(entries["pose_encoder"], source)
    num_images = entries["pose_encoder"]["encoder.conv1.weight"].shape[1] // 3
    check_fits(entries["pose_encoder"], lambda: ResnetEncoder(layers, False, num_input_images=num_images),
               f"PoseEncoder (ResNet-{layers})", source)
    pose, num_transforms = convert_monodepth2_pose(entries["pose"], source)
    num_ch_enc = _resnet_channels(layers)
    check_fits(pose, lambda: PoseDecoder(num_ch_enc, num_input_features=1, num_frames_to_predict_for=num_transforms),
               "PoseDecoder", source)
    payload["pose_encoder"], payload["pose"] = entries["pose_encoder"], pose
    spec.pose_num_transforms = num_transforms
    spec.pose_num_layers = layers
    spec.pose_model_input = "pairs" if num_images == 2 else "all"


def load_featdepth_checkpoint(path: str | Path, image_shape: tuple[int, int] | None = None) -> dict:
    """A FeatDepth ``.pth`` as our payload (`convert_featdepth_checkpoint`), read with weights_only."""
    from checkpoints import load_checkpoint

    return convert_featdepth_checkpoint(load_checkpoint(path), str(path), image_shape)[0]


def load_feature_net_weights(path: str | Path) -> tuple[dict, dict | None]:
    """The FeatureNet weights of ``--feature_net_path``: (encoder state, decoder state or None).

    Accepts a stage-1 checkpoint (``train.py --method autoencoder``), a depth checkpoint of a run
    that trained or used one (``feature_net`` / ``feature_extractor``), and FeatDepth's autoencoder
    or mono_fm files. The encoder state is `FeatureEncoder`'s; the decoder's is None when the file
    holds the encoder alone.

    Raises:
        ValueError: the file holds no auto-encoder weights (named, with what to give instead).
    """
    from checkpoints import load_checkpoint

    raw = load_checkpoint(path)
    if "model_spec" not in raw and featdepth_state_dict(raw) is not None:
        report = FeatDepthTensorReport()
        entries = split_featdepth_state(featdepth_state_dict(raw), str(path), report)
        if report.left_out:
            logger.info("%s: %s", path, report.summary())
        raw = entries
    if "feature_net" in raw:
        state = raw["feature_net"]
        encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        decoder = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
        return encoder, decoder
    if "feature_extractor" in raw:
        return raw["feature_extractor"], None
    raise ValueError(f"--feature_net_path {path} holds no FeatureNet weights: give a stage-1 checkpoint "
                     "(train.py --method autoencoder), or FeatDepth's autoencoder or mono_fm file")
