"""The synthetic KITTI-raw generator: layout, calibration, determinism and geometric truth.

The geometric tests check the data against itself: the rendered depth, the 0.54 m baseline, the
ground-truth poses and the LiDAR must all describe one scene, or a network trained on it learns
nothing (or the wrong thing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import make_synthetic_kitti as synth
from kitti_utils import KITTI_NORMALIZED_K, generate_depth_map, load_velodyne_points, read_calib_file
from utils import readlines

WIDTH, HEIGHT = 310, 94
DRIVES, FRAMES, SEED = 2, 6, 3
DATE = "2000_01_01"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return synth.generate_dataset(root, num_drives=DRIVES, frames_per_drive=FRAMES, width=WIDTH,
                                  height=HEIGHT, seed=SEED, num_workers=1)


@pytest.fixture(scope="module")
def scenes() -> dict[int, synth.DriveScene]:
    return {drive: synth.build_drive_scene(SEED, drive, FRAMES) for drive in range(1, DRIVES + 1)}


def drive_dir(root: Path, drive: int) -> Path:
    return root / DATE / f"{DATE}_drive_{drive:04d}_sync"


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image[..., ::-1].astype(np.float32)


def read_poses(root: Path, drive: int) -> np.ndarray:
    rows = np.loadtxt(drive_dir(root, drive) / "poses_cam02.txt").reshape(-1, 3, 4)
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3] = rows
    return poses


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample H x W x C ``image`` at float pixel coordinates (integer = pixel centre)."""
    x0 = np.clip(np.floor(x).astype(int), 0, image.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, image.shape[0] - 2)
    wx = (x - x0)[:, None]
    wy = (y - y0)[:, None]
    top = image[y0, x0] * (1 - wx) + image[y0, x0 + 1] * wx
    bottom = image[y0 + 1, x0] * (1 - wx) + image[y0 + 1, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def textured(image: np.ndarray, threshold: float = 4.0) -> np.ndarray:
    """Pixels whose grey level changes by more than ``threshold`` to a horizontal neighbour."""
    grey = image.mean(-1)
    grad = np.zeros_like(grey)
    grad[:, 1:-1] = np.abs(grey[:, 2:] - grey[:, :-2]) / 2
    return grad > threshold


# ------------------------------------------------------------------------------------------ layout
def test_layout_has_exactly_the_kitti_raw_files(dataset):
    expected = {"synthetic_info.json", f"{DATE}/calib_cam_to_cam.txt", f"{DATE}/calib_velo_to_cam.txt",
                f"{DATE}/calib_imu_to_velo.txt", "splits/synthetic/train_files.txt",
                "splits/synthetic/val_files.txt", "splits/synthetic_test/test_files.txt"}
    for drive in range(1, DRIVES + 1):
        folder = f"{DATE}/{DATE}_drive_{drive:04d}_sync"
        expected |= {f"{folder}/poses_cam02.txt", f"{folder}/image_02/timestamps.txt",
                     f"{folder}/image_03/timestamps.txt", f"{folder}/velodyne_points/timestamps.txt",
                     f"{folder}/velodyne_points/timestamps_start.txt",
                     f"{folder}/velodyne_points/timestamps_end.txt"}
        for frame in range(FRAMES):
            expected |= {f"{folder}/image_02/data/{frame:010d}.png",
                         f"{folder}/image_03/data/{frame:010d}.png",
                         f"{folder}/velodyne_points/data/{frame:010d}.bin",
                         f"{folder}/oxts/data/{frame:010d}.txt"}
    found = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file()}
    assert found == expected

    info = json.loads((dataset / "synthetic_info.json").read_text())
    assert info["complete"] is True and info["version"] == synth.SYNTHETIC_VERSION
    assert info["flags"]["width"] == WIDTH and info["flags"]["num_drives"] == DRIVES


def test_oxts_packets_give_back_the_simulated_imu_travel_in_metres(dataset, scenes):
    from kitti_utils import mercator_scale, oxts_packet_path, oxts_travel, read_oxts_packet

    imu_in_velodyne = np.array([*synth.IMU_TO_VELO_T, 1.0])
    for drive, scene in scenes.items():
        packets = [read_oxts_packet(oxts_packet_path(drive_dir(dataset, drive), f)) for f in range(FRAMES)]
        scale = mercator_scale(packets[0][0])
        assert packets[0][:2] == pytest.approx(synth.OXTS_ORIGIN[:2], abs=1e-4)  # the IMU sits near the origin
        imu = [(scene.velodyne_to_world(f) @ imu_in_velodyne)[:3] for f in range(FRAMES)]
        poses = read_poses(dataset, drive)
        for f in range(1, FRAMES):
            for offset in (1, -1) if f + 1 < FRAMES else (-1,):
                travel = oxts_travel(packets[f], packets[f + offset], scale)
                assert travel == pytest.approx(np.linalg.norm(imu[f + offset] - imu[f]), abs=1e-5)
                # The camera travels the same to within the lever arm swept by the turn.
                camera = np.linalg.norm(poses[f + offset][:3, 3] - poses[f][:3, 3])
                assert travel == pytest.approx(camera, abs=0.01)
            assert synth.SPEED_RANGE_M[0] - 0.01 < oxts_travel(packets[f - 1], packets[f], scale) \
                < synth.SPEED_RANGE_M[1] + 0.01


def test_images_are_rgb_of_the_requested_size_and_timestamps_are_10hz(dataset):
    path = drive_dir(dataset, 1) / "image_02" / "data" / "0000000000.png"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    stamps = readlines(drive_dir(dataset, 2) / "image_02" / "timestamps.txt")
    assert len(stamps) == FRAMES
    assert re.fullmatch(r"2000-01-01 \d\d:\d\d:\d\d\.\d{9}", stamps[0])
    seconds = [float(s.split(":")[-1]) + 60 * int(s.split(":")[-2]) for s in stamps]
    np.testing.assert_allclose(np.diff(seconds), 0.1, atol=1e-9)


def test_velodyne_files_are_float32_records_in_the_velodyne_frame(dataset):
    raw = np.fromfile(drive_dir(dataset, 1) / "velodyne_points" / "data" / "0000000002.bin", dtype=np.float32)
    points = raw.reshape(-1, 4)
    assert len(points) > 0.5 * synth.LIDAR_BEAMS * synth.LIDAR_AZIMUTH_STEPS
    reflectance = points[:, 3]
    assert reflectance.min() >= 0 and reflectance.max() <= 1 and reflectance.std() > 0.05
    distance = np.linalg.norm(points[:, :3], axis=1)
    assert distance.max() <= synth.LIDAR_MAX_RANGE_M + 1e-3
    elevation = np.degrees(np.arcsin(points[:, 2] / distance))
    assert elevation.min() >= -24.8 - 1e-3 and elevation.max() <= 2.0 + 1e-3
    # z up: the road lies 1.73 m below the sensor (1.65 m camera height + 0.08 m mount).
    assert np.isclose(np.percentile(points[:, 2], 1), -1.73, atol=1e-3)
    # All around, and x forward: about as many returns behind as in front.
    assert 0.3 < (points[:, 0] > 0).mean() < 0.7


# ------------------------------------------------------------------------------------- calibration
def test_calibration_parses_and_carries_the_loader_intrinsics(dataset):
    cam = read_calib_file(dataset / DATE / "calib_cam_to_cam.txt")
    fx, fy = 0.58 * WIDTH, 1.92 * HEIGHT
    k = np.array([[fx, 0, WIDTH / 2], [0, fy, HEIGHT / 2], [0, 0, 1]])
    for index, x_offset in ((0, 0.0), (1, 0.54), (2, -0.06), (3, 0.48)):
        p = cam[f"P_rect_0{index}"].reshape(3, 4)
        np.testing.assert_allclose(p[:, :3], k, rtol=1e-6)
        np.testing.assert_allclose(p[:, 3], [-fx * x_offset, 0, 0], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(cam[f"S_rect_0{index}"], [WIDTH, HEIGHT])
        np.testing.assert_allclose(cam[f"R_rect_0{index}"], np.eye(3).ravel())
    # The same K the KITTI loader builds from its normalised intrinsics.
    np.testing.assert_allclose(synth.camera_intrinsics(WIDTH, HEIGHT),
                               KITTI_NORMALIZED_K[:3, :3] * np.array([[WIDTH], [HEIGHT], [1]]), rtol=1e-6)
    baseline = (cam["P_rect_02"][3] - cam["P_rect_03"][3]) / fx
    assert baseline == pytest.approx(0.54, rel=1e-6)
    assert isinstance(cam["calib_time"], str)

    velo = read_calib_file(dataset / DATE / "calib_velo_to_cam.txt")
    np.testing.assert_array_equal(velo["R"].reshape(3, 3), [[0, -1, 0], [0, 0, -1], [1, 0, 0]])
    np.testing.assert_allclose(velo["T"], [0, -0.08, -0.27])
    imu = read_calib_file(dataset / DATE / "calib_imu_to_velo.txt")
    assert set(imu) == {"calib_time", "R", "T"}


def test_calibration_files_have_the_real_keys_and_number_format(dataset, realdata):
    real_dir = realdata / "kitti_raw" / "2011_09_26"
    number = r"-?\d\.\d{6}e[+-]\d\d"
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        ours = readlines(dataset / DATE / name)
        real = readlines(real_dir / name)
        assert [line.split(":")[0] for line in ours] == [line.split(":")[0] for line in real]
        for mine, theirs in zip(ours, real):
            key, value = mine.split(": ", 1)
            if key == "calib_time":
                assert re.fullmatch(r"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d", value)
            else:
                assert re.fullmatch(rf"{number}( {number})*", value), mine
                assert len(value.split()) == len(theirs.split(": ", 1)[1].split()), key


# ------------------------------------------------------------------------------------- determinism
@pytest.mark.slow
def test_same_flags_give_identical_bytes_whatever_the_worker_count(dataset, tmp_path):
    again = synth.generate_dataset(tmp_path / "again", num_drives=DRIVES, frames_per_drive=FRAMES,
                                   width=WIDTH, height=HEIGHT, seed=SEED, num_workers=2)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for relative in files:
        assert (dataset / relative).read_bytes() == (again / relative).read_bytes(), relative


def test_other_seed_other_scene(scenes):
    other = synth.build_drive_scene(SEED + 1, 1, FRAMES)
    rgb_a, _ = synth.render_camera(scenes[1], 0, 2, WIDTH, HEIGHT)
    rgb_b, _ = synth.render_camera(other, 0, 2, WIDTH, HEIGHT)
    assert np.abs(rgb_a.astype(int) - rgb_b.astype(int)).mean() > 10


# ---------------------------------------------------------------------------- scene and trajectory
def test_poses_are_kitti_odometry_rows_of_a_smooth_forward_drive(dataset, scenes):
    poses = read_poses(dataset, 1)
    assert poses.shape == (FRAMES, 4, 4)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    for frame in range(FRAMES):
        np.testing.assert_allclose(poses[frame], scenes[1].rig_to_world(frame), atol=1e-5)
        rotation = poses[frame, :3, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        assert poses[frame, 1, 3] == 0  # a level road: the camera stays 1.65 m above it
    relative = [np.linalg.inv(poses[i]) @ poses[i + 1] for i in range(FRAMES - 1)]
    steps = np.array([r[:3, 3] for r in relative])
    assert np.all(steps[:, 2] > 0.45) and np.all(np.linalg.norm(steps, axis=1) < 1.55)  # forward, 5-15 m/s
    yaw = np.degrees([np.arctan2(r[0, 2], r[2, 2]) for r in relative])
    assert np.all(np.abs(yaw) < 2.0)  # gentle turns


def test_scene_has_facades_objects_and_a_clear_road(scenes):
    scene = scenes[1]
    boxes = scene.boxes
    materials = set(boxes.material.tolist())
    assert materials == {synth.FACADE, synth.CAR_BODY, synth.CAR_CABIN, synth.POLE, synth.SMALL_BOX}
    facades = boxes.material == synth.FACADE
    # Lateral distance of each facade's front face from the path, through the box centre.
    s_near = np.array([scene.path.s[np.argmin(np.linalg.norm(scene.path.xz - c[[0, 2]], axis=1))]
                       for c in boxes.center[facades]])
    xz, heading = scene.path.sample(s_near)
    right = np.stack([np.cos(heading), -np.sin(heading)], -1)
    lateral = np.abs(((boxes.center[facades][:, [0, 2]] - xz) * right).sum(-1)) - boxes.half[facades, 0]
    assert lateral.min() > 4.9 and lateral.max() < 20.5
    assert (lateral < 10).any() and (lateral > 14).any()
    assert np.all(synth._clear_of_path(boxes, scene.path))
    poles = boxes.material == synth.POLE
    assert boxes.half[poles, 0].max() < 0.12 and boxes.half[poles, 1].min() > 1.7


def test_rendered_image_looks_like_a_street(scenes):
    rgb, depth = synth.render_camera(scenes[1], 0, 2, 620, 188)
    sky = depth == 0
    assert sky[:20].mean() > 0.2 and not sky[-40:].any()  # sky above, road below
    # The sky is a smooth gradient: no texture for a photometric loss to explain with depth.
    sky_rows = rgb[:20].astype(float)
    horizontal_change = np.abs(np.diff(sky_rows, axis=1))[sky[:20, 1:] & sky[:20, :-1]]
    assert horizontal_change.max() <= 1
    # The road below is textured at fine scale, everywhere.
    road = rgb[-40:].astype(float).mean(-1)
    local = np.abs(road[:, 2:] - road[:, :-2])
    assert np.median(local) > 1.0
    # Depth grows towards the horizon on the road: z = 1.65 fy / (v - cy).
    v = np.arange(188 - 40, 188)
    expected = 1.65 * 1.92 * 188 / (v - 94)
    column = depth[-40:, 310]
    np.testing.assert_allclose(column[column > 0], expected[column > 0], rtol=1e-4)


# ------------------------------------------------------------------------------ geometric truths
def test_stereo_pair_matches_at_the_disparity_of_the_rendered_depth(dataset, scenes):
    frame = 3
    left = read_rgb(drive_dir(dataset, 1) / "image_02" / "data" / f"{frame:010d}.png")
    right = read_rgb(drive_dir(dataset, 1) / "image_03" / "data" / f"{frame:010d}.png")
    _, depth_left = synth.render_camera(scenes[1], frame, 2, WIDTH, HEIGHT)
    _, depth_right = synth.render_camera(scenes[1], frame, 3, WIDTH, HEIGHT)
    fx = 0.58 * WIDTH
    v, u = np.nonzero((depth_left > 0) & textured(left))
    z = depth_left[v, u]
    x_right = u - fx * 0.54 / z
    inside = x_right >= 1
    v, u, z, x_right = v[inside], u[inside], z[inside], x_right[inside]
    # Not occluded in the right view: the right camera sees the same depth there.
    visible = np.abs(depth_right[v, np.round(x_right).astype(int)] - z) < 0.03 * z
    v, u, z, x_right = v[visible], u[visible], z[visible], x_right[visible]
    assert len(v) > 2000

    error = np.abs(bilinear(right, x_right, v) - left[v, u]).mean()
    wrong_far = np.abs(bilinear(right, np.clip(x_right + 2, 0, WIDTH - 1), v) - left[v, u]).mean()
    wrong_near = np.abs(bilinear(right, np.clip(x_right - 2, 0, WIDTH - 1), v) - left[v, u]).mean()
    assert error < 6.0  # grey levels, on textured pixels
    assert error < 0.4 * min(wrong_far, wrong_near)


def test_next_frame_warped_with_true_depth_and_pose_matches(dataset, scenes):
    frame = 2
    target = read_rgb(drive_dir(dataset, 1) / "image_02" / "data" / f"{frame:010d}.png")
    source = read_rgb(drive_dir(dataset, 1) / "image_02" / "data" / f"{frame + 1:010d}.png")
    _, depth = synth.render_camera(scenes[1], frame, 2, WIDTH, HEIGHT)
    poses = read_poses(dataset, 1)
    source_from_target = np.linalg.inv(poses[frame + 1]) @ poses[frame]
    k = synth.camera_intrinsics(WIDTH, HEIGHT)

    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    points = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z, np.ones_like(z)])
    moved = source_from_target @ points
    x = k[0, 0] * moved[0] / moved[2] + k[0, 2]
    y = k[1, 1] * moved[1] / moved[2] + k[1, 2]
    inside = (moved[2] > 0.5) & (x >= 0) & (x <= WIDTH - 1) & (y >= 0) & (y <= HEIGHT - 1)
    v, u, x, y = v[inside], u[inside], x[inside], y[inside]

    warped_error = np.abs(bilinear(source, x, y) - target[v, u]).mean()
    identity_error = np.abs(source[v, u] - target[v, u]).mean()
    assert warped_error < 5.0
    assert warped_error < 0.3 * identity_error


def check_lidar_map_against_render(gt: np.ndarray, rendered: np.ndarray, median_tol: float,
                                   within_2pct: float) -> None:
    """gt[v, u] against render[v + 1, u + 1] (see the module docstring of make_synthetic_kitti)."""
    v, u = np.nonzero(gt[:-1, :-1])
    shifted = rendered[v + 1, u + 1]
    # A return lands on a sky pixel only beside a roof edge, where the pixel centre's ray misses.
    assert np.mean(shifted == 0) < 0.005
    rel = np.abs(shifted - gt[v, u]) / gt[v, u]
    assert np.median(rel) < median_tol
    # Larger disagreements are confined to occlusion edges (the LiDAR sits 0.27 m behind camera 0).
    assert np.mean(rel < 0.02) > within_2pct
    # The convention matters: without the one-pixel shift the agreement is clearly worse.
    unshifted = np.abs(rendered[v, u] - gt[v, u]) / gt[v, u]
    assert np.median(unshifted) > 3 * np.median(rel)


def test_lidar_depth_map_agrees_with_the_rendered_z_buffer(scenes, tmp_path):
    """The key check that calibration, LiDAR and renderer describe one geometry, at KITTI size.

    generate_depth_map puts a point projecting to (u, v) at (round(u) - 1, round(v) - 1); the
    renderer's pixel (u, v) looks exactly along (u, v). So gt[v, u] is compared with
    render[v + 1, u + 1]. Calibration and scan are written by the generator's own functions.
    """
    width, height = 1242, 375
    for name, text in synth.calibration_texts(width, height, DATE).items():
        (tmp_path / name).write_text(text)
    synth.render_lidar(scenes[2], 4).tofile(tmp_path / "scan.bin")
    gt = generate_depth_map(tmp_path, tmp_path / "scan.bin", cam=2, vel_depth=False, duplicates="correct")
    assert gt.shape == (height, width)
    assert (gt > 0).sum() > 10000  # about 16k returns land in a KITTI-size image, as on real scans
    _, rendered = synth.render_camera(scenes[2], 4, 2, width, height)
    check_lidar_map_against_render(gt, rendered, median_tol=0.003, within_2pct=0.95)


def test_lidar_files_in_the_dataset_agree_with_the_render(dataset, scenes):
    frame = 4
    velo = drive_dir(dataset, 2) / "velodyne_points" / "data" / f"{frame:010d}.bin"
    gt = generate_depth_map(dataset / DATE, velo, cam=2, vel_depth=False, duplicates="correct")
    assert gt.shape == (HEIGHT, WIDTH)
    assert (gt > 0).mean() > 0.3  # dense at this small size: several returns per pixel
    _, rendered = synth.render_camera(scenes[2], frame, 2, WIDTH, HEIGHT)
    # Coarser pixels: the nearest of several returns in a pixel is compared with its centre ray.
    check_lidar_map_against_render(gt, rendered, median_tol=0.01, within_2pct=0.85)


def test_lidar_scan_equals_the_render_along_a_ray(scenes):
    """A LiDAR point re-projected into camera 2 lies at the rendered depth (sub-pixel exact)."""
    scene = scenes[1]
    points = synth.render_lidar(scene, 1)
    cam_from_world = np.linalg.inv(scene.camera_to_world(1, 2))
    world = scene.velodyne_to_world(1) @ np.c_[points[:, :3], np.ones(len(points))].T
    cam = cam_from_world @ world
    k = synth.camera_intrinsics(WIDTH, HEIGHT)
    u = k[0, 0] * cam[0] / cam[2] + k[0, 2]
    v = k[1, 1] * cam[1] / cam[2] + k[1, 2]
    # Points on the road: their depth is known in closed form, so the check needs no rounding.
    on_road = np.isclose(cam[1], 1.65, rtol=0, atol=1e-5) & (cam[2] > 2)
    on_road &= (v > HEIGHT / 2 + 2) & (v < HEIGHT - 1) & (u > 0) & (u < WIDTH - 1)
    assert on_road.sum() > 500
    np.testing.assert_allclose(cam[2, on_road], 1.65 * k[1, 1] / (v[on_road] - k[1, 2]), rtol=1e-4)


# ------------------------------------------------------------------------------------------ splits
def test_split_files_reference_existing_images_with_both_neighbours(dataset):
    train = readlines(dataset / "splits" / "synthetic" / "train_files.txt")
    val = readlines(dataset / "splits" / "synthetic" / "val_files.txt")
    test = readlines(dataset / "splits" / "synthetic_test" / "test_files.txt")
    # Drives 1 .. N-1, frames with both neighbours, both sides; ~10% held out for validation.
    expected = {f"{DATE}/{DATE}_drive_0001_sync {frame} {side}"
                for frame in range(1, FRAMES - 1) for side in "lr"}
    assert set(train) | set(val) == expected and not set(train) & set(val)
    assert len(val) == 1 and len(train) + len(val) == len(expected)
    assert train != sorted(train) or len(train) < 3  # shuffled
    for line in train + val:
        folder, frame, side = line.split()
        camera = {"l": "image_02", "r": "image_03"}[side]
        for neighbour in (int(frame) - 1, int(frame), int(frame) + 1):
            assert (dataset / folder / camera / "data" / f"{neighbour:010d}.png").is_file()
    stride = synth.default_test_stride(FRAMES)
    assert test == [f"{DATE}/{DATE}_drive_0002_sync {frame:010d} l" for frame in range(1, FRAMES - 1, stride)]


def test_default_test_stride_aims_at_twenty_lines():
    assert synth.default_test_stride(100) == 5
    assert len(range(1, 99, synth.default_test_stride(100))) == 20
    assert synth.default_test_stride(6) == 1


# ------------------------------------------------------------------------------ CLI and safeguards
TINY = dict(num_drives=2, frames_per_drive=3, width=32, height=16, num_workers=1, velodyne=False)


def test_cli_writes_jpg_without_velodyne(tmp_path):
    root = synth.main(["--output_dir", str(tmp_path / "d"), "--num_drives", "2", "--frames_per_drive", "3",
                       "--width", "40", "--height", "20", "--jpg", "--no_velodyne", "--num_workers", "0",
                       "--test_stride", "1", "--date", "2001_02_03"])
    folder = root / "2001_02_03" / "2001_02_03_drive_0002_sync"
    names = sorted(p.name for p in (folder / "image_03" / "data").iterdir())
    assert names == [f"{i:010d}.jpg" for i in range(3)]
    assert not (folder / "velodyne_points").exists()
    assert cv2.imread(str(folder / "image_02" / "data" / "0000000001.jpg")).shape == (20, 40, 3)
    assert readlines(root / "splits" / "synthetic_test" / "test_files.txt") == [
        "2001_02_03/2001_02_03_drive_0002_sync 0000000001 l"]


def test_refuses_a_foreign_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty.*--overwrite"):
        synth.generate_dataset(tmp_path, **TINY)
    synth.generate_dataset(tmp_path, overwrite=True, **TINY)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert (tmp_path / "synthetic_info.json").is_file()


@pytest.mark.slow
def test_regenerating_replaces_the_previous_synthetic_dataset(tmp_path):
    synth.generate_dataset(tmp_path, **{**TINY, "num_drives": 3})
    (tmp_path / "splits" / "synthetic_test" / "gt_depths.npz").write_bytes(b"stale")
    synth.generate_dataset(tmp_path, **TINY)  # no --overwrite needed: it is ours
    assert not (tmp_path / DATE / f"{DATE}_drive_0003_sync").exists()
    assert not (tmp_path / "splits" / "synthetic_test" / "gt_depths.npz").exists()
    assert "drive_0002" in readlines(tmp_path / "splits" / "synthetic_test" / "test_files.txt")[0]


@pytest.mark.parametrize("flags, match", [
    (dict(num_drives=1), "--num_drives"),
    (dict(frames_per_drive=2), "--frames_per_drive"),
    (dict(date="2000-01-01"), "--date"),
    (dict(test_stride=0), "--test_stride"),
])
def test_bad_flags_are_refused_with_the_flag_name(tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        synth.generate_dataset(tmp_path, **{**TINY, **flags})


def test_velodyne_reader_round_trip(dataset):
    path = drive_dir(dataset, 1) / "velodyne_points" / "data" / "0000000000.bin"
    raw = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    points = load_velodyne_points(path)
    np.testing.assert_array_equal(points[:, :3], raw[:, :3])
    assert np.all(points[:, 3] == 1)
