"""refine.py's refusals and defaults (the refinement itself learns in tests/e2e/test_refine_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import refine

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
NUM_FRAMES = 4


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A run folder as train.py leaves it: ``models/model0.pth`` (untrained weights) and ``opt.json``."""
    from checkpoints import CHECKPOINT_FORMAT, save_checkpoint
    from model import SelfSupervisedDepth
    from options import parse_train_options

    run = tmp_path_factory.mktemp("runs") / "mono"
    opts = parse_train_options(["--weights_init", "scratch", "--height", "64", "--width", "96", "--num_scales", "2",
                                "--disparity_smoothness", "0.01", "--no-automask"])
    model = SelfSupervisedDepth.from_options(opts)
    save_checkpoint(run / "models" / "model0.pth", {"format": CHECKPOINT_FORMAT, "model_spec": model.spec.to_dict(),
                                                    **model.state_dicts()})
    (run / "opt.json").write_text(json.dumps(vars(opts)))
    return run


@pytest.fixture(scope="module")
def kitti_drive(tmp_path_factory) -> Path:
    """Frames 0-3 of one KITTI raw drive (both cameras, noise images: no test here trains)."""
    root = tmp_path_factory.mktemp("kitti")
    rng = np.random.default_rng(0)
    for camera in ("image_02", "image_03"):
        for frame in range(NUM_FRAMES):
            path = root / DRIVE / camera / "data" / f"{frame:010d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    return root


def split_with(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "split"
    folder.mkdir()
    (folder / "test_files.txt").write_text("\n".join(lines) + "\n")
    return folder


def refine_args(source_run: Path, data: Path, split: Path, log_dir: Path, name: str = "refined") -> list[str]:
    return ["--pretrained_path", str(source_run / "models" / "model0.pth"), "--data_path", str(data),
            "--eval_split", str(split), "--log_dir", str(log_dir), "--model_name", name, "--num_workers", "0",
            "--device", "cpu", "--no-progress_bar"]


def files_of(folder: Path) -> dict:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_refuses_a_test_split_whose_neighbours_are_missing(source_run, kitti_drive, tmp_path, capsys):
    split = split_with(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} {NUM_FRAMES - 1:010d} l"])  # frame 4 is missing
    with pytest.raises(SystemExit) as exit_info:
        refine.main(refine_args(source_run, kitti_drive, split, tmp_path / "runs"))
    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert f"line 2: image not found: {kitti_drive / DRIVE / 'image_02' / 'data' / '0000000004.png'}" in error
    assert "neighbours (frames [0, -1, 1])" in error and "unpack the complete drives" in error
    assert not (tmp_path / "runs").exists()  # nothing written


def test_refuses_to_write_into_the_source_run(source_run, kitti_drive, tmp_path, capsys):
    split = split_with(tmp_path, [f"{DRIVE} 1 l"])
    before = files_of(source_run)
    for log_dir, name in ((source_run.parent, source_run.name),  # the source run itself
                          (source_run, "refined"),  # inside it
                          (source_run.parent.parent, source_run.parent.name)):  # the folder holding it
        with pytest.raises(SystemExit):
            refine.main(refine_args(source_run, kitti_drive, split, log_dir, name) + ["--overwrite"])
        assert "overlaps the source checkpoint's run folder" in capsys.readouterr().err
    assert files_of(source_run) == before


def test_defaults_come_from_featdepth_the_checkpoint_and_the_source_runs_losses(source_run):
    from checkpoints import load_checkpoint, spec_from_checkpoint

    parser = refine.build_parser()
    checkpoint = source_run / "models" / "model0.pth"
    assert refine.source_run_folder(checkpoint) == source_run.resolve()
    spec = spec_from_checkpoint(load_checkpoint(checkpoint))
    parser.set_defaults(**refine.source_loss_options(parser, source_run), **refine.architecture_options(spec))
    opts = parser.parse_args([])
    assert (opts.num_scales, opts.height, opts.width, opts.weights_init) == (2, 64, 96, "scratch")
    assert (opts.disparity_smoothness, opts.automask) == (0.01, False)  # the source run's losses
    assert (opts.optimizer, opts.learning_rate, opts.weight_decay, opts.batch_size, opts.clip_grad) == (
        "adam", 1e-4, 0.0, 2, 35.0)
    assert (opts.num_epochs, opts.decay_step, opts.decay_rate) == (20, [10], 0.5)  # FeatDepth's epochs 40 -> 60
