"""``train.py`` on image folders and on DDAD, and DDAD's evaluation at 0-200 m, on miniature copies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import evaluate_depth
import evaluation
import prepare_custom
import prepare_ddad
from checkpoints import load_checkpoint
from datasets import DDADDataset
from datasets.ddad_dataset import DDAD_PROTOCOL
from tests.e2e.test_datasets_e2e import train_run
from tests.format_writers import write_ddad, write_image_folder

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_image_folder_prepare_then_train(tmp_path):
    write_image_folder(tmp_path / "frames", [3, 4, 5, 6, 8, 9])
    split = prepare_custom.main(["--dataset", "image_folder", "--data_path", str(tmp_path / "frames"),
                                 "--val_fraction", "0.25"])
    assert len((split / "train_files.txt").read_text().split()) == 2 * 3  # 4 lines, 3 for training
    checkpoint = train_run(tmp_path, "image_folder", tmp_path / "frames", split)
    assert load_checkpoint(checkpoint)["model_spec"]["dataset"] == "image_folder"


def test_image_folder_trains_without_a_split_file_on_every_frame_with_context(tmp_path, caplog):
    write_image_folder(tmp_path / "frames", [1, 2, 3, 4, 5])
    (tmp_path / "no_split").mkdir()
    checkpoint = train_run(tmp_path, "image_folder", tmp_path / "frames", tmp_path / "no_split", "--batch_size", "1")
    # Frames 2, 3 and 4 have both neighbours: 3 samples, 3 steps at batch size 1.
    assert load_checkpoint(checkpoint)["model_spec"]["dataset"] == "image_folder"
    resume = sorted((tmp_path / "runs" / "image_folder" / "checkpoints").glob("step*.pth"))
    assert load_checkpoint(resume[-1])["step"] == 3


def test_intrinsics_flag_reaches_the_training_dataset(tmp_path):
    from options import parse_train_options
    from trainer import Trainer

    write_image_folder(tmp_path / "frames", [1, 2, 3, 4])
    split = prepare_custom.main(["--dataset", "image_folder", "--data_path", str(tmp_path / "frames"),
                                 "--val_fraction", "0"])
    opts = parse_train_options(["--dataset", "image_folder", "--data_path", str(tmp_path / "frames"),
                                "--split", str(split), "--intrinsics", "0.9", "1.2", "0.4", "0.55",
                                "--log_dir", str(tmp_path / "runs"), "--weights_init", "scratch", "--height", "64",
                                "--width", "96", "--batch_size", "1", "--num_workers", "0", "--device", "cpu",
                                "--no_eval", "--no-progress_bar"])
    K = Trainer(opts).train_dataset[0][("K", 0)]
    assert float(K[0, 0]) == pytest.approx(0.9 * 96)


def test_ddad_trains_evaluates_each_epoch_and_evaluate_depth_caps_at_200_m(tmp_path):
    # Two points beyond KITTI's 80 m: 150 m (scored) and 250 m (beyond DDAD's 200 m cap).
    far = [[150.0, -30.0, -0.5], [250.0, 0.0, -0.5]]  # camera (30, 0, 150) -> u 58; (0, 0, 250) -> u 48
    near = [[10.0, -1.0, -0.9], [4.0, 2.0, 0.3], [8.0, -0.1, -0.5], [12.0, 3.0, 0.5]]
    root = tmp_path / "ddad"
    write_ddad(root, num_samples=5, points=lambda i: near + far)
    split = prepare_ddad.main(["--data_path", str(root)])
    checkpoint = train_run(tmp_path, "ddad", root, split, "--eval", "--eval_split", str(split))
    payload = load_checkpoint(checkpoint)
    assert payload["model_spec"]["dataset"] == "ddad"
    assert np.isfinite(payload["metrics"]["abs_rel"])  # the per-epoch evaluation ran on the val scene

    out = tmp_path / "eval"
    report = evaluate_depth.main(["--pretrained_path", str(checkpoint), "--ddad_path", str(root), "--num_workers",
                                  "0", "--device", "cpu", "--save_pred_disps", "--eval_out_dir", str(out)])
    [result] = report["results"]
    assert result["protocol"] == "ddad" and result["num_images"] == 5
    predictions = np.load(out / "disps_ddad_split.npy", allow_pickle=False)
    lines = [f"000001/scene_000001.json {i} CAMERA_01" for i in range(5)]
    gt = DDADDataset(root, lines, 64, 96, [0], 1).ground_truth()
    assert gt[0][32, 48] == 250.0 and gt[0][32, 58] == 150.0
    expected = evaluation.evaluate_predictions(predictions, gt, "ddad", median_scaling=True)
    assert result["metrics"] == pytest.approx(expected.metrics)
    # the 250 m pixels are what the cap leaves out: scoring them changes every image's numbers
    uncapped = dataclasses.replace(DDAD_PROTOCOL, gt_max=None, clamp_max=None)
    assert evaluation.evaluate_predictions(predictions, gt, uncapped).metrics["abs_rel"] != pytest.approx(
        expected.metrics["abs_rel"])
