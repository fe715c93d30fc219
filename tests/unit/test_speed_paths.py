"""The fast paths give the results of the plain ones: frame cache, bf16 autocast, channels_last, fused optimiser."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from datasets import KITTIRAWDataset
from frame_cache import FRAMES_FILE, INDEX_FILE, FrameCache, build_frame_cache
from speed import FastNetwork, SpeedSettings, validate_speed_options

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
HEIGHT, WIDTH = 32, 64
LINES = [f"{DRIVE} {i} l" for i in (1, 2, 3)]


def write_drive(root: Path, native_w: int, native_h: int, frames=range(5)) -> None:
    rng = np.random.default_rng(0)
    for camera in (2, 3):
        folder = root / DRIVE / f"image_0{camera}" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            cv2.imwrite(str(folder / f"{frame:010d}.png"),
                        rng.integers(0, 256, size=(native_h, native_w, 3), dtype=np.uint8))


def make(root, lines=LINES, height=HEIGHT, width=WIDTH, **kwargs):
    return KITTIRAWDataset(root, lines, height, width, [0, -1, 1], 2, is_train=True, split_name="train_files.txt",
                           **kwargs)


# 97 x 31 -> 64 x 32: OpenCV's area resize is not exactly mirror-symmetric here, so the cache
# must store the flipped frames too; 128 x 64 -> 64 x 32 (an exact 2x) mirrors exactly.
@pytest.mark.parametrize("native_size, stores_flipped", [((97, 31), True), ((128, 64), False)])
def test_frame_cache_gives_exactly_the_loaders_frames(tmp_path, native_size, stores_flipped):
    write_drive(tmp_path / "data", *native_size)
    plain = make(tmp_path / "data")
    cache_dir = build_frame_cache(plain, tmp_path / "cache", split="synthetic", progress=False)
    index = FrameCache.open(cache_dir).index
    assert (index["rows"] > len(index["frames"])) == stores_flipped
    cached = make(tmp_path / "data")
    cached.use_frame_cache(FrameCache.open(cache_dir))
    flips = set()
    for index_in_split in range(len(LINES)):
        for seed in range(6):  # several seeds: flipped and unflipped samples
            expected, got = plain[(index_in_split, seed)], cached[(index_in_split, seed)]
            flips.add(bool(expected["do_flip"]))
            assert expected.keys() == got.keys()
            for key, value in expected.items():
                assert torch.equal(value, got[key]), key
    assert flips == {False, True}


def test_frame_cache_works_in_worker_processes(tmp_path):
    write_drive(tmp_path / "data", 96, 30)
    dataset = make(tmp_path / "data")
    cache = FrameCache.open(build_frame_cache(dataset, tmp_path / "cache", split="s", progress=False))
    cache.frames  # opened here; a worker must not receive a copy of the mapping
    assert pickle.loads(pickle.dumps(cache))._frames is None
    dataset.use_frame_cache(cache)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=1, sampler=[(0, 1), (1, 2), (2, 3)])
    batch = next(iter(loader))
    expected = default_collate([make(tmp_path / "data")[key] for key in [(0, 1), (1, 2), (2, 3)]])
    assert torch.equal(batch[("color_uint8", -1, 0)], expected[("color_uint8", -1, 0)])


def test_frame_cache_refuses_another_size_with_the_rebuild_command(tmp_path):
    write_drive(tmp_path / "data", 96, 30)
    cache = FrameCache.open(build_frame_cache(make(tmp_path / "data"), tmp_path / "cache", split="s",
                                              progress=False))
    with pytest.raises(ValueError, match=r"built for height 32.*needs 64.*build_frame_cache\.py.*--height 64"):
        make(tmp_path / "data", height=64).use_frame_cache(cache)


def test_frame_cache_refuses_another_split(tmp_path):
    write_drive(tmp_path / "data", 96, 30)
    cache = FrameCache.open(build_frame_cache(make(tmp_path / "data", lines=LINES[:1]), tmp_path / "cache",
                                              split="first_line", progress=False))
    with pytest.raises(ValueError, match=r"--split first_line\) lacks 2 frame\(s\).*rebuild it"):
        make(tmp_path / "data").use_frame_cache(cache)


def test_frame_cache_refuses_a_missing_or_truncated_cache(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_frame_cache.py"):
        FrameCache.open(tmp_path / "nothing")
    write_drive(tmp_path / "data", 96, 30)
    root = build_frame_cache(make(tmp_path / "data"), tmp_path / "cache", split="s", progress=False)
    (root / FRAMES_FILE).write_bytes((root / FRAMES_FILE).read_bytes()[:-1])
    with pytest.raises(ValueError, match="rebuild it: python build_frame_cache.py"):
        FrameCache.open(root)
    assert (root / INDEX_FILE).is_file()


def test_build_frame_cache_command(tmp_path):
    import build_frame_cache

    write_drive(tmp_path / "data", 96, 30)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(LINES) + "\n")
    root = build_frame_cache.main(["--data_path", str(tmp_path / "data"), "--split", str(split), "--height", "32",
                                   "--width", "64", "--output", str(tmp_path / "cache"), "--num_workers", "0",
                                   "--no-progress_bar"])
    make(tmp_path / "data").use_frame_cache(FrameCache.open(root))


# ------------------------------------------------------------------------------ networks and options
class TwoConvs(torch.nn.Module):
    """A network with a dict output that records the dtype and memory format its conv saw."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.seen = {}

    def forward(self, x):
        self.seen = {"channels_last": x.is_contiguous(memory_format=torch.channels_last)}
        y = self.conv(x)
        self.seen["dtype"] = y.dtype
        return {("disp", 0): torch.sigmoid(y[:, :1])}, (y.mean(), y.amax())


def test_defaults_leave_the_cpu_path_untouched():
    settings = SpeedSettings.resolve(argparse.Namespace(), torch.device("cpu"))
    assert settings.autocast_dtype is None and not settings.channels_last and not settings.compile
    assert settings.optimizer_kwargs() == {}
    net = TwoConvs()
    assert settings.wrap(net) is net


@pytest.mark.parametrize("native_bf16", [False, True])
def test_fast_picks_the_measured_cpu_path_and_explicit_flags_win(monkeypatch, native_bf16):
    import speed

    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: native_bf16)
    fast = argparse.Namespace(fast=True, mixed_precision="auto", channels_last=None, fused_optimizer=None)
    settings = SpeedSettings.resolve(fast, torch.device("cpu"))
    assert settings.optimizer_kwargs() == {"fused": True}
    assert settings.autocast_dtype == (torch.bfloat16 if native_bf16 else None)
    assert settings.channels_last is native_bf16
    explicit = argparse.Namespace(fast=True, mixed_precision="none", channels_last=False, fused_optimizer=None)
    settings = SpeedSettings.resolve(explicit, torch.device("cpu"))
    assert settings.autocast_dtype is None and not settings.channels_last
    assert settings.optimizer_kwargs() == {"fused": True}


def test_bf16_autocast_runs_the_network_only_and_returns_float32():
    opts = argparse.Namespace(mixed_precision="bf16", channels_last=True, fused_optimizer=True)
    settings = SpeedSettings.resolve(opts, torch.device("cpu"))
    net = TwoConvs()
    fast = settings.wrap(net)
    assert isinstance(fast, FastNetwork)
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert [p is q for p, q in zip(fast.parameters(), net.parameters())] == [True, True]
    assert list(fast.state_dict()) == ["network.conv.weight", "network.conv.bias"]
    disps, (mean, peak) = fast(torch.rand(2, 3, 8, 8))
    assert net.seen == {"channels_last": True, "dtype": torch.bfloat16}
    assert disps[("disp", 0)].dtype == mean.dtype == peak.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # the geometry after the call runs in float32
    assert settings.optimizer_kwargs() == {"fused": True}


def _opts(**kw) -> argparse.Namespace:
    values = dict(mixed_precision="auto", device="cpu", compile=False, fused_optimizer=None, frame_cache=None,
                  data_path="kitti_data", split="eigen_zhou", height=192, width=640)
    values.update(kw)
    return argparse.Namespace(**values)


def test_speed_option_validation(monkeypatch, tmp_path):
    validate_speed_options(_opts(mixed_precision="bf16"))  # CPU autocast: allowed, documented as slow
    monkeypatch.setattr("speed._device_type", lambda name: "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ValueError, match="Ampere or newer.*--mixed_precision none"):
        validate_speed_options(_opts(mixed_precision="bf16"))
    monkeypatch.setattr("speed._device_type", lambda name: "mps")
    with pytest.raises(ValueError, match="not on mps: use --mixed_precision none"):
        validate_speed_options(_opts(mixed_precision="bf16"))
    with pytest.raises(ValueError, match="--no-fused_optimizer"):
        validate_speed_options(_opts(fused_optimizer=True))
    monkeypatch.setattr("speed._device_type", lambda name: "cpu")
    with pytest.raises(ValueError, match=r"not a frame cache: build it first with `python build_frame_cache.py "
                                         r"--data_path kitti_data --split eigen_zhou --height 192 --width 640"):
        validate_speed_options(_opts(frame_cache=str(tmp_path / "missing")))


def test_train_options_parse_the_speed_flags():
    from options import parse_train_options

    opts = parse_train_options(["--device", "cpu", "--mixed_precision", "bf16", "--channels_last",
                                "--no-fused_optimizer", "--compile"])
    assert (opts.mixed_precision, opts.channels_last, opts.fused_optimizer, opts.compile) == ("bf16", True, False,
                                                                                              True)
    defaults = parse_train_options(["--device", "cpu"])
    assert (defaults.mixed_precision, defaults.channels_last, defaults.fused_optimizer, defaults.frame_cache) == (
        "auto", None, None, None)


@pytest.mark.slow
def test_a_training_step_with_every_speed_flag_on_cpu(tmp_path):
    """bf16 + channels_last + fused AdamW + frame cache: one real Trainer step, finite float32 losses."""
    from options import parse_train_options
    from trainer import Trainer

    write_drive(tmp_path / "data", 96, 30)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(LINES) + "\n")
    cache = build_frame_cache(make(tmp_path / "data", height=64, width=128), tmp_path / "cache", split=str(split),
                              progress=False)
    opts = parse_train_options([
        "--data_path", str(tmp_path / "data"), "--split", str(split), "--height", "64", "--width", "128",
        "--num_scales", "2", "--batch_size", "2", "--num_workers", "0", "--weights_init", "scratch",
        "--device", "cpu", "--no_eval", "--log_dir", str(tmp_path / "runs"), "--exp_name", "fast",
        "--no-progress_bar", "--mixed_precision", "bf16", "--channels_last", "--fused_optimizer",
        "--frame_cache", str(cache)])
    trainer = Trainer(opts)
    try:
        assert trainer.speed.autocast_dtype == torch.bfloat16
        assert trainer.optimizer.defaults.get("fused") is True
        batch = next(iter(trainer.train_loader(0)))
        before = [p.detach().clone() for p in trainer.parameters()]
        inputs, outputs, losses = trainer.train_step(batch)
        assert torch.isfinite(losses["loss"]) and losses["loss"].dtype == torch.float32
        assert outputs[("disp", 0)].dtype == outputs[("warped", -1, 0)].dtype == torch.float32
        assert outputs[("depth", 0, 0)].dtype == torch.float32
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.parameters()))
    finally:
        trainer.close()


def test_a_rebuild_removes_the_temporaries_of_a_killed_build(tmp_path):
    write_drive(tmp_path / "data", 96, 30)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    stale = cache_dir / ".frames.u8.k2j4x9ab.atomic.tmp"
    stale.write_bytes(b"\0" * 1024)  # what a build killed mid-write leaves
    kept = cache_dir / "notes.txt"
    kept.write_text("not the cache's")
    build_frame_cache(make(tmp_path / "data"), cache_dir, split="s", progress=False)
    assert sorted(p.name for p in cache_dir.iterdir()) == ["frames.u8", "index.json", "notes.txt"]


def test_loader_workers_that_fill_the_cpus_cores_are_warned_about_with_a_count_that_fits():
    from speed import loader_oversubscription

    cpu = torch.device("cpu")
    message = loader_oversubscription(12, cpu, cores=2)
    assert "--num_workers 12" in message and "--num_workers 1 or fewer" in message
    assert "--num_workers 0 or fewer" in loader_oversubscription(1, cpu, cores=1)
    assert loader_oversubscription(1, cpu, cores=2) is None
    assert loader_oversubscription(0, cpu, cores=1) is None
    assert loader_oversubscription(12, torch.device("cuda"), cores=2) is None  # the GPU does the step
