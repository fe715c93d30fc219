"""Key layouts shared by the loaders of released weights (`released_weights`, `featdepth_weights`).

A separate module so that every loader can use them without importing another loader (which
dispatches to it): the ResNet depth read off a torchvision-style state dict, and Monodepth2's pose
decoder layout (``net.0..3``), which FeatDepth's pose decoder shares.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch

# ResNet depth from the number of blocks in layer3 and the block type (conv3 only in bottlenecks).
RESNET_LAYER3_BLOCKS = {(2, False): 18, (6, False): 34, (6, True): 50, (23, True): 101, (36, True): 152}

# Monodepth2's PoseDecoder registers its layers as a ModuleList: squeeze, pose 0, pose 1, pose 2 are
# net.0 .. net.3 in its files.
MONODEPTH2_POSE_LAYERS = ("squeeze", "pose0", "pose1", "pose2")
POSE_PARAMS = 6


def tensors_only(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a loaded state, without the settings some released files keep beside them."""
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


def convert_monodepth2_pose(state: dict[str, Any], source: str) -> tuple[dict[str, torch.Tensor], int]:
    """Rename ``net.0..3`` to squeeze/pose0/pose1/pose2; return it and the transforms predicted."""
    tensors = tensors_only(state)
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


def meta_state_shapes(build: Callable[[], torch.nn.Module]) -> dict[str, torch.Size]:
    """Parameter and buffer names and shapes of a network, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        network = build()
    return {k: v.shape for k, v in network.state_dict().items()}
