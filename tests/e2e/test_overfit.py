"""overfit.py: two fixed samples, the photometric loss driven far below its start, depth images written."""

from __future__ import annotations

import json

import pytest

import overfit


def overfit_args(root, out, *extra):
    return ["--data_path", str(root), "--split", str(root / "splits" / "synthetic"), "--weights_init", "scratch",
            "--height", "64", "--width", "96", "--device", "cpu", "--optimizer", "adam", "--learning_rate", "1e-4",
            "--no-automask", "--samples", "2", "--log_every", "25", "--output_dir", str(out), *extra]


@pytest.mark.heavy
@pytest.mark.slow
def test_two_samples_are_overfit_below_a_third_of_the_start(synthetic_kitti, tmp_path):
    # Two minutes on 2 cores (150 steps at 0.8 s): 75 steps at three times the rate reach only 45%.
    report = overfit.main(overfit_args(synthetic_kitti, tmp_path / "out", "--max_steps", "150",
                                       "--flat_tolerance", "0"))
    assert report["steps"] == 150 and not report["flattened"]
    assert report["last_window_mean"] < report["first"] / 3, report
    written = sorted(p.name for p in (tmp_path / "out").glob("*.jpeg"))
    assert written == [f"step{s:06d}_sample{i}.jpeg" for s in range(25, 151, 25) for i in (0, 1)]
    saved = json.loads((tmp_path / "out" / "losses.json").read_text())
    assert saved["photometric"] == report["photometric"] and len(saved["photometric"]) == 150


def test_it_stops_once_the_loss_flattens_and_refuses_what_it_cannot_do(synthetic_kitti, tmp_path, capsys):
    # A loss that cannot improve by half of itself per window flattens at the first comparison.
    report = overfit.main(overfit_args(synthetic_kitti, tmp_path / "flat", "--max_steps", "200",
                                       "--flat_tolerance", "0.5", "--log_every", "10"))
    assert report["flattened"] and report["steps"] == 20
    lines = len((synthetic_kitti / "splits" / "synthetic" / "train_files.txt").read_text().splitlines())
    with pytest.raises(ValueError, match=f"--samples {lines + 1}: .* has only {lines} lines"):
        overfit.main(overfit_args(synthetic_kitti, tmp_path / "x", "--samples", str(lines + 1)))
    with pytest.raises(SystemExit):
        overfit.main(overfit_args(synthetic_kitti, tmp_path / "y", "--max_steps", "0"))
    assert "--max_steps must be at least 1" in capsys.readouterr().err
