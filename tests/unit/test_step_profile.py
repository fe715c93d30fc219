"""The training step's phase timer, the per-phase profile bench and the one-call GPU check (tiny, on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from speed import NO_TIMER, PhaseTimer

REPO = Path(__file__).resolve().parents[2]
TINY_DATA = ["--synthetic_size", "256", "80", "--frames_per_drive", "6"]


def test_nested_phases_are_billed_to_themselves_and_not_to_their_parent():
    timer = PhaseTimer(torch.device("cpu"))
    with timer.phase("forward"):
        time.sleep(0.02)
        timed_sleep = timer.timed("depth network", time.sleep)
        timed_sleep(0.05)
        timed_sleep(0.05)
    assert timer.seconds["depth network"] >= 0.1
    assert 0.02 <= timer.seconds["forward"] < 0.1  # the nested 0.1 s is not counted twice
    timer.reset()
    assert timer.seconds == {}


def test_the_trainers_default_timer_measures_nothing():
    with NO_TIMER.phase("losses"):
        pass
    assert NO_TIMER.seconds == {} and not NO_TIMER.enabled


def test_a_variants_flags_split_as_the_shell_splits_them(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import argparse

    from common import add_variant_option, chosen_variants, parse_variant

    assert parse_variant("cache=--frame_cache '/data/my cache' --fast") == \
        ("cache", ["--frame_cache", "/data/my cache", "--fast"])
    assert parse_variant("fp32=") == ("fp32", [])
    with pytest.raises(argparse.ArgumentTypeError, match="unclosed|quotation"):
        parse_variant("cache=--frame_cache '/data/my cache")
    parser = argparse.ArgumentParser()
    add_variant_option(parser)
    assert chosen_variants(parser.parse_args([])) == [("default", [])]
    assert chosen_variants(parser.parse_args(["--variant", "a=--fast", "--variant", "b="])) == \
        [("a", ["--fast"]), ("b", [])]


@pytest.mark.heavy
@pytest.mark.slow
def test_step_profile_phases_add_up_to_the_step_and_the_floor_is_measured(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import step_profile

    result = step_profile.main(["--work_dir", str(tmp_path), *TINY_DATA, "--recipes", "md2", "--height", "64",
                                "--width", "128", "--batch_size", "2", "--num_workers", "0", "--warmup", "1",
                                "--steps", "1", "--variant", "plain=", "--variant", "fast=--fast"])
    assert set(result["columns"]) == {"md2 plain", "md2 fast"}
    assert "fused optimizer" in result["speed"]["md2 fast"] and "default optimizer" in result["speed"]["md2 plain"]
    for column in result["columns"].values():
        phases = sum(column[phase] for phase in step_profile.PHASES if phase != "logging and checkpoints")
        assert all(column[phase] > 0 for phase in ("depth network", "pose network", "view synthesis", "losses",
                                                   "backward", "optimiser step"))
        # The phases cover the step: what is left is the loop's own bookkeeping.
        assert 0.9 * column["step (wall)"] <= phases <= column["step (wall)"]
        assert column["networks' floor (fwd+bwd)"] > 0


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu_at_tiny_sizes(tmp_path):
    env = {**os.environ, "GPU_CHECK_TINY": "1", "GPU_CHECK_OUT": str(tmp_path), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = json.loads((tmp_path / "train.json").read_text())["rows"]
    assert [row["variant"] for row in rows] == ["defaults", "bf16_off", "finite_check_every_step",
                                                "finite_check_deferred", "frame_cache"]
    assert all(row["samples/s"] > 0 and row["peak memory (MB)"] > 0 for row in rows)
    loader = {row["pipeline"]: row["samples/s"] for row in json.loads((tmp_path / "loader.json").read_text())["rows"]}
    assert loader["ours (--frame_cache)"] > 0 and any("decode" in name for name in loader)
    assert json.loads((tmp_path / "eval.json").read_text())["rows"][0]["images"] == 4
    assert "gpu_check done" in run.stdout
