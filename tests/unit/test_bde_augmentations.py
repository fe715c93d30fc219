"""BDEdepth's resizing-cropping and splitting-permuting views and their losses, against closed forms.

- The reshuffle is BDEdepth's split-and-swap, which is a 2-D cyclic roll; its restore is exact.
- The local crop's cameras: an identity pose reproduces the crop from the original frame; with
  a known translation, BDEdepth's pose correction and explicit crop intrinsics give the same warp
  (centred principal point), and only the explicit intrinsics stay right when it is not centred.
- The consistency loss vanishes for a consistent prediction and measures a pure scale exactly.
- Every parameter receives a gradient from every branch's terms.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import augmentation as aug
import layers
import local_crop
import losses
from local_crop import LOCAL_CROP_DIM

F64 = torch.float64


def crop_vector(ratio: float, resized_w: int, resized_h: int, x0: int, y0: int, dtype=F64) -> torch.Tensor:
    return torch.tensor([[ratio, resized_w, resized_h, x0, y0]], dtype=dtype)


def intrinsics(fx: float, fy: float, cx: float, cy: float, batch: int = 1) -> torch.Tensor:
    K = torch.eye(4, dtype=F64)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = fx, fy, cx, cy
    return K.repeat(batch, 1, 1)


def translation(tx: float, ty: float, tz: float, batch: int = 1) -> torch.Tensor:
    T = torch.eye(4, dtype=F64).repeat(batch, 1, 1)
    T[:, :3, 3] = torch.tensor([tx, ty, tz], dtype=F64)
    return T


# ---------------------------------------------------------------------------------------------
# Splitting-permuting
# ---------------------------------------------------------------------------------------------


def split_and_swap(image: torch.Tensor, split_w: int, split_h: int) -> torch.Tensor:
    """The reference's description, literally: swap left/right at w_i, then top/bottom at h_i."""
    swapped = torch.cat([image[..., split_w:], image[..., :split_w]], dim=-1)
    return torch.cat([swapped[..., split_h:, :], swapped[..., :split_h, :]], dim=-2)


def test_reshuffle_is_split_and_swap_and_a_2d_roll(device):
    height, width = 8, 12
    images = torch.rand(4, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    rng = random.Random(3)
    split = torch.stack([aug.draw_reshuffle_split(rng, height, width) for _ in range(4)])
    shuffled = aug.reshuffle_images(images, split.to(device))
    for b in range(4):
        split_x, split_y = split[b].tolist()
        w_i, h_i = width - split_x, height - split_y
        assert 0 < w_i < width and 0 < h_i < height
        assert torch.equal(shuffled[b], split_and_swap(images[b], w_i, h_i))
        assert torch.equal(shuffled[b], torch.roll(images[b], shifts=(split_y, split_x), dims=(-2, -1)))
    # new[r, c] = old[(r + h_i) mod H, (c + w_i) mod W]
    w_i, h_i = width - int(split[0, 0]), height - int(split[0, 1])
    assert shuffled[0, :, 0, 0].equal(images[0, :, h_i, w_i])


def test_roll_images_takes_any_shift_per_sample(device):
    images = torch.arange(2 * 1 * 3 * 5, dtype=torch.float32).view(2, 1, 3, 5).to(device)
    shifts = torch.tensor([[-7, 4], [5, -1]], device=device)
    rolled = aug.roll_images(images, shifts)
    for b in range(2):
        expected = torch.roll(images[b], shifts=(int(shifts[b, 1]), int(shifts[b, 0])), dims=(-2, -1))
        assert torch.equal(rolled[b], expected)
    with pytest.raises(ValueError, match="B x C x H x W images and B x 2 shifts"):
        aug.roll_images(images, shifts[:1])


def test_restore_is_the_exact_inverse_at_every_scale(device):
    height, width, scales = 16, 32, 4
    images = torch.rand(3, 1, height, width, generator=torch.Generator().manual_seed(1)).to(device)
    # splits that are multiples of 8: the roll commutes with 2x2 pooling at every scale
    split = torch.tensor([[8, 8], [24, 0], [16, 8]], device=device)
    shuffled = aug.reshuffle_images(images, split)
    assert torch.equal(aug.restore_reshuffled(shuffled, split, width), images)
    pooled_original, pooled_shuffled = images, shuffled
    for _ in range(1, scales):
        pooled_original = F.avg_pool2d(pooled_original, 2)
        pooled_shuffled = F.avg_pool2d(pooled_shuffled, 2)
        assert torch.equal(aug.restore_reshuffled(pooled_shuffled, split, width), pooled_original)


def test_restore_rounds_the_split_half_to_even_at_smaller_scales():
    maps = torch.arange(16.0).view(1, 1, 1, 16)
    for split_x, expected_shift in ((3, 2), (5, 2), (7, 4), (6, 3)):  # round(split / 2)
        restored = aug.restore_reshuffled(maps, torch.tensor([[split_x, 0]]), full_width=32)
        assert torch.equal(restored, torch.roll(maps, -expected_shift, dims=-1))


def test_draw_reshuffle_split_ranges_and_errors():
    rng = random.Random(0)
    for _ in range(200):
        split_x, split_y = aug.draw_reshuffle_split(rng, 192, 640).tolist()
        assert 640 - int(640 * 0.9) <= split_x <= 640 - int(640 * 0.1)
        assert 192 - int(192 * 0.9) <= split_y <= 192 - int(192 * 0.1)
    with pytest.raises(ValueError, match="0 < low <= high < 1"):
        aug.draw_reshuffle_split(rng, 8, 8, (0.5, 1.0))


# ---------------------------------------------------------------------------------------------
# Resizing-cropping: the draw and the cameras
# ---------------------------------------------------------------------------------------------


def test_draw_local_crop_ranges_and_errors():
    rng = random.Random(0)
    for _ in range(200):
        ratio, resized_w, resized_h, x0, y0 = local_crop.draw_local_crop(rng, 192, 640).tolist()
        assert 1.2 <= ratio <= 2.0
        assert (resized_w, resized_h) == (int(640 * ratio), int(192 * ratio))
        assert 0 <= x0 <= resized_w - 640 and 0 <= y0 <= resized_h - 192
        assert x0 == int(x0) and y0 == int(y0)
    with pytest.raises(ValueError, match="1 <= low <= high"):
        local_crop.draw_local_crop(rng, 8, 8, (0.9, 1.5))


def linear_ramp(height: int, width: int, scale: float = 1.0) -> np.ndarray:
    """float32 H x W x 3 image, linear in the pixel-centre coordinates of a width-``scale`` grid.

    Bilinear sampling and area resizing reproduce a linear function exactly (away from the
    borders), so warps can be compared without interpolation error.
    """
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    u, v = u / scale, v / scale
    return np.stack([0.01 * u, 0.02 * v, 0.3 + 0.005 * u - 0.004 * v], axis=-1).astype(np.float32)


@pytest.mark.parametrize("ratio, x0, y0", [(1.5, 7, 3), (1.23, 0, 5), (2.0, 30, 15)])
def test_identity_pose_warps_the_original_frame_onto_the_crop(ratio, x0, y0):
    # A native frame resized to the network size, and the same frame resized by `ratio` and
    # cropped (the dataset's `crop_local`): with the identity pose, any depth, and the crop's
    # own intrinsics, warping the network-size frame into the crop view gives the crop.
    height, width, native_scale = 24, 48, 2.5
    native = linear_ramp(int(height * native_scale), int(width * native_scale))
    # Bilinear resizing is exact on a linear ramp (OpenCV's fractional INTER_AREA is not quite),
    # so the comparison sees the geometry alone.
    network = cv2.resize(native, (width, height), interpolation=cv2.INTER_LINEAR)
    resized_w, resized_h = int(width * ratio), int(height * ratio)
    crop = crop_vector(ratio, resized_w, resized_h, x0, y0)
    local = cv2.resize(native, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    local = local[y0:y0 + height, x0:x0 + width]

    K = intrinsics(0.6 * width, 1.9 * height, 0.37 * width, 0.61 * height)  # off-centre on purpose
    camera = local_crop.local_crop_camera(crop, K, torch.linalg.inv(K), height, width)
    depth = 1.0 + torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(2), dtype=F64)
    points = layers.backproject(depth * camera["depth_scale"].view(-1, 1, 1, 1), camera["inv_K"])
    grid = layers.project(points, K, torch.eye(4, dtype=F64)[None], height, width)
    image = torch.from_numpy(network).permute(2, 0, 1)[None].to(F64)
    warped = layers.warp(image, grid)[0].permute(1, 2, 0).numpy()
    interior = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(warped[interior], local[interior], atol=1e-5)


def ground_truth_crop_grid(K, crop, depth, T, height, width):
    """Sampling grid of the source crop for each target crop pixel, from first principles.

    Crop pixel -> original pixel (undo resize and crop) -> 3-D point at the true depth ->
    moved by T -> projected with the original K -> into the source crop.
    """
    ratio, resized_w, resized_h, x0, y0 = crop[0].tolist()
    scale = torch.tensor([resized_w / width, resized_h / height], dtype=F64)
    offset = torch.tensor([x0, y0], dtype=F64)
    v, u = torch.meshgrid(torch.arange(height, dtype=F64), torch.arange(width, dtype=F64), indexing="ij")
    uv_crop = torch.stack([u, v], dim=-1)
    uv_orig = (uv_crop + offset + 0.5) / scale - 0.5
    rays = torch.cat([uv_orig, torch.ones_like(u)[..., None]], dim=-1) @ torch.linalg.inv(K[0, :3, :3]).T
    points = rays * depth[0, 0, :, :, None]
    moved = points @ T[0, :3, :3].T + T[0, :3, 3]
    pix = moved @ K[0, :3, :3].T
    uv_src = pix[..., :2] / pix[..., 2:]
    uv_src_crop = (uv_src + 0.5) * scale - 0.5 - offset
    grid = torch.stack([2 * uv_src_crop[..., 0] / (width - 1) - 1, 2 * uv_src_crop[..., 1] / (height - 1) - 1], -1)
    return grid[None]


def warp_grid_from_camera(camera, K, T, predicted_depth, height, width):
    Rc = camera["Rc"]
    T_used = T if Rc is None else local_crop.crop_pose_correction(T, Rc)
    points = layers.backproject(predicted_depth * camera["depth_scale"].view(-1, 1, 1, 1), camera["inv_K"])
    return layers.project(points, camera["K"], T_used, height, width)


def test_pose_correction_equals_explicit_crop_intrinsics_for_a_known_translation():
    # Centred principal point (in pixel-centre coordinates) and one focal length: BDEdepth's
    # virtual camera Rc with the original K and depth phi Z warps exactly as the crop's own
    # intrinsics with the true depth Z, when Rc's centre and phi describe the same crop.
    height, width = 32, 64
    ratio, resized_w, resized_h, x0, y0 = 1.5, 96, 48, 13, 9  # isotropic: 96/64 == 48/32
    crop = crop_vector(ratio, resized_w, resized_h, x0, y0)
    K = intrinsics(0.58 * width, 1.92 * height, (width - 1) / 2, (height - 1) / 2)
    T = translation(0.3, -0.1, 0.8)
    depth = 2.0 + 3.0 * torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(4), dtype=F64)

    explicit = local_crop.local_crop_camera(crop, K, torch.linalg.inv(K), height, width)
    phi = torch.tensor([width / resized_w], dtype=F64)
    center = torch.tensor([[(2 * x0 + width) / resized_w - 1, (2 * y0 + height) / resized_h - 1]], dtype=F64)
    focal = torch.tensor([[K[0, 0, 0] / width, K[0, 1, 1] / height]], dtype=F64)
    Rc = local_crop.crop_camera_matrix(center, phi, focal)
    corrected = {"K": K, "inv_K": torch.linalg.inv(K), "Rc": Rc, "depth_scale": torch.ones(1, dtype=F64)}

    virtual_depth = depth * phi  # what the network is expected to predict for the crop
    grid_explicit = warp_grid_from_camera(explicit, K, T, virtual_depth, height, width)
    grid_corrected = warp_grid_from_camera(corrected, K, T, virtual_depth, height, width)
    # (project adds 1e-7 to the depth before dividing: agreement to 1e-6 of the half-width.)
    assert_close(grid_corrected, grid_explicit, atol=1e-6, rtol=0)
    assert_close(grid_explicit, ground_truth_crop_grid(K, crop, depth, T, height, width), atol=1e-6, rtol=0)
    # The translation does move the image: this is not the identity warp.
    identity = warp_grid_from_camera(explicit, K, torch.eye(4, dtype=F64)[None], virtual_depth, height, width)
    assert (grid_explicit - identity).abs().max() > 0.05

    # The reference's own parameters (align-corners centre and phi = (W-1)/(W_r-1)) are a
    # close approximation of the same warp: within a pixel.
    reference = local_crop.local_crop_camera(crop, K, torch.linalg.inv(K), height, width, reference=True)
    grid_reference = warp_grid_from_camera(reference, K, T, virtual_depth, height, width)
    pixels = (grid_reference - grid_explicit).abs() * torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=F64)
    assert pixels.max() < 1.0


def test_per_sample_crop_intrinsics_fix_off_centre_principal_points_and_mixed_focals():
    # Two samples with different focal lengths and an off-centre principal point: the crop's
    # own intrinsics reproduce the true warp for both; the reference (centred principal point,
    # batch element 0's focal length) is off by pixels.
    height, width = 32, 64
    crop = torch.cat([crop_vector(1.5, 96, 48, 13, 9), crop_vector(1.8, 115, 57, 40, 20)])
    K = torch.cat([intrinsics(0.58 * width, 1.92 * height, 0.40 * width, 0.58 * height),
                   intrinsics(1.10 * width, 2.50 * height, 0.55 * width, 0.45 * height)])
    T = translation(0.3, -0.1, 0.8, batch=2)
    depth = 2.0 + 3.0 * torch.rand(2, 1, height, width, generator=torch.Generator().manual_seed(5), dtype=F64)
    explicit = local_crop.local_crop_camera(crop, K, torch.linalg.inv(K), height, width)
    reference = local_crop.local_crop_camera(crop, K, torch.linalg.inv(K), height, width, reference=True)
    for b in range(2):
        zoom = crop[b, 1] / width
        truth = ground_truth_crop_grid(K[b:b + 1], crop[b:b + 1], depth[b:b + 1], T[:1], height, width)
        one = {key: (value[b:b + 1] if torch.is_tensor(value) else value) for key, value in explicit.items()}
        grid = warp_grid_from_camera(one, K[b:b + 1], T[:1], depth[b:b + 1] / zoom, height, width)
        assert_close(grid, truth, atol=1e-6, rtol=0)
    grid_reference = warp_grid_from_camera(reference, K, T, depth * (width - 1) / (crop[:, 1:2, None, None] - 1),
                                           height, width)
    truth = torch.cat([ground_truth_crop_grid(K[b:b + 1], crop[b:b + 1], depth[b:b + 1], T[:1], height, width)
                       for b in range(2)])
    pixels = (grid_reference - truth).abs() * torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=F64)
    assert pixels.max() > 2.0


def test_crop_intrinsics_inverse_and_shape_checks():
    K = intrinsics(40.0, 60.0, 30.0, 20.0, batch=2)
    scale = torch.tensor([[1.5, 1.25], [2.0, 2.0]], dtype=F64)
    offset = torch.tensor([[3.0, 4.0], [0.0, 7.0]], dtype=F64)
    K_crop, inv_K_crop = local_crop.crop_intrinsics(K, torch.linalg.inv(K), scale, offset)
    assert_close(K_crop @ inv_K_crop, torch.eye(4, dtype=F64).expand(2, 4, 4))
    assert_close(K_crop[0, 0, 0], torch.tensor(60.0, dtype=F64))
    assert_close(K_crop[0, 0, 2], torch.tensor(1.5 * 30.0 + 0.25 - 3.0, dtype=F64))
    with pytest.raises(ValueError, match="scale_xy: expected shape 2x2, got 1x2"):
        local_crop.crop_intrinsics(K, K, torch.ones(1, 2), torch.ones(2, 2))


def test_pose_correction_keeps_identity_and_inverts_rc():
    Rc = local_crop.crop_camera_matrix(torch.tensor([[0.3, -0.2]], dtype=F64), torch.tensor([0.6], dtype=F64),
                                   torch.tensor([[0.58, 1.92]], dtype=F64))
    identity = torch.eye(4, dtype=F64)[None]
    assert_close(local_crop.crop_pose_correction(identity, Rc), identity)
    T = translation(1.0, 2.0, 3.0)
    corrected = local_crop.crop_pose_correction(T, Rc)
    assert_close(corrected[0, :3, 3], Rc[0] @ torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    assert_close(corrected[0, :3, :3], torch.eye(3, dtype=F64))


# ---------------------------------------------------------------------------------------------
# The consistency losses and how the branches combine
# ---------------------------------------------------------------------------------------------


def settings(**kw) -> losses.LossSettings:
    return losses.LossSettings(scales=(0, 1), source_frame_ids=(-1, 1), **kw)


def ramp_disparity(batch: int, height: int, width: int) -> torch.Tensor:
    v, u = torch.meshgrid(torch.arange(height, dtype=F64), torch.arange(width, dtype=F64), indexing="ij")
    return (0.2 + 0.4 * (u + 0.5) / width + 0.2 * (v + 0.5) / height).expand(batch, 1, height, width).clone()


def test_local_consistency_vanishes_for_a_consistent_prediction_and_measures_a_scale():
    height, width = 32, 64
    crop = torch.cat([crop_vector(1.5, 96, 48, 13, 9), crop_vector(2.0, 128, 64, 60, 31)])
    # The original view predicts a disparity linear in the pixel coordinates; a consistent
    # local view predicts the depth of the pixels it sees divided by the magnification.
    main = {("disp", s): F.avg_pool2d(ramp_disparity(2, height, width), 2 ** s) for s in (0, 1)}
    offset, size, depth_scale = local_crop.local_crop_footprint(crop, height, width)
    inputs = {("color", 0, 0): torch.zeros(2, 3, height, width, dtype=F64), "local_crop": crop}

    def local_prediction(scale_factor: float) -> dict:
        out = dict(main)
        v, u = torch.meshgrid(torch.arange(height, dtype=F64), torch.arange(width, dtype=F64), indexing="ij")
        u_orig = offset[:, 0, None, None] + (u + 0.5) / width * size[:, 0, None, None]
        v_orig = offset[:, 1, None, None] + (v + 0.5) / height * size[:, 1, None, None]
        disp = (0.2 + 0.4 * u_orig / width + 0.2 * v_orig / height)[:, None]
        _, depth = layers.disp_to_depth(disp, 0.1, 100.0)
        depth = depth / depth_scale.view(-1, 1, 1, 1) * scale_factor
        scaled = 1.0 / depth
        full = (scaled - 0.01) / (10.0 - 0.01)
        for s in (0, 1):
            out[("disp_local", s)] = full if s == 0 else F.interpolate(full, scale_factor=0.5, mode="bilinear",
                                                                       align_corners=False)
        return out

    consistent, _ = losses.consistency_local_term(inputs, local_prediction(1.0), settings())
    assert consistent.item() < 1e-4
    c = 1.3
    scaled, _ = losses.consistency_local_term(inputs, local_prediction(c), settings())
    assert abs(scaled.item() - 0.5 * np.log(c) ** 2) < 2e-3


def test_local_consistency_footprint_matches_the_reference_window():
    # The reference compares the window x0' = round(W x0 / (W_r - 1)), w = round(W / r).
    height, width = 32, 64
    crop = crop_vector(1.7, 108, 54, 20, 11)
    offset, size, depth_scale = local_crop.local_crop_footprint(crop, height, width, reference=True)
    assert offset.tolist() == [[round(64 * 20 / 107), round(32 * 11 / 53)]]
    assert size.tolist() == [[round(64 / 1.7), round(32 / 1.7)]]
    assert depth_scale.tolist() == [1.7]
    _, mask = local_crop.crop_footprint_grid(offset, size, height, width)
    x0, y0 = (int(x) for x in offset[0])
    w, h = (int(x) for x in size[0])
    expected = torch.zeros(1, 1, height, width, dtype=F64)
    expected[..., y0:y0 + h, x0:x0 + w] = 1
    assert torch.equal(mask, expected)


def test_reshuffle_consistency_and_stop_gradient_flag():
    disp = torch.rand(2, 1, 8, 16, generator=torch.Generator().manual_seed(7), dtype=F64).requires_grad_()
    view = disp.detach().clone().requires_grad_()

    def outputs(view_factor: float) -> dict:
        out = {("disp", s): disp if s == 0 else F.avg_pool2d(disp, 2) for s in (0, 1)}
        out[("disp_reshuffle", 0)] = view * view_factor
        out[("disp_reshuffle", 1)] = F.avg_pool2d(view, 2) * view_factor
        return out

    loss, _ = losses.consistency_reshuffle_term({}, outputs(1.0), settings())
    assert loss.item() < 1e-12
    loss, _ = losses.consistency_reshuffle_term({}, outputs(1.1), settings())
    loss.backward()
    assert disp.grad.abs().sum() > 0 and view.grad.abs().sum() > 0  # the reference: both receive it
    disp.grad, view.grad = None, None
    loss, _ = losses.consistency_reshuffle_term({}, outputs(1.1), settings(consistency_stop_grad=True))
    loss.backward()
    assert disp.grad is None and view.grad.abs().sum() > 0


def test_masked_scale_invariant_log_loss():
    pred = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(8), dtype=F64) + 0.5
    target = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(9), dtype=F64) + 0.5
    ones = torch.ones_like(pred)
    assert_close(layers.scale_invariant_log_loss(pred, target, mask=ones),
                 layers.scale_invariant_log_loss(pred, target))
    mask = torch.zeros_like(pred)
    mask[..., 1:3, 2:5] = 1
    expected = layers.scale_invariant_log_loss(pred[..., 1:3, 2:5], target[..., 1:3, 2:5])
    assert_close(layers.scale_invariant_log_loss(pred, target, mask=mask), expected, rtol=1e-6, atol=0)


def bde_opts(**kw) -> argparse.Namespace:
    base = dict(disparity_smoothness=1e-3, use_local_crop=False, use_patch_reshuffle=False,
                consistency_weight=0.07)
    base.update(kw)
    return argparse.Namespace(**base)


def test_branches_combine_as_the_reference():
    names = lambda terms: [(name, pytest.approx(weight)) for name, _, weight in terms]  # noqa: E731
    assert names(losses.build_loss_terms(bde_opts())) == [("photometric", 1.0), ("smoothness", 1e-3)]
    both = losses.build_loss_terms(bde_opts(use_local_crop=True, use_patch_reshuffle=True))
    assert names(both) == [("photometric", 1 / 3), ("smoothness", 1e-3 / 3),
                           ("photometric_local", 1 / 3), ("smoothness_local", 1e-3 / 3),
                           ("photometric_reshuffle", 1 / 3), ("smoothness_reshuffle", 1e-3 / 3),
                           ("consistency_local", 0.07), ("consistency_reshuffle", 0.07)]
    local = losses.build_loss_terms(bde_opts(use_local_crop=True))
    assert names(local) == [("photometric", 0.5), ("smoothness", 5e-4), ("photometric_local", 0.5),
                            ("smoothness_local", 5e-4), ("consistency_local", 0.07)]
    for name, term, _ in both:
        assert losses.LOSS_TERMS[name] is term


# ---------------------------------------------------------------------------------------------
# Options, dataset and the whole step
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--resize_ratio", "0.8", "1.5"], "--resize_ratio must satisfy 1 <= LOW <= HIGH"),
    (["--split_ratio", "0.0", "0.9"], "--split_ratio must satisfy 0 < LOW <= HIGH < 1"),
    (["--consistency_weight", "-1"], "--consistency_weight must be >= 0"),
])
def test_option_validation(argv, message, capsys):
    from options import parse_train_options

    with pytest.raises(SystemExit):
        parse_train_options(argv)
    assert message in capsys.readouterr().err


DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


@pytest.fixture
def kitti_root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for camera in (2, 3):
        folder = tmp_path / DRIVE / f"image_0{camera}" / "data"
        folder.mkdir(parents=True)
        for frame in range(5):
            cv2.imwrite(str(folder / f"{frame:010d}.png"), rng.integers(0, 256, size=(80, 160, 3), dtype=np.uint8))
    return tmp_path


def test_dataset_returns_one_crop_box_for_every_frame(kitti_root):
    from datasets import KITTIRAWDataset

    dataset = KITTIRAWDataset(kitti_root, [f"{DRIVE} 2 l"], 32, 64, [0, -1, 1, "s"], 2, is_train=True,
                              local_crop=True, patch_reshuffle=True, jitter_per_frame=True)
    sample = dataset[(0, 11)]
    crop = sample["local_crop"]
    assert crop.shape == (LOCAL_CROP_DIM,) and sample["split_xy"].dtype == torch.int64
    assert sample["bde_jitter"].shape == (2, aug.JITTER_PARAM_DIM)
    paths = {0: (2, 2), -1: (1, 2), 1: (3, 2), "s": (2, 3)}
    for frame_id, (frame, camera) in paths.items():
        path = kitti_root / DRIVE / f"image_0{camera}" / "data" / f"{frame:010d}.png"
        native = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if sample["do_flip"]:
            native = native[:, ::-1]
        expected = dataset.crop_local(np.ascontiguousarray(native), crop)
        assert sample[("color_local_uint8", frame_id, 0)].shape == (3, 32, 64)
        np.testing.assert_array_equal(sample[("color_local_uint8", frame_id, 0)].permute(1, 2, 0).numpy(), expected)
    again = dataset[(0, 11)]
    for key in ("local_crop", "split_xy", "bde_jitter", ("color_local_uint8", 1, 0)):
        assert torch.equal(again[key], sample[key])
    plain = KITTIRAWDataset(kitti_root, [f"{DRIVE} 2 l"], 32, 64, [0, -1, 1], 2, is_train=True)[(0, 11)]
    assert not {"local_crop", "split_xy", "bde_jitter", ("color_local_uint8", 0, 0)} & set(plain)


def available_backbones():
    from networks import DEPTH_DECODERS, DEPTH_ENCODERS

    pairs = [("resnet", "monodepth2")]
    if "hrnet" in DEPTH_ENCODERS:
        others = sorted(d for d in DEPTH_DECODERS if d != "monodepth2")
        pairs.append(("hrnet", others[0] if others else "monodepth2"))
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("backbone, decoder, geometry", [
    *[(backbone, decoder, "per_sample") for backbone, decoder in available_backbones()],
    ("resnet", "monodepth2", "reference"),
])
def test_every_parameter_gets_a_gradient_in_every_branch(kitti_root, backbone, decoder, geometry):
    from torch.utils.data import default_collate

    from checkpoints import ModelSpec
    from datasets import KITTIRAWDataset
    from model import SelfSupervisedDepth

    torch.manual_seed(0)
    height, width, num_scales = 64, 64, 2
    opts = argparse.Namespace(
        height=height, width=width, num_scales=num_scales, min_depth=0.1, max_depth=100.0, v1_multiscale=False,
        use_local_crop=True, use_patch_reshuffle=True, local_crop_geometry=geometry, pose_model_input="pairs",
        ssim=True, automask=True, avg_reprojection=False, disparity_smoothness=1e-3, consistency_weight=0.07,
        consistency_stop_grad=False)
    frame_ids = [0, -1, 1]
    dataset = KITTIRAWDataset(kitti_root, [f"{DRIVE} 2 l", f"{DRIVE} 3 l"], height, width, frame_ids, num_scales,
                              is_train=True, local_crop=True, patch_reshuffle=True)
    batch = default_collate([dataset[(0, 1)], dataset[(1, 2)]])

    spec = ModelSpec(backbone=backbone, decoder=decoder, height=height, width=width, scales=list(range(num_scales)),
                     frame_ids=frame_ids)
    model = SelfSupervisedDepth(spec, losses.LossSettings.from_options(opts, [-1, 1]), losses.build_loss_terms(opts),
                                views=(losses.ORIGINAL_VIEW, losses.LOCAL_VIEW, losses.RESHUFFLE_VIEW),
                                bde_local_reference=geometry == "reference")
    inputs = model.prepare_inputs(batch, torch.device("cpu"))
    outputs = model(inputs)
    for key in (("disp_local", 1), ("disp_reshuffle", 1), ("warped_local", -1, 1), ("warped_reshuffle", 1, 0)):
        assert key in outputs
    networks = {"depth": model.networks["depth"], "pose": model.networks["pose"]}

    def without_gradient(names: list) -> set:
        model.zero_grad(set_to_none=True)
        total = sum(losses.LOSS_TERMS[name].function(inputs, outputs, model.loss_settings, model.networks)[0]
                    for name in names)
        total.backward(retain_graph=True)
        return {f"{net_name}.{n}" for net_name, net in networks.items()
                for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}

    # A parameter idle in the original branch (e.g. a PReLU slope that only ever sees
    # non-negative inputs) cannot be asked of the others; the ResNet network has none.
    idle = without_gradient(["photometric", "smoothness"])
    if backbone == "resnet":
        assert not idle, sorted(idle)[:5]
    branches = {"local": ["photometric_local", "smoothness_local", "consistency_local"],
                "reshuffle": ["photometric_reshuffle", "smoothness_reshuffle", "consistency_reshuffle"]}
    for branch, names in branches.items():
        missing = without_gradient(names) - idle
        assert not missing, f"{branch} branch: parameters without gradient: {sorted(missing)[:5]}"


@pytest.mark.gpu
def test_views_run_without_host_synchronisation_on_cuda():
    device = torch.device("cuda")
    images = torch.rand(3, 3, 16, 32, device=device)
    split = torch.tensor([[3, 5], [8, 1], [30, 15]], device=device)
    crop = torch.tensor([[1.5, 48, 24, 3, 5], [1.2, 38, 19, 0, 2], [2.0, 64, 32, 30, 15]], device=device)
    K = torch.eye(4, device=device).repeat(3, 1, 1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        aug.restore_reshuffled(aug.reshuffle_images(images, split), split, 32)
        local_crop.local_crop_camera(crop, K, K, 16, 32)
        local_crop.local_crop_camera(crop, K, K, 16, 32, reference=True)
        offset, size, _ = local_crop.local_crop_footprint(crop, 16, 32)
        local_crop.crop_footprint_grid(offset, size, 16, 32)
    finally:
        torch.cuda.set_sync_debug_mode("default")
