"""SQLdepth (ResNet-50 + Self Query Layer) learns depth on the synthetic drives, and overfits two samples.

From scratch (no ImageNet weights here), the Self Query Layer's bins start uniform over the depth
range, so its first depth is the range's middle everywhere; with KITTI's 0.001-80 m that is 40 m
for every pixel, far enough that a warp barely moves and the photometric gradient is tiny (measured:
the two-sample overfit sits at 92% of its first loss for 100 steps). The tests therefore use a range
whose middle is near the synthetic street's median depth in model units, as a pretrained encoder
would otherwise provide; evaluation is median-scaled, so the range sets no scale.
"""

from __future__ import annotations

import numpy as np
import pytest

import overfit
import train
from checkpoints import load_checkpoint
from datasets.kitti_dataset import load_kitti_gt
from evaluation import evaluate_predictions
from tests.e2e.test_learning import A1_GAIN, RMSE_LOG_FRACTION

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

HEIGHT, WIDTH = 64, 192
NUM_EPOCHS = 6
LAST_EPOCHS = 2
# S is H/2 x W/2 = 32 x 96: patches of 8 give 4 x 12 = 48 tokens for 32 queries.
SQL_FLAGS = ["--backbone", "resnet", "--num_layers", "50", "--decoder", "sql", "--num_scales", "1",
             "--sql_patch_size", "8", "--sql_num_queries", "32", "--sql_num_bins", "32",
             "--min_depth", "0.1", "--max_depth", "10", "--pose_model_type", "posecnn"]


def test_sqldepth_resnet50_learns_depth(synthetic_kitti, tmp_path, capsys):
    eval_split = str(synthetic_kitti / "splits" / "synthetic_test")
    gt_depths = load_kitti_gt(eval_split)
    constant = evaluate_predictions(np.ones((len(gt_depths), HEIGHT, WIDTH), np.float32), gt_depths).metrics
    train.main([
        "--data_path", str(synthetic_kitti), "--split", str(synthetic_kitti / "splits" / "synthetic"),
        "--eval_split", eval_split, "--log_dir", str(tmp_path), "--exp_name", "sql", "--weights_init", "scratch",
        "--height", str(HEIGHT), "--width", str(WIDTH), "--batch_size", "8", "--num_epochs", str(NUM_EPOCHS),
        "--optimizer", "adam", "--learning_rate", "3e-4", "--decay_step", str(NUM_EPOCHS), "--num_workers", "2",
        "--device", "cpu", "--seed", "1234", "--no-progress_bar", "--log_frequency", "100",
        "--pose_translation_scaling", "mean_inverse_depth", *SQL_FLAGS])
    per_epoch = [load_checkpoint(tmp_path / "sql" / "models" / f"model{e}.pth")["metrics"]
                 for e in range(NUM_EPOCHS - LAST_EPOCHS, NUM_EPOCHS)]
    metrics = {name: float(np.mean([m[name] for m in per_epoch])) for name in per_epoch[0]}
    with capsys.disabled():
        print("\nSQLdepth: " + ", ".join(f"{n} {metrics[n]:.3f} (constant {constant[n]:.3f})"
                                         for n in ("abs_rel", "rmse_log", "a1")))
    assert metrics["rmse_log"] < RMSE_LOG_FRACTION * constant["rmse_log"], (metrics, constant)
    assert metrics["a1"] > constant["a1"] + A1_GAIN, (metrics, constant)


def test_overfit_drives_the_sqldepth_photometric_loss_below_a_third(synthetic_kitti, tmp_path):
    report = overfit.main([
        "--data_path", str(synthetic_kitti), "--split", str(synthetic_kitti / "splits" / "synthetic"),
        "--weights_init", "scratch", "--height", "64", "--width", "96", "--device", "cpu", "--optimizer", "adam",
        "--learning_rate", "3e-4", "--no-automask", "--samples", "2", "--log_every", "25", "--max_steps", "150",
        "--flat_tolerance", "0", "--output_dir", str(tmp_path / "out"), *SQL_FLAGS,
        "--sql_patch_size", "4", "--sql_num_queries", "16", "--sql_num_bins", "16"])
    assert report["last_window_mean"] < report["first"] / 3, report
