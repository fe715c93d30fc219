"""Option values that make no sense are refused by the parser, naming the flag and the fix."""

from __future__ import annotations

import pytest

from options import parse_train_options


def refusal(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_train_options(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--learning_rate=-1e-4"], "--learning_rate must be positive (got -0.0001)"),
    (["--learning_rate", "0"], "--learning_rate must be positive"),
    (["--learning_rate", "nan"], "--learning_rate must be a finite number (got nan)"),
    (["--learning_rate", "inf"], "--learning_rate must be a finite number (got inf)"),
    (["--weight_decay", "-0.01"], "--weight_decay must be >= 0 (got -0.01)"),
    (["--weight_decay", "nan"], "--weight_decay must be a finite number"),
    (["--beta1", "1.0"], "--beta1 must lie in [0, 1) (got 1.0)"),
    (["--beta2", "-0.1"], "--beta2 must lie in [0, 1)"),
    (["--momentum", "1.5"], "--momentum must lie in [0, 1) (got 1.5)"),
    (["--lr_sche_type", "cos", "--eta_min", "1e-3"], "--eta_min must lie in [0, --learning_rate 0.0001] (got 0.001)"),
    (["--eta_min=-1e-6"], "--eta_min must lie in [0, --learning_rate"),
    (["--eta_min", "nan"], "--eta_min must be a finite number"),
    (["--decay_rate", "0"], "--decay_rate must lie in (0, 1] (got 0.0)"),
    (["--decay_rate", "2"], "--decay_rate must lie in (0, 1]"),
    (["--decay_step", "0"], "--decay_step must be increasing epoch numbers >= 1 (got 0)"),
    (["--decay_step", "20", "10"], "--decay_step must be increasing epoch numbers >= 1 (got 20 10)"),
    (["--disparity_smoothness=-1e-3"], "--disparity_smoothness must be >= 0 (got -0.001); use 0 to switch"),
    (["--disparity_smoothness", "inf"], "--disparity_smoothness must be a finite number"),
    (["--consistency_weight", "nan"], "--consistency_weight must be a finite number"),
    (["--clip_grad", "nan"], "--clip_grad must be a finite number (got nan); use 0 to switch clipping off"),
    (["--clip_grad", "-2"], "--clip_grad must be >= 0 (got -2.0); 0 switches clipping off"),
    (["--min_depth", "0"], "need 0 < --min_depth < --max_depth"),
    (["--max_depth", "inf"], "--max_depth must be a finite number (got inf)"),
    (["--min_depth", "nan"], "--min_depth must be a finite number"),
    (["--batch_size", "-1"], "--batch_size must be positive (got -1)"),
    (["--eval_batch_size", "0"], "--eval_batch_size must be positive"),
    (["--num_epochs", "0"], "--num_epochs must be positive"),
    (["--keep_last", "0"], "--keep_last must be positive"),
    (["--num_workers", "-1"], "--num_workers must be >= 0 (got -1)"),
    (["--dist_timeout", "0"], "--dist_timeout must be > 0"),
    (["--dist_timeout", "nan"], "--dist_timeout must be a finite number"),
    (["--resize_ratio", "1.2", "inf"], "--resize_ratio must satisfy 1 <= LOW <= HIGH, finite"),
    (["--split_ratio", "nan", "0.9"], "--split_ratio must satisfy 0 < LOW <= HIGH < 1"),
    (["--exp_name", "../other"], "--exp_name '../other' is not a plain folder name"),
    (["--exp_name", ""], "--exp_name is empty"),
    (["--force_resume"], "--force_resume only applies with --resume"),
])
def test_nonsense_values_are_refused_with_the_flag(argv, message, capsys):
    assert message in refusal(argv + ["--device", "cpu"], capsys)


@pytest.mark.parametrize("argv", [
    ["--clip_grad", "0"], ["--clip_grad", "-1"], ["--clip_grad", "1.0"],
    ["--weight_decay", "0"], ["--beta1", "0"], ["--momentum", "0"], ["--disparity_smoothness", "0"],
    ["--eta_min", "0"], ["--decay_rate", "1"], ["--decay_step", "26", "36"],
    ["--learning_rate", "1e-6"],  # the step schedule ignores --eta_min, so its default may exceed it
    ["--lr_sche_type", "cos", "--eta_min", "1e-4"],  # the floor may equal the learning rate
    ["--resume", "--force_resume"], ["--num_workers", "0"],
])
def test_sensible_edge_values_are_accepted(argv):
    parse_train_options(argv + ["--device", "cpu"])


def test_clipping_is_off_by_default():
    assert parse_train_options(["--device", "cpu"]).clip_grad == 0.0
