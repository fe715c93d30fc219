"""evaluate_pose: non-finite poses and errors are refused with their line; counts must make sense."""

from __future__ import annotations

import numpy as np
import pytest

import evaluate_pose


def test_a_non_finite_ground_truth_pose_is_refused_with_its_line(tmp_path):
    path = tmp_path / "09.txt"
    identity = "1 0 0 0 0 1 0 0 0 0 1 0"
    path.write_text(f"{identity}\n{identity.replace('0 0 1 0', '0 0 1 inf', 1)}\n")
    with pytest.raises(ValueError, match=r"09\.txt, line 2: the pose holds non-finite values"):
        evaluate_pose.load_poses_file(path)


def test_non_finite_trajectory_errors_are_refused_naming_the_first_snippet(tmp_path):
    split_file = tmp_path / "test_files_09.txt"
    evaluate_pose.check_finite_ates(np.array([0.1, 0.2]), split_file)
    with pytest.raises(ValueError) as refused:
        evaluate_pose.check_finite_ates(np.array([0.1, 0.2, np.nan, np.inf]), split_file)
    assert f"2 snippet(s) is not finite, first the one starting at line 3 of {split_file}" in str(refused.value)


@pytest.mark.parametrize("argv, message", [
    (["--batch_size", "0"], "argument --batch_size: must be a positive integer (got 0)"),
    (["--num_workers", "-1"], "argument --num_workers: must be >= 0 (got -1)"),
])
def test_counts_are_checked_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit):
        evaluate_pose.build_parser().parse_args(["--pretrained_path", "x", "--data_path", "y"] + argv)
    assert message in capsys.readouterr().err
