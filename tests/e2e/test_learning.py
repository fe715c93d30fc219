"""Training from scratch on the synthetic drives must learn depth, not just run.

The held-out drive is scored with the Eigen protocol (median scaling) against the simulated
lidar, and compared with two baselines scored the same way: the untrained network (same seed,
so the same initial weights) and a constant-depth predictor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import train
from checkpoints import load_checkpoint
from checkpoints import ModelSpec
from datasets.kitti_dataset import build_kitti_eval_loader, load_kitti_gt
from evaluation import evaluate_predictions, predict_inverse_depths
from model import SelfSupervisedDepth
from utils import seed_everything

SEED = 1234
HEIGHT, WIDTH = 64, 192
NUM_EPOCHS = 8
# Single epochs swing (abs_rel by 0.05-0.1 from one epoch to the next: a from-scratch network this
# early), so the test scores the mean of the last three epochs' evaluations, which every epoch's
# checkpoint records. The untrained network and a constant depth both score abs_rel 0.417,
# rmse_log 0.616, a1 0.297. What a run reaches depends on the floating-point details of the torch
# build, not only on the seed: with torch 2.14.1 on the CPU this configuration ends at rmse_log 0.479,
# a1 0.378 (seed 1 of the same recipe: 0.438, 0.375), while an earlier torch reached 0.390, 0.482.
# Log-space error and threshold accuracy improve in every run we measured; abs_rel does not (0.466,
# 0.395, 0.342: early in training it is dominated by over-estimated near ranges), so it is reported
# and not asserted. A run that learned nothing scores the baselines, a collapsed one far worse.
LAST_EPOCHS = 3
RMSE_LOG_FRACTION = 0.85
A1_GAIN = 0.05


@pytest.mark.slow
def test_monocular_training_learns_depth(synthetic_kitti, tmp_path, capsys):
    eval_split = str(synthetic_kitti / "splits" / "synthetic_test")
    gt_depths = load_kitti_gt(eval_split)
    loader = build_kitti_eval_loader(synthetic_kitti, eval_split, HEIGHT, WIDTH, batch_size=8, num_workers=0)

    seed_everything(SEED)  # the Trainer seeds the same way before building its networks
    untrained = SelfSupervisedDepth.for_inference(ModelSpec(height=HEIGHT, width=WIDTH, num_layers=18))
    untrained_disps = predict_inverse_depths(untrained, loader, torch.device("cpu"))
    untrained = evaluate_predictions(untrained_disps, gt_depths).metrics
    constant = evaluate_predictions(np.ones((len(gt_depths), HEIGHT, WIDTH), np.float32), gt_depths).metrics

    metrics = train.main([
        "--data_path", str(synthetic_kitti), "--split", str(synthetic_kitti / "splits" / "synthetic"),
        "--eval_split", eval_split, "--log_dir", str(tmp_path), "--exp_name", "learn",
        "--weights_init", "scratch", "--height", str(HEIGHT), "--width", str(WIDTH), "--batch_size", "8",
        "--num_epochs", str(NUM_EPOCHS), "--optimizer", "adam", "--learning_rate", "3e-4",
        "--decay_step", str(NUM_EPOCHS),
        "--num_workers", "2", "--device", "cpu", "--seed", str(SEED), "--no-progress_bar",
        "--log_frequency", "100"])

    assert metrics == load_checkpoint(tmp_path / "learn" / "models" / f"model{NUM_EPOCHS - 1}.pth")["metrics"]
    per_epoch = [load_checkpoint(tmp_path / "learn" / "models" / f"model{e}.pth")["metrics"]
                 for e in range(NUM_EPOCHS - LAST_EPOCHS, NUM_EPOCHS)]
    metrics = {name: float(np.mean([m[name] for m in per_epoch])) for name in metrics}
    with capsys.disabled():
        for name in ("abs_rel", "rmse_log", "a1"):
            print(f"\n{name}: trained {metrics[name]:.3f}, untrained {untrained[name]:.3f}, "
                  f"constant {constant[name]:.3f}", end="")
        print()
    report = (metrics, untrained, constant)
    assert metrics["rmse_log"] < RMSE_LOG_FRACTION * min(untrained["rmse_log"], constant["rmse_log"]), report
    assert metrics["a1"] > max(untrained["a1"], constant["a1"]) + A1_GAIN, report
