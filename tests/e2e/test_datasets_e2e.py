"""Train on every trainable format and evaluate through every benchmark format, in-process.

Each dataset is a miniature copy in the benchmark's exact layout (tests/format_writers.py);
training runs one or two steps, evaluation runs the real scripts and checks their reports
against the library functions on the same predictions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate_depth
import evaluation
import evaluate_pose
import prepare_cityscapes
import train
from checkpoints import load_checkpoint
from tests.format_writers import (KITTI_DEPTH_DRIVE, write_cityscapes_raw, write_custom, write_kitti_depth,
                                  write_make3d, write_nyu_h5, write_nyu_raw, write_odometry)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def split_folder(path: Path, train_lines: list[str], **extra: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "train_files.txt").write_text("\n".join(train_lines) + "\n")
    (path / "val_files.txt").write_text("\n".join(train_lines[:1]) + "\n")
    for name, lines in extra.items():
        (path / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return path


def train_run(tmp_path: Path, dataset: str, data_path: Path, split: Path, *extra: str,
              height: int = 64, width: int = 96) -> Path:
    train.main(["--dataset", dataset, "--data_path", str(data_path), "--split", str(split),
                "--log_dir", str(tmp_path / "runs"), "--exp_name", dataset, "--weights_init", "scratch",
                "--height", str(height), "--width", str(width), "--batch_size", "2", "--num_epochs", "1",
                "--num_workers", "0", "--device", "cpu", "--no-progress_bar", "--no_eval",
                "--num_scales", "1", *extra])
    checkpoint = tmp_path / "runs" / dataset / "models" / "model0.pth"
    assert checkpoint.is_file()
    return checkpoint


def test_kitti_odom_trains_and_evaluate_pose_reports_ate(tmp_path):
    root = tmp_path / "odom"
    poses = write_odometry(root, 9, num_frames=8)
    split = split_folder(tmp_path / "split", [f"9 {i} l" for i in range(1, 5)],
                         test_files_09=[f"9 {i} l" for i in range(7)])
    checkpoint = train_run(tmp_path, "kitti_odom", root, split, height=64, width=192)
    out = tmp_path / "pose_eval"
    report = evaluate_pose.main(["--pretrained_path", str(checkpoint), "--data_path", str(root), "--eval_split",
                                 "odom_9", "--odom_split", str(split), "--num_workers", "0", "--device", "cpu",
                                 "--eval_out_dir", str(out)])
    result = report["sequences"]["09"]
    assert result["num_snippets"] == 7  # one per frame pair, the last a single transform (Monodepth2)
    predicted = np.load(out / "poses_09.npy")
    assert predicted.shape == (7, 4, 4)
    expected = evaluate_pose.snippet_ates(predicted, evaluate_pose.local_transforms(poses))
    assert result["ate_mean"] == pytest.approx(expected.mean()) and np.isfinite(result["ate_mean"])
    assert json.loads((out / "pose_metrics.json").read_text()) == report
    assert (out / "trajectory_09.png").stat().st_size > 1000


def test_kitti_depth_trains_and_its_maps_score_known_predictions(tmp_path):
    maps = write_kitti_depth(tmp_path / "kitti", num_frames=6)
    lines = [f"{KITTI_DEPTH_DRIVE} {i} l" for i in range(1, 5)]
    checkpoint = train_run(tmp_path, "kitti_depth", tmp_path / "kitti", split_folder(tmp_path / "split", lines),
                           "--use_stereo", height=64, width=192)
    assert load_checkpoint(checkpoint)["model_spec"]["dataset"] == "kitti_depth"
    from datasets import KITTIDepthDataset

    gt = KITTIDepthDataset(tmp_path / "kitti", lines, 64, 192, [0], 1).ground_truth()
    np.testing.assert_array_equal(gt[0], maps[1])
    halved = [np.where(d > 0, 2.0 / np.maximum(d, 1e-6), 1.0) for d in gt]  # depth / 2 everywhere
    result = evaluation.evaluate_predictions(halved, gt, "eigen_benchmark", median_scaling=False)
    assert result.metrics["abs_rel"] == pytest.approx(0.5, abs=1e-6)
    assert result.metrics["a1"] == 0.0


def test_custom_videos_train(tmp_path):
    write_custom(tmp_path / "videos", {"walk": 4, "ride": 4}, intrinsics="0.8 1.1 0.45 0.5")
    import prepare_custom

    split = prepare_custom.main(["--data_path", str(tmp_path / "videos"), "--val_fraction", "0.2"])
    train_run(tmp_path, "custom", tmp_path / "videos", split)


def test_nyuv2_trains_with_max_depth_10_and_evaluates_on_nyu_each_epoch(tmp_path):
    lines = write_nyu_raw(tmp_path / "nyu_raw", "bedroom_0001", num_frames=10)
    rng = np.random.default_rng(5)
    nyu_test = tmp_path / "nyu_test"
    write_nyu_h5(nyu_test / "val" / "00000.h5", rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                 rng.uniform(1.0, 9.0, (480, 640)).astype(np.float32))
    split = split_folder(tmp_path / "split", lines[:2], test_files=["val/00000.h5"])
    checkpoint = train_run(tmp_path, "nyuv2", tmp_path / "nyu_raw", split, "--max_depth", "10", "--eval",
                           "--eval_data_path", str(nyu_test), "--eval_split", str(split))
    payload = load_checkpoint(checkpoint)
    assert payload["model_spec"]["max_depth"] == 10.0
    # the per-epoch evaluation ran the NYUv2 protocol (always median-scaled, 10 m cap)
    assert set(payload["metrics"]) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"}
    assert 0.0 < payload["metrics"]["abs_rel"] < 1.0
    log = (tmp_path / "runs" / "nyuv2" / "logger.log").read_text()
    assert "NYUv2:" in log and "Scaling ratios" in log


def test_cityscapes_prepare_then_train(tmp_path):
    raw = tmp_path / "raw"
    write_cityscapes_raw(raw, "train", "aachen", 0, range(10, 16))
    dump = tmp_path / "prepared"
    lines = prepare_cityscapes.main(["--dataset_dir", str(raw), "--dump_root", str(dump), "--img_height", "64",
                                     "--img_width", "128", "--seq_length", "3", "--no-progress_bar"])
    train_run(tmp_path, "cityscapes", dump, split_folder(tmp_path / "split", lines), height=64, width=128)


@pytest.fixture
def checkpoint_64x96(tmp_path) -> Path:
    lines = write_nyu_raw(tmp_path / "nyu_raw", "bedroom_0001", num_frames=10)
    return train_run(tmp_path, "nyuv2", tmp_path / "nyu_raw", split_folder(tmp_path / "train_split", lines[:2]),
                     "--max_depth", "10")


def test_evaluate_depth_runs_every_benchmark_in_one_call(tmp_path, checkpoint_64x96, caplog):
    caplog.set_level(logging.INFO)
    rng = np.random.default_rng(3)
    # NYUv2: two labelled test files
    nyu = tmp_path / "nyu"
    for i in range(2):
        depth = rng.uniform(1.0, 9.0, (480, 640)).astype(np.float32)
        write_nyu_h5(nyu / "val" / f"{i:05d}.h5", rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), depth)
    nyu_split = split_folder(tmp_path / "nyu_split", [], test_files=[f"val/{i:05d}.h5" for i in range(2)])
    # Make3D: two photos and grids
    make3d = tmp_path / "make3d"
    for name in ("a-1", "b-2"):
        write_make3d(make3d, name, rng.integers(0, 256, (568, 426, 3), dtype=np.uint8), rng.uniform(2, 80, (55, 305)))
    # Cityscapes: one raw test frame and its ground truth
    cityscapes = tmp_path / "cityscapes"
    write_cityscapes_raw(cityscapes, "test", "berlin", 0, [19])
    cs_split = split_folder(tmp_path / "cs_split", [], test_files=["berlin berlin_000000_000019"])
    (cs_split / "gt_depths").mkdir()
    np.save(cs_split / "gt_depths" / "000_depth.npy", rng.uniform(3, 60, (128, 256)).astype(np.float32))

    report = evaluate_depth.main([
        "--pretrained_path", str(checkpoint_64x96), "--make3d_path", str(make3d), "--nyuv2_path", str(nyu),
        "--nyuv2_split", str(nyu_split), "--cityscapes_path", str(cityscapes), "--cityscapes_split", str(cs_split),
        "--num_workers", "0", "--device", "cpu", "--save_pred_disps", "--eval_out_dir", str(tmp_path / "eval")])
    results = {entry["name"]: entry for entry in report["results"]}
    assert list(results) == ["make3d", "nyuv2", "cityscapes"]
    assert list(results["make3d"]["metrics"]) == ["abs_rel", "sq_rel", "rmse", "rmse_log10"]
    assert len(results["nyuv2"]["metrics"]) == 7 and results["nyuv2"]["num_images"] == 2
    printed = caplog.text
    for title in ("Make3D", "NYUv2", "Cityscapes"):
        assert f"Evaluate on {title}" in printed
    # the script's numbers are evaluate_predictions' on the saved disparities
    from datasets.nyu_dataset import NYUTestSet

    disps = np.load(tmp_path / "eval" / "disps_nyuv2_split.npy")
    assert disps.shape == (2, 64, 96)
    gt = NYUTestSet(nyu, [f"val/{i:05d}.h5" for i in range(2)], 64, 96).ground_truth()
    expected = evaluation.evaluate_predictions(disps, gt, "nyuv2")
    assert results["nyuv2"]["metrics"] == pytest.approx(expected.metrics)
    assert torch.isfinite(torch.tensor(list(results["cityscapes"]["metrics"].values()))).all()
