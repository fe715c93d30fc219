"""Batched colour jitter against torchvision's functional ops, applied op by op."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torchvision.transforms.functional as TF
from torch.testing import assert_close

import augmentation as aug

TORCHVISION_OPS = {
    aug.OP_BRIGHTNESS: (TF.adjust_brightness, aug.BRIGHTNESS_INDEX),
    aug.OP_CONTRAST: (TF.adjust_contrast, aug.CONTRAST_INDEX),
    aug.OP_SATURATION: (TF.adjust_saturation, aug.SATURATION_INDEX),
    aug.OP_HUE: (TF.adjust_hue, aug.HUE_INDEX),
}


def torchvision_reference(image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """One ``3 x H x W`` image jittered by torchvision, op by op in the params' order."""
    for op in params[aug.ORDER_START :].long().tolist():
        fn, index = TORCHVISION_OPS[op]
        image = fn(image, float(params[index]))
    return image


def make_images(*shape: int, seed: int = 0) -> torch.Tensor:
    # Random colours plus exact greys, black, white and saturated primaries, which exercise
    # the grey-pixel and hue-sextant branches of the HSV conversion.
    images = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    specials = torch.tensor(
        [[0.0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]
    )
    images[..., :, 0, : len(specials)] = specials.T
    return images


def params_for(factors, order) -> torch.Tensor:
    return torch.tensor([*factors, *order], dtype=torch.float32)


def test_param_layout_constants():
    assert aug.JITTER_PARAM_DIM == 8
    assert (aug.OP_BRIGHTNESS, aug.OP_CONTRAST, aug.OP_SATURATION, aug.OP_HUE) == (0, 1, 2, 3)


def test_draw_color_jitter_ranges_order_and_determinism():
    draws = torch.stack([aug.draw_color_jitter(random.Random(7)) for _ in range(2)])
    assert draws.dtype == torch.float32 and draws.shape == (2, aug.JITTER_PARAM_DIM)
    assert torch.equal(draws[0], draws[1])

    rng = random.Random(0)
    draws = torch.stack([aug.draw_color_jitter(rng) for _ in range(500)])
    factors, hue, order = draws[:, :3], draws[:, 3], draws[:, aug.ORDER_START :]
    assert factors.min() >= 0.8 and factors.max() <= 1.2
    assert factors.min() < 0.81 and factors.max() > 1.19
    assert hue.min() >= -0.1 and hue.max() <= 0.1 and hue.min() < -0.09 and hue.max() > 0.09
    orders = {tuple(row) for row in order.long().tolist()}
    assert orders == set(itertools.permutations(range(4)))


def test_draw_color_jitter_zero_strength_and_errors():
    params = aug.draw_color_jitter(random.Random(1), brightness=0, contrast=0, saturation=0, hue=0)
    assert torch.equal(params[:4], torch.tensor([1.0, 1.0, 1.0, 0.0]))
    # Strengths above 1 clamp the lower bound at 0, as torchvision does.
    rng = random.Random(2)
    assert all(aug.draw_color_jitter(rng, brightness=3)[0] >= 0 for _ in range(50))
    with pytest.raises(ValueError, match="contrast must be >= 0"):
        aug.draw_color_jitter(random.Random(0), contrast=-0.1)
    with pytest.raises(ValueError, match=r"hue must be in \[0, 0.5\]"):
        aug.draw_color_jitter(random.Random(0), hue=0.6)


def test_matches_torchvision_for_random_draws(device):
    rng = random.Random(3)
    batch = 24
    params = torch.stack([aug.draw_color_jitter(rng, 0.5, 0.5, 0.5, 0.5) for _ in range(batch)])
    images = make_images(batch, 3, 6, 10)
    got = aug.apply_color_jitter(images.to(device), params.to(device)).cpu()
    for i in range(batch):
        assert_close(got[i], torchvision_reference(images[i], params[i]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("hue_slot", range(4))
def test_matches_torchvision_with_hue_in_every_slot(device, hue_slot):
    others = [aug.OP_SATURATION, aug.OP_BRIGHTNESS, aug.OP_CONTRAST]
    order = others[:hue_slot] + [aug.OP_HUE] + others[hue_slot:]
    params = torch.stack(
        [params_for((1.15, 0.85, 1.2, 0.08), order), params_for((0.8, 1.2, 0.8, -0.1), order[::-1])]
    )
    images = make_images(2, 3, 5, 9, seed=hue_slot)
    got = aug.apply_color_jitter(images.to(device), params.to(device)).cpu()
    for i in range(2):
        want = torchvision_reference(images[i], params[i])
        assert_close(got[i], want, atol=1e-5, rtol=0)
        assert (want - images[i]).abs().max() > 0.05  # the jitter is not a no-op


def test_unit_factors_and_zero_hue_are_exact_identity(device):
    images = make_images(3, 3, 4, 9).to(device)
    orders = ([0, 1, 2, 3], [3, 2, 1, 0], [2, 3, 0, 1])
    params = torch.stack([params_for((1, 1, 1, 0), order) for order in orders])
    assert torch.equal(aug.apply_color_jitter(images, params.to(device)), images)


def test_disabled_samples_pass_through(device):
    rng = random.Random(4)
    images = make_images(3, 3, 5, 9).to(device)
    params = torch.stack([aug.draw_color_jitter(rng) for _ in range(3)]).to(device)
    enabled = torch.tensor([True, False, True], device=device)
    got = aug.apply_color_jitter(images, params, enabled)
    everything = aug.apply_color_jitter(images, params)
    assert torch.equal(got[1], images[1])
    assert torch.equal(got[[0, 2]], everything[[0, 2]])
    assert (got[[0, 2]] - images[[0, 2]]).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_frames_share_their_sample_params(device):
    # B x F x 3 x H x W: every frame gets its sample's parameters, but the contrast mean is
    # still taken per frame (per image), as torchvision would.
    rng = random.Random(5)
    batch, frames = 2, 3
    images = make_images(batch, frames, 3, 4, 8, seed=1)
    images[:, 1] *= 0.3  # a darker frame has a different grey mean
    params = torch.stack([aug.draw_color_jitter(rng, 0.4, 0.4, 0.4, 0.2) for _ in range(batch)])
    got = aug.apply_color_jitter(images.to(device), params.to(device)).cpu()
    for b, f in itertools.product(range(batch), range(frames)):
        assert_close(got[b, f], torchvision_reference(images[b, f], params[b]), atol=1e-5, rtol=0)
    single = aug.apply_color_jitter(images[:, 2].to(device), params.to(device)).cpu()
    assert torch.equal(got[:, 2], single)


def test_shape_errors():
    params = torch.zeros(2, aug.JITTER_PARAM_DIM)
    with pytest.raises(ValueError, match="Bx3xHxW or BxFx3xHxW"):
        aug.apply_color_jitter(torch.zeros(2, 4, 5, 6), params)
    with pytest.raises(ValueError, match="params must be 2x8"):
        aug.apply_color_jitter(torch.zeros(2, 3, 5, 6), params[:, :4])
    with pytest.raises(ValueError, match=r"enabled must have shape \(2,\)"):
        aug.apply_color_jitter(torch.zeros(2, 3, 5, 6), params, torch.ones(3, dtype=torch.bool))


@pytest.mark.gpu
def test_no_host_synchronisation_on_cuda():
    images = make_images(4, 2, 3, 8, 8).to("cuda")
    rng = random.Random(6)
    params = torch.stack([aug.draw_color_jitter(rng) for _ in range(4)]).to("cuda")
    enabled = torch.tensor([True, False, True, True], device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        aug.apply_color_jitter(images, params, enabled)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def where_everywhere_jitter(images, params, enabled):
    """`apply_color_jitter` as the GPU runs it: every sample through every op, torch.where picks."""
    frames = images.unsqueeze(1) if images.dim() == 4 else images
    batch = frames.shape[0]

    def column(index):
        return params[:, index].view(batch, 1, 1, 1, 1)

    out = frames
    for slot in range(aug.NUM_OPS):
        op = column(aug.ORDER_START + slot).round()
        is_brightness, is_contrast = op == aug.OP_BRIGHTNESS, op == aug.OP_CONTRAST
        gray = aug._grayscale(out)
        reference = torch.where(is_contrast, gray.mean(dim=(-3, -2, -1), keepdim=True), gray)
        reference = reference.masked_fill(is_brightness, 0.0)
        factor = torch.where(is_brightness, column(aug.BRIGHTNESS_INDEX),
                             torch.where(is_contrast, column(aug.CONTRAST_INDEX), column(aug.SATURATION_INDEX)))
        blended = (factor * out + (1.0 - factor) * reference).clamp(0.0, 1.0)
        hue = column(aug.HUE_INDEX)
        out = torch.where(op == aug.OP_HUE, torch.where(hue != 0, aug._shift_hue(out, hue), out), blended)
    out = torch.where(enabled.view(batch, 1, 1, 1, 1), out, frames)
    return out.reshape(images.shape)


def test_cpu_jitter_converts_only_the_samples_that_shift_their_hue_with_the_same_numbers(monkeypatch):
    rng = random.Random(6)
    images = make_images(6, 3, 3, 16, 24, seed=2)
    params = torch.stack([aug.draw_color_jitter(rng, 0.4, 0.4, 0.4, 0.2) for _ in range(6)])
    params[2, aug.HUE_INDEX] = 0.0  # a zero shift leaves its slot's input untouched
    enabled = torch.tensor([True, False, True, True, False, True])
    converted = []
    original = aug._shift_hue

    def counting(images, shift):
        converted.append(images.shape[0])
        return original(images, shift)

    monkeypatch.setattr(aug, "_shift_hue", counting)
    got = aug.apply_color_jitter(images, params, enabled)
    assert sum(converted) == 3  # the enabled samples with a non-zero shift, once each
    assert torch.equal(got, where_everywhere_jitter(images, params, enabled))
