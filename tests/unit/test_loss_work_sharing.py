"""The photometric loss computes what depends on the images alone once per batch, with the numbers,
the random draws and the gradients of the straightforward computation, bit for bit.

The reference below is the loss as it was before the sharing: every scale (and every view) computed
its own unwarped errors and its target's SSIM statistics. Both paths run on the same forward pass
from the same random state; every loss value, auto-mask and gradient must be equal, not close.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

import losses
from datasets import KITTIRAWDataset
from layers import SSIM_C1, SSIM_C2, SSIM_WEIGHT, per_pixel_min_loss, ssim_loss_map, ssim_reference
from model import SelfSupervisedDepth
from options import parse_train_options

HEIGHT, WIDTH, BATCH = 64, 64, 2
DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def reference_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`layers.ssim_loss_map` as written before `ssim_reference` existed (both sides recomputed)."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def reference_reprojection(pred, target, use_ssim):
    l1 = (target - pred).abs().mean(dim=1, keepdim=True)
    if not use_ssim:
        return l1
    return SSIM_WEIGHT * reference_ssim(pred, target).mean(dim=1, keepdim=True) + (1.0 - SSIM_WEIGHT) * l1


def reference_view_photometric_loss(inputs, outputs, settings, view):
    """The photometric loss computed scale by scale and view by view, nothing shared."""
    total, maps = 0.0, {}
    for scale in settings.scales:
        source_scale = settings.source_scale(scale)
        target = inputs[(view.images, 0, source_scale)]
        reprojection = torch.cat([reference_reprojection(outputs[(view.key("warped"), f, scale)], target,
                                                         settings.use_ssim) for f in settings.source_frame_ids], dim=1)
        identity = None
        if settings.automask:
            identity = torch.cat([reference_reprojection(inputs[(view.images, f, source_scale)], target,
                                                         settings.use_ssim) for f in settings.source_frame_ids], dim=1)
        loss_map, auto_mask = per_pixel_min_loss(reprojection, identity, average=settings.avg_reprojection,
                                                 tie_noise=settings.tie_noise, interleave=settings.interleave_min)
        if auto_mask is not None:
            maps[(view.key("automask"), scale)] = auto_mask.detach()
        total = total + loss_map.mean()
    return total / len(settings.scales), maps


def write_drive(root: Path) -> None:
    rng = np.random.default_rng(0)
    for camera in (2, 3):
        folder = root / DRIVE / f"image_0{camera}" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        for frame in range(4):
            cv2.imwrite(str(folder / f"{frame:010d}.png"), rng.integers(0, 256, size=(72, 80, 3), dtype=np.uint8))


def batch_of(root: Path, model: SelfSupervisedDepth, bde: bool) -> dict:
    """A collated training batch from the real loader (BDEdepth's views included with ``bde``)."""
    extra = dict(local_crop=True, patch_reshuffle=True) if bde else {}
    dataset = KITTIRAWDataset(root, [f"{DRIVE} {i} l" for i in (1, 2)], HEIGHT, WIDTH, [0, -1, 1],
                              len(model.scales), is_train=True, split_name="train_files.txt", **extra)
    return default_collate([dataset[(i, 100 + i)] for i in range(BATCH)])


def losses_and_gradients(model, inputs, outputs, seed):
    """(every loss value, every automask, every trainable gradient, the next random draws) from ``seed``."""
    outputs = dict(outputs)  # the loss terms add their maps (and the shared errors) to it
    torch.manual_seed(seed)
    values = model.losses(inputs, outputs)
    next_draws = torch.rand(4)  # the same only if both paths drew the same amount of noise
    model.zero_grad(set_to_none=True)
    values["loss"].backward(retain_graph=True)
    masks = {key: value for key, value in outputs.items() if isinstance(key, tuple) and "automask" in key[0]}
    grads = [p.grad.clone() for p in model.trainable_parameters() if p.grad is not None]
    return values, masks, grads, next_draws


@pytest.mark.parametrize("extra, bde", [
    ((), False),                                        # Monodepth2: four scales, all compared at full size
    (("--v1_multiscale",), False),                      # each scale at its own size: nothing to share
    (("--avg_reprojection", "--no-ssim"), False),
    (("--loss_preset", "packnet"), False),              # no tie noise, interleaved minimum
    (("--num_scales", "2", "--use_local_crop", "--use_patch_reshuffle"), True),  # the reshuffled view shares
])
@pytest.mark.slow
def test_shared_image_only_errors_give_the_same_losses_masks_and_gradients_bit_for_bit(
        tmp_path, monkeypatch, extra, bde):
    write_drive(tmp_path)
    opts = parse_train_options(["--data_path", str(tmp_path), "--height", str(HEIGHT), "--width", str(WIDTH),
                                "--weights_init", "scratch", "--device", "cpu", *extra])
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(opts)
    inputs = model.prepare_inputs(batch_of(tmp_path, model, bde), torch.device("cpu"))
    outputs = model(inputs)

    shared = losses_and_gradients(model, inputs, outputs, seed=7)
    with monkeypatch.context() as patched:
        patched.setattr(losses, "view_photometric_loss", reference_view_photometric_loss)
        reference = losses_and_gradients(model, inputs, outputs, seed=7)

    assert shared[0].keys() == reference[0].keys()
    for name in reference[0]:
        assert torch.equal(shared[0][name], reference[0][name]), name
    assert shared[1].keys() == reference[1].keys()
    assert (len(reference[1]) > 0) == opts.automask
    for key in reference[1]:
        assert torch.equal(shared[1][key], reference[1][key]), key
    assert len(shared[2]) == len(reference[2]) > 0
    assert all(torch.equal(a, b) for a, b in zip(shared[2], reference[2]))
    assert torch.equal(shared[3], reference[3])

def test_image_only_errors_are_computed_once_per_resolution_and_images(tmp_path, monkeypatch):
    write_drive(tmp_path)
    opts = parse_train_options(["--data_path", str(tmp_path), "--height", str(HEIGHT), "--width", str(WIDTH),
                                "--weights_init", "scratch", "--device", "cpu", "--num_scales", "4",
                                "--use_patch_reshuffle"])
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(opts)
    inputs = model.prepare_inputs(batch_of(tmp_path, model, bde=True), torch.device("cpu"))
    outputs = model(inputs)
    references = []
    monkeypatch.setattr(losses, "ssim_reference", lambda y: references.append(y) or ssim_reference(y))
    model.losses(inputs, outputs)
    # Original and reshuffled views, four scales each, all compared with the full-size frame 0: once.
    assert len(references) == 1 and references[0] is inputs[("color", 0, 0)]


def test_ssim_with_a_precomputed_reference_is_the_same_map():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 9, 11, generator=gen), torch.rand(2, 3, 9, 11, generator=gen)
    assert torch.equal(ssim_loss_map(x, ssim_reference(y)), reference_ssim(x, y))
    assert torch.equal(ssim_loss_map(x, y), reference_ssim(x, y))
    with pytest.raises(ValueError):
        ssim_loss_map(x[:, :, :8], ssim_reference(y))
