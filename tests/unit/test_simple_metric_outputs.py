"""test_simple.py's deployment outputs: metric depth at the input's resolution (--depth_scale,
--gt_depth) and the coloured point cloud (--save_ply), checked in closed form and byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import test_simple
from checkpoints import CHECKPOINT_FORMAT, ModelSpec, save_checkpoint
from kitti_utils import STEREO_SCALE_FACTOR
from layers import upsample_disp
from networks import build_depth_network
from tests.unit.test_inference_scripts import checkpoint, write_image  # noqa: F401 (a fixture)

PLY_HEADER_2_POINTS = (b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                       b"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")


@pytest.fixture(scope="module")
def mono_checkpoint(tmp_path_factory) -> Path:
    """A monocular model (no metric scale of its own), random weights, 64 x 192."""
    torch.manual_seed(1)
    net = build_depth_network(scales=(0,))
    spec = ModelSpec(height=64, width=192, scales=[0], use_stereo=False)
    path = tmp_path_factory.mktemp("mono") / "mono.pth"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": spec.to_dict(),
                           "encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict()})
    return path


def model_depth_at(checkpoint_path: Path, rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:  # noqa: F811
    """The model's depth (model units) at ``size``, computed here: 1 / the upsampled inverse depth."""
    from model import load_model

    model = load_model(str(checkpoint_path))
    resized = test_simple.to_network_input([rgb], model.spec.height, model.spec.width)
    inverse_depth, _ = model.predict(torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0)
    return (1.0 / upsample_disp(inverse_depth, size))[0, 0].numpy()


def read_ply(path: Path) -> tuple[bytes, np.ndarray]:
    """(header, vertices) of a binary PLY written by write_ply."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end], np.frombuffer(data[end:], dtype=test_simple.PLY_VERTEX_DTYPE)


# ------------------------------------------------------------------------------ geometry, closed form
def test_a_plane_at_known_depth_back_projects_to_that_plane():
    height, width, plane_depth = 5, 7, 7.5
    fx, fy, cx, cy = 10.0, 12.0, 3.0, 2.5
    points = test_simple.backproject_depth_map(np.full((height, width), plane_depth), fx, fy, cx, cy)
    assert points.shape == (height, width, 3)
    assert np.all(points[..., 2] == plane_depth)
    for v in range(height):
        for u in range(width):
            assert points[v, u, 0] == pytest.approx((u - cx) * plane_depth / fx, abs=1e-12)
            assert points[v, u, 1] == pytest.approx((v - cy) * plane_depth / fy, abs=1e-12)
    # The corner pixel, by hand: (0 - 3) * 7.5 / 10 and (0 - 2.5) * 7.5 / 12.
    assert points[0, 0].tolist() == pytest.approx([-2.25, -1.5625, 7.5])
    # Column u = cx is straight ahead; row 2 is half a pixel above cy = 2.5 (y points down).
    assert points[2, 3, :2].tolist() == pytest.approx([0.0, -0.5 * 7.5 / 12])


def test_the_point_cloud_skips_invalid_depths_and_keeps_pixel_colours():
    depth = np.full((3, 4), 2.0)
    depth[0, 1], depth[1, 2], depth[2, 0], depth[2, 3] = 0.0, np.nan, np.inf, -1.0
    rgb = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    points, colors = test_simple.point_cloud(depth, rgb, (2.0, 2.0, 1.5, 1.0))
    assert points.dtype == np.float32 and colors.dtype == np.uint8
    assert len(points) == 3 * 4 - 4
    assert np.all(points[:, 2] == 2.0)  # still the plane
    valid = [(v, u) for v in range(3) for u in range(4) if (v, u) not in ((0, 1), (1, 2), (2, 0), (2, 3))]
    assert colors.tolist() == [rgb[v, u].tolist() for v, u in valid]
    assert points[:, :2].tolist() == [[(u - 1.5) * 2.0 / 2.0, (v - 1.0) * 2.0 / 2.0] for v, u in valid]


def test_intrinsics_in_pixels_or_normalised_by_the_image_size():
    assert test_simple.pixel_intrinsics(375, 1242, pixels=[721.5, 721.5, 609.6, 172.9]) == (721.5, 721.5, 609.6, 172.9)
    assert test_simple.pixel_intrinsics(100, 200, normalized=[0.5, 1.0, 0.25, 0.75]) == (100.0, 100.0, 50.0, 75.0)
    # KITTI's normalised K by default: fx = 0.58 W, fy = 1.92 H, centred.
    assert test_simple.pixel_intrinsics(375, 1242) == pytest.approx((0.58 * 1242, 1.92 * 375, 621.0, 187.5))


# ------------------------------------------------------------------------------ the PLY file
def test_ply_header_and_byte_level_round_trip_of_two_points(tmp_path):
    points = np.array([[1.5, -2.25, 10.0], [0.0, 3.0e-3, 80.5]], dtype=np.float32)
    colors = np.array([[255, 0, 7], [1, 128, 254]], dtype=np.uint8)
    path = test_simple.write_ply(tmp_path / "two.ply", points, colors)
    assert test_simple.ply_header(2) == PLY_HEADER_2_POINTS
    expected = PLY_HEADER_2_POINTS + b"".join(struct.pack("<fffBBB", *p, *c) for p, c in zip(points.tolist(),
                                                                                              colors.tolist()))
    assert path.read_bytes() == expected
    assert len(expected) == len(PLY_HEADER_2_POINTS) + 2 * 15  # packed: 3 x 4 + 3 x 1 bytes a vertex
    header, vertices = read_ply(path)
    assert header == PLY_HEADER_2_POINTS
    assert np.stack([vertices["x"], vertices["y"], vertices["z"]], 1).tolist() == points.tolist()
    assert np.stack([vertices["red"], vertices["green"], vertices["blue"]], 1).tolist() == colors.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.ply"]  # no temporary left


# ------------------------------------------------------------------------------ the script
def test_metric_depth_is_at_the_input_resolution_with_the_scale_applied(checkpoint, tmp_path):  # noqa: F811
    image = tmp_path / "frame.png"
    rgb = write_image(image, 80, 200, seed=11)
    argv = ["--image_path", str(image), "--pretrained_path", str(checkpoint), "--device", "cpu"]
    written = test_simple.main(argv + ["--depth_scale", "2.5"])
    assert [p.name for p in written] == ["frame_disp.jpeg", "frame_depth.npy"]  # npy by default
    saved = np.load(written[1])
    assert saved.shape == (1, 1, 80, 200) and saved.dtype == np.float32
    expected = model_depth_at(checkpoint, rgb, (80, 200))
    np.testing.assert_allclose(saved[0, 0], 2.5 * expected, rtol=1e-5)
    # auto: this checkpoint saw stereo pairs, so x5.4; here as KITTI's 16-bit PNG.
    written = test_simple.main(argv + ["--depth_scale", "auto", "--save_depth", "png16"])
    stored = test_simple.read_depth_map(written[1])
    assert stored.shape == (80, 200)
    np.testing.assert_allclose(stored, np.floor(STEREO_SCALE_FACTOR * expected * 256) / 256, atol=1e-3 / 256)


def test_monocular_models_need_a_scale(mono_checkpoint, tmp_path):
    image = tmp_path / "frame.png"
    write_image(image, 64, 192, seed=12)
    argv = ["--image_path", str(image), "--pretrained_path", str(mono_checkpoint), "--device", "cpu"]
    for extra in (["--save_ply"], ["--depth_scale", "auto"]):
        with pytest.raises(ValueError, match=r"trained monocularly.*--depth_scale VALUE.*--gt_depth FILE"):
            test_simple.main(argv + extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png"]  # refused before writing anything
    with pytest.raises(ValueError, match="--depth_scale median needs --gt_depth"):
        test_simple.main(argv + ["--depth_scale", "median"])
    with pytest.raises(ValueError, match="--pred_metric_depth .* use --depth_scale stereo"):
        test_simple.main(argv + ["--depth_scale", "3", "--pred_metric_depth"])
    with pytest.raises(ValueError, match="--gt_depth sets the scale"):
        test_simple.main(argv + ["--depth_scale", "3", "--gt_depth", str(tmp_path / "gt.npy")])
    with pytest.raises(SystemExit):
        test_simple.main(argv + ["--depth_scale", "-1"])
    assert test_simple.depth_scale_argument("0.25") == 0.25 and test_simple.depth_scale_argument("stereo") == "stereo"


@pytest.mark.slow
def test_gt_depth_scales_by_the_median_ratio(mono_checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rgb = write_image(images / "0005.png", 70, 150, seed=13)
    write_image(images / "0006.png", 70, 150, seed=14)
    gt = 3.0 * model_depth_at(mono_checkpoint, rgb, (35, 75))  # ground truth at its own (half) size
    gt[::3] = 0.0  # no ground truth on every third row
    np.save(tmp_path / "0005_depth.npy", gt)
    written = test_simple.main(["--image_path", str(images), "--pretrained_path", str(mono_checkpoint), "--device",
                                "cpu", "--gt_depth", str(tmp_path / "0005_depth.npy"), "--output_dir",
                                str(tmp_path / "out")])
    assert [p.name for p in written] == ["0005_disp.jpeg", "0005_depth.npy", "0006_disp.jpeg", "0006_depth.npy"]
    saved = np.load(written[1])
    assert saved.shape == (1, 1, 70, 150)
    np.testing.assert_allclose(saved[0, 0], 3.0 * model_depth_at(mono_checkpoint, rgb, (70, 150)), rtol=1e-4)
    np.save(tmp_path / "0007_gt.npy", gt)
    with pytest.raises(ValueError, match=r"no image named 0007\.\* in --image_path"):
        test_simple.main(["--image_path", str(images), "--pretrained_path", str(mono_checkpoint), "--device", "cpu",
                          "--gt_depth", str(tmp_path / "0007_gt.npy")])
    np.save(tmp_path / "empty.npy", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="no pixel has a positive ground-truth depth"):
        test_simple.main(["--image_path", str(images / "0005.png"), "--pretrained_path", str(mono_checkpoint),
                          "--device", "cpu", "--gt_depth", str(tmp_path / "empty.npy")])


def test_save_ply_back_projects_the_saved_metric_depth(checkpoint, tmp_path):  # noqa: F811
    image = tmp_path / "frame.png"
    rgb = write_image(image, 40, 60, seed=15)
    fx, fy, cx, cy = 50.0, 45.0, 29.5, 19.5
    written = test_simple.main(["--image_path", str(image), "--pretrained_path", str(checkpoint), "--device", "cpu",
                                "--save_ply", "--save_depth", "npy", "--intrinsics", str(fx), str(fy), str(cx),
                                str(cy)])
    assert [p.name for p in written] == ["frame_disp.jpeg", "frame_depth.npy", "frame_points.ply"]
    depth = np.load(written[1])[0, 0]  # metres (stereo checkpoint: auto = 5.4)
    np.testing.assert_allclose(depth, STEREO_SCALE_FACTOR * model_depth_at(checkpoint, rgb, (40, 60)), rtol=1e-5)
    header, vertices = read_ply(written[2])
    assert header.startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 2400\n")
    v, u = np.divmod(np.arange(40 * 60), 60)
    z = depth.reshape(-1)
    np.testing.assert_allclose(vertices["z"], z, rtol=1e-6)
    np.testing.assert_allclose(vertices["x"], (u - cx) * z / fx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vertices["y"], (v - cy) * z / fy, rtol=1e-5, atol=1e-6)
    assert np.stack([vertices["red"], vertices["green"], vertices["blue"]], 1).tolist() == rgb.reshape(-1, 3).tolist()
