"""Launcher environment, the epoch sampler and random-state capture: the pieces exact resume and DDP rest on."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from distributed import DistributedContext, context_from_environment, epoch_sample_order, sample_seed
from options import parse_train_options
from utils import capture_rng_state, restore_rng_state


def clear_launcher_env(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_launcher_training_is_one_process(monkeypatch):
    clear_launcher_env(monkeypatch)
    assert context_from_environment() == DistributedContext(rank=0, local_rank=0, world_size=1)
    assert context_from_environment(local_rank_flag=3).world_size == 1


def test_torchrun_environment_gives_rank_and_local_rank(monkeypatch):
    clear_launcher_env(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    context = context_from_environment(local_rank_flag=7)  # the environment wins
    assert (context.rank, context.local_rank, context.world_size) == (5, 1, 8)
    assert context.is_distributed and not context.is_main


def test_legacy_launch_local_rank_flag_is_used_without_local_rank_env(monkeypatch):
    clear_launcher_env(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert context_from_environment(local_rank_flag=1).local_rank == 1


def test_world_size_without_rank_names_the_launcher(monkeypatch):
    clear_launcher_env(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="launch with torchrun"):
        context_from_environment()


@pytest.mark.parametrize("flag", [["--local_rank", "1"], ["--local-rank=1"]])
def test_both_local_rank_spellings_parse(flag):
    opts = parse_train_options(["--data_path", ".", *flag])
    assert opts.local_rank == 1


def test_sync_bn_on_the_cpu_is_refused_with_the_fix(tmp_path):
    from trainer import Trainer

    opts = parse_train_options(["--data_path", str(tmp_path), "--sync_bn", "--device", "cpu"])
    with pytest.raises(ValueError, match="--sync_bn needs CUDA"):
        Trainer(opts)


def test_rank_shares_partition_the_epoch_and_batches_match_one_big_batch():
    num_samples, world, batch = 23, 3, 2
    shares = [epoch_sample_order(num_samples, seed=5, epoch=2, rank=r, world_size=world) for r in range(world)]
    assert all(len(s) == num_samples // world for s in shares)
    everything = torch.cat(shares)
    assert len(set(everything.tolist())) == len(everything)  # disjoint
    single = epoch_sample_order(num_samples, seed=5, epoch=2)
    assert sorted(single.tolist()) == list(range(num_samples))
    for i in range(len(shares[0]) // batch):
        union = sorted(torch.cat([s[i * batch:(i + 1) * batch] for s in shares]).tolist())
        assert union == sorted(single[i * batch * world:(i + 1) * batch * world].tolist())


def test_order_depends_on_seed_and_epoch_only():
    a = epoch_sample_order(100, seed=1, epoch=0)
    assert torch.equal(a, epoch_sample_order(100, seed=1, epoch=0))
    assert not torch.equal(a, epoch_sample_order(100, seed=1, epoch=1))
    assert not torch.equal(a, epoch_sample_order(100, seed=2, epoch=0))


def test_sample_seeds_are_distinct_across_epochs_and_indices():
    seeds = {sample_seed(1234, epoch, index) for epoch in range(5) for index in range(1000)}
    assert len(seeds) == 5000


def test_rng_state_survives_a_weights_only_round_trip():
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    state = capture_rng_state()
    expected = (random.random(), np.random.randn(), torch.rand(3))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(torch.load(buffer, weights_only=True))
    again = (random.random(), np.random.randn(), torch.rand(3))
    assert again[0] == expected[0] and again[1] == expected[1] and torch.equal(again[2], expected[2])
