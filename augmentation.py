"""Batched colour jitter with one set of parameters per sample, shared by all its frames.

Semantics are those of ``torchvision.transforms.ColorJitter(brightness, contrast, saturation,
hue)`` on float images: brightness, contrast and saturation factors uniform in
``[max(0, 1 - x), 1 + x]``, a hue shift uniform in ``[-hue, hue]``, and the four operations
applied in a random order. Each operation reproduces the float path of
``torchvision.transforms.functional`` and clamps to [0, 1]:

- brightness: ``f * img``;
- contrast: blend with the mean of the image's grayscale version (one mean per image);
- saturation: blend with the grayscale image;
- hue: RGB -> HSV, ``h = (h + shift) mod 1``, HSV -> RGB.

The parameters are drawn on the host by ``draw_color_jitter`` (the dataset calls it once per
sample with its own ``random.Random``) and applied by ``apply_color_jitter``, which is fully
vectorised over the batch: no Python loop over samples and no host synchronisation, so it can
run inside a DataLoader worker or on the accelerator.

Parameter vector layout (``JITTER_PARAM_DIM`` floats): ``[brightness, contrast, saturation,
hue, op_0, op_1, op_2, op_3]``, where ``op_k`` is the code of the operation applied k-th
(``OP_BRIGHTNESS`` = 0, ``OP_CONTRAST`` = 1, ``OP_SATURATION`` = 2, ``OP_HUE`` = 3, the same
numbering as torchvision's ``fn_idx``).

The second half of the module holds BDEdepth's splitting-permuting view, built the same way
(split drawn per sample by the dataset, transforms batched on the device): `draw_reshuffle_split`,
`reshuffle_images` and its inverse `restore_reshuffled`, both a batched `roll_images`. The
resizing-cropping view's geometry lives in `local_crop`.
"""

from __future__ import annotations

import random

import torch

OP_BRIGHTNESS = 0
OP_CONTRAST = 1
OP_SATURATION = 2
OP_HUE = 3
NUM_OPS = 4

# Column of each quantity in a parameter vector; the op order follows the four factors.
BRIGHTNESS_INDEX = 0
CONTRAST_INDEX = 1
SATURATION_INDEX = 2
HUE_INDEX = 3
ORDER_START = 4
JITTER_PARAM_DIM = ORDER_START + NUM_OPS

# ITU-R 601-2 luma weights, as in torchvision's rgb_to_grayscale (float path).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

# torchvision accepts hue shifts up to half a turn of the colour wheel.
MAX_HUE = 0.5


def draw_color_jitter(
    rng: random.Random,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.1,
) -> torch.Tensor:
    """Draw one sample's colour-jitter parameters with ``rng``.

    A strength of 0 gives a factor of exactly 1 (or a hue shift of exactly 0), which leaves the
    image unchanged, as torchvision skips such an operation.

    Args:
        rng: the caller's Python random generator (the dataset's, for reproducibility).
        brightness: factor range ``[max(0, 1 - brightness), 1 + brightness]``.
        contrast: factor range, as for brightness.
        saturation: factor range, as for brightness.
        hue: shift range ``[-hue, hue]``, in turns of the colour wheel, ``0 <= hue <= 0.5``.

    Returns:
        float32 tensor of shape ``(JITTER_PARAM_DIM,)`` (layout in the module docstring).
    """
    strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
    for name, value in strengths.items():
        if value < 0:
            raise ValueError(f"colour jitter {name} must be >= 0, got {value}")
    if not 0 <= hue <= MAX_HUE:
        raise ValueError(f"colour jitter hue must be in [0, {MAX_HUE}], got {hue}")
    order = list(range(NUM_OPS))
    rng.shuffle(order)
    factors = [rng.uniform(max(0.0, 1.0 - x), 1.0 + x) for x in (brightness, contrast, saturation)]
    shift = rng.uniform(-hue, hue)
    return torch.tensor([*factors, shift, *order], dtype=torch.float32)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """``... x 3 x H x W`` -> ``... x 1 x H x W`` luma."""
    r, g, b = images.unbind(dim=-3)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def _shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of ``... x 3 x H x W`` RGB images in [0, 1] by ``shift`` turns.

    ``shift`` broadcasts against ``... x 1 x 1 x 1``. Saturation and value are unchanged.
    """
    r, g, b = images.unbind(dim=-3)
    value = images.amax(dim=-3)
    chroma = value - images.amin(dim=-3)
    gray_pixel = chroma == 0
    # Grey pixels have no hue and zero saturation; dividing by 1 there keeps them finite.
    saturation = chroma / torch.where(gray_pixel, torch.ones_like(value), value)
    safe_chroma = torch.where(gray_pixel, torch.ones_like(chroma), chroma)
    red_dist = (value - r) / safe_chroma
    green_dist = (value - g) / safe_chroma
    blue_dist = (value - b) / safe_chroma
    # Hue sextant from whichever channel is the maximum; red wins ties, like Pillow/torchvision.
    hue6 = torch.where(
        value == r,
        blue_dist - green_dist,
        torch.where(value == g, 2.0 + red_dist - blue_dist, 4.0 + green_dist - red_dist),
    )
    hue = torch.remainder(hue6 / 6.0 + shift.squeeze(-3), 1.0)

    # HSV -> RGB: channel n (5 for red, 3 for green, 1 for blue) is
    # v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6; periodic in h, so a hue
    # that rounds up to exactly 1.0 is handled.
    # arange builds (5, 3, 1) on the device; a tensor from a Python list would be a host copy.
    offsets = torch.arange(5.0, 0.0, -2.0, device=images.device, dtype=images.dtype).view(3, 1, 1)
    k = torch.remainder(offsets + 6.0 * hue.unsqueeze(-3), 6.0)
    ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    rgb = value.unsqueeze(-3) * (1.0 - saturation.unsqueeze(-3) * ramp)
    return rgb.clamp(0.0, 1.0)


def _hue_slot(previous: torch.Tensor, blended: torch.Tensor, is_hue: torch.Tensor, hue: torch.Tensor,
              enabled: torch.Tensor | None) -> torch.Tensor:
    """One slot's result: the hue-shifted ``previous`` where the sample's op is the hue shift (and
    its shift is not 0), ``previous`` unchanged where it is a zero shift, ``blended`` elsewhere.

    Every sample shifts its hue in one slot of four, and a disabled sample's result is discarded.
    On a GPU the HSV round trip runs on the whole batch and ``torch.where`` picks (no host
    synchronisation); on the CPU only the samples that use it are converted (the same numbers:
    the round trip is per pixel), which saves most of the jitter's arithmetic there.
    """
    if previous.device.type != "cpu":
        return torch.where(is_hue, torch.where(hue != 0, _shift_hue(previous, hue), previous), blended)
    is_hue = is_hue.flatten()
    shifting = is_hue & (hue.flatten() != 0)
    if enabled is not None:
        shifting &= enabled.to(device=previous.device, dtype=torch.bool).flatten()
    out = torch.where(is_hue.view(-1, 1, 1, 1, 1), previous, blended)
    chosen = shifting.nonzero().squeeze(1)
    if chosen.numel():
        out[chosen] = _shift_hue(previous[chosen], hue[chosen])
    return out


def apply_color_jitter(
    images: torch.Tensor, params: torch.Tensor, enabled: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply each sample's colour jitter to all of its frames.

    Args:
        images: ``B x 3 x H x W`` or ``B x F x 3 x H x W`` RGB floats in [0, 1]; the F frames
            of a sample share its parameters.
        params: ``B x JITTER_PARAM_DIM`` from ``draw_color_jitter`` (stacked); moved to the
            images' device and dtype.
        enabled: optional ``B`` bools; samples with False are returned unchanged.

    Returns:
        Jittered images, same shape, dtype and device as ``images``.
    """
    frames = images.unsqueeze(1) if images.dim() == 4 else images
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(
            f"apply_color_jitter: images must be Bx3xHxW or BxFx3xHxW, got {tuple(images.shape)}"
        )
    batch = frames.shape[0]
    if tuple(params.shape) != (batch, JITTER_PARAM_DIM):
        raise ValueError(
            f"apply_color_jitter: params must be {batch}x{JITTER_PARAM_DIM}, "
            f"got {tuple(params.shape)}"
        )
    if enabled is not None and tuple(enabled.shape) != (batch,):
        raise ValueError(
            f"apply_color_jitter: enabled must have shape ({batch},), got {tuple(enabled.shape)}"
        )
    p = params.to(device=frames.device, dtype=frames.dtype)

    def column(index: int) -> torch.Tensor:
        return p[:, index].view(batch, 1, 1, 1, 1)

    brightness = column(BRIGHTNESS_INDEX)
    contrast = column(CONTRAST_INDEX)
    saturation = column(SATURATION_INDEX)
    hue = column(HUE_INDEX)

    # The op order differs per sample, so every slot evaluates the three blends (as one blend
    # with a per-sample reference and factor) and the hue shift, and torch.where picks.
    out = frames
    for slot in range(NUM_OPS):
        op = column(ORDER_START + slot).round()
        is_brightness = op == OP_BRIGHTNESS
        is_contrast = op == OP_CONTRAST
        gray = _grayscale(out)
        mean_gray = gray.mean(dim=(-3, -2, -1), keepdim=True)
        reference = torch.where(is_contrast, mean_gray, gray).masked_fill(is_brightness, 0.0)
        factor = torch.where(
            is_brightness, brightness, torch.where(is_contrast, contrast, saturation)
        )
        blended = (factor * out + (1.0 - factor) * reference).clamp(0.0, 1.0)
        # A zero shift skips the op (as torchvision does for hue=0): the HSV round trip is
        # not bit-exact.
        out = _hue_slot(out, blended, op == OP_HUE, hue, enabled)

    if enabled is not None:
        keep = enabled.to(device=frames.device, dtype=torch.bool).view(batch, 1, 1, 1, 1)
        out = torch.where(keep, out, frames)
    return out.reshape(images.shape)


# --------------------------------------------------------------------------------------------
# BDEdepth splitting-permuting ("patch reshuffle")
#
# As with colour jitter, the dataset draws the per-sample split on the host with its own
# generator and the transforms run batched on the device.
# --------------------------------------------------------------------------------------------

# BDEdepth's range of the split point, as a fraction of the image size.
DEFAULT_SPLIT_RATIO = (0.1, 0.9)


def mirror_where(images: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the samples of ``images`` (B x C x H x W) whose ``flags`` (B bools) are set."""
    return torch.where(flags.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)


def draw_reshuffle_split(
    rng: random.Random,
    height: int,
    width: int,
    split_range: tuple[float, float] = DEFAULT_SPLIT_RATIO,
) -> torch.Tensor:
    """Draw one sample's split point and return BDEdepth's ``split_xy = (W - w_i, H - h_i)``.

    ``w_i = int(W U(split_range))`` and ``h_i = int(H U(split_range))``: the left ``w_i``
    columns swap with the rest, then the top ``h_i`` rows. ``reshuffle_images`` applies it.

    Returns:
        int64 tensor of shape (2,).
    """
    low, high = split_range
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"reshuffle split ratios must satisfy 0 < low <= high < 1, got {split_range}")
    split_w = int(width * rng.uniform(low, high))
    split_h = int(height * rng.uniform(low, high))
    return torch.tensor([width - split_w, height - split_h], dtype=torch.int64)


def roll_images(images: torch.Tensor, shift_xy: torch.Tensor) -> torch.Tensor:
    """Cyclically shift every image by its own integer offset: a batched ``torch.roll``.

    ``out[b, :, y, x] = images[b, :, (y - s_y) mod H, (x - s_x) mod W]``, i.e.
    ``torch.roll(images[b], shifts=(s_y, s_x), dims=(-2, -1))`` for every b, as two gathers:
    no loop over samples and no host synchronisation (the shifts may live on the device).

    Args:
        images: ``B x C x H x W`` tensor of any dtype.
        shift_xy: ``B x 2`` integer (or integral float) shifts along x and y; any sign or size.

    Returns:
        Tensor like ``images``.
    """
    if images.dim() != 4 or tuple(shift_xy.shape) != (images.shape[0], 2):
        raise ValueError(f"roll_images: expected B x C x H x W images and B x 2 shifts, got "
                         f"{tuple(images.shape)} and {tuple(shift_xy.shape)}")
    batch, channels, height, width = images.shape
    shift = shift_xy.to(device=images.device)
    shift = (shift.round() if shift.is_floating_point() else shift).long()
    cols = torch.remainder(torch.arange(width, device=images.device)[None, :] - shift[:, 0:1], width)
    rows = torch.remainder(torch.arange(height, device=images.device)[None, :] - shift[:, 1:2], height)
    out = images.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
    return out.gather(2, rows[:, None, :, None].expand(batch, channels, height, width))


def reshuffle_images(images: torch.Tensor, split_xy: torch.Tensor) -> torch.Tensor:
    """BDEdepth's splitting-permuting of full-resolution images.

    Swapping the left ``W - s_x`` columns with the right ``s_x`` ones, then the top ``H - s_y``
    rows with the bottom ``s_y`` ones, is exactly a cyclic shift by ``(s_x, s_y)``:
    ``out[y, x] = in[(y + h_i) mod H, (x + w_i) mod W]``.

    Args:
        images: ``B x C x H x W``.
        split_xy: ``B x 2`` from ``draw_reshuffle_split``.
    """
    return roll_images(images, split_xy)


def restore_reshuffled(maps: torch.Tensor, split_xy: torch.Tensor, full_width: int) -> torch.Tensor:
    """Undo ``reshuffle_images`` on a map predicted at a (possibly smaller) decoder scale.

    A map of width ``W / 2^s`` is shifted back by ``round(split / 2^s)`` (round half to even,
    like the reference's ``round``). At the full resolution this is the exact inverse; at
    smaller scales it is exact whenever the split is a multiple of ``2^s``.

    Args:
        maps: ``B x C x H_s x W_s`` (e.g. disparity at scale s).
        split_xy: ``B x 2`` from ``draw_reshuffle_split`` (full-resolution pixels).
        full_width: W of the full-resolution image, giving the scale factor ``W / W_s``.
    """
    factor = full_width // maps.shape[-1]
    shift = torch.round(split_xy.to(device=maps.device, dtype=torch.float32) / factor)
    return roll_images(maps, -shift)

