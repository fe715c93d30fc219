"""Closed-form tests for layers.py losses: SSIM, reprojection, auto-masking, smoothness, SI-log."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import layers

F64 = torch.float64
C1, C2 = 0.01**2, 0.03**2


def constant_image(values, height=4, width=5, **kw) -> torch.Tensor:
    """``1 x C x H x W`` image whose channel c is the constant ``values[c]``."""
    return torch.tensor(values, **kw).view(1, -1, 1, 1).expand(1, len(values), height, width)


# ---------------------------------------------------------------------------------------------
# SSIM and the photometric error
# ---------------------------------------------------------------------------------------------


def test_ssim_of_identical_images_is_zero(device):
    x = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(0)).to(device)
    assert torch.equal(layers.ssim_loss_map(x, x), torch.zeros_like(x))


def test_ssim_of_two_constant_images(device):
    # No variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.6
    x = constant_image([a], dtype=F64, device=device)
    loss = layers.ssim_loss_map(x, constant_image([b], dtype=F64, device=device))
    want = (1 - (2 * a * b + C1) / (a * a + b * b + C1)) / 2
    assert_close(loss, torch.full_like(loss, want), atol=1e-12, rtol=0)


def test_ssim_of_anticorrelated_checkerboards(device):
    # Reflection padding keeps a checkerboard a checkerboard, so every 3x3 window holds 5 of
    # its centre value and 4 of the other: mu_x mu_y = 20/81, mu_x^2 + mu_y^2 = 41/81,
    # sigma_x = sigma_y = 20/81 and sigma_xy = -20/81 everywhere.
    v, u = torch.meshgrid(torch.arange(6), torch.arange(8), indexing="ij")
    x = ((u + v) % 2).to(F64).expand(1, 1, 6, 8).to(device)
    ssim = (40 / 81 + C1) * (-40 / 81 + C2) / ((41 / 81 + C1) * (40 / 81 + C2))
    loss = layers.ssim_loss_map(x, 1 - x)
    assert_close(loss, torch.full_like(loss, (1 - ssim) / 2), atol=1e-12, rtol=0)


def test_ssim_border_uses_reflection_padding(device):
    # Columns (0, 0.9, 0.3, 0.6) against a constant 0.5: at column 0 the reflected 3x3 window
    # holds (0.9, 0, 0.9) in every row; with y constant, sigma_y = sigma_xy = 0 and
    # SSIM = (2 mu_x b + C1) C2 / ((mu_x^2 + b^2 + C1)(sigma_x + C2)).
    x = torch.tensor([0.0, 0.9, 0.3, 0.6], dtype=F64, device=device).expand(1, 1, 3, 4)
    b = 0.5
    window = torch.tensor([0.9, 0.0, 0.9], dtype=F64)
    mu = window.mean().item()
    sigma = (window * window).mean().item() - mu * mu
    ssim = (2 * mu * b + C1) * C2 / ((mu * mu + b * b + C1) * (sigma + C2))
    loss = layers.ssim_loss_map(x, torch.full_like(x, b))
    assert_close(loss[0, 0, :, 0], torch.full_like(loss[0, 0, :, 0], (1 - ssim) / 2))


def test_reprojection_loss_closed_form(device):
    pred = constant_image([0.0, 0.0, 0.0], dtype=F64, device=device)
    target = constant_image([0.3, 0.6, 0.9], dtype=F64, device=device)
    l1 = 0.6
    ssim = sum((1 - C1 / (b * b + C1)) / 2 for b in (0.3, 0.6, 0.9)) / 3
    for kwargs, want in [
        ({}, 0.85 * ssim + 0.15 * l1),
        ({"ssim_weight": 0.5}, 0.5 * ssim + 0.5 * l1),
        ({"use_ssim": False}, l1),
    ]:
        loss = layers.reprojection_loss(pred, target, **kwargs)
        assert loss.shape == (1, 1, 4, 5)
        assert_close(loss, torch.full_like(loss, want), atol=1e-12, rtol=0)


def test_reprojection_loss_gradcheck(device):
    gen = torch.Generator().manual_seed(1)
    pred = torch.rand(1, 2, 3, 3, generator=gen, dtype=F64).to(device).requires_grad_()
    target = torch.rand(1, 2, 3, 3, generator=gen, dtype=F64).to(device)
    assert torch.autograd.gradcheck(lambda p: layers.reprojection_loss(p, target), (pred,))


# ---------------------------------------------------------------------------------------------
# per-pixel minimum and auto-masking
# ---------------------------------------------------------------------------------------------


def hand_made(device):
    # Four pixels, two source frames:
    #   0: identity 0.5 beats reprojection min 1   -> 0.5, masked out
    #   1: second warped frame wins with 2         -> 2,   kept
    #   2: first warped frame wins with 3          -> 3,   kept
    #   3: identity 1 beats 9                      -> 1,   masked out
    reprojection = torch.tensor([[1.0, 5, 3, 9], [4, 2, 6, 9]], device=device).view(1, 2, 1, 4)
    identity = torch.tensor([[0.5, 9, 9, 1], [9, 9, 9, 9]], device=device).view(1, 2, 1, 4)
    return reprojection, identity


def test_per_pixel_min_selects_and_masks(device):
    reprojection, identity = hand_made(device)
    loss, mask = layers.per_pixel_min_loss(reprojection, identity)
    assert_close(loss.view(-1), torch.tensor([0.5, 2, 3, 1], device=device), atol=1e-4, rtol=0)
    assert mask.dtype == reprojection.dtype
    assert torch.equal(mask.view(-1), torch.tensor([0.0, 1, 1, 0], device=device))


def test_per_pixel_min_with_average(device):
    # Means over the two frames: reprojection (2.5, 3.5, 4.5, 9), identity (4.75, 9, 9, 5).
    reprojection, identity = hand_made(device)
    loss, mask = layers.per_pixel_min_loss(reprojection, identity, average=True)
    assert_close(loss.view(-1), torch.tensor([2.5, 3.5, 4.5, 5], device=device), atol=1e-4, rtol=0)
    assert torch.equal(mask.view(-1), torch.tensor([1.0, 1, 1, 0], device=device))


def test_per_pixel_min_without_identity(device):
    reprojection, _ = hand_made(device)
    loss, mask = layers.per_pixel_min_loss(reprojection)
    assert mask is None
    assert torch.equal(loss.view(-1), torch.tensor([1.0, 2, 3, 9], device=device))
    loss, _ = layers.per_pixel_min_loss(reprojection, average=True)
    assert torch.equal(loss.view(-1), torch.tensor([2.5, 3.5, 4.5, 9], device=device))
    single = reprojection[:, :1]
    assert layers.per_pixel_min_loss(single)[0] is single


def test_tie_noise_breaks_exact_ties_both_ways(device):
    torch.manual_seed(0)  # seeds every device's generator
    errors = torch.rand(2, 1, 32, 32, device=device)
    loss, mask = layers.per_pixel_min_loss(errors, errors.clone())
    # Noise with std 1e-5: the identity wins where its noise is negative, about half the time.
    assert 0.4 < mask.mean().item() < 0.6
    assert (loss <= errors).all() and (errors - loss).max().item() < 1e-4
    # Without noise the first minimum (the identity block) wins every tie.
    loss, mask = layers.per_pixel_min_loss(errors, errors.clone(), tie_noise=0.0)
    assert torch.equal(loss, errors) and not mask.any()


def test_per_pixel_min_shape_mismatch():
    with pytest.raises(ValueError, match="identity: expected shape"):
        layers.per_pixel_min_loss(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 4, 3))


# ---------------------------------------------------------------------------------------------
# edge-aware smoothness
# ---------------------------------------------------------------------------------------------


def test_smoothness_of_constant_disparity_is_zero(device):
    image = torch.rand(2, 3, 5, 6, generator=torch.Generator().manual_seed(2)).to(device)
    disp = torch.full((2, 1, 5, 6), 0.37, device=device)
    assert layers.edge_aware_smoothness(disp, image).item() == 0.0


def test_smoothness_of_horizontal_ramp_on_flat_image(device):
    # disp = u + 1 over 4 columns: mean 2.5, so the normalised steps are 1/2.5 = 0.4 each,
    # no vertical steps, and a flat image weights them by exp(0) = 1.
    disp = torch.arange(1.0, 5.0, dtype=F64, device=device).expand(1, 1, 3, 4)
    image = torch.full((1, 3, 3, 4), 0.5, dtype=F64, device=device)
    assert_close(layers.edge_aware_smoothness(disp, image).item(), 0.4, atol=1e-6, rtol=0)
    # An image edge between columns 1 and 2 (channel-mean step 1) damps that step by e^-1.
    image[..., 2:] = 1.5
    want = 0.4 * (2 + math.exp(-1)) / 3
    assert_close(layers.edge_aware_smoothness(disp, image).item(), want, atol=1e-6, rtol=0)


def test_smoothness_of_vertical_ramp_is_per_image_and_scale_invariant(device):
    # disp = v + 1 over 5 rows: mean 3, so every vertical step is 1/3 and the loss is 1/3.
    ramp = torch.arange(1.0, 6.0, dtype=F64, device=device).view(1, 1, 5, 1).expand(1, 1, 5, 4)
    image = torch.zeros(1, 3, 5, 4, dtype=F64, device=device)
    for scale in (1.0, 40.0):
        got = layers.edge_aware_smoothness(scale * ramp, image).item()
        assert_close(got, 1 / 3, atol=1e-6, rtol=0)
    # Each image is normalised by its own mean: a batch of the ramp and a constant 40 gives
    # (1/3 + 0) / 2 (a batch-wide mean of 21.5 would give 1/43 instead).
    disp = torch.cat([ramp, torch.full_like(ramp, 40.0)])
    got = layers.edge_aware_smoothness(disp, image.expand(2, 3, 5, 4)).item()
    assert_close(got, 1 / 6, atol=1e-6, rtol=0)


def test_smoothness_gradcheck(device):
    gen = torch.Generator().manual_seed(3)
    disp = (torch.rand(1, 1, 3, 4, generator=gen, dtype=F64) + 0.5).to(device).requires_grad_()
    image = torch.rand(1, 3, 3, 4, generator=gen, dtype=F64).to(device)
    assert torch.autograd.gradcheck(lambda d: layers.edge_aware_smoothness(d, image), (disp,))


# ---------------------------------------------------------------------------------------------
# scale-invariant log loss
# ---------------------------------------------------------------------------------------------


def test_si_log_loss_zero_for_equal_inputs(device):
    target = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(4)).to(device) + 1
    assert layers.scale_invariant_log_loss(target, target.clone()).item() == 0.0


def test_si_log_loss_of_scaled_prediction(device):
    # d = ln c at every pixel: sum d^2 / n - lam (n ln c)^2 / n^2 = (1 - lam) (ln c)^2; the
    # per-sample values are averaged over the batch.
    target = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(5), dtype=F64) + 1
    target = target.to(device)
    scale = torch.tensor([2.0, 3.0], dtype=F64, device=device).view(2, 1, 1, 1)
    got = layers.scale_invariant_log_loss(scale * target, target)
    assert_close(got.item(), 0.5 * (math.log(2) ** 2 + math.log(3) ** 2) / 2, atol=1e-7, rtol=0)
    got = layers.scale_invariant_log_loss(scale * target, target, lam=0.25)
    assert_close(got.item(), 0.75 * (math.log(2) ** 2 + math.log(3) ** 2) / 2, atol=1e-7, rtol=0)


def test_si_log_loss_two_pixel_example_and_gradients_to_both(device):
    # d = (0, a): a^2 / 2 - 0.5 a^2 / 4 = 3 a^2 / 8.
    a = math.log(5.0)
    target = torch.tensor([[2.0, 3.0]], dtype=F64, device=device, requires_grad=True)
    pred = torch.tensor([[2.0, 15.0]], dtype=F64, device=device, requires_grad=True)
    loss = layers.scale_invariant_log_loss(pred, target)
    assert_close(loss.item(), 3 * a * a / 8, atol=1e-7, rtol=0)
    # Neither argument is detached (BDEdepth's behaviour).
    loss.backward()
    assert pred.grad.abs().sum() > 0 and target.grad.abs().sum() > 0


def test_si_log_loss_gradcheck(device):
    gen = torch.Generator().manual_seed(6)
    pred = (torch.rand(2, 1, 2, 3, generator=gen, dtype=F64) + 0.5).to(device).requires_grad_()
    target = (torch.rand(2, 1, 2, 3, generator=gen, dtype=F64) + 0.5).to(device).requires_grad_()
    assert torch.autograd.gradcheck(layers.scale_invariant_log_loss, (pred, target))


@pytest.mark.gpu
def test_view_synthesis_and_losses_do_not_synchronise_on_cuda():
    # A host synchronisation in the per-step path stalls the GPU queue every iteration.
    dev = torch.device("cuda")
    batch, height, width = 2, 8, 12
    target = torch.rand(batch, 3, height, width, device=dev)
    source = torch.rand(batch, 3, height, width, device=dev)
    disp = torch.rand(batch, 1, height, width, device=dev)
    K = torch.eye(4, device=dev).repeat(batch, 1, 1)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = 7.0, 15.0, 6.0, 4.0
    inv_K = torch.linalg.inv(K)  # may check for singular matrices; not part of the guarded path
    axisangle = torch.full((batch, 1, 3), 0.01, device=dev)
    translation = torch.full((batch, 1, 3), 0.05, device=dev)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _, depth = layers.disp_to_depth(disp, 0.1, 100.0)
        T = layers.transformation_from_parameters(axisangle, translation, invert=True)
        grid = layers.project(layers.backproject(depth, inv_K), K, T, height, width)
        reprojection = layers.reprojection_loss(layers.warp(source, grid), target)
        identity = layers.reprojection_loss(source, target)
        loss, _ = layers.per_pixel_min_loss(reprojection, identity)
        total = loss.mean() + layers.edge_aware_smoothness(disp, target)
        total = total + layers.scale_invariant_log_loss(depth, depth.flip(-1))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(total).item()
