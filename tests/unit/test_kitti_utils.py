"""kitti_utils (calibration, scans, the reference GT projection) and export_gt_depth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

import export_gt_depth
import ground_truth
import make_synthetic_kitti as synth
from kitti_utils import (GARG_CROP, KITTI_FULL_RES, KITTI_NORMALIZED_K, MAX_EVAL_DEPTH, MIN_EVAL_DEPTH,
                         STEREO_SCALE_FACTOR, generate_depth_map, load_velodyne_points, read_calib_file,
                         read_kitti_depth_png)
from utils import readlines

REAL_DATE = "2011_09_26"


def real_calib_dir(realdata: Path) -> Path:
    return realdata / "kitti_raw" / REAL_DATE


def real_scan(realdata: Path) -> Path:
    drive = real_calib_dir(realdata) / f"{REAL_DATE}_drive_0005_sync"
    return drive / "velodyne_points" / "data" / "0000000000.bin"


def literal_reference_depth_map(calib_dir: Path, velo_path: Path, cam: int = 2, vel_depth: bool = False,
                                correct: bool = False) -> np.ndarray:
    """The reference export written out step by step, slow on purpose: a Counter and a Python loop
    over duplicate keys, with the reference's sub2ind ``v (w - 1) + u - 1`` unless ``correct``."""
    cam2cam = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    velo2cam_calib = read_calib_file(calib_dir / "calib_velo_to_cam.txt")
    velo2cam = np.vstack([np.hstack([velo2cam_calib["R"].reshape(3, 3), velo2cam_calib["T"][:, None]]),
                          [0.0, 0.0, 0.0, 1.0]])
    height, width = cam2cam["S_rect_02"][::-1].astype(np.int32)
    rect = np.eye(4)
    rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    p_velo2im = cam2cam[f"P_rect_0{cam}"].reshape(3, 4) @ rect @ velo2cam

    velo = load_velodyne_points(velo_path)
    velo = velo[velo[:, 0] >= 0, :]
    pts = velo @ p_velo2im.T
    pts[:, :2] = pts[:, :2] / pts[:, 2][:, None]
    if vel_depth:
        pts[:, 2] = velo[:, 0]
    pts[:, 0] = np.round(pts[:, 0]) - 1
    pts[:, 1] = np.round(pts[:, 1]) - 1
    keep = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] < width) & (pts[:, 1] < height)
    pts = pts[keep]
    depth = np.zeros((height, width))
    for x, y, d in pts:  # later points overwrite earlier ones
        depth[int(y), int(x)] = d
    keys = pts[:, 1] * width + pts[:, 0] if correct else pts[:, 1] * (width - 1) + pts[:, 0] - 1
    for key, count in Counter(keys.tolist()).items():
        if count > 1:
            group = np.where(keys == key)[0]
            depth[int(pts[group[0], 1]), int(pts[group[0], 0])] = pts[group, 2].min()
    depth[depth < 0] = 0
    return depth


def write_calibration(folder: Path, width: int, height: int, fx: float = 8.0) -> None:
    """A tiny camera looking along the velodyne x axis (R_rect and velodyne mount as on KITTI)."""
    p_rect = [fx, 0, width / 2, 0, 0, fx, height / 2, 0, 0, 0, 1, 0]
    (folder / "calib_cam_to_cam.txt").write_text(
        "calib_time: 01-Jan-2000 09:00:00\n"
        f"S_rect_02: {width:e} {height:e}\n"
        "R_rect_00: " + " ".join(f"{x:e}" for x in np.eye(3).ravel()) + "\n"
        "P_rect_02: " + " ".join(f"{x:e}" for x in p_rect) + "\n")
    (folder / "calib_velo_to_cam.txt").write_text(
        "R: 0 -1 0 0 0 -1 1 0 0\nT: 0 -0.08 -0.27\n")


def random_scan(path: Path, rng: np.random.Generator, count: int, width: int, height: int, fx: float) -> None:
    """Points that cover the tiny image and spill past its borders, some behind the sensor."""
    forward = rng.uniform(-2, 20, size=count)
    z_cam = forward - 0.27
    u = rng.uniform(-2, width + 2, size=count)
    v = rng.uniform(-2, height + 2, size=count)
    left = -(u - width / 2) * z_cam / fx
    up = -((v - height / 2) * z_cam / fx + 0.08)
    points = np.stack([forward, left, up, rng.uniform(0, 1, size=count)], -1).astype(np.float32)
    points.tofile(path)


# ------------------------------------------------------------------------------------------ constants
def test_constants_match_the_reference():
    assert KITTI_FULL_RES == (1242, 375)
    np.testing.assert_array_equal(KITTI_NORMALIZED_K, np.array(
        [[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32))
    assert KITTI_NORMALIZED_K.dtype == np.float32
    assert STEREO_SCALE_FACTOR == pytest.approx(0.54 / 0.1)
    assert (MIN_EVAL_DEPTH, MAX_EVAL_DEPTH) == (1e-3, 80)
    h, w = 375, 1242
    crop = (int(GARG_CROP[0] * h), int(GARG_CROP[1] * h), int(GARG_CROP[2] * w), int(GARG_CROP[3] * w))
    assert crop == (153, 371, 44, 1197)  # the crop hard-coded in monodepth2's trainer


# ------------------------------------------------------------------------------------ calibration
def test_read_calib_file_real_cam_to_cam(realdata):
    calib = read_calib_file(real_calib_dir(realdata) / "calib_cam_to_cam.txt")
    assert calib["calib_time"] == "09-Jan-2012 13:57:47"
    p_rect_02 = calib["P_rect_02"].reshape(3, 4)
    np.testing.assert_array_equal(p_rect_02[0], [7.215377e02, 0, 6.095593e02, 4.485728e01])
    np.testing.assert_array_equal(calib["S_rect_02"], [1242, 375])
    assert calib["R_rect_00"].dtype == np.float64 and calib["R_rect_00"].shape == (9,)
    assert calib["corner_dist"] == pytest.approx(0.0995)
    velo = read_calib_file(real_calib_dir(realdata) / "calib_velo_to_cam.txt")
    assert velo["R"][0] == pytest.approx(7.533745e-03) and velo["T"][2] == pytest.approx(-2.717806e-01)
    imu = read_calib_file(real_calib_dir(realdata) / "calib_imu_to_velo.txt")
    assert imu["T"][0] == pytest.approx(-8.086759e-01)


def test_read_calib_file_keeps_the_reference_float_rule(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("a: 1 2.5 -3e-2 +4\n"
                    "\n"
                    "double_space: 1  2\n"  # the split on single spaces fails: kept as a string
                    "upper_e: 1E5\n"  # 'E' is not in the numeric character set
                    "text: 09-Jan-2012 13:57:47\n"
                    "empty:\n"
                    "colon: x: y\n")
    calib = read_calib_file(path)
    np.testing.assert_array_equal(calib["a"], [1, 2.5, -0.03, 4])
    assert calib["double_space"] == "1  2"
    assert calib["upper_e"] == "1E5"
    assert calib["text"] == "09-Jan-2012 13:57:47"
    assert calib["empty"] == ""
    assert calib["colon"] == "x: y"


def test_read_calib_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_calib_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a: 1\nno colon here\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        read_calib_file(bad)


def edit_calibration(path: Path, key: str, new_line: str | None) -> None:
    """Replace (or, with None, drop) the line of ``key`` in a calibration file."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key}:")]
    path.write_text("\n".join(lines + ([new_line] if new_line else [])) + "\n")


@pytest.mark.parametrize("file_name, key, replacement, expected", [
    ("calib_cam_to_cam.txt", "P_rect_02", None, "has no 'P_rect_02' entry (expected 12 numbers)"),
    ("calib_cam_to_cam.txt", "P_rect_02", "P_rect_02: 1 0 0 0 0 1 0 0 0 0 1",
     "'P_rect_02' should hold 12 numbers, found 11"),
    ("calib_cam_to_cam.txt", "R_rect_00", "R_rect_00: 1 0 0 0 1 0 0 0 1 0",
     "'R_rect_00' should hold 9 numbers, found 10"),
    ("calib_cam_to_cam.txt", "S_rect_02", "S_rect_02: 1242", "'S_rect_02' should hold 2 numbers, found 1"),
    ("calib_cam_to_cam.txt", "S_rect_02", "S_rect_02: unknown", "'S_rect_02' should hold 2 numbers, got the text"),
    ("calib_cam_to_cam.txt", "S_rect_02", "S_rect_02: 0 0", "'S_rect_02' should hold a positive image size"),
    ("calib_velo_to_cam.txt", "T", None, "has no 'T' entry (expected 3 numbers)"),
    ("calib_velo_to_cam.txt", "R", "R: 1 0 0 0 1 0", "'R' should hold 9 numbers, found 6"),
])
def test_broken_calibration_names_the_file_the_key_and_what_was_expected(tmp_path, file_name, key, replacement,
                                                                         expected):
    write_calibration(tmp_path, 12, 8)
    scan = tmp_path / "scan.bin"
    random_scan(scan, np.random.default_rng(0), 50, 12, 8, 8.0)
    generate_depth_map(tmp_path, scan)  # the intact calibration works
    edit_calibration(tmp_path / file_name, key, replacement)
    with pytest.raises(ValueError) as refused:
        generate_depth_map(tmp_path, scan)
    message = str(refused.value)
    assert message.startswith(f"calibration file {tmp_path / file_name}") and expected in message


# -------------------------------------------------------------------------------------- velodyne
def test_load_velodyne_points_replaces_reflectance_with_one(tmp_path):
    raw = np.arange(12, dtype=np.float32).reshape(3, 4)
    raw.tofile(tmp_path / "scan.bin")
    points = load_velodyne_points(tmp_path / "scan.bin")
    assert points.dtype == np.float32
    np.testing.assert_array_equal(points, [[0, 1, 2, 1], [4, 5, 6, 1], [8, 9, 10, 1]])


def test_load_velodyne_points_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.bin"):
        load_velodyne_points(tmp_path / "nowhere.bin")
    (tmp_path / "short.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ValueError, match="short.bin.*multiple of 16"):
        load_velodyne_points(tmp_path / "short.bin")


def test_real_scan_loads(realdata):
    points = load_velodyne_points(real_scan(realdata))
    assert points.shape == (123397, 4)
    assert np.all(points[:, 3] == 1)


# ----------------------------------------------------------------------------- generate_depth_map
def test_depth_map_of_a_real_frame_matches_a_hand_projection(realdata):
    calib_dir, scan = real_calib_dir(realdata), real_scan(realdata)
    depth = generate_depth_map(calib_dir, scan, cam=2)
    assert depth.shape == (375, 1242) and depth.dtype == np.float32
    assert 15000 < (depth > 0).sum() < 25000
    assert depth.max() < 120

    # By hand: X_image = P_rect_02 R_rect_00 [R T; 0 1] X_velo for a few points that own their pixel.
    cam2cam = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    velo2cam = read_calib_file(calib_dir / "calib_velo_to_cam.txt")
    rect = np.eye(4)
    rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    tr = np.eye(4)
    tr[:3, :3] = velo2cam["R"].reshape(3, 3)
    tr[:3, 3] = velo2cam["T"]
    p = cam2cam["P_rect_02"].reshape(3, 4)
    points = load_velodyne_points(scan).astype(np.float64)
    points = points[points[:, 0] >= 0]
    image = (p @ rect @ tr @ points.T).T
    u = np.round(image[:, 0] / image[:, 2]).astype(int) - 1
    v = np.round(image[:, 1] / image[:, 2]).astype(int) - 1
    inside = (u >= 0) & (u < 1242) & (v >= 0) & (v < 375)
    assert (depth > 0).sum() <= inside.sum()
    pixels = Counter(zip(v[inside].tolist(), u[inside].tolist()))
    alone = [i for i in np.flatnonzero(inside) if pixels[(v[i], u[i])] == 1 and 0 < u[i] < 1241]
    assert len(alone) > 5000
    for i in alone[:: len(alone) // 7]:
        assert depth[v[i], u[i]] == pytest.approx(image[i, 2], rel=1e-6)
    # Every in-image point's pixel holds a depth no larger than the point's (nearest or later).
    sample = np.flatnonzero(inside)[::97]
    assert np.all(depth[v[sample], u[sample]] > 0)

    velo_depth = generate_depth_map(calib_dir, scan, cam=2, vel_depth=True)
    i = alone[0]
    assert velo_depth[v[i], u[i]] == pytest.approx(points[i, 0], rel=1e-6)


def test_real_frame_equals_the_literal_reference_loop(realdata):
    calib_dir, scan = real_calib_dir(realdata), real_scan(realdata)
    for vel_depth in (False, True):
        expected = literal_reference_depth_map(calib_dir, scan, vel_depth=vel_depth)
        np.testing.assert_array_equal(generate_depth_map(calib_dir, scan, vel_depth=vel_depth),
                                      expected.astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicate_handling_equals_the_literal_loop(tmp_path, seed):
    width, height, fx = 20, 10, 8.0
    write_calibration(tmp_path, width, height, fx)
    random_scan(tmp_path / "scan.bin", np.random.default_rng(seed), 3000, width, height, fx)
    for vel_depth in (False, True):
        scan = tmp_path / "scan.bin"
        reference = generate_depth_map(tmp_path, scan, vel_depth=vel_depth)
        correct = generate_depth_map(tmp_path, scan, vel_depth=vel_depth, duplicates="correct")
        literal = literal_reference_depth_map(tmp_path, scan, vel_depth=vel_depth)
        np.testing.assert_array_equal(reference, literal.astype(np.float32))
        literal = literal_reference_depth_map(tmp_path, scan, vel_depth=vel_depth, correct=True)
        np.testing.assert_array_equal(correct, literal.astype(np.float32))
        # ~15 points per pixel: nearly every pixel is filled (a point just ahead of the sensor,
        # with negative camera z, zeroes its pixel as in the reference) ...
        assert np.mean(correct > 0) > 0.7
        # ... and the reference's sub2ind differs from it, e.g. where (v, w-1) and (v+1, 0) share a key.
        assert np.any(reference != correct)


def test_correct_mode_keeps_the_nearest_point_per_pixel(tmp_path):
    width, height, fx = 20, 10, 8.0
    write_calibration(tmp_path, width, height, fx)
    # Three points on the ray of pixel (u, v) = (4, 2), i.e. stored at (3, 1), the far one last.
    u, v = 4.0, 2.0
    rows = []
    for forward in (6.0, 3.0, 9.0):
        z = forward - 0.27
        rows.append([forward, -(u - width / 2) * z / fx, -((v - height / 2) * z / fx + 0.08), 0.5])
    np.array(rows, dtype=np.float32).tofile(tmp_path / "scan.bin")
    depth = generate_depth_map(tmp_path, tmp_path / "scan.bin", duplicates="correct")
    assert np.count_nonzero(depth) == 1
    assert depth[1, 3] == pytest.approx(3.0 - 0.27, rel=1e-6)
    assert generate_depth_map(tmp_path, tmp_path / "scan.bin", vel_depth=True)[1, 3] == pytest.approx(3.0)


def test_generate_depth_map_rejects_unknown_duplicate_mode(tmp_path):
    with pytest.raises(ValueError, match="duplicates"):
        generate_depth_map(tmp_path, tmp_path / "scan.bin", duplicates="fast")


# ------------------------------------------------------------------------------ annotated depth PNG
def test_read_kitti_depth_png(tmp_path):
    values = np.array([[0, 256, 65535], [512 + 64, 1, 0]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "depth.png"), values)
    depth = read_kitti_depth_png(tmp_path / "depth.png")
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, [[0, 1, 65535 / 256], [2.25, 1 / 256, 0]])
    cv2.imwrite(str(tmp_path / "eight_bit.png"), values.astype(np.uint8))
    with pytest.raises(ValueError, match="16-bit"):
        read_kitti_depth_png(tmp_path / "eight_bit.png")
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_kitti_depth_png(tmp_path / "absent.png")


# ------------------------------------------------------------------------------------ export_gt_depth
WIDTH, HEIGHT, FRAMES = 310, 94, 6


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_gt")
    return synth.generate_dataset(root, num_drives=2, frames_per_drive=FRAMES, width=WIDTH, height=HEIGHT,
                                  seed=5, num_workers=1)


def test_export_writes_one_velodyne_map_per_test_line(synthetic_root):
    split_dir = synthetic_root / "splits" / "synthetic_test"
    output = export_gt_depth.main(["--data_path", str(synthetic_root), "--split", str(split_dir)])
    assert output == split_dir / "gt_depths.npz"
    assert sorted(p.name for p in split_dir.iterdir()) == ["gt_depths.npz", "test_files.txt"]  # no temp files
    with np.load(output, allow_pickle=False) as archive:  # our format holds no pickles
        assert archive.files == [ground_truth.gt_key(i) for i in range(FRAMES - 2)]
        assert all(archive[name].dtype == np.float32 for name in archive.files)

    lines = readlines(split_dir / "test_files.txt")
    depths = ground_truth.load_gt_depths(output)
    assert len(depths) == len(lines) == FRAMES - 2
    for line, depth in zip(lines, depths):
        folder, frame, side = line.split()
        assert side == "l" and depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
        scan = synthetic_root / folder / "velodyne_points" / "data" / f"{int(frame):010d}.bin"
        np.testing.assert_array_equal(depth, generate_depth_map(synthetic_root / folder.split("/")[0], scan,
                                                                vel_depth=True))
    # vel_depth: the LiDAR's forward distance, 0.27 m more than camera 0's z (the mount offset).
    folder, frame, _ = lines[0].split()
    scan = synthetic_root / folder / "velodyne_points" / "data" / f"{int(frame):010d}.bin"
    camera_z = generate_depth_map(synthetic_root / folder.split("/")[0], scan)
    both = (depths[0] > 0) & (camera_z > 0)
    assert np.median(depths[0][both] - camera_z[both]) == pytest.approx(0.27, abs=0.01)


def test_export_reads_annotated_pngs_for_benchmark_splits(synthetic_root, tmp_path):
    lines = readlines(synthetic_root / "splits" / "synthetic_test" / "test_files.txt")
    expected = []
    for index, line in enumerate(lines):
        folder, frame, _ = line.split()
        png = synthetic_root / folder / "proj_depth" / "groundtruth" / "image_02" / f"{int(frame):010d}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        values = np.full((HEIGHT, WIDTH), 256 * (index + 1), dtype=np.uint16)
        values[0, 0] = 0
        cv2.imwrite(str(png), values)
        expected.append(values / 256.0)
    # A split folder named eigen_benchmark switches the mode on; --benchmark_gt forces it elsewhere.
    named = tmp_path / "eigen_benchmark"
    named.mkdir()
    (named / "test_files.txt").write_text("\n".join(lines) + "\n")
    for argv in (["--split", str(named)],
                 ["--split", str(synthetic_root / "splits" / "synthetic_test"), "--benchmark_gt",
                  "--output", str(tmp_path / "out" / "bench.npz")]):
        output = export_gt_depth.main(["--data_path", str(synthetic_root), *argv])
        depths = ground_truth.load_gt_depths(output)
        assert len(depths) == len(expected)
        for depth, want in zip(depths, expected):
            np.testing.assert_array_equal(depth, want.astype(np.float32))
    assert output == tmp_path / "out" / "bench.npz"


def test_export_missing_scan_names_the_file_and_line(synthetic_root, tmp_path):
    split = tmp_path / "broken"
    split.mkdir()
    folder = "2000_01_01/2000_01_01_drive_0002_sync"
    (split / "test_files.txt").write_text(f"{folder} 0000000001 l\n{folder} 0000000099 l\n")
    with pytest.raises(FileNotFoundError, match=r"line 2: velodyne scan not found: .*0000000099\.bin"):
        export_gt_depth.main(["--data_path", str(synthetic_root), "--split", str(split)])
    assert sorted(p.name for p in split.iterdir()) == ["test_files.txt"]  # nothing half-written


def test_export_rejects_malformed_lines_and_missing_splits(synthetic_root, tmp_path):
    split = tmp_path / "bad"
    split.mkdir()
    (split / "test_files.txt").write_text("2000_01_01/2000_01_01_drive_0002_sync\n")
    with pytest.raises(ValueError, match="line 1"):
        export_gt_depth.main(["--data_path", str(synthetic_root), "--split", str(split)])
    with pytest.raises(FileNotFoundError, match="test_files.txt"):
        export_gt_depth.main(["--data_path", str(synthetic_root), "--split", str(tmp_path)])


def test_load_gt_depths_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="gt_depths.npz"):
        ground_truth.load_gt_depths(tmp_path / "gt_depths.npz")
