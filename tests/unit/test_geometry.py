"""Closed-form tests for layers.py geometry: depth<->disparity, rotations, projection, warping."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import layers

F64 = torch.float64


def intrinsics(batch: int, fx: float, fy: float, cx: float, cy: float, **kw) -> torch.Tensor:
    """``batch x 4 x 4`` pixel intrinsics."""
    K = torch.eye(4, **kw)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = fx, fy, cx, cy
    return K.repeat(batch, 1, 1)


def kitti_like_K(batch: int, height: int, width: int, **kw) -> torch.Tensor:
    # Monodepth2's normalised KITTI intrinsics scaled to the image, as the dataset does.
    return intrinsics(batch, 0.58 * width, 1.92 * height, 0.5 * width, 0.5 * height, **kw)


def normalised_pixel_grid(batch: int, height: int, width: int, **kw) -> torch.Tensor:
    v, u = torch.meshgrid(torch.arange(height, **kw), torch.arange(width, **kw), indexing="ij")
    grid = torch.stack([2 * u / (width - 1) - 1, 2 * v / (height - 1) - 1], dim=-1)
    return grid.expand(batch, height, width, 2)


# ---------------------------------------------------------------------------------------------
# depth <-> disparity
# ---------------------------------------------------------------------------------------------


def test_disp_to_depth_endpoints_and_midpoint(device):
    disp = torch.tensor([0.0, 1.0, 0.5], device=device, dtype=F64)
    scaled, depth = layers.disp_to_depth(disp, 0.1, 100.0)
    assert_close(scaled, torch.tensor([0.01, 10.0, 0.01 + 9.99 * 0.5], device=device, dtype=F64))
    assert_close(depth, torch.tensor([100.0, 0.1, 1.0 / 5.005], device=device, dtype=F64))


# ---------------------------------------------------------------------------------------------
# rotations and rigid transforms
# ---------------------------------------------------------------------------------------------


def test_zero_rotation_is_exactly_identity(device):
    rot = layers.rot_from_axisangle(torch.zeros(3, 1, 3, device=device))
    assert torch.equal(rot, torch.eye(4, device=device).expand(3, 4, 4))


@pytest.mark.parametrize(
    "axis, expected",
    [
        (0, [[1, 0, 0], [0, 0, -1], [0, 1, 0]]),
        (1, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
        (2, [[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
    ],
)
def test_quarter_turn_about_each_axis(device, axis, expected):
    vec = torch.zeros(1, 1, 3, device=device, dtype=F64)
    vec[0, 0, axis] = math.pi / 2
    want = torch.eye(4, device=device, dtype=F64)
    want[:3, :3] = torch.tensor(expected, dtype=F64)
    # Exact up to the 1e-7 added to the angle in the axis normalisation.
    assert_close(layers.rot_from_axisangle(vec)[0], want, atol=1e-6, rtol=0)
    # The B x 3 form gives the same matrix.
    assert torch.equal(layers.rot_from_axisangle(vec[:, 0]), layers.rot_from_axisangle(vec))


def test_rotations_are_orthonormal_with_det_one(device):
    gen = torch.Generator().manual_seed(0)
    vec = (torch.rand(8, 1, 3, generator=gen, dtype=F64) * 4 - 2).to(device)
    rot = layers.rot_from_axisangle(vec)
    r3 = rot[:, :3, :3]
    eye = torch.eye(3, device=device, dtype=F64).expand(8, 3, 3)
    assert_close(r3 @ r3.transpose(1, 2), eye, atol=1e-6, rtol=0)
    assert_close(torch.linalg.det(r3), torch.ones(8, device=device, dtype=F64), atol=1e-6, rtol=0)
    # Homogeneous padding is exact.
    last_row = torch.tensor([0.0, 0, 0, 1], device=device, dtype=F64).expand(8, 4)
    assert torch.equal(rot[:, 3], last_row)
    assert torch.equal(rot[:, :3, 3], torch.zeros(8, 3, device=device, dtype=F64))


def test_rotation_preserves_its_axis_and_turns_by_the_angle(device):
    # Rotating by 0.3 rad about (1, 1, 0)/sqrt 2: the axis is fixed, the z unit vector turns
    # by exactly 0.3 rad.
    axis = torch.tensor([1.0, 1.0, 0.0], dtype=F64) / math.sqrt(2)
    rot = layers.rot_from_axisangle((0.3 * axis).view(1, 1, 3).to(device))[0, :3, :3].cpu()
    assert_close(rot @ axis, axis, atol=1e-6, rtol=0)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    assert_close(torch.dot(rot @ z, z), torch.tensor(math.cos(0.3), dtype=F64), atol=1e-6, rtol=0)


def test_translation_matrix_is_exact(device):
    t = torch.tensor([[[1.5, -2.0, 0.25]], [[0.0, 3.0, -1.0]]], device=device)
    mat = layers.get_translation_matrix(t)
    want = torch.eye(4, device=device).repeat(2, 1, 1)
    want[:, :3, 3] = t[:, 0]
    assert torch.equal(mat, want)
    assert torch.equal(layers.get_translation_matrix(t[:, 0]), want)


def test_transformation_from_parameters_forward_and_exact_inverse(device):
    gen = torch.Generator().manual_seed(1)
    axisangle = (torch.rand(5, 1, 3, generator=gen, dtype=F64) - 0.5).to(device)
    translation = (torch.rand(5, 1, 3, generator=gen, dtype=F64) * 2 - 1).to(device)
    forward = layers.transformation_from_parameters(axisangle, translation)
    inverse = layers.transformation_from_parameters(axisangle, translation, invert=True)
    eye = torch.eye(4, device=device, dtype=F64).expand(5, 4, 4)
    assert_close(inverse @ forward, eye, atol=1e-6, rtol=0)
    assert_close(forward @ inverse, eye, atol=1e-6, rtol=0)
    # Forward is x -> R x + t.
    rot = layers.rot_from_axisangle(axisangle)[:, :3, :3]
    x = torch.tensor([0.3, -1.2, 4.0], device=device, dtype=F64)
    x_h = torch.cat([x, x.new_ones(1)])
    assert_close((forward @ x_h)[:, :3], rot @ x + translation[:, 0])


def test_gradient_at_zero_rotation_is_finite(device):
    vec = torch.zeros(2, 1, 3, device=device, dtype=F64, requires_grad=True)
    trans = torch.zeros(2, 1, 3, device=device, dtype=F64, requires_grad=True)
    weights = torch.arange(32, device=device, dtype=F64).view(2, 4, 4)
    for invert in (False, True):
        (layers.transformation_from_parameters(vec, trans, invert) * weights).sum().backward()
        assert torch.isfinite(vec.grad).all() and torch.isfinite(trans.grad).all()
        vec.grad = trans.grad = None


def test_transform_gradcheck(device):
    gen = torch.Generator().manual_seed(2)
    vec = (torch.rand(2, 1, 3, generator=gen, dtype=F64) - 0.5).to(device).requires_grad_()
    trans = torch.rand(2, 1, 3, generator=gen, dtype=F64).to(device).requires_grad_()
    for invert in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, t: layers.transformation_from_parameters(a, t, invert), (vec, trans)
        )


def test_bad_axisangle_shape_names_expected_and_actual():
    with pytest.raises(ValueError, match=r"axisangle: expected shape \*x1x3, got 2x2x3"):
        layers.rot_from_axisangle(torch.zeros(2, 2, 3))


# ---------------------------------------------------------------------------------------------
# pixel grid, backprojection and projection
# ---------------------------------------------------------------------------------------------


def test_pixel_grid_is_row_major_u_v_one(device):
    grid = layers.pixel_grid(2, 3, device=device, dtype=torch.float32)
    want = torch.tensor([[0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], device=device)
    assert grid.dtype == torch.float32
    assert torch.equal(grid, want.float())


def test_backproject_closed_form(device):
    # K = I and depth 2: every pixel (u, v) lifts to 2 (u, v, 1).
    depth = torch.full((1, 1, 2, 3), 2.0, device=device)
    points = layers.backproject(depth, torch.eye(4, device=device).unsqueeze(0))
    want = torch.tensor(
        [[0, 2, 4, 0, 2, 4], [0, 0, 0, 2, 2, 2], [2, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1]],
        device=device,
        dtype=torch.float32,
    )
    assert torch.equal(points[0], want)
    # A real K: the principal-point pixel lies on the optical axis at its depth.
    K = intrinsics(1, 4.0, 4.0, 2.0, 1.0, dtype=F64, device=device)
    depth = torch.full((1, 1, 3, 5), 7.0, device=device, dtype=F64)
    points = layers.backproject(depth, torch.linalg.inv(K)).view(1, 4, 3, 5)
    assert_close(points[0, :, 1, 2], torch.tensor([0.0, 0, 7, 1], device=device, dtype=F64))
    assert_close(points[0, :, 2, 4], torch.tensor([3.5, 1.75, 7, 1], device=device, dtype=F64))


@pytest.mark.parametrize("batch", [1, 3])
def test_backproject_then_project_with_identity_returns_pixel_grid(device, batch):
    height, width = 5, 8
    gen = torch.Generator().manual_seed(batch)
    depth = (torch.rand(batch, 1, height, width, generator=gen) * 49 + 1).to(device)
    K = kitti_like_K(batch, height, width, device=device)
    T = torch.eye(4, device=device).repeat(batch, 1, 1)
    grid = layers.project(layers.backproject(depth, torch.linalg.inv(K)), K, T, height, width)
    want = normalised_pixel_grid(batch, height, width, device=device)
    assert_close(grid, want, atol=1e-5, rtol=0)


def test_identity_warp_reproduces_the_image(device):
    # This is the test that fails if grid_sample's align_corners disagrees with the
    # normalisation in project (monodepth2's mismatch shifts every sample by ~half a pixel).
    batch, height, width = 2, 6, 9
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(batch, 3, height, width, generator=gen).to(device)
    depth = (torch.rand(batch, 1, height, width, generator=gen) * 10 + 1).to(device)
    K = kitti_like_K(batch, height, width, device=device)
    T = torch.eye(4, device=device).repeat(batch, 1, 1)
    grid = layers.project(layers.backproject(depth, torch.linalg.inv(K)), K, T, height, width)
    assert_close(layers.warp(image, grid), image, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shift", [1, 2, -1])
def test_translation_along_x_shifts_columns(device, shift):
    # fx * t_x / depth = shift columns: target pixel u samples source column u + shift.
    batch, height, width = 2, 4, 7
    fx, depth_value = 64.0, 8.0
    image = torch.arange(batch * 3 * height * width, device=device, dtype=torch.float32)
    image = image.view(batch, 3, height, width)
    depth = torch.full((batch, 1, height, width), depth_value, device=device)
    K = intrinsics(batch, fx, fx, (width - 1) / 2, (height - 1) / 2, device=device)
    T = torch.eye(4, device=device).repeat(batch, 1, 1)
    T[:, 0, 3] = shift * depth_value / fx
    grid = layers.project(layers.backproject(depth, torch.linalg.inv(K)), K, T, height, width)
    warped = layers.warp(image, grid)
    # Border padding repeats the edge column where the source runs out.
    cols = torch.arange(width, device=device).add(shift).clamp(0, width - 1)
    assert_close(warped, image[..., cols], atol=1e-4, rtol=0)


def test_translation_along_y_shifts_rows(device):
    batch, height, width = 1, 6, 5
    fy, depth_value = 32.0, 4.0
    image = torch.arange(3 * height * width, device=device, dtype=torch.float32)
    image = image.view(batch, 3, height, width)
    depth = torch.full((batch, 1, height, width), depth_value, device=device)
    K = intrinsics(batch, fy, fy, 2.0, 2.5, device=device)
    T = torch.eye(4, device=device).unsqueeze(0)
    T[:, 1, 3] = 2 * depth_value / fy
    grid = layers.project(layers.backproject(depth, torch.linalg.inv(K)), K, T, height, width)
    rows = torch.arange(height, device=device).add(2).clamp(max=height - 1)
    assert_close(layers.warp(image, grid), image[:, :, rows], atol=1e-4, rtol=0)


def test_warp_chain_gradcheck(device):
    height, width = 3, 4
    gen = torch.Generator().manual_seed(4)
    image = torch.rand(1, 2, height, width, generator=gen, dtype=F64).to(device)
    depth = (torch.rand(1, 1, height, width, generator=gen, dtype=F64) + 2).to(device)
    K = intrinsics(1, 3.0, 3.0, 1.5, 1.0, dtype=F64, device=device)
    pose = torch.tensor([[[0.02, -0.03, 0.01, 0.13, 0.07, -0.05]]], dtype=F64, device=device)
    depth.requires_grad_()
    pose.requires_grad_()

    def synthesise(depth, pose):
        T = layers.transformation_from_parameters(pose[..., :3], pose[..., 3:])
        grid = layers.project(layers.backproject(depth, torch.linalg.inv(K)), K, T, height, width)
        return layers.warp(image, grid)

    assert torch.autograd.gradcheck(synthesise, (depth, pose))


def test_geometry_shape_errors():
    with pytest.raises(ValueError, match=r"depth: expected shape \*x1x\*x\*, got 2x4x5"):
        layers.backproject(torch.ones(2, 4, 5), torch.eye(4).repeat(2, 1, 1))
    with pytest.raises(ValueError, match=r"inv_K: expected shape 2x4x4, got 1x4x4"):
        layers.backproject(torch.ones(2, 1, 4, 5), torch.eye(4).unsqueeze(0))
    with pytest.raises(ValueError, match="at least 2x2"):
        layers.project(torch.ones(1, 4, 3), torch.eye(4)[None], torch.eye(4)[None], 1, 3)
