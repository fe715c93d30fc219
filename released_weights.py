"""Load depth models from our checkpoints and from the released Monodepth2 / BDEdepth weights.

``to_checkpoint_payload(path)`` (behind `model.load_model` and ``--pretrained_path``; the
command ``python convert_weights.py --input models/mono_640x192 --output mono_640x192.pth`` writes
it as a checkpoint) accepts, with no architecture flags:

- a checkpoint written by this toolkit (it carries a ``model_spec``);
- a released Monodepth2 folder: ``encoder.pth`` (a ResnetEncoder state dict plus the ``height``,
  ``width`` and ``use_stereo`` it was trained with), ``depth.pth`` (DepthDecoder, layers in a
  ModuleList ``decoder.N``), optionally ``pose_encoder.pth`` and ``pose.pth`` (PoseDecoder,
  ``net.N``);
- a released BDEdepth ``.pth``: one dict with ``encoder``, ``depth`` (and possibly ``pose_encoder``,
  ``pose``) state dicts plus ``height``, ``width``, ``use_stereo``; our BDEdepth modules use its
  parameter names.

Each is turned into our checkpoint payload (``{"model_spec", "encoder", "depth", ...}``); the
architecture is read off the tensor names and shapes. Released files store no depth range, so
the reference default 0.1-100 m is assumed (pass it to ``convert`` for e.g. NYUv2 models).
Every file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from checkpoints import CHECKPOINT_FORMAT, ModelSpec, load_checkpoint

MONODEPTH2_FILES = ("encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth")
# Keys of Monodepth2's encoder.pth / BDEdepth's file that are settings, not tensors.
SETTING_KEYS = ("height", "width", "use_stereo")

# ResNet depth from the number of blocks in layer3 and the block type (conv3 only in bottlenecks).
RESNET_LAYER3_BLOCKS = {(2, False): 18, (6, False): 34, (6, True): 50, (23, True): 101, (36, True): 152}

# Monodepth2's DepthDecoder registers its OrderedDict of layers as a ModuleList, so a layer's
# name is its position: upconv (4,0), (4,1), (3,0), ... (0,1), then dispconv per scale.
MONODEPTH2_UPCONVS = tuple(f"upconv_{i}_{j}" for i in range(4, -1, -1) for j in (0, 1))
# Monodepth2's PoseDecoder likewise: squeeze, pose 0, pose 1, pose 2 as net.0 .. net.3.
MONODEPTH2_POSE_LAYERS = ("squeeze", "pose0", "pose1", "pose2")
POSE_PARAMS = 6
# BDEdepth's grid decoder: 6 levels x 3 laterals + 5 x 3 upconvs, then one dispconv per scale.
GRID_DECODER_BASE_MODULES = 6 * 3 + 5 * 3


def _tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def infer_resnet_layers(state: dict[str, torch.Tensor], source: str, prefix: str = "encoder.") -> int:
    """ResNet depth of a torchvision-style state dict (keys ``<prefix>layer3.N...``)."""
    blocks = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}layer3\.(\d+)\.", k))}
    bottleneck = any(k.startswith(f"{prefix}layer1.0.conv3.") for k in state)
    key = (len(blocks), bottleneck)
    if key not in RESNET_LAYER3_BLOCKS:
        raise ValueError(f"{source}: not a ResNet encoder this toolkit knows ({len(blocks)} blocks in "
                         f"layer3, bottleneck={bottleneck})")
    return RESNET_LAYER3_BLOCKS[key]


def convert_resnet_encoder(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors only, without the unused classification head (our trunk has none)."""
    return {k: v for k, v in _tensors(state).items() if not k.startswith("encoder.fc.")}


def convert_monodepth2_depth(state: dict[str, Any], source: str) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Rename ``decoder.N.*`` to our ``convs.<name>.*``; return the state and the scales."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"decoder\.(\d+)\.", k))})
    num_scales = len(indices) - len(MONODEPTH2_UPCONVS)
    if indices != list(range(len(indices))) or num_scales < 1:
        raise ValueError(f"{source}: expected Monodepth2 decoder layers decoder.0 .. decoder.N with "
                         f"N >= {len(MONODEPTH2_UPCONVS)}, found {indices}")
    names = list(MONODEPTH2_UPCONVS) + [f"dispconv_{s}" for s in range(num_scales)]
    converted = {}
    for key, value in _tensors(state).items():
        index, rest = re.match(r"decoder\.(\d+)\.(.*)", key).groups()
        converted[f"convs.{names[int(index)]}.{rest}"] = value
    return converted, list(range(num_scales))


def convert_monodepth2_pose(state: dict[str, Any], source: str) -> tuple[dict[str, torch.Tensor], int]:
    """Rename ``net.0..3`` to squeeze/pose0/pose1/pose2; return it and the transforms predicted."""
    tensors = _tensors(state)
    if all(k.split(".")[0] in MONODEPTH2_POSE_LAYERS for k in tensors):
        converted = tensors  # already our names
    else:
        converted = {}
        for key, value in tensors.items():
            match = re.match(r"net\.([0-3])\.(.*)", key)
            if not match:
                raise ValueError(f"{source}: unexpected pose decoder key {key!r} (expected net.0 .. net.3)")
            converted[f"{MONODEPTH2_POSE_LAYERS[int(match.group(1))]}.{match.group(2)}"] = value
    if "pose2.weight" not in converted:
        raise ValueError(f"{source}: the pose decoder has no final layer (net.3 / pose2)")
    return converted, converted["pose2.weight"].shape[0] // POSE_PARAMS


def _settings(state: dict[str, Any], source: str) -> dict[str, Any]:
    missing = [k for k in ("height", "width") if k not in state]
    if missing:
        raise ValueError(f"{source} lacks {missing}: the input size the model was trained at")
    return {"height": int(state["height"]), "width": int(state["width"]),
            "use_stereo": bool(state.get("use_stereo", False))}


def _add_pose(payload: dict, spec: ModelSpec, pose_encoder: dict | None, pose: dict | None, source: str) -> None:
    """Pose networks, when both halves are present (the depth model never needs them)."""
    if pose_encoder is None or pose is None:
        return
    payload["pose_encoder"] = convert_resnet_encoder(pose_encoder)
    payload["pose"], payload["num_frames_to_predict_for"] = convert_monodepth2_pose(pose, source)
    num_input_images = payload["pose_encoder"]["encoder.conv1.weight"].shape[1] // 3
    spec.pose_model_input = "pairs" if num_input_images == 2 else "all"


def load_monodepth2_folder(folder: str | Path, min_depth: float = 0.1, max_depth: float = 100.0) -> dict:
    """A released Monodepth2 model folder as our checkpoint payload."""
    folder = Path(folder)
    for name in MONODEPTH2_FILES[:2]:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a Monodepth2 model folder: {name} is missing "
                                    f"(expected {', '.join(MONODEPTH2_FILES)})")
    encoder = load_checkpoint(folder / "encoder.pth")
    depth = load_checkpoint(folder / "depth.pth")
    depth_state, scales = convert_monodepth2_depth(depth, str(folder / "depth.pth"))
    spec = ModelSpec(backbone="resnet", num_layers=infer_resnet_layers(encoder, str(folder / "encoder.pth")),
                     decoder="monodepth2", min_depth=min_depth, max_depth=max_depth, scales=scales,
                     **_settings(encoder, str(folder / "encoder.pth")))
    payload = {"format": CHECKPOINT_FORMAT, "encoder": convert_resnet_encoder(encoder), "depth": depth_state}
    pose_files = [folder / name for name in MONODEPTH2_FILES[2:]]
    if all(p.is_file() for p in pose_files):
        _add_pose(payload, spec, load_checkpoint(pose_files[0]), load_checkpoint(pose_files[1]), str(pose_files[1]))
    payload["model_spec"] = spec.to_dict()
    return payload


def convert_bdedepth(payload: dict, source: str, min_depth: float = 0.1, max_depth: float = 100.0) -> dict:
    """A released BDEdepth file (``encoder``, ``depth``, settings) as our checkpoint payload."""
    from networks import DEPTH_DECODERS, DEPTH_ENCODERS

    for key in ("encoder", "depth"):
        if key not in payload:
            raise ValueError(f"{source} has no '{key}' weights: neither our checkpoint, nor a BDEdepth file")
    encoder, depth = _tensors(payload["encoder"]), _tensors(payload["depth"])
    hrnet = any(k.startswith(("encoder.transition", "encoder.stage")) for k in encoder)
    backbone = "hrnet" if hrnet else "resnet"
    for registry, name, what in ((DEPTH_ENCODERS, backbone, "backbone"), (DEPTH_DECODERS, "bdedepth", "decoder")):
        if name not in registry:
            raise ValueError(f"{source} is a BDEdepth {backbone} model, but this version has no '{name}' "
                             f"{what} in networks")
    indices = {int(m.group(1)) for k in depth if (m := re.match(r"decoder\.(\d+)\.", k))}
    num_scales = len(indices) - GRID_DECODER_BASE_MODULES
    if num_scales < 1:
        raise ValueError(f"{source}: the depth weights are not BDEdepth's grid decoder "
                         f"({len(indices)} modules, expected at least {GRID_DECODER_BASE_MODULES + 1})")
    spec = ModelSpec(backbone=backbone, num_layers=18 if hrnet else infer_resnet_layers(encoder, source),
                     decoder="bdedepth", min_depth=min_depth, max_depth=max_depth,
                     scales=list(range(num_scales)), frame_ids=[0, -1, 1], **_settings(payload, source))
    converted = {"format": CHECKPOINT_FORMAT, "encoder": convert_resnet_encoder(encoder), "depth": depth}
    _add_pose(converted, spec, payload.get("pose_encoder"), payload.get("pose"), source)
    converted["model_spec"] = spec.to_dict()
    return converted


def to_checkpoint_payload(path: str | Path) -> dict:
    """Any supported weights (ours, a Monodepth2 folder, a BDEdepth file) as our payload."""
    path = Path(path)
    if path.is_dir():
        return load_monodepth2_folder(path)
    payload = load_checkpoint(path)
    if "model_spec" in payload:
        return payload
    return convert_bdedepth(payload, str(path))
