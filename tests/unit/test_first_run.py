"""A first run without surprises: clean user errors, honest exit statuses, readable training logs.

Each test replays a journey that used to break (issue "The user's journeys", items 5 and 6), in-process
on tiny data.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import evaluate_pose
from utils import StepClock, UserError, run_main

REPO = Path(__file__).resolve().parents[2]
DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


# ------------------------------------------------------------------------------------------- run_main
def failing_main(error: BaseException):
    def main(argv):
        raise error
    return main


def test_user_errors_are_one_clean_line_and_status_1(capsys):
    for error in (UserError("nothing to do: add --x"), ValueError("--height must be a multiple of 32"),
                  FileNotFoundError("--data_path kitti_data does not exist")):
        assert run_main(failing_main(error), []) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert re.search(r": error: " + re.escape(str(error)) + r" \(--debug shows the traceback\)$", err.strip())


def test_debug_shows_the_traceback_and_is_not_passed_on(capsys):
    seen = []

    def main(argv):
        seen.append(list(argv))
        raise ValueError("bad flag")

    assert run_main(main, ["--x", "1", "--debug"]) == 1
    assert seen == [["--x", "1"]]
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: bad flag" in err


def test_bugs_keep_their_traceback_and_success_is_status_0():
    with pytest.raises(TypeError):
        run_main(failing_main(TypeError("a bug")), [])
    assert run_main(lambda argv: None, []) == 0


def test_test_simple_with_no_readable_image_exits_non_zero(tmp_path, capsys):
    import test_simple

    (tmp_path / "broken.png").write_bytes(b"not a png")
    status = run_main(test_simple.main, ["--image_path", str(tmp_path), "--pretrained_path", str(tmp_path / "none.pth"),
                                         "--device", "cpu"])
    assert status == 1
    assert "Traceback" not in capsys.readouterr().err


def test_every_script_entry_goes_through_run_main():
    scripts = [path for path in REPO.glob("*.py") if "def main(" in path.read_text()]
    assert len(scripts) >= 14
    for path in scripts:
        entry = path.read_text().split('if __name__ == "__main__":')[-1]
        assert "sys.exit(run_main(main))" in entry, path.name


# ------------------------------------------------------------------------------------------- StepClock
def test_step_clock_averages_the_window_not_the_last_batch():
    now = [0.0]
    clock = StepClock(window=3, clock=lambda: now[0])
    assert clock.time_left(10) == 0.0 and clock.samples_per_second(8) == 0.0  # nothing measured yet
    clock.restart()
    for duration in (1.0, 2.0, 3.0, 10.0):  # the window keeps 2, 3 and 10
        now[0] += duration
        clock.tick()
    assert clock.seconds_per_step() == pytest.approx(5.0)
    assert clock.time_left(4) == pytest.approx(20.0)  # a last-batch estimate would say 40
    assert clock.samples_per_second(8) == pytest.approx(1.6)
    now[0] += 100.0  # an evaluation between epochs is not a step
    clock.restart()
    now[0] += 5.0
    clock.tick()
    assert clock.seconds_per_step() == pytest.approx(6.0)  # 3, 10, 5


# ------------------------------------------------------------------------------------------- pose ATE
def test_ate_scores_the_last_snippet_as_monodepth2():
    """Three poses driving 1 m forward; the prediction's second step goes sideways.

    Monodepth2 scores range(num_frames - 1) = 2 snippets: [T0, T1] and [T1] alone.
    Snippet 0: gt (0,0,0), (0,0,-1), (0,0,-2); prediction (0,0,0), (0,0,-1), (1,0,-1): scale
    (1 + 2) / (1 + 2) = 1, error |(1,0,1)| = sqrt(2) over 3 positions. Snippet 1: gt (0,0,-1) against
    (1,0,0), perpendicular: scale 0, error 1 over 2 positions.
    """
    global_poses = np.tile(np.eye(4), (3, 1, 1))
    global_poses[:, 2, 3] = [0.0, 1.0, 2.0]
    gt_local = evaluate_pose.local_transforms(global_poses)
    predicted = gt_local.copy()
    predicted[1, :3, 3] = [1.0, 0.0, 0.0]
    ates = evaluate_pose.snippet_ates(predicted, gt_local)
    assert ates.tolist() == pytest.approx([math.sqrt(2) / 3, 0.5], abs=1e-12)


def test_odometry_sequences_by_number():
    assert [evaluate_pose.odometry_sequence(s) for s in ("odom_9", "odom_09", "odom_10", "odom_0")] == [9, 9, 10, 0]
    with pytest.raises(ValueError, match="expected odom_<sequence number>"):
        evaluate_pose.odometry_sequence("seq9")


def test_a_sequence_without_a_test_list_uses_every_pair_of_its_poses(tmp_path):
    import argparse

    opts = argparse.Namespace(odom_split=str(tmp_path))
    lines, source = evaluate_pose.sequence_test_lines(opts, 3, num_poses=4)
    assert lines == ["3 0 l", "3 1 l", "3 2 l"] and "every frame pair of sequence 03" in source
    (tmp_path / "test_files_03.txt").write_text("3 1 l\n")
    assert evaluate_pose.sequence_test_lines(opts, 3, num_poses=4)[0] == ["3 1 l"]


# ------------------------------------------------------------------------------------------- README and requirements
def test_every_requirement_is_imported():
    import_names = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "opencv-python-headless": "cv2",
                    "pillow": "PIL", "matplotlib": "matplotlib", "tensorboardX": "tensorboardX", "h5py": "h5py",
                    "tqdm": "tqdm", "scipy": "scipy", "pyyaml": "yaml"}
    sources = "\n".join(path.read_text() for path in REPO.glob("**/*.py")
                        if ".venv" not in path.parts and "tests" not in path.parts)
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name = re.split(r"[<>=!~\[ ]", line)[0]
        assert name in import_names, f"requirements.txt lists {name}: say which module it provides, or remove it"
        module = import_names[name]
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.M), f"{name} ({module}) is never imported"


def test_readme_refers_only_to_what_a_reader_can_see():
    readme = (REPO / "README.md").read_text()
    for pattern in (r"reference W\d+", r"\(W\d+", r"\bissue \d+", r"H200 targets", r"reference spec",
                    r"methods spec"):
        assert not re.search(pattern, readme), pattern
    # every in-page link resolves to a heading
    anchors = {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
               for heading in re.findall(r"^#+ (.+)$", readme, re.M)}
    for link in re.findall(r"\]\(#([^)]+)\)", readme):
        assert link in anchors, link


def test_the_readme_says_how_to_use_the_environment_its_install_creates():
    install = (REPO / "README.md").read_text().split("## Installation", 1)[1].split("\n## ", 1)[0]
    assert "bash setup_env.sh" in install and "source .venv/bin/activate" in install
    assert "--debug" in install  # where a user error's traceback is


def test_the_launch_scripts_find_the_virtual_environment():
    for script in ("run_kitti.sh", "run_nyu.sh", "run_cityscapes.sh", "evaluate.sh", "demo.sh"):
        code = "\n".join(line for line in (REPO / script).read_text().splitlines()
                          if not line.lstrip().startswith("#"))
        assert "PY=$(bash setup_env.sh" in code, script
        # torchrun and python are not on the PATH after the README's install: the venv's python runs both
        assert not re.search(r"(^|[\s(])(torchrun|python3?) ", code, re.M), script


# ------------------------------------------------------------------------------------------- training logs
def write_kitti_drive(root: Path, frames: int = 8, size: tuple[int, int] = (128, 48)) -> None:
    """A KITTI-layout drive of random frames (both cameras), ``size`` = (width, height)."""
    rng = np.random.default_rng(0)
    for camera in (2, 3):
        folder = root / DRIVE / f"image_0{camera}" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        for frame in range(frames):
            cv2.imwrite(str(folder / f"{frame:010d}.png"),
                        rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def tiny_run_args(tmp_path: Path, *extra: str) -> list[str]:
    write_kitti_drive(tmp_path / "data")
    split = tmp_path / "split"
    split.mkdir(exist_ok=True)
    (split / "train_files.txt").write_text("".join(f"{DRIVE} {i} l\n" for i in (1, 2, 3, 4)))
    (split / "val_files.txt").write_text("".join(f"{DRIVE} {i} l\n" for i in (1, 2, 3, 4, 5, 6)))
    return ["--data_path", str(tmp_path / "data"), "--split", str(split), "--height", "64", "--width", "128",
            "--num_scales", "2", "--batch_size", "2", "--num_workers", "0", "--weights_init", "scratch",
            "--device", "cpu", "--no_eval", "--log_dir", str(tmp_path / "runs"), "--exp_name", "tiny",
            "--log_frequency", "1", *extra]


@pytest.mark.slow
def test_validation_loss_is_the_training_loss_on_fixed_val_samples_without_side_effects(tmp_path):
    from options import parse_train_options
    from trainer import Trainer

    trainer = Trainer(parse_train_options(tiny_run_args(tmp_path, "--val_batches", "2")))
    try:
        assert trainer.val_indices() == [0, 2, 3, 5]  # 2 batches of 2, spread over the 6 lines
        rng_before = torch.get_rng_state()
        first = trainer.validation_loss(0)
        assert torch.equal(torch.get_rng_state(), rng_before)  # training's random draws are untouched
        assert trainer.model.training
        assert trainer.validation_loss(1) == first  # the same samples every epoch
        assert set(first) == {"loss", "loss/photometric", "loss/smoothness"}
        # The training losses, in eval mode without gradient, on those samples (no flip, no jitter).
        trainer.model.eval()
        with torch.no_grad():
            batch = torch.utils.data.default_collate([trainer.val_dataset[(i, 0)] for i in (0, 2, 3, 5)])
            inputs = trainer.model.prepare_inputs(batch, trainer.device)
            expected = float(trainer.model.losses(inputs, trainer.model(inputs))["loss"])
        assert first["loss"] == pytest.approx(expected, rel=1e-4)
    finally:
        trainer.close()


@pytest.mark.slow
def test_a_logged_run_has_val_losses_pace_and_no_progress_bar_redraws(tmp_path, capsys, monkeypatch):
    import train

    # Without pytest's handlers train.main configures its own, which logs to the captured stdout;
    # pytest's come back after the test.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    train.main(tiny_run_args(tmp_path, "--num_epochs", "2", "--val_batches", "2"))
    captured = capsys.readouterr()
    log = (tmp_path / "runs" / "tiny" / "logger.log").read_text()
    assert "\r" not in captured.out + captured.err  # stderr is not a terminal: no bar
    assert "There are 4 training items, 6 validation items (4 an epoch) and 0 test items" in captured.out
    assert len(re.findall(r"Validation loss at epoch \d \(4 samples of .*val_files.txt\): loss: \d", log)) == 2
    steps = re.findall(r"batch: +(\d+)/2 \| samples/s: ([\d.]+) \|.*time left: (\S+)", log)
    assert len(steps) == 4 and steps[0][2] == "-"  # nothing measured before the first step ends
    assert all(float(rate) > 0 for _, rate, _ in steps[1:])
    assert steps[-1][2] == "00h00m00s"  # the last step: nothing left
    assert list((tmp_path / "runs" / "tiny" / "tensorboard" / "val").glob("events.out.tfevents.*"))


# ------------------------------------------------------------------------------------------- own ground truth
@pytest.fixture(scope="module")
def mono_checkpoint(tmp_path_factory) -> Path:
    from checkpoints import CHECKPOINT_FORMAT, ModelSpec, save_checkpoint
    from networks import build_depth_network

    torch.manual_seed(0)
    net = build_depth_network(scales=(0,))
    spec = ModelSpec(height=64, width=192, scales=[0], use_stereo=False, min_depth=0.1, max_depth=100.0)
    path = tmp_path_factory.mktemp("ckpt") / "model0.pth"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": spec.to_dict(),
                           "encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict()})
    return path


def test_evaluate_depth_scores_a_users_own_ground_truth_folder(mono_checkpoint, tmp_path, capsys):
    """Maps that are the model's own depth x 100 (at their own size): median scaling finds 100, errors ~0."""
    import evaluate_depth
    from datasets.depth_folder import ImageFiles
    from evaluation import predict_inverse_depths
    from layers import upsample_disp
    from model import load_model

    images, maps = tmp_path / "frames", tmp_path / "depth"
    images.mkdir(), maps.mkdir()
    rng = np.random.default_rng(3)
    for name in ("000001", "000002", "000003"):
        cv2.imwrite(str(images / f"{name}.png"), rng.integers(0, 256, size=(60, 200, 3), dtype=np.uint8))
    model = load_model(str(mono_checkpoint), "cpu")
    loader = torch.utils.data.DataLoader(ImageFiles(sorted(images.glob("*.png"))[:2], 64, 192), batch_size=2)
    inverse = torch.from_numpy(predict_inverse_depths(model, loader, torch.device("cpu")))[:, None]
    depth = 100.0 / upsample_disp(inverse, (30, 100))[:, 0].double().numpy()  # about 20 m
    np.save(maps / "000001.npy", depth[0])
    quantised = np.round(depth[1] * 256)
    cv2.imwrite(str(maps / "000002_depth.png"), quantised.astype(np.uint16))  # KITTI's encoding, metres x 256
    argv = ["--pretrained_path", str(mono_checkpoint), "--image_path", str(images), "--gt_folder", str(maps),
            "--gt_max_depth", "1000", "--device", "cpu", "--num_workers", "0", "--output_json",
            str(tmp_path / "metrics.json")]
    report = evaluate_depth.main(argv)
    (result,) = report["results"]
    assert result["name"] == "gt_folder" and result["num_images"] == 2  # 000003 has no map: not scored
    assert result["scaling_ratio_median"] == pytest.approx(100.0, rel=1e-4)
    assert result["metrics"]["abs_rel"] < 1e-4 and result["metrics"]["a1"] == 1.0  # PNG steps of 1/256 m
    # A map named after no image is refused by name, as one line without a traceback.
    np.save(maps / "frame_000004.npy", depth[0])
    assert run_main(evaluate_depth.main, argv) == 1
    err = capsys.readouterr().err
    assert "1 of 3 depth maps have no image of the same name" in err and "frame_000004.npy" in err
    assert "Traceback" not in err


def test_pixel_intrinsics_with_their_image_size():
    from datasets.custom_dataset import parse_intrinsics

    k = parse_intrinsics("1400 1400 960 540 1920 1080", "intrinsics.txt", image_size=(960, 540))
    assert [k[0, 0], k[1, 1], k[0, 2], k[1, 2]] == pytest.approx([1400 / 1920, 1400 / 1080, 0.5, 0.5])
    k3 = parse_intrinsics("1400 0 960  0 1400 540  0 0 1  1920 1080", "intrinsics.txt")
    np.testing.assert_allclose(k3, k)
    with pytest.raises(ValueError, match=r"refer to 1920 x 1080 pixels but the frames are 640 x 640"):
        parse_intrinsics("1400 1400 960 540 1920 1080", "intrinsics.txt", image_size=(640, 640))
    with pytest.raises(ValueError, match="two whole numbers of pixels"):
        parse_intrinsics("1400 1400 960 540 1920.5 1080", "intrinsics.txt")


def test_custom_dataset_takes_pixel_intrinsics_with_the_size_from_the_command_line(tmp_path):
    from datasets import CustomDataset

    folder = tmp_path / "ride"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((48, 64, 3), np.uint8))
    dataset = CustomDataset(tmp_path, ["ride 1"], 32, 64, [0, -1, 1], 1, intrinsics="640 640 320 240 1280 960")
    assert dataset[0][("K", 0)][0, 0] == pytest.approx(0.5 * 64) and dataset[0][("K", 0)][1, 2] == pytest.approx(
        0.25 * 32)


def test_an_offline_split_list_is_one_line_naming_the_url_and_the_destination(tmp_path, monkeypatch, capsys):
    import urllib.error

    import split_lists
    import train

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(split_lists, "_download", offline)
    monkeypatch.setattr(split_lists, "SPLITS_DIR", tmp_path / "splits")
    status = run_main(train.main, ["--data_path", str(tmp_path), "--split", "eigen_zhou", "--no_eval",
                                   "--weights_init", "scratch", "--device", "cpu", "--log_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and err.count("\n") == 1
    assert "could not download the split list eigen_zhou/train_files.txt" in err
    assert f"save it as {tmp_path / 'splits' / 'eigen_zhou' / 'train_files.txt'}" in err


@pytest.mark.slow
def test_only_rank_0_prints_dataset_summaries(tmp_path, monkeypatch, caplog):
    """Rank 1 builds no evaluation sets; it used to announce '... and 0 test items' anyway."""
    import trainer as trainer_module
    from distributed import DistributedContext
    from options import parse_train_options

    args = tiny_run_args(tmp_path)
    monkeypatch.setattr(trainer_module, "context_from_environment",
                        lambda local_rank: DistributedContext(rank=1, local_rank=0, world_size=1))
    with caplog.at_level(logging.INFO):
        rank1 = trainer_module.Trainer(parse_train_options(args))
        rank1.close()
    assert "There are" not in caplog.text and "Using split" not in caplog.text
    assert rank1.val_dataset is None and rank1.writer is None


@pytest.mark.slow
def test_validation_loss_covers_bdedepths_extra_views(tmp_path):
    """The validation set is built with the training views, so every loss term (consistency too) is scored."""
    from options import parse_train_options
    from trainer import Trainer

    trainer = Trainer(parse_train_options(tiny_run_args(tmp_path, "--val_batches", "1", "--use_local_crop",
                                                        "--use_patch_reshuffle")))
    try:
        losses = trainer.validation_loss(0)
        assert any("local" in name for name in losses) and any("reshuffle" in name for name in losses), losses
        assert all(math.isfinite(value) for value in losses.values())
        assert trainer.validation_loss(1) == losses  # the same crops and split points every epoch
    finally:
        trainer.close()
