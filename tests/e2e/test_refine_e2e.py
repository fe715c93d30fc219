"""Online refinement learns: on the synthetic test drive it lowers abs_rel below the checkpoint it started
from, and the source run is left byte for byte as it was.

A ResNet-18 is trained briefly, mono+stereo as FeatDepth's configurations are (frames 0, -1, 1 and the
stereo partner), on part of the synthetic training drives (TRAIN_LINES lines, one epoch), then refined
on the held-out drive's test frames with their neighbours for REFINE_STEPS steps (FeatDepth's batch of
2) and scored on those frames with the Eigen protocol, before and after (stereo-trained: depth x 5.4,
no median scaling, as evaluate_depth.py scores it).
"""

from __future__ import annotations

import pytest

import json

import train
import refine

HEIGHT, WIDTH = 64, 96
TRAIN_LINES = 64
REFINE_STEPS = 20
SEED = 1234


def files_of(folder):
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.heavy
@pytest.mark.slow
def test_refinement_lowers_abs_rel_on_the_test_drive_and_never_touches_the_source_run(synthetic_kitti, tmp_path):
    split = tmp_path / "train_split"
    split.mkdir()
    lines = (synthetic_kitti / "splits" / "synthetic" / "train_files.txt").read_text().splitlines()[:TRAIN_LINES]
    (split / "train_files.txt").write_text("\n".join(lines) + "\n")
    common = ["--data_path", str(synthetic_kitti), "--height", str(HEIGHT), "--width", str(WIDTH), "--num_workers",
              "0", "--device", "cpu", "--no-progress_bar", "--seed", str(SEED), "--learning_rate", "3e-4"]
    train.main(common + ["--split", str(split), "--log_dir", str(tmp_path / "runs"), "--exp_name", "mono_stereo",
                         "--weights_init", "scratch", "--batch_size", "8", "--num_epochs", "1", "--optimizer", "adam",
                         "--use_stereo", "--no_eval"])
    source = tmp_path / "runs" / "mono_stereo"
    source_files = files_of(source)

    report = refine.main(common + ["--pretrained_path", str(source / "models" / "model0.pth"),
                                   "--eval_split", str(synthetic_kitti / "splits" / "synthetic_test"),
                                   "--log_dir", str(tmp_path / "refined"), "--model_name", "mono_refined",
                                   "--num_steps", str(REFINE_STEPS), "--log_frequency", "100"])

    print("refinement:", json.dumps(report))
    assert report["steps"] == REFINE_STEPS and report["num_images"] == 20
    assert report["after"]["abs_rel"] < report["before"]["abs_rel"]
    assert json.loads((tmp_path / "refined" / "mono_refined" / refine.REPORT_FILE).read_text()) == report
    assert files_of(source) == source_files
