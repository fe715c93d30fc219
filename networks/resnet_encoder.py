"""ResNet feature encoder for the depth network and for the (multi-image) pose network."""

from __future__ import annotations

import logging
import os
import pickle
import re
from typing import Any, Callable

import torch
from torch import nn
from torchvision import models

logger = logging.getLogger(__name__)

# Monodepth2's input normalisation: one mean and one std for all channels, close to the ImageNet
# per-channel statistics (means 0.485/0.456/0.406, stds 0.229/0.224/0.225) that the pretrained
# weights expect. A single value applies unchanged to 3n-channel stacks of n images.
INPUT_MEAN = 0.45
INPUT_STD = 0.225

# (constructor, ImageNet weights) per depth. IMAGENET1K_V1 are the original torchvision weights
# that Monodepth2 and its descendants were trained from; newer recipes (V2) would shift results.
RESNETS: dict[int, tuple[Callable[..., models.ResNet], models.WeightsEnum]] = {
    18: (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    34: (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    50: (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
    101: (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1),
    152: (models.resnet152, models.ResNet152_Weights.IMAGENET1K_V1),
}

# Channels of the five returned features for BasicBlock ResNets (18, 34). Bottleneck ResNets
# (50 and deeper) expand entries 1..4 by 4; the stem (entry 0) is 64 channels in both.
BASIC_NUM_CH_ENC = (64, 64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
_LAST_BASIC_DEPTH = 34

_RGB_CHANNELS = 3


def imagenet_cache_path(num_layers: int) -> str:
    """Where ``torch.hub`` looks for (and stores) the ImageNet weights of ResNet-``num_layers``."""
    weights = RESNETS[num_layers][1]
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def load_hub_state_dict(url: str, description: str) -> Any:
    """Load weights through the torch hub cache (downloading ``url`` when absent), never running code.

    ``weights_only=True``: the hub cache is a folder users fill by hand when offline, so a file
    there is data, never trusted code; one holding pickled objects is refused.

    Raises:
        RuntimeError: the file is neither cached nor downloadable, or the cached file is corrupt or
            holds objects other than tensors; the message names the file and the ways out.
    """
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    way_out = (f"Either train from scratch with `--weights_init scratch`, or download the file on a "
               f"machine with internet access and place it at {cache} (the torch hub cache).")
    try:
        # Looked up through the torch.hub module at call time so tests can substitute it.
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True,
                                                  weights_only=True)
    except pickle.UnpicklingError as err:
        # Only weights_only's refusal lands here; torch's text would suggest weights_only=False.
        refused = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({refused.group(1)})" if refused else ""
        raise RuntimeError(f"the {description} file {cache} holds Python objects other than tensors{what} and "
                           "was refused, because loading it could run code. Delete it. " + way_out) from err
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if "weights_only" in first_line:  # torch's hint for legacy or zero-filled files
            first_line = "not a torch zip file: corrupt or truncated"
        raise RuntimeError(f"could not load {description} from {url} ({first_line}). "
                           f"If {cache} exists, it is corrupt: delete it. " + way_out) from err


def load_imagenet_state_dict(num_layers: int) -> dict[str, torch.Tensor]:
    """Fetch the torchvision ImageNet state dict of ResNet-``num_layers`` (cache first, then URL).

    Raises:
        RuntimeError: the file is neither cached nor downloadable (e.g. offline), or is corrupt
            or unsafe; the message gives both ways out.
    """
    weights = RESNETS[num_layers][1]
    logger.info("loading ImageNet weights for resnet%d from %s", num_layers, weights.url)
    return load_hub_state_dict(weights.url, f"ImageNet resnet{num_layers} weights")


def _num_ch_enc(num_layers: int) -> list[int]:
    if num_layers <= _LAST_BASIC_DEPTH:
        return list(BASIC_NUM_CH_ENC)
    return [BASIC_NUM_CH_ENC[0]] + [c * BOTTLENECK_EXPANSION for c in BASIC_NUM_CH_ENC[1:]]


def _tile_conv1(state_dict: dict[str, Any], num_input_images: int) -> dict[str, Any]:
    """Repeat the RGB conv1 filters for each stacked image and divide by their count.

    Dividing by n makes n identical images produce the same conv1 response as one image did,
    so the pretrained statistics downstream still hold for a stack of similar frames.
    """
    weight = state_dict["conv1.weight"]
    tiled = torch.cat([weight] * num_input_images, dim=1) / num_input_images
    return {**state_dict, "conv1.weight": tiled}


def resnet_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The five features of a torchvision ResNet trunk, finest first.

    Args:
        net: a torchvision ResNet (its ``fc`` is not used).
        x: B x C x H x W input, already normalised as the caller's network expects.

    Returns:
        [f0, ..., f4]: f0 = ReLU(BN(conv1(x))) at H/2, then layer1 (after the max-pool) to layer4
        at H/4 .. H/32.
    """
    f0 = net.relu(net.bn1(net.conv1(x)))
    f1 = net.layer1(net.maxpool(f0))
    f2 = net.layer2(f1)
    f3 = net.layer3(f2)
    f4 = net.layer4(f3)
    return [f0, f1, f2, f3, f4]


class ResnetEncoder(nn.Module):
    """torchvision ResNet trunk that returns the features of its five resolution levels.

    The classification head (``fc``) is replaced by ``nn.Identity``: it is never used, and
    removing its parameters means every parameter gets a gradient, so DistributedDataParallel
    runs without ``find_unused_parameters``. State-dict keys are otherwise those of Monodepth2's
    released ``encoder.pth`` (``encoder.conv1.weight``, ...), minus ``encoder.fc.*``.

    Args:
        num_layers: ResNet depth, one of 18, 34, 50, 101, 152.
        pretrained: start from torchvision's ImageNet weights (downloaded through the torch hub
            cache) instead of random initialisation.
        num_input_images: n, the number of RGB images stacked on the channel axis (1 for depth,
            2 or more for the pose encoder). For n > 1, conv1 takes 3n channels; randomly
            initialised it uses Kaiming-normal (fan_out) like every other conv, and pretrained
            it holds the ImageNet filters tiled n times and divided by n.

    Attributes:
        encoder: the torchvision ResNet.
        num_ch_enc: channels of the five features, e.g. [64, 64, 128, 256, 512] for ResNet-18
            and [64, 256, 512, 1024, 2048] for ResNet-50.
    """

    def __init__(self, num_layers: int, pretrained: bool, num_input_images: int = 1) -> None:
        super().__init__()
        if num_layers not in RESNETS:
            raise ValueError(
                f"--num_layers must be one of {sorted(RESNETS)} for a ResNet encoder "
                f"(got {num_layers})"
            )
        if num_input_images < 1:
            raise ValueError(f"num_input_images must be at least 1 (got {num_input_images})")
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        self.num_ch_enc = _num_ch_enc(num_layers)

        # torchvision initialises every conv Kaiming-normal (fan_out, relu) and BN to weight 1,
        # bias 0; only a widened conv1 needs the same init applied by hand.
        self.encoder = RESNETS[num_layers][0](weights=None)
        self.encoder.fc = nn.Identity()
        if num_input_images > 1:
            stem = self.encoder.conv1
            self.encoder.conv1 = nn.Conv2d(
                _RGB_CHANNELS * num_input_images,
                stem.out_channels,
                kernel_size=stem.kernel_size,
                stride=stem.stride,
                padding=stem.padding,
                bias=False,
            )
            nn.init.kaiming_normal_(self.encoder.conv1.weight, mode="fan_out", nonlinearity="relu")

        if pretrained:
            state_dict = load_imagenet_state_dict(num_layers)
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
            if num_input_images > 1:
                state_dict = _tile_conv1(state_dict, num_input_images)
            self.encoder.load_state_dict(state_dict, strict=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode an image (or a channel-stack of n images).

        Args:
            x: B x 3n x H x W, RGB in [0, 1]; H and W multiples of 32 for exact strides.

        Returns:
            Five features [f0, ..., f4]; f_i is B x num_ch_enc[i] x H/2^(i+1) x W/2^(i+1).
        """
        expected = _RGB_CHANNELS * self.num_input_images
        if x.dim() != 4 or x.shape[1] != expected:
            raise ValueError(
                f"ResnetEncoder built for {self.num_input_images} image(s) expects "
                f"B x {expected} x H x W input, got {tuple(x.shape)}"
            )
        return resnet_features(self.encoder, (x - INPUT_MEAN) / INPUT_STD)
