"""Options: defaults parse, lineage aliases map onto the same destinations, each rule fires."""

from __future__ import annotations

import pytest

from options import parse_train_options, training_frame_ids, uses_pose_network


def test_defaults_parse():
    opts = parse_train_options([])
    assert (opts.height, opts.width, opts.frame_ids, opts.num_scales) == (192, 640, [0, -1, 1], 4)
    assert opts.automask and opts.ssim and opts.img_ext == ".png" and opts.eval
    assert training_frame_ids(opts) == [0, -1, 1] and uses_pose_network(opts)


def test_lineage_aliases():
    opts = parse_train_options(["--disable_automasking", "--no_ssim", "--jpg", "--scales", "0", "1",
                                "--model_name", "x", "--no_cuda", "--scheduler_step_size", "10", "--no_eval"])
    assert not opts.automask and not opts.ssim and opts.img_ext == ".jpg"
    assert opts.num_scales == 2 and opts.exp_name == "x" and opts.device == "cpu"
    assert opts.decay_step == [10] and not opts.eval
    assert not hasattr(opts, "scales_alias")


def test_stereo_frames_are_derived_not_written_back():
    opts = parse_train_options(["--use_stereo", "--frame_ids", "0"])
    assert opts.frame_ids == [0]
    assert training_frame_ids(opts) == [0, "s"] and not uses_pose_network(opts)


@pytest.mark.parametrize("argv, message", [
    (["--height", "190"], "--height must be a positive multiple of 32 (got 190); try 192"),
    (["--width", "100"], "--width must be a positive multiple of 32 (got 100); try 96"),
    (["--frame_ids", "-1", "0", "1"], "--frame_ids must start with 0"),
    (["--frame_ids", "0"], "--frame_ids 0 alone has no source frame"),
    (["--num_scales", "6"], "--num_scales must be between 1 and 5"),
    (["--min_depth", "10", "--max_depth", "1"], "need 0 < --min_depth < --max_depth"),
    (["--batch_size", "0"], "--batch_size must be positive"),
    (["--resume", "--overwrite"], "--resume and --overwrite contradict"),
    (["--scales", "1", "2"], "--scales must be 0 1 ... n-1"),
    (["--color_jitter_probability", "1.5"], "--color_jitter_probability must lie in [0, 1] (got 1.5)"),
    (["--color_jitter_hue", "0.6"], "--color_jitter_hue must lie in [0, 0.5] (got 0.6)"),
    (["--flip_mode", "depth_net", "--use_local_crop"], "--flip_mode depth_net mirrors only the depth network"),
])
def test_validation_messages(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_train_options(argv)
    assert message in capsys.readouterr().err


def test_help_shows_the_defaults_of_flags_that_take_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_train_options(["-h"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "initial learning rate (default: 0.0001)" in text
    assert "is given) (default: 18)" in text  # --num_layers
    assert "(default: False)" not in text and "(default: None)" not in text  # switches and unset flags
