"""Multi-process training through torchrun (gloo on the CPU) and crash-safe exact resume."""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from checkpoints import load_checkpoint, resume_checkpoints

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
TRAIN_LINES = 12


def split_folder(root: Path, tmp_path: Path) -> Path:
    lines = (root / "splits" / "synthetic" / "train_files.txt").read_text().splitlines()[:TRAIN_LINES]
    split = tmp_path / "split"
    split.mkdir(exist_ok=True)
    (split / "train_files.txt").write_text("\n".join(lines) + "\n")
    return split


def train_args(root: Path, tmp_path: Path, exp_name: str, *extra: str) -> list[str]:
    return ["--data_path", str(root), "--split", str(split_folder(root, tmp_path)), "--no_eval",
            "--log_dir", str(tmp_path / "runs"), "--exp_name", exp_name, "--weights_init", "scratch",
            "--height", "64", "--width", "96", "--num_workers", "0", "--log_frequency", "2",
            "--device", "cpu", "--no-progress_bar", "--seed", "7", "--lr_sche_type", "step",
            # PoseCNN (1.6 M parameters instead of a second ResNet-18): checkpoints with Adam's moments
            # shrink from 322 to about 190 MB, and these tests are mostly checkpoint writes and reads.
            "--pose_model_type", "posecnn", *extra]


def final_weights(run: Path, epoch: int) -> dict[str, torch.Tensor]:
    payload = load_checkpoint(run / "models" / f"model{epoch}.pth")
    return {f"{name}.{key}": value for name in ("encoder", "depth", "pose_encoder", "pose") if name in payload
            for key, value in payload[name].items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def newest_step(run: Path) -> int:
    checkpoints = resume_checkpoints(run)
    return int(checkpoints[0].stem[len("step"):]) if checkpoints else 0


def torchrun(out_dir: Path, args: list[str], nproc: int = 2, env_extra: dict | None = None,
             **popen) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               str(WORKER), str(out_dir), *args]
    return subprocess.Popen(command, cwd=REPO, env=env, **popen)


# ----------------------------------------------------------------------------------- resume


def test_sigkill_at_random_steps_then_resume_ends_with_the_uninterrupted_weights(synthetic_kitti, tmp_path):
    # 12 samples, batch 2, 2 epochs: 12 steps, a resume checkpoint every 2.
    common = ["--batch_size", "2", "--num_epochs", "2", "--save_frequency", "2", "--keep_last", "2"]
    train.main(train_args(synthetic_kitti, tmp_path, "reference", *common))
    reference = final_weights(tmp_path / "runs" / "reference", 1)

    run = tmp_path / "runs" / "killed"
    args = train_args(synthetic_kitti, tmp_path, "killed", *common)
    rng = random.Random(2024)
    kills = 0
    for target in sorted(rng.sample([2, 4, 6, 8, 10], 3)):
        resume = ["--resume"] if kills else []
        process = subprocess.Popen([sys.executable, "train.py", *args, *resume], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while process.poll() is None and newest_step(run) < target and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # land anywhere in the following step(s)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
        kills += 1
    assert newest_step(run) < 12
    train.main(args + ["--resume"])

    difference = max_difference(final_weights(run, 1), reference)
    assert difference == 0.0, f"resumed weights differ from the uninterrupted run by {difference}"


def test_truncated_newest_checkpoint_is_named_and_the_previous_one_used(synthetic_kitti, tmp_path, caplog):
    common = ["--batch_size", "2", "--save_frequency", "2", "--keep_last", "3"]
    train.main(train_args(synthetic_kitti, tmp_path, "reference", *common, "--num_epochs", "2"))
    reference = final_weights(tmp_path / "runs" / "reference", 1)

    run = tmp_path / "runs" / "truncated"
    args = train_args(synthetic_kitti, tmp_path, "truncated", *common)
    train.main(args + ["--num_epochs", "1"])  # ends with checkpoints at steps 2, 4, 6
    newest = resume_checkpoints(run)[0]
    assert newest.name == "step000000006.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    with caplog.at_level(logging.WARNING):
        train.main(args + ["--num_epochs", "2", "--resume"])
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "step000000006.pth is unreadable" in warnings
    assert "previous good checkpoint" in warnings and "step000000004.pth" in warnings
    assert max_difference(final_weights(run, 1), reference) == 0.0
    assert len(resume_checkpoints(run)) == 3


def test_only_unreadable_checkpoints_is_a_clear_error(synthetic_kitti, tmp_path):
    args = train_args(synthetic_kitti, tmp_path, "broken", "--batch_size", "4", "--num_epochs", "1")
    train.main(args)
    for path in resume_checkpoints(tmp_path / "runs" / "broken"):
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"(?s)no readable resume checkpoint .* --overwrite"):
        train.main(args + ["--resume"])


# ----------------------------------------------------------------------------------- torchrun


def load_worker():
    """ddp_worker.py as a module, to run the one-process side in this process."""
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_torchrun(out_dir: Path, args: list[str], env_extra: dict | None = None, timeout: float = 400) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    process = torchrun(out_dir, args, env_extra=env_extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


def test_two_processes_stay_in_sync_and_match_one_process_with_twice_the_batch(synthetic_kitti, tmp_path,
                                                                               monkeypatch):
    # SGD: Adam divides by the root of tiny second moments and would magnify rounding noise.
    common = ["--num_epochs", "1", "--optimizer", "sgd", "--learning_rate", "0.05"]

    # BatchNorm runs on its running statistics (see ddp_worker.py), so two processes x batch 2 must equal
    # one process x batch 4; each rank still sees its own samples, so identical parameters on both ranks
    # show that the gradients were averaged at every step.
    frozen = {"FREEZE_BATCHNORM": "1"}
    two = tmp_path / "two_frozen"
    run_torchrun(two, train_args(synthetic_kitti, tmp_path, "ddp_frozen", "--batch_size", "2", *common), frozen)
    rank0, rank1 = torch.load(two / "rank0.pth", weights_only=True), torch.load(two / "rank1.pth", weights_only=True)
    parameters = [k for k in rank0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(rank0[k], rank1[k]) for k in parameters), "ranks drifted apart"
    log = (tmp_path / "runs" / "ddp_frozen" / "logger.log").read_text()
    assert "Distributed training: 2 processes, batch 2 per process (4 in all)" in log
    assert newest_step(tmp_path / "runs" / "ddp_frozen") == TRAIN_LINES // 4  # 3 steps of 2 x 2 samples

    one = tmp_path / "one_frozen"
    one.mkdir()
    monkeypatch.setenv("FREEZE_BATCHNORM", "1")
    load_worker().main([str(one), *train_args(synthetic_kitti, tmp_path, "single_frozen", "--batch_size", "4",
                                              *common)])
    single = torch.load(one / "rank0.pth", weights_only=True)
    initial_change = max_difference(single, {k: torch.zeros_like(v) for k, v in single.items()})
    difference = max_difference(rank0, single)
    print(f"2 processes x batch 2 vs 1 process x batch 4: max |difference| {difference:.3g}")
    assert difference < 1e-5, f"2 x batch 2 differs from 1 x batch 4 by {difference}"
    assert initial_change > 1e-3  # the comparison is between trained networks, not zeros


def _worker_pids(launcher_pid: int) -> dict[int, int]:
    """RANK -> pid of the launcher's worker processes, read from /proc."""
    workers = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            if parent != launcher_pid:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                workers[int(item[5:])] = int(entry.name)
    return workers


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc to find the ranks")
def test_killing_one_rank_ends_the_job_with_an_error(synthetic_kitti, tmp_path):
    args = train_args(synthetic_kitti, tmp_path, "rank_death", "--batch_size", "2", "--num_epochs", "50",
                      "--save_frequency", "1")
    process = torchrun(tmp_path / "out", args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while newest_step(tmp_path / "runs" / "rank_death") < 2 and time.time() < deadline:
            assert process.poll() is None, process.communicate()[0][-3000:]
            time.sleep(0.1)
        workers = _worker_pids(process.pid)
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGKILL)
        killed_at = time.time()
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert time.time() - killed_at < 120
    assert "Signal 9" in output or "SIGKILL" in output or "exitcode" in output, output[-3000:]
