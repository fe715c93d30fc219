"""Every dataset format of the lineage, read from miniature copies written in its exact layout."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import evaluate_pose
import prepare_cityscapes
import prepare_custom
from datasets import (DATASETS, CityscapesDataset, CustomDataset, EuRoCDataset, KITTIDepthDataset, KITTIOdomDataset,
                      NYUDataset)
from datasets.cityscapes_dataset import CityscapesTestSet, load_cityscapes_gt
from datasets.custom_dataset import parse_intrinsics
from datasets.make3d_dataset import Make3DTestSet, make3d_names, read_make3d_depth
from datasets.nyu_dataset import (NYU_CX, NYU_CY, NYU_DISTORTION, NYU_FX, NYU_FY, NYUTestSet,
                                  nyu_camera_matrix)
from evaluation import EVAL_PROTOCOLS, evaluate_predictions
from tests.format_writers import (CITYSCAPES_INTRINSIC, KITTI_DEPTH_DRIVE, write_cityscapes_raw, write_custom,
                                  write_euroc, write_kitti_depth, write_make3d, write_nyu_h5, write_nyu_raw,
                                  write_odometry)

HEIGHT, WIDTH = 32, 64


def rgb_of(sample, frame_id=0) -> np.ndarray:
    return sample[("color_uint8", frame_id, 0)].permute(1, 2, 0).numpy()


def area_resize(image: np.ndarray, width=WIDTH, height=HEIGHT) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def sample_with_flip(dataset, index: int, flipped: bool) -> dict:
    """A training sample whose random flip came out as ``flipped`` (searching augmentation seeds)."""
    for seed in range(100):
        sample = dataset[(index, seed)]
        if bool(sample["do_flip"]) == flipped:
            return sample
    raise AssertionError("no seed gave the wanted flip")


def test_registry_names_every_dataset():
    assert set(DATASETS) == {"kitti", "kitti_odom", "kitti_depth", "nyuv2", "cityscapes", "custom", "image_folder",
                             "ddad", "euroc"}


# ------------------------------------------------------------------------------------ KITTI odometry
@pytest.fixture(scope="module")
def odom_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("odom")
    write_odometry(root, 9, num_frames=6)
    return root


def test_odometry_layout_and_bad_lines(odom_root):
    dataset = KITTIOdomDataset(odom_root, ["9 2 l", "09 3 r"], HEIGHT, WIDTH, [0, -1, 1], 1)
    sample = dataset[1]
    expected = area_resize(read_rgb(odom_root / "sequences" / "09" / "image_3" / "000004.png"))
    np.testing.assert_array_equal(rgb_of(sample, 1), expected)
    with pytest.raises(ValueError, match=r"line 1: the odometry sequence '2011_09_26/x' is not an integer"):
        KITTIOdomDataset(odom_root, ["2011_09_26/x 2 l"], HEIGHT, WIDTH, [0], 1)
    with pytest.raises(FileNotFoundError, match=r"line 1: image not found: .*sequences/09/image_2/000006.png"):
        KITTIOdomDataset(odom_root, ["9 5 l"], HEIGHT, WIDTH, [0, 1], 1)


def test_odometry_grey_pair_is_featdepths_convention(tmp_path):
    write_odometry(tmp_path, 9, num_frames=3, cameras=(0, 1))
    dataset = KITTIOdomDataset(tmp_path, ["9 1 l", "9 1 r"], HEIGHT, WIDTH, [0, -1, "s"], 1, camera="grey")
    folder = tmp_path / "sequences" / "09"
    grey = cv2.imread(str(folder / "image_1" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert grey.ndim == 2  # stored with one channel, read as RGB with three equal ones
    np.testing.assert_array_equal(rgb_of(dataset[1]), area_resize(np.repeat(grey[:, :, None], 3, axis=2)))
    np.testing.assert_array_equal(rgb_of(dataset[0], "s"), rgb_of(dataset[1]))  # l's stereo partner is image_1
    np.testing.assert_array_equal(rgb_of(dataset[1], -1), area_resize(read_rgb(folder / "image_1" / "000000.png")))
    with pytest.raises(FileNotFoundError, match=r"image_2/000001.png.*pass --odom_camera grey"):
        KITTIOdomDataset(tmp_path, ["9 1 l"], HEIGHT, WIDTH, [0], 1)


def test_odom_camera_flag_reaches_the_odometry_dataset_only():
    import argparse

    from datasets import dataset_options
    from options import parse_train_options

    assert dataset_options(argparse.Namespace(dataset="kitti_odom", odom_camera="grey")) == {"camera": "grey"}
    assert dataset_options(argparse.Namespace(dataset="kitti", odom_camera="color")) == {}
    with pytest.raises(SystemExit):
        parse_train_options(["--dataset", "kitti", "--odom_camera", "grey"])


def test_pose_file_round_trip_and_errors(odom_root, tmp_path):
    poses = evaluate_pose.load_poses_file(odom_root / "poses" / "09.txt")
    assert poses.shape == (6, 4, 4)
    # composing the local transforms gives back the trajectory in the first camera's frame
    positions = evaluate_pose.compose_trajectory(evaluate_pose.local_transforms(poses))
    expected = (np.linalg.inv(poses[0]) @ poses)[:, :3, 3]
    np.testing.assert_allclose(positions, expected, atol=1e-5)
    bad = tmp_path / "09.txt"
    bad.write_text("1 0 0 0 0 1 0 0 0 0 1 0\n1 2 3\n")
    with pytest.raises(ValueError, match=r"09.txt, line 2: expected 12 numbers"):
        evaluate_pose.load_poses_file(bad)


def straight_line(step: np.ndarray, count: int) -> np.ndarray:
    """count local transforms, each a pure translation by ``step``."""
    transforms = np.tile(np.eye(4), (count, 1, 1))
    transforms[:, :3, 3] = step
    return transforms


def test_ate_closed_form():
    gt = straight_line(np.array([0.0, 0.0, 1.0]), 4)
    assert evaluate_pose.snippet_ates(gt, gt).tolist() == [0.0, 0.0, 0.0, 0.0]  # one per transform
    scaled = gt.copy()
    scaled[:, :3, 3] *= 0.37
    assert np.allclose(evaluate_pose.snippet_ates(scaled, gt), 0.0)
    # Prediction moves diagonally: positions (k, 0, k) against (0, 0, k), k = 0..4. The best scale
    # is sum(k^2) / sum(2 k^2) = 1/2, leaving (k/2, 0, -k/2): sqrt(sum k^2 / 2) / 5 = sqrt(15) / 5.
    diagonal = straight_line(np.array([1.0, 0.0, 1.0]), 4)
    assert evaluate_pose.compute_ate(evaluate_pose.snippet_positions(gt),
                                     evaluate_pose.snippet_positions(diagonal)) == pytest.approx(math.sqrt(15) / 5)
    with pytest.raises(ValueError, match="N poses -> N-1 lines"):
        evaluate_pose.snippet_ates(gt[:3], gt)


def test_ate_on_real_odometry_poses(realdata):
    path = realdata / "kitti_odom_poses" / "KITTI_00_gt.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    gt_local = evaluate_pose.local_transforms(evaluate_pose.load_poses_file(path)[:400])
    assert len(gt_local) == 399
    # the car drives forward (camera z) about 0.86 m per frame at the start of sequence 00
    assert gt_local[0][2, 3] == pytest.approx(-0.8587, abs=1e-3)
    assert np.allclose(evaluate_pose.snippet_ates(gt_local, gt_local), 0.0)
    scaled = gt_local.copy()
    scaled[:, :3, 3] *= 3.0
    assert np.allclose(evaluate_pose.snippet_ates(scaled, gt_local), 0.0, atol=1e-9)
    # no motion at all: every snippet's error is its whole extent / 5 -> clearly positive
    still = np.tile(np.eye(4), (len(gt_local), 1, 1))
    assert evaluate_pose.snippet_ates(still, gt_local).mean() > 0.5


# ------------------------------------------------------------------------------------ KITTI depth
@pytest.fixture(scope="module")
def kitti_depth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_depth")
    maps = write_kitti_depth(root, num_frames=4)
    return root, maps


def test_kitti_depth_reads_annotated_maps(kitti_depth_root):
    root, maps = kitti_depth_root
    lines = [f"{KITTI_DEPTH_DRIVE} 1 l", f"{KITTI_DEPTH_DRIVE} 2 l"]
    dataset = KITTIDepthDataset(root, lines, HEIGHT, WIDTH, [0, -1, 1], 1, load_depth=True)
    gt = dataset.ground_truth()
    np.testing.assert_array_equal(gt[0], maps[1])
    assert gt[0].max() > 5 and (gt[0] == 0).any()  # real metres, with invalid pixels
    sample = dataset[0]
    assert sample["depth_gt"].shape == (1, 375, 1242) and sample["depth_gt"].dtype == torch.float32
    np.testing.assert_array_equal(dataset.get_depth(dataset.items[0], do_flip=True), maps[1][:, ::-1])
    # known predictions through the eigen_benchmark protocol: exact, then 10 % too far
    for factor, abs_rel in ((1.0, 0.0), (1.1, 0.1)):
        disps = [np.where(d > 0, 1.0 / (factor * np.maximum(d, 1e-6)), 1.0) for d in gt]
        result = evaluate_predictions(disps, gt, "eigen_benchmark", median_scaling=False)
        assert result.metrics["abs_rel"] == pytest.approx(abs_rel, abs=1e-6)
        assert result.metrics["rmse_log"] == pytest.approx(math.log(factor), abs=1e-6)
        assert result.metrics["a1"] == 1.0


def test_kitti_depth_missing_map_names_the_fix(kitti_depth_root):
    root, _ = kitti_depth_root
    (root / KITTI_DEPTH_DRIVE / "proj_depth" / "groundtruth" / "image_03" / "0000000002.png").rename(
        root / "moved.png")
    try:
        with pytest.raises(FileNotFoundError, match=r"line 1: annotated depth not found: .*image_03/0000000002.png"
                                                    r".*data_depth_annotated"):
            KITTIDepthDataset(root, [f"{KITTI_DEPTH_DRIVE} 2 r"], HEIGHT, WIDTH, [0], 1)
    finally:
        (root / "moved.png").rename(root / KITTI_DEPTH_DRIVE / "proj_depth" / "groundtruth" / "image_03" / "0000000002.png")


# ------------------------------------------------------------------------------------ custom videos
def test_custom_frames_intrinsics_and_flip(tmp_path):
    write_custom(tmp_path, {"walk": 4, "bike": 3}, intrinsics="0.9 1.2 0.4 0.55")
    (tmp_path / "bike" / "intrinsics.txt").write_text("0.7, 0.0, 0.5\n0, 0.8, 0.5\n0 0 1\n")
    dataset = CustomDataset(tmp_path, ["walk 1", "bike 1"], HEIGHT, WIDTH, [0, -1, 1], 2, is_train=True,
                            color_jitter=False)
    plain = sample_with_flip(dataset, 0, flipped=False)
    np.testing.assert_array_equal(rgb_of(plain, 1), area_resize(read_rgb(tmp_path / "walk" / "000002.jpg")))
    np.testing.assert_allclose(plain[("K", 1)].numpy()[:2, :3],
                               [[0.9 * 32, 0, 0.4 * 32], [0, 1.2 * 16, 0.55 * 16]], rtol=1e-6)
    flipped = sample_with_flip(dataset, 0, flipped=True)
    assert flipped[("K", 0)][0, 2] == pytest.approx(0.6 * WIDTH)
    assert dataset[1][("K", 0)][0, 0] == pytest.approx(0.7 * WIDTH)  # the sequence's own file wins


@pytest.mark.parametrize("text, message", [
    ("721.5 721.5 609.6 172.9", "look like pixels; add the image size they refer to, .fx fy cx cy W H."),
    ("0.58 1.92 1.3 0.5", r"principal point \(cx=1.3, cy=0.5\) lies outside the image"),
    ("0.58 1.92 0.5", "expected 4 numbers 'fx fy cx cy' or 9"),
    ("0.58 -1.92 0.5 0.5", "focal lengths must be positive"),
    ("fx fy cx cy", "expected numbers"),
])
def test_custom_intrinsics_are_validated(text, message):
    with pytest.raises(ValueError, match=message):
        parse_intrinsics(text, "my/intrinsics.txt")


def test_custom_missing_pieces_name_the_fix(tmp_path):
    write_custom(tmp_path, {"walk": 3}, intrinsics=None)
    with pytest.raises(FileNotFoundError, match=r"no intrinsics for sequence walk: write normalised 'fx fy cx cy'"):
        CustomDataset(tmp_path, ["walk 1"], HEIGHT, WIDTH, [0, -1, 1], 1)
    (tmp_path / "intrinsics.txt").write_text("0.5 0.5 0.5 0.5")
    with pytest.raises(FileNotFoundError, match=r"line 1: image not found: .*<frame 3 of 3>.*neighbouring frames"):
        CustomDataset(tmp_path, ["walk 2"], HEIGHT, WIDTH, [0, -1, 1], 1)
    with pytest.raises(FileNotFoundError, match="line 2: sequence folder .*run not found"):
        CustomDataset(tmp_path, ["walk 1", "run 1"], HEIGHT, WIDTH, [0, -1, 1], 1)


def test_custom_frames_are_in_number_order_not_text_order(tmp_path):
    # img1 .. img11 unpadded: as text, img1 is followed by img10 and img11.
    write_custom(tmp_path, {"walk": 3})
    walk = tmp_path / "walk"
    for frame in sorted(walk.glob("*.jpg")):
        frame.unlink()
    for number in range(1, 12):
        cv2.imwrite(str(walk / f"img{number}.jpg"), np.full((16, 32, 3), 20 * number, np.uint8))
    dataset = CustomDataset(tmp_path, ["walk 1"], HEIGHT, WIDTH, [0, -1, 1], 1, color_jitter=False)
    sample = sample_with_flip(dataset, 0, flipped=False)
    for frame_id, number in ((-1, 1), (0, 2), (1, 3)):
        np.testing.assert_array_equal(rgb_of(sample, frame_id), area_resize(read_rgb(walk / f"img{number}.jpg")))
    (walk / "img2_copy.jpg").write_bytes((walk / "img2.jpg").read_bytes())
    with pytest.raises(ValueError, match=r"img2.jpg and .*img2_copy.jpg both carry frame number 2"):
        CustomDataset(tmp_path, ["walk 1"], HEIGHT, WIDTH, [0, -1, 1], 1)
    (walk / "img2_copy.jpg").rename(walk / "cover.jpg")
    with pytest.raises(ValueError, match=r"cover.jpg: the file name has no frame number"):
        CustomDataset(tmp_path, ["walk 1"], HEIGHT, WIDTH, [0, -1, 1], 1)


def test_prepare_custom_writes_usable_splits(tmp_path):
    write_custom(tmp_path, {"a": 5, "b": 4})
    out = prepare_custom.main(["--data_path", str(tmp_path), "--val_fraction", "0.25"])
    train = (out / "train_files.txt").read_text().split("\n")[:-1]
    val = (out / "val_files.txt").read_text().split("\n")[:-1]
    assert sorted(train + val) == ["a 1", "a 2", "a 3", "b 1", "b 2"] and len(val) == 1
    assert len(CustomDataset(tmp_path, train, HEIGHT, WIDTH, [0, -1, 1], 1)) == 4


# ------------------------------------------------------------------------------------ NYUv2
@pytest.mark.slow
def test_nyu_training_frames_are_undistorted_and_cropped(tmp_path):
    lines = write_nyu_raw(tmp_path, "bedroom_0001", num_frames=10)
    dataset = NYUDataset(tmp_path, lines[:2], 64, 96, [0, -1, 1], 1, is_train=True, color_jitter=False)
    sample = sample_with_flip(dataset, 1, flipped=False)
    raw = read_rgb(tmp_path / lines[1].split()[5])  # token 5 is frame +1
    expected = cv2.undistort(raw, nyu_camera_matrix(), np.asarray(NYU_DISTORTION))[16:-16, 16:-16]
    diff = np.abs(rgb_of(sample, 1).astype(int) - area_resize(expected, 96, 64).astype(int))
    assert diff.mean() < 0.5  # cv2.undistort and the cached remap agree up to rounding
    k = np.array([[NYU_FX / 608, 0, (NYU_CX - 16) / 608], [0, NYU_FY / 448, (NYU_CY - 16) / 448]])
    np.testing.assert_allclose(sample[("K", 0)].numpy()[:2, :3], k * [[96], [64]], rtol=1e-6)
    flipped = sample_with_flip(dataset, 1, flipped=True)
    assert flipped[("K", 0)][0, 2] == pytest.approx((1 - (NYU_CX - 16) / 608) * 96, rel=1e-6)
    np.testing.assert_array_equal(rgb_of(flipped), rgb_of(sample)[:, ::-1])


@pytest.mark.slow
def test_nyu_bad_lines_are_refused(tmp_path):
    lines = write_nyu_raw(tmp_path, "bedroom_0001", num_frames=9)
    short = " ".join(lines[0].split()[:5])
    with pytest.raises(ValueError, match=r"line 1: 5 path\(s\) but frame_ids \[0, -1, 1\] need 6"):
        NYUDataset(tmp_path, [short], 64, 96, [0, -1, 1], 1)
    small = tmp_path / "small.ppm"
    cv2.imwrite(str(small), np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(ValueError, match="must be the raw 640 x 480 Kinect frames"):
        NYUDataset(tmp_path, ["small.ppm small.ppm small.ppm small.ppm small.ppm small.ppm"], 64, 96,
                   [0, 1], 1)[0]


def two_level_depth(shape, near, far) -> np.ndarray:
    depth = np.full(shape, far, dtype=np.float32)
    depth[:, : shape[1] // 2] = near
    return depth


def test_nyu_h5_test_set_and_protocol(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = np.full((480, 640), 30.0, dtype=np.float32)  # outside the crop: must not count
    depth[44:471, 40:601] = two_level_depth((427, 561), 2.0, 4.0)
    write_nyu_h5(tmp_path / "val" / "official" / "00001.h5", rgb, depth)
    dataset = NYUTestSet(tmp_path, ["val/official/00001.h5"], 64, 96)
    np.testing.assert_array_equal(dataset[0][("color_uint8", 0, 0)].permute(1, 2, 0).numpy(),
                                  area_resize(rgb[44:471, 40:601], 96, 64))
    gt = dataset.ground_truth()
    assert gt[0].shape == (427, 561)
    # A constant prediction is median-scaled (always, even when asked not to) to the median 4 m
    # (280 of the 561 columns are near): near pixels are off by |2-4|/2 = 1, far ones exact.
    share_near = (561 // 2) / 561
    result = evaluate_predictions([np.full((64, 96), 0.5, np.float32)], gt, "nyuv2", median_scaling=False,
                                  pred_depth_scale_factor=5.4)
    assert result.metrics["abs_rel"] == pytest.approx(share_near)
    assert result.metrics["a1"] == pytest.approx(1 - share_near) and result.ratios.size == 1
    assert EVAL_PROTOCOLS["nyuv2"].clamp_max == 10.0
    with pytest.raises(FileNotFoundError, match="line 1: .*missing.h5 not found"):
        NYUTestSet(tmp_path, ["missing.h5"], 64, 96)


# ------------------------------------------------------------------------------------ Make3D
def test_make3d_grid_image_crop_and_log10_metric(tmp_path):
    grid = np.full((55, 305), 100.0)  # outside rows 17:38: never read
    grid[17:38] = two_level_depth((21, 305), 2.0, 20.0)
    grid[17:38, -5:] = 90.0  # beyond the C1 cap of 70: masked out
    photo = np.zeros((568, 426, 3), np.uint8)  # the 1704 x 2272 photo at a quarter size
    photo[177:390] = 200  # rows 710/4 .. 1562/4: the cropped band
    write_make3d(tmp_path, "060705-17.10.14-p-018t000", photo, grid)
    names = make3d_names(tmp_path)
    assert names == ["060705-17.10.14-p-018t000"]
    depth = read_make3d_depth(tmp_path / "Gridlaserdata" / f"depth_sph_corr-{names[0]}.mat")
    np.testing.assert_array_equal(depth, grid[17:38].astype(np.float32))
    dataset = Make3DTestSet(tmp_path, names, 32, 64)
    assert (dataset[0][("color_uint8", 0, 0)].float() - 200).abs().max() <= 2  # only the band, JPEG-rounded
    # constant prediction -> median-scaled to the valid median; count near/far pixels by hand
    valid = depth[(depth > 0) & (depth < 70)]
    median = np.median(valid)
    result = evaluate_predictions([np.full((32, 64), 0.1, np.float32)], [depth], "make3d")
    assert list(result.metrics) == ["abs_rel", "sq_rel", "rmse", "rmse_log10"]
    expected_log10 = math.sqrt(np.mean((np.log10(valid) - np.log10(median)) ** 2))
    assert result.metrics["rmse_log10"] == pytest.approx(expected_log10)
    assert result.metrics["abs_rel"] == pytest.approx(np.mean(np.abs(valid - median) / valid))


# ------------------------------------------------------------------------------------ Cityscapes
@pytest.fixture(scope="module")
def cityscapes_prepared(tmp_path_factory):
    raw = tmp_path_factory.mktemp("cs_raw")
    write_cityscapes_raw(raw, "train", "aachen", 0, range(15, 22))
    dump = tmp_path_factory.mktemp("cs_prepared")
    lines = prepare_cityscapes.main(["--dataset_dir", str(raw), "--dump_root", str(dump), "--img_height", "64",
                                     "--img_width", "128", "--seq_length", "3", "--num_threads", "2",
                                     "--no-progress_bar"])
    return raw, dump, lines


def test_prepare_cityscapes_stacks_triplets(cityscapes_prepared):
    raw, dump, lines = cityscapes_prepared
    assert lines == [f"aachen aachen_000000_{f:06d}" for f in range(17, 20)]
    stacked = read_rgb(dump / "aachen" / "aachen_000000_000018.png")
    assert stacked.shape == (3 * 48, 128, 3)
    for row, frame in enumerate((16, 18, 20)):
        source = read_rgb(raw / "leftImg8bit_sequence" / "train" / "aachen" / f"aachen_000000_{frame:06d}_leftImg8bit.png")
        expected = cv2.resize(source, (128, 64), interpolation=cv2.INTER_LANCZOS4)[:48]
        np.testing.assert_array_equal(stacked[48 * row:48 * (row + 1)], expected)
    cam = [float(v) for v in (dump / "aachen" / "aachen_000000_000018_cam.txt").read_text().split(",")]
    c = CITYSCAPES_INTRINSIC
    np.testing.assert_allclose(cam, [c["fx"] / 2, 0, c["u0"] / 2, 0, c["fy"] / 2, c["v0"] / 2, 0, 0, 1], atol=1e-6)
    assert (dump / "prepared_files.txt").read_text().split("\n")[:-1] == lines
    with pytest.raises(SystemExit):
        prepare_cityscapes.main(["--dataset_dir", str(raw), "--dump_root", str(dump), "--seq_length", "4"])


def test_cityscapes_training_samples(cityscapes_prepared):
    _, dump, lines = cityscapes_prepared
    dataset = CityscapesDataset(dump, lines, HEIGHT, WIDTH, [0, -1, 1], 1, is_train=True, color_jitter=False)
    sample = sample_with_flip(dataset, 1, flipped=False)
    stacked = read_rgb(dump / "aachen" / "aachen_000000_000018.png")
    for frame_id, row in ((-1, 0), (0, 1), (1, 2)):
        np.testing.assert_array_equal(rgb_of(sample, frame_id), area_resize(stacked[48 * row:48 * (row + 1)]))
    c = CITYSCAPES_INTRINSIC
    k = sample[("K", 0)].numpy()
    np.testing.assert_allclose([k[0, 0], k[1, 1], k[0, 2], k[1, 2]],
                               [c["fx"] / 256 * WIDTH, c["fy"] / 2 / 48 * HEIGHT, c["u0"] / 256 * WIDTH,
                                c["v0"] / 2 / 48 * HEIGHT], rtol=1e-5)
    assert sample_with_flip(dataset, 1, flipped=True)[("K", 0)][0, 2] == pytest.approx((1 - c["u0"] / 256) * WIDTH, rel=1e-5)
    with pytest.raises(ValueError, match=r"frame_ids \[2\] are not available"):
        CityscapesDataset(dump, lines, HEIGHT, WIDTH, [0, 2], 1)


def test_cityscapes_test_set_and_protocol(tmp_path):
    write_cityscapes_raw(tmp_path, "test", "berlin", 0, [19])
    split = tmp_path / "split"
    (split / "gt_depths").mkdir(parents=True)
    (split / "test_files.txt").write_text("berlin berlin_000000_000019\n")
    # 128 x 256 ground truth; top 96 rows kept; window rows 32:96, columns 24:232
    gt = np.full((128, 256), 40.0, dtype=np.float32)
    gt[32:96, 24:232] = two_level_depth((64, 208), 10.0, 20.0)
    np.save(split / "gt_depths" / "000_depth.npy", gt)
    from datasets.benchmarks import eval_split_file

    split_file = eval_split_file("cityscapes", str(split))
    dataset = CityscapesTestSet(tmp_path, (split_file).read_text().splitlines(), 32, 64)
    raw = read_rgb(tmp_path / "leftImg8bit_sequence" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png")
    np.testing.assert_array_equal(dataset[0][("color_uint8", 0, 0)].permute(1, 2, 0).numpy(), area_resize(raw[:96]))
    maps = load_cityscapes_gt(split / "gt_depths", 1)
    assert maps[0].shape == (96, 256)
    # constant prediction -> median 15 m inside the window: (5/10 + 5/20) / 2 = 0.375
    result = evaluate_predictions([np.full((32, 64), 0.2, np.float32)], maps, "cityscapes")
    assert result.metrics["abs_rel"] == pytest.approx(0.375)
    assert result.ratios[0] * 5.0 == pytest.approx(15.0)
    with pytest.raises(FileNotFoundError, match="001_depth.npy not found"):
        load_cityscapes_gt(split / "gt_depths", 2)


# ------------------------------------------------------------------------------------------ EuRoC
@pytest.fixture(scope="module")
def euroc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("euroc") / "MH_02_easy"
    write_euroc(root, num_frames=5)
    return root


def test_euroc_every_frame_with_neighbours_stereo_partner_and_featdepth_camera(euroc_root):
    dataset = EuRoCDataset(euroc_root, None, HEIGHT, WIDTH, [0, -1, 1, "s"], 1)
    assert [item.frame_index for item in dataset.items] == [1, 2, 3] and dataset.num_dropped == 2
    names = sorted(p.name for p in (euroc_root / "mav0" / "cam0" / "data").iterdir())
    sample = dataset[0]
    cameras = euroc_root / "mav0"
    np.testing.assert_array_equal(rgb_of(sample, -1), area_resize(read_rgb(cameras / "cam0" / "data" / names[0])))
    np.testing.assert_array_equal(rgb_of(sample, 1), area_resize(read_rgb(cameras / "cam0" / "data" / names[2])))
    np.testing.assert_array_equal(rgb_of(sample, "s"), area_resize(read_rgb(cameras / "cam1" / "data" / names[1])))
    K = sample[("K", 0)]
    assert float(K[0, 0]) == pytest.approx(435.2047 / 752 * WIDTH) and float(K[1, 1]) == pytest.approx(
        435.2047 / 480 * HEIGHT)
    assert (float(K[0, 2]), float(K[1, 2])) == (WIDTH / 2, HEIGHT / 2)
    assert float(sample["stereo_T"][0, 3]) == pytest.approx(-0.1)  # left camera, FeatDepth's 0.1 unit


def test_euroc_reads_featdepths_layout_without_mav0_and_split_lines(tmp_path):
    write_euroc(tmp_path, num_frames=3, asl_layout=False, cameras=("cam0",))
    dataset = EuRoCDataset(tmp_path, ["1 l"], HEIGHT, WIDTH, [0, -1, 1], 1)
    assert dataset.image_path(".", 2, "l").parent == tmp_path / "cam0" / "data"


def test_euroc_refuses_bad_input_at_construction(tmp_path, euroc_root):
    with pytest.raises(FileNotFoundError, match=r"mav0/cam0/data .*or .*/cam0/data"):
        EuRoCDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1)
    with pytest.raises(FileNotFoundError, match=r"line 1: frame 0 needs frame -1 .* frames 0 to 4"):
        EuRoCDataset(euroc_root, ["0 l"], HEIGHT, WIDTH, [0, -1, 1], 1)
    with pytest.raises(ValueError, match=r"line 1: expected '<frame index> <side l\|r>'"):
        EuRoCDataset(euroc_root, ["MH_02_easy 1 l"], HEIGHT, WIDTH, [0], 1)
    mono_only = tmp_path / "mono_only"
    write_euroc(mono_only, num_frames=3, cameras=("cam0",))
    EuRoCDataset(mono_only, ["1 l"], HEIGHT, WIDTH, [0, -1, 1], 1)  # cam1 is only needed for stereo
    with pytest.raises(FileNotFoundError, match=r"mav0/cam1/data/\d+\.png not found"):
        EuRoCDataset(mono_only, ["1 l"], HEIGHT, WIDTH, [0, "s"], 1)
    small = tmp_path / "small"
    write_euroc(small, num_frames=3, size=(376, 240))
    with pytest.raises(ValueError, match=r"is 376 x 240 pixels.*defined for 752 x 480"):
        EuRoCDataset(small, None, HEIGHT, WIDTH, [0, -1, 1], 1)


@pytest.mark.slow
def test_train_takes_a_step_on_euroc(tmp_path, euroc_root):
    import train
    from checkpoints import load_checkpoint, resume_checkpoint_path

    (tmp_path / "no_split").mkdir()  # no train_files.txt: every frame with its neighbours
    train.main(["--dataset", "euroc", "--data_path", str(euroc_root), "--split", str(tmp_path / "no_split"),
                "--use_stereo", "--log_dir", str(tmp_path / "runs"), "--exp_name", "euroc", "--weights_init",
                "scratch", "--height", "64", "--width", "96", "--batch_size", "3", "--num_epochs", "1",
                "--num_workers", "0", "--device", "cpu", "--no-progress_bar", "--no_eval", "--num_scales", "1"])
    # Frames 1 to 3 of 5 have both neighbours: 3 samples, one step at batch size 3.
    resume = load_checkpoint(resume_checkpoint_path(tmp_path / "runs" / "euroc", 1))
    assert resume["model_spec"]["dataset"] == "euroc" and resume["model_spec"]["use_stereo"]
