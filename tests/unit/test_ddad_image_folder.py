"""``--dataset image_folder`` and ``--dataset ddad`` on miniature copies written here (tests/format_writers.py)."""

from __future__ import annotations

import argparse
import json
import logging
import pickle

import cv2
import numpy as np
import pytest

import evaluation
import prepare_custom
import prepare_ddad
from datasets import DDADDataset, ImageFolderDataset, dataset_options, ddad_dataset
from datasets.ddad_dataset import (DDAD_PROTOCOL, build_ddad_eval_sets, ddad_split_lines, pose_matrix,
                                   project_to_depth_map)
from datasets.benchmarks import EvalOptions
from kitti_utils import KITTI_NORMALIZED_K
from tests.format_writers import (DDAD_CAMERA_QUATERNION, DDAD_K, DDAD_SIZE, DDAD_WORLD_FROM_CAMERA_ROTATION,
                                  write_ddad, write_ddad_scene, write_image_folder)

HEIGHT, WIDTH = 32, 64


def rgb_of(sample, frame_id=0) -> np.ndarray:
    return sample[("color_uint8", frame_id, 0)].permute(1, 2, 0).numpy()


def resized(path) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------------ image folders
def test_frames_follow_their_numbers_and_context_is_by_position(tmp_path, caplog):
    # 9 < 10 < 12 < 100 numerically, not by name ("10" < "100" < "12" < "8" < "9"); 11 is missing.
    paths = dict(zip([8, 9, 10, 12, 100], write_image_folder(tmp_path / "walk", [8, 9, 10, 12, 100])))
    with caplog.at_level(logging.WARNING):
        dataset = ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1)
    assert len(dataset) == 3 and dataset.num_dropped == 2
    assert "2 of 5 frames left out" in caplog.text
    sample = dataset[1]  # frame 10: its neighbours are frames 9 and 12 (the gap at 11 is skipped)
    np.testing.assert_array_equal(rgb_of(sample, 0), resized(paths[10]))
    np.testing.assert_array_equal(rgb_of(sample, -1), resized(paths[9]))
    np.testing.assert_array_equal(rgb_of(sample, 1), resized(paths[12]))
    # the documented default: KITTI's normalised K at the network size
    np.testing.assert_allclose(sample[("K", 0)].numpy(), KITTI_NORMALIZED_K * [[WIDTH], [HEIGHT], [1], [1]])


def test_root_frames_and_sub_folders_are_sequences_and_split_lines_use_frame_numbers(tmp_path, caplog):
    write_image_folder(tmp_path, [1, 2, 3])
    other = write_image_folder(tmp_path / "ride", [20, 21, 22], drive=2, name="cam2_{:06d}.jpg")
    assert len(ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1)) == 2
    with caplog.at_level(logging.WARNING):
        dataset = ImageFolderDataset(tmp_path, ["ride 21", ". 2", "ride 22"], HEIGHT, WIDTH, [0, -1, 1], 1)
    assert [(item.folder, item.frame_index) for item in dataset.items] == [("ride", 1), (".", 1)]
    assert dataset.num_dropped == 1 and "1 of 3 frames left out" in caplog.text
    np.testing.assert_array_equal(rgb_of(dataset[0], 1), resized(other[2]))
    with pytest.raises(ValueError, match=r"line 1: sequence ride has no frame numbered 23 \(its frames are "
                                         r"numbered 20 to 22, 3 in all\)"):
        ImageFolderDataset(tmp_path, ["ride 23"], HEIGHT, WIDTH, [0, -1, 1], 1)
    with pytest.raises(ValueError, match="no frame has all its context frames"):
        ImageFolderDataset(tmp_path, ["ride 22"], HEIGHT, WIDTH, [0, -1, 1], 1)


def test_folders_with_duplicate_or_missing_numbers_are_refused_naming_the_files(tmp_path):
    write_image_folder(tmp_path / "walk", [6, 7, 8])
    write_image_folder(tmp_path / "walk", [7], name="{:03d}.jpg")
    with pytest.raises(ValueError, match=r"frame_7\.png and .*007\.jpg both carry frame number 7|"
                                         r"007\.jpg and .*frame_7\.png both carry frame number 7"):
        ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1)
    (tmp_path / "walk" / "007.jpg").unlink()
    write_image_folder(tmp_path / "walk", [0], name="cover.png")
    with pytest.raises(ValueError, match=r"cover\.png: the file name has no frame number"):
        ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1)


@pytest.mark.parametrize("given, expected", [
    ("0.9 1.2 0.4 0.55", [0.9, 1.2, 0.4, 0.55]),
    ("72 96 48 16", [72 / 96, 96 / 64, 48 / 96, 16 / 64]),   # pixels of the 96 x 64 frames
    ("file", [0.7, 0.8, 0.5, 0.45]),
])
def test_intrinsics_come_from_the_argument_in_either_unit(tmp_path, given, expected):
    write_image_folder(tmp_path / "walk", [1, 2, 3])
    if given == "file":
        given = str(tmp_path / "calib.txt")
        (tmp_path / "calib.txt").write_text("0.7 0.8 0.5 0.45\n")
    K = ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1, intrinsics=given)[0][("K", 0)].numpy()
    fx, fy, cx, cy = expected
    np.testing.assert_allclose(K[:2, :3], [[fx * WIDTH, 0, cx * WIDTH], [0, fy * HEIGHT, cy * HEIGHT]], rtol=1e-6)


def test_intrinsics_file_in_the_folder_and_bad_values_name_the_source(tmp_path):
    write_image_folder(tmp_path / "walk", [1, 2, 3])
    (tmp_path / "walk" / "intrinsics.txt").write_text("48 48 48 32")  # pixels: fx = 0.5 W, fy = 0.75 H
    K = ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1)[0][("K", 0)].numpy()
    assert K[0, 0] == pytest.approx(0.5 * WIDTH) and K[1, 1] == pytest.approx(0.75 * HEIGHT)
    with pytest.raises(ValueError, match=r"--intrinsics: the principal point \(cx=2, cy=0.5\) lies outside"):
        ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1, intrinsics="0.5 0.5 2 0.5")
    with pytest.raises(FileNotFoundError, match="--intrinsics nowhere.txt: no such file"):
        ImageFolderDataset(tmp_path, None, HEIGHT, WIDTH, [0, -1, 1], 1, intrinsics="nowhere.txt")


def test_dataset_options_pass_intrinsics_to_image_folder_only():
    opts = argparse.Namespace(dataset="image_folder", intrinsics=["0.5", "0.6", "0.5", "0.5"])
    assert dataset_options(opts) == {"intrinsics": "0.5 0.6 0.5 0.5"}
    assert dataset_options(argparse.Namespace(dataset="kitti", intrinsics=["0.5"])) == {}
    assert dataset_options(argparse.Namespace(dataset="image_folder", intrinsics=None)) == {}


def test_prepare_custom_writes_image_folder_splits(tmp_path):
    write_image_folder(tmp_path / "a", [3, 5, 7, 9])
    write_image_folder(tmp_path / "b", [10, 11, 12], drive=2)
    out = prepare_custom.main(["--dataset", "image_folder", "--data_path", str(tmp_path), "--val_fraction", "0"])
    lines = (out / "train_files.txt").read_text().split("\n")[:-1]
    assert sorted(lines) == ["a 5", "a 7", "b 11"]
    assert len(ImageFolderDataset(tmp_path, lines, HEIGHT, WIDTH, [0, -1, 1], 1)) == 3


# ------------------------------------------------------------------------------------ DDAD geometry
def test_dgp_quaternion_becomes_the_rotation_matrix():
    pose = pose_matrix({"translation": {"x": 1.0, "z": 2.0}, "rotation": DDAD_CAMERA_QUATERNION}, "scene.json")
    np.testing.assert_allclose(pose[:3, :3], DDAD_WORLD_FROM_CAMERA_ROTATION, atol=1e-12)
    np.testing.assert_array_equal(pose[:3, 3], [1.0, 0.0, 2.0])  # proto3 JSON omits zero fields
    np.testing.assert_array_equal(pose_matrix({"translation": {"x": 3.0}, "rotation": {}}, "s.json"), np.eye(4))
    with pytest.raises(ValueError, match="scene.json: the pose .* holds a non-finite number"):
        pose_matrix({"translation": {"x": float("nan")}, "rotation": {"qw": 1.0}}, "scene.json")
    with pytest.raises(ValueError, match="scene.json: a pose needs 'translation'"):
        pose_matrix({"rotation": {"qw": 1.0}}, "scene.json")


def test_projection_keeps_the_nearest_point_in_front_and_inside():
    K = np.array([[10.0, 0, 2.0], [0, 10.0, 1.0], [0, 0, 1]])
    points = np.array([[0.0, 0.0, 5.0],     # -> (u 2, v 1), z 5
                       [0.0, 0.0, 2.0],     # the same pixel, nearer: wins
                       [0.0, 0.0, 9.0],     # the same pixel, farther (after the nearer one)
                       [0.0, 0.0, -3.0],    # behind the camera
                       [-0.25, 0.0, 1.0],   # u = -0.5 -> column 0 (half rounds up)
                       [0.25, 0.0, 1.0],    # u = 4.5 -> column 5: outside a 5-wide image
                       [0.1, 0.2, 4.0]])    # u 2.25 -> 2, v 1.5 -> 2, z 4
    depth = project_to_depth_map(points, K, height=3, width=5)
    expected = np.zeros((3, 5), dtype=np.float32)
    expected[1, 2], expected[1, 0], expected[2, 2] = 2.0, 1.0, 4.0
    np.testing.assert_array_equal(depth, expected)


# LiDAR-frame points of the miniature scenes and where they land (see format_writers: a point p
# of the LiDAR is (-p_y, -(p_z + 0.5), p_x) in the camera, K = 50, 50, 48, 32, image 96 x 64).
CLOSED_FORM_POINTS = [
    [10.0, -1.0, -0.9],   # camera (1, 0.4, 10): u 53, v 34, z 10
    [20.0, -2.0, -1.3],   # camera (2, 0.8, 20): the same pixel, farther: loses
    [-5.0, 0.0, 0.0],     # behind the camera
    [10.0, -20.0, -0.5],  # camera (20, 0, 10): u 148, outside
    [4.0, 2.0, 0.3],      # camera (-2, -0.8, 4): u 23, v 22, z 4
    [8.0, -0.1, -0.5],    # camera (0.1, 0, 8): u 48.625 -> 49, v 32, z 8
    [10.0, 9.68, -0.5],   # camera (-9.68, 0, 10): u -0.4 -> column 0, v 32
    [10.0, -9.52, -0.5],  # camera (9.52, 0, 10): u 95.6 -> column 96, outside
]
CLOSED_FORM_DEPTH = {(34, 53): 10.0, (22, 23): 4.0, (32, 49): 8.0, (32, 0): 10.0}


@pytest.fixture()
def ddad_root(tmp_path):
    write_ddad(tmp_path, num_samples=4, points=lambda i: CLOSED_FORM_POINTS)
    return tmp_path


def expected_depth_map() -> np.ndarray:
    width, height = DDAD_SIZE
    expected = np.zeros((height, width), dtype=np.float32)
    for (row, col), z in CLOSED_FORM_DEPTH.items():
        expected[row, col] = z
    return expected


def test_lidar_is_projected_exactly_and_cached_where_packnet_caches_it(ddad_root, monkeypatch):
    dataset = DDADDataset(ddad_root, ["000000/scene_000000.json 2 CAMERA_05"], HEIGHT, WIDTH, [0, -1, 1], 1)
    item = dataset.items[0]
    depth = dataset.get_depth(item)
    np.testing.assert_array_equal(depth, expected_depth_map())
    cache = ddad_root / "000000" / "depth" / "lidar" / "CAMERA_05" / "1200000.npz"
    assert dataset.depth_cache_path(item) == cache
    with np.load(cache, allow_pickle=False) as cached:
        np.testing.assert_array_equal(cached["depth"], expected_depth_map())
    # a second read comes from the cache, without projecting again
    monkeypatch.setattr(ddad_dataset, "load_point_cloud", lambda *args: pytest.fail("projected again"))
    np.testing.assert_array_equal(dataset.get_depth(item), expected_depth_map())


PICKLE_MARKER = "ddad_cache_pickle_ran"


class _Marker:
    """Unpickling it creates the file PICKLE_MARKER in the working directory."""

    def __reduce__(self):
        return (open, (PICKLE_MARKER, "w"))


@pytest.mark.parametrize("damage", ["garbage", "pickle", "wrong_shape", "stale"])
def test_a_corrupt_or_stale_cache_is_refused_and_rebuilt(ddad_root, damage, caplog, monkeypatch):
    monkeypatch.chdir(ddad_root)
    dataset = DDADDataset(ddad_root, ["000000/scene_000000.json 1"], HEIGHT, WIDTH, [0, -1, 1], 1)
    item = dataset.items[0]
    cache = dataset.depth_cache_path(item)
    dataset.get_depth(item)
    expected = expected_depth_map()
    if damage == "garbage":
        cache.write_bytes(b"PK\x03\x04 not a zip")
    elif damage == "pickle":
        np.savez(cache.with_suffix(""), depth=np.array([_Marker()], dtype=object),
                 signature=np.array(dataset.depth_signature(item)))
    elif damage == "wrong_shape":
        np.savez(cache.with_suffix(""), depth=np.zeros((2, 2), np.float32),
                 signature=np.array(dataset.depth_signature(item)))
    else:  # the LiDAR sweep changes: one point only, 5 m ahead on the optical axis, as a structured array
        lidar = ddad_root / "000000" / "point_cloud" / "LIDAR" / "1100000.npz"
        fields = np.dtype([("X", np.float32), ("Y", np.float32), ("Z", np.float32), ("INTENSITY", np.float32)])
        np.savez_compressed(lidar, data=np.array([(5.0, 0.0, -0.5, 0.3)], dtype=fields))
        expected = np.zeros_like(expected)
        expected[32, 48] = 5.0
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(dataset.get_depth(item), expected)
    assert "rebuilding it" in caplog.text
    with np.load(cache, allow_pickle=False) as cached:  # rewritten in place, readable
        np.testing.assert_array_equal(cached["depth"], expected)
    assert not (ddad_root / PICKLE_MARKER).exists()
    pickle.dumps(dataset)  # workers receive the dataset by pickling


def test_ddad_samples_intrinsics_and_context(ddad_root, caplog):
    lines = [f"000000/scene_000000.json {i}" for i in range(4)]
    with caplog.at_level(logging.WARNING):
        dataset = DDADDataset(ddad_root, lines, HEIGHT, WIDTH, [0, -1, 1], 2, is_train=True, color_jitter=False,
                              flip=False)
    assert len(dataset) == 2 and dataset.num_dropped == 2 and "2 of 4 lines left out" in caplog.text
    sample = dataset[0]  # sample 1 of the scene, CAMERA_01 by default
    folder = ddad_root / "000000" / "rgb" / "CAMERA_01"
    np.testing.assert_array_equal(rgb_of(sample, -1), resized(folder / "1000000.png"))
    np.testing.assert_array_equal(rgb_of(sample, 1), resized(folder / "1200000.png"))
    # the camera moves 1 m along the world's x, its optical axis, per sample
    expected_motion = np.eye(4)
    expected_motion[2, 3] = 1.0
    np.testing.assert_allclose(dataset.target_from_context(dataset.items[0], 1), expected_motion, atol=1e-12)
    width, height = DDAD_SIZE
    K1 = sample[("K", 1)].numpy()
    assert K1[0, 0] == pytest.approx(DDAD_K["fx"] / width * WIDTH / 2)
    assert K1[1, 2] == pytest.approx(DDAD_K["cy"] / height * HEIGHT / 2)


def test_ddad_refuses_bad_input_naming_the_file_and_the_fix(ddad_root):
    scene = "000000/scene_000000.json"
    with pytest.raises(ValueError, match=r"line 1: sample 1 of .* has no CAMERA_09 image \(it has "
                                         r"\['CAMERA_01', 'CAMERA_05'\]\); choose cameras with prepare_ddad.py"):
        DDADDataset(ddad_root, [f"{scene} 1 CAMERA_09"], HEIGHT, WIDTH, [0, -1, 1], 1)
    with pytest.raises(FileNotFoundError, match=r"line 1: scene JSON .*000007/scene\.json not found; check "
                                                r"--data_path"):
        DDADDataset(ddad_root, ["000007/scene.json 1"], HEIGHT, WIDTH, [0, -1, 1], 1)
    with pytest.raises(ValueError, match="has 4 samples, no sample 9"):
        DDADDataset(ddad_root, [f"{scene} 9"], HEIGHT, WIDTH, [0], 1)
    with pytest.raises(ValueError, match="no stereo pairs: drop --use_stereo"):
        DDADDataset(ddad_root, [f"{scene} 1"], HEIGHT, WIDTH, [0, "s"], 1)
    lidar = ddad_root / "000000" / "point_cloud" / "LIDAR" / "1100000.npz"
    lidar.unlink()
    with pytest.raises(FileNotFoundError, match=r"point cloud .*1100000\.npz not found \(sample 1 of "):
        DDADDataset(ddad_root, [f"{scene} 1"], HEIGHT, WIDTH, [0], 1).ground_truth()
    (ddad_root / "000000" / "calibration" / "calib000000.json").write_text('{"names": ["LIDAR"]}')
    with pytest.raises(ValueError, match=r"calib000000\.json: no intrinsics .* for CAMERA_01"):
        DDADDataset(ddad_root, [f"{scene} 1"], HEIGHT, WIDTH, [0], 1)
    (ddad_root / scene).write_text(json.dumps({"samples": [{"datum_keys": ["a"]}], "data": [{"key": "a"}]}))
    with pytest.raises(ValueError, match=r"scene_000000\.json, datum a: missing 'id'"):
        DDADDataset(ddad_root, [f"{scene} 0"], HEIGHT, WIDTH, [0], 1)
    (ddad_root / scene).write_text("{not json")
    with pytest.raises(ValueError, match=r"scene_000000\.json is not valid JSON"):
        DDADDataset(ddad_root, [f"{scene} 1"], HEIGHT, WIDTH, [0], 1)


def test_prepare_ddad_lists_the_chosen_cameras_of_each_split(ddad_root):
    out = prepare_ddad.main(["--data_path", str(ddad_root), "--ddad_cameras", "CAMERA_01", "CAMERA_05",
                             "--build_depth_cache"])
    train = (out / "train_files.txt").read_text().split("\n")[:-1]
    assert train == [f"000000/scene_000000.json {i} {camera}" for camera in ("CAMERA_01", "CAMERA_05")
                     for i in (1, 2)]
    test = (out / "test_files.txt").read_text().split("\n")[:-1]
    assert len(test) == 8 and test[0] == "000001/scene_000001.json 0 CAMERA_01"
    assert len(list((ddad_root / "000001" / "depth" / "lidar").glob("CAMERA_0*/*.npz"))) == 8
    assert ddad_split_lines(ddad_root, "val", ["CAMERA_05"], [0, -2])[1] == 2


def test_ddad_evaluation_scores_0_to_200_m(ddad_root):
    # one map: 150 m (scored) and 250 m (beyond the cap); a constant prediction of 300 m
    gt = np.zeros((4, 4), dtype=np.float32)
    gt[0, 0], gt[1, 1] = 150.0, 250.0
    pred = np.full((2, 2), 1.0 / 300.0, dtype=np.float32)
    result = evaluation.evaluate_predictions([pred], [gt], "ddad", median_scaling=False)
    # only the 150 m pixel counts, and the prediction is clamped to 200 m: |200 - 150| / 150
    assert result.metrics["abs_rel"] == pytest.approx(1.0 / 3.0)
    assert evaluation.EVAL_PROTOCOLS["ddad"] is DDAD_PROTOCOL and DDAD_PROTOCOL.crop is None
    # the builder: the val scene of ddad.json, CAMERA_01, every sample, maps at native size
    [eval_set] = evaluation.EVAL_DATASETS["ddad"](str(ddad_root), EvalOptions(height=HEIGHT, width=WIDTH,
                                                                              num_workers=0))
    assert eval_set.protocol is DDAD_PROTOCOL and len(eval_set.gt_depths) == 4
    np.testing.assert_array_equal(eval_set.gt_depths[3], expected_depth_map())
    batch = next(iter(eval_set.loader))
    assert batch[("color_uint8", 0, 0)].shape == (4, 3, HEIGHT, WIDTH)
    assert build_ddad_eval_sets is evaluation.EVAL_DATASETS["ddad"]


def test_a_scene_may_name_its_cameras_freely(tmp_path):
    scene = write_ddad_scene(tmp_path, "000003", 3, cameras=("CAMERA_06",))
    dataset = DDADDataset(tmp_path, [f"{scene} 1 CAMERA_06"], HEIGHT, WIDTH, [0, -1, 1], 1)
    assert dataset.image_path(scene, 2, "CAMERA_06") == tmp_path / "000003" / "rgb" / "CAMERA_06" / "1200000.png"


def test_overfit_passes_intrinsics_to_image_folders(tmp_path):
    import overfit
    from options import parse_train_options

    write_image_folder(tmp_path / "walk", [1, 2, 3, 4])
    split = prepare_custom.main(["--dataset", "image_folder", "--data_path", str(tmp_path), "--val_fraction", "0"])
    opts = parse_train_options(["--dataset", "image_folder", "--data_path", str(tmp_path), "--split", str(split),
                                "--intrinsics", "72", "96", "48", "16", "--height", "64", "--width", "96",
                                "--samples", "2", "--device", "cpu"], overfit.build_parser())
    K = overfit.fixed_batch(opts, [0, -1, 1])[("K", 0)]
    assert K.shape == (2, 4, 4)
    assert float(K[0, 0, 0]) == pytest.approx(72.0) and float(K[1, 1, 1]) == pytest.approx(96.0)  # pixels, 96 x 64
