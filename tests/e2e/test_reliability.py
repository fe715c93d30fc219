"""Nothing lost, nothing silent: --overwrite that cannot destroy, leftovers of killed writes removed,
resume refused with changed arithmetic, and a diverging run stopped before its weights are saved."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from checkpoints import load_checkpoint, resume_checkpoints
from run_folder import is_atomic_temporary
from tests.e2e.test_distributed_resume import REPO, final_weights, max_difference, train_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_with_a_failing_configuration_leaves_the_previous_run_byte_for_byte(synthetic_kitti, tmp_path):
    args = train_args(synthetic_kitti, tmp_path, "keep", "--batch_size", "4", "--num_epochs", "1")
    train.main(args)
    run = tmp_path / "runs" / "keep"
    before = snapshot(run)
    assert {"opt.json", "logger.log", "models/model0.pth"} <= set(before)

    failing = [
        (["--data_path", str(tmp_path / "no_such_data")], FileNotFoundError),
        (["--pretrained_path", str(tmp_path / "no_such_weights.pth")], FileNotFoundError),
        (["--split", str(tmp_path / "no_such_split")], FileNotFoundError),
    ]
    for extra, error in failing:
        with pytest.raises(error):
            train.main(args + extra + ["--overwrite"])
        assert snapshot(run) == before, f"--overwrite {extra} changed the previous run"
    # Outside --log_dir is never a run folder, whatever --overwrite says.
    with pytest.raises(SystemExit):
        train.main(args + ["--exp_name", "..", "--overwrite"])
    assert snapshot(run) == before

    train.main(args + ["--overwrite", "--num_epochs", "1"])  # a good configuration does replace it
    log = (run / "logger.log").read_text()
    assert log.count("Experiment keep") == 1, "the old run's log must go with the old run"


def test_leftovers_of_killed_writes_are_removed_and_the_resume_is_exact(synthetic_kitti, tmp_path):
    common = ["--batch_size", "2", "--save_frequency", "2", "--keep_last", "2"]
    train.main(train_args(synthetic_kitti, tmp_path, "reference", *common, "--num_epochs", "2"))
    reference = final_weights(tmp_path / "runs" / "reference", 1)

    run = tmp_path / "runs" / "killed"
    args = train_args(synthetic_kitti, tmp_path, "killed", *common)
    train.main(args + ["--num_epochs", "1"])
    # What a kill in the middle of each kind of write leaves: the hidden temporary of a resume
    # checkpoint, of a weights snapshot and of opt.json, each cut short.
    newest = resume_checkpoints(run)[0]
    leftovers = [
        run / "checkpoints" / ".step000000008.pth.k1ll3d.atomic.tmp.pth",
        run / "models" / ".model1.pth.k1ll3d.atomic.tmp.pth",
        run / ".opt.json.k1ll3d.atomic.tmp",
    ]
    for leftover, source in zip(leftovers, [newest, run / "models" / "model0.pth", run / "opt.json"]):
        leftover.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
        assert is_atomic_temporary(leftover)

    train.main(args + ["--num_epochs", "2", "--resume"])
    assert not [p for p in run.rglob("*") if is_atomic_temporary(p)]
    assert max_difference(final_weights(run, 1), reference) == 0.0


def test_resume_with_changed_arithmetic_is_refused_unless_forced(synthetic_kitti, tmp_path):
    args = train_args(synthetic_kitti, tmp_path, "changed", "--batch_size", "4", "--num_epochs", "1")
    train.main(args)
    options_before = (tmp_path / "runs" / "changed" / "opt.json").read_bytes()
    changed = [a if a != "4" else "2" for a in args] + ["--num_epochs", "2", "--resume", "--learning_rate", "3e-4"]
    with pytest.raises(ValueError, match=r"batch_size.*learning_rate|learning_rate.*batch_size"):
        train.main(changed)
    train.main(changed + ["--force_resume"])
    assert (tmp_path / "runs" / "changed" / "opt.json").read_bytes() == options_before
    # The forced options are the ones in force: the saved optimiser and scheduler kept 1e-4.
    log = (tmp_path / "runs" / "changed" / "logger.log").read_text()
    assert re.search(r"epoch:\s+1/1 .*lr: 3\.00e-04", log), log[-1500:]


@pytest.mark.parametrize("finite_check, save_frequency", [("every_step", "1"), ("deferred", "3")])
def test_a_diverging_run_stops_naming_the_step_and_keeps_its_last_checkpoint(synthetic_kitti, tmp_path,
                                                                            finite_check, save_frequency):
    # SGD at 1e3 diverges within a few steps; the non-finite sampling grid used to crash
    # grid_sample's backward (SIGSEGV) before any loss check could fire. Deferred (the CUDA
    # default, forced here on the CPU) reads the flags only before checkpoints and log steps, with
    # the grids sanitised so that the backward passes in between cannot crash.
    # How many steps divergence takes depends on the CPU's arithmetic, so a sane epoch comes first
    # and the divergent learning rate is a forced resume of it: a checkpoint exists whatever the step.
    args = train_args(synthetic_kitti, tmp_path, "diverge", "--batch_size", "2", "--save_frequency",
                      save_frequency, "--optimizer", "sgd", "--finite_check", finite_check,
                      "--log_frequency", "1000")
    train.main(args + ["--num_epochs", "1", "--learning_rate", "1e-4"])
    run = tmp_path / "runs" / "diverge"
    sane_step = load_checkpoint(resume_checkpoints(run)[0])["step"]
    process = subprocess.run([sys.executable, "train.py", *args, "--num_epochs", "4", "--learning_rate", "1e3",
                              "--resume", "--force_resume"], cwd=REPO, capture_output=True, text=True,
                             timeout=900)
    assert process.returncode == 1, (process.returncode, process.stderr[-2000:])
    match = re.search(r"error: non-finite values at step (\d+): (.*)", process.stderr)
    assert match, process.stderr[-2000:]
    step, names = int(match.group(1)), match.group(2)
    assert step > sane_step
    assert any(term in names for term in ("sample_grid", "depth", "pose", "loss"))
    payload = load_checkpoint(resume_checkpoints(run)[0])  # verifies its checksum
    assert sane_step <= payload["step"] < step
    for name in ("encoder", "depth", "pose"):
        assert all(torch.isfinite(t).all() for t in payload[name].values() if t.is_floating_point())
