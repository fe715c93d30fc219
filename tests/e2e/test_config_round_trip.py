"""A run's config.yaml repeats it: train.py --config <run>/config.yaml writes the same opt.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_split(root: Path, tmp_path: Path) -> Path:
    """Four training lines: one short epoch."""
    lines = (root / "splits" / "synthetic" / "train_files.txt").read_text().splitlines()[:4]
    split = tmp_path / "split"
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(lines) + "\n")
    return split


def test_config_yaml_repeats_the_run_with_the_same_opt_json(synthetic_kitti, tmp_path):
    runs = tmp_path / "runs"
    args = ["--data_path", str(synthetic_kitti), "--split", str(tiny_split(synthetic_kitti, tmp_path)),
            "--log_dir", str(runs), "--exp_name", "first", "--weights_init", "scratch", "--height", "64",
            "--width", "96", "--batch_size", "2", "--num_epochs", "1", "--num_workers", "0", "--no_eval",
            "--device", "cpu", "--no-progress_bar", "--learning_rate", "3e-4", "--decay_step", "1", "2",
            "--frame_ids", "0", "1", "--no-flip", "--seed", "5"]
    train.main(args)
    run = runs / "first"
    opt_json = (run / "opt.json").read_bytes()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (run / "config.yaml").read_text().startswith(f"# Options of the run {run}")
    assert config["learning_rate"] == 3e-4 and config["decay_step"] == [1, 2] and config["frame_ids"] == [0, 1]
    assert not {"overwrite", "resume", "force_resume", "local_rank", "config"} & set(config)

    # The first run moves away; its config.yaml alone starts the same run in the same place.
    shutil.move(str(run), str(tmp_path / "kept"))
    train.main(["--config", str(tmp_path / "kept" / "config.yaml")])
    assert (run / "opt.json").read_bytes() == opt_json
    assert (run / "config.yaml").read_bytes() == (tmp_path / "kept" / "config.yaml").read_bytes()
    assert (run / "models" / "model0.pth").is_file()

    # --overwrite removes the previous run's config.yaml with its other artefacts before writing its own.
    train.main(["--config", str(tmp_path / "kept" / "config.yaml"), "--overwrite", "--batch_size", "4"])
    assert yaml.safe_load((run / "config.yaml").read_text())["batch_size"] == 4
