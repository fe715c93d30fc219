"""Throughput options of training and inference: bf16 autocast, channels_last, fused optimisers, compile.

Every speed-up is a flag that can be switched off for comparison (``bench/`` measures them):

- ``--mixed_precision {auto,none,bf16}``: the *networks* run under ``torch.autocast`` in
  bfloat16; their outputs are cast back to float32 before anything else reads them, so the
  geometry (back-projection, projection, ``grid_sample`` warping), SSIM, the losses and
  disparity-to-depth always run in float32. ``auto`` is bf16 on a CUDA device that supports it
  (Ampere and newer) and none elsewhere, so CPU runs are unchanged by default. bf16 on the CPU
  is allowed (PyTorch's CPU autocast supports it everywhere); it is fast only on CPUs with
  native bf16 (AVX512-BF16 or AMX), and a warning says so otherwise. MPS is refused.
- ``--channels_last/--no-channels_last`` (default: on for CUDA): the network input is converted
  to the NHWC memory format, which cuDNN's tensor-core convolutions prefer, and the networks'
  weights are converted once.
- ``--fused_optimizer/--no-fused_optimizer`` (default: fused on CUDA, PyTorch's default
  implementation elsewhere): one fused kernel for the whole Adam/AdamW/SGD update.
- ``--fast``: the combination measured fastest (on the CPU ``CPU_FAST_PATH``, or
  ``CPU_FAST_PATH_NATIVE_BF16`` where it has native bf16; on CUDA the defaults already are);
  explicit flags still decide.
- ``--compile``: ``torch.compile`` of the depth and pose networks (off by default: the first
  steps pay minutes of compilation; worth it for long runs).

`validate_speed_options` checks the combinations once (from `options.validate_options`) and
`SpeedSettings.resolve` turns the flags into decisions for the device actually used.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

logger = logging.getLogger(__name__)

MIXED_PRECISION_CHOICES = ("auto", "none", "bf16")

# What --fast turns on for a CPU run, from bench/step_profile.py on a 2-core AVX2 EPYC (README,
# Speed): the fused optimiser (one pass over the weights, no per-parameter loop). Measured and
# left out: channels_last (oneDNN's NHWC convolutions are slower here), bf16 autocast (no native
# bf16 on that CPU: emulated, slower than float32) and torch.compile (minutes of compilation).
CPU_FAST_PATH = {"fused_optimizer": True, "channels_last": False, "mixed_precision": "none"}
# ... and on a CPU with native bf16 (a 2-core AVX512-BF16/AMX Xeon): bf16 autocast with channels_last
# and the fused optimiser, 1.2-1.5x the float32 step there (README, Speed); bf16 training passed
# bench/bf16_accuracy.py's rule on such a CPU. torch.compile added 1.03x, within the noise.
CPU_FAST_PATH_NATIVE_BF16 = {"fused_optimizer": True, "channels_last": True, "mixed_precision": "bf16"}

# CPU flags (Linux /proc/cpuinfo) that give native bfloat16 arithmetic; without them PyTorch's
# CPU autocast still works but converts in software, which is slower than float32.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def usable_cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_oversubscription(num_workers: int, device: torch.device, cores: int | None = None) -> str | None:
    """A warning when training on the CPU with at least as many loader processes as usable cores.

    The workers then take cores from the step itself: on 2 cores, Monodepth2's step ran 1.13x
    faster with --num_workers 0 than with 2 (bench/step_profile.py, README Speed). The count is
    not changed for the user: each sample's augmentation is seeded by its index, not its worker,
    so any count gives the same batches and only the speed is at stake. None: nothing to say.
    """
    cores = usable_cpu_cores() if cores is None else cores
    if device.type != "cpu" or num_workers < cores:
        return None
    return (f"--num_workers {num_workers} with training on {cores} usable CPU core(s): the loader processes "
            f"compete with the training step for the cores; pass --num_workers {max(cores - 1, 0)} or fewer "
            "(0 loads in the training process; the batches are the same whatever the count)")


@functools.lru_cache(maxsize=None)  # the CPU's flags do not change while the process runs
def cpu_has_native_bf16() -> bool:
    """Whether this CPU advertises native bfloat16 instructions (False when unknown)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_CPU_FLAGS)


def _device_type(name: str) -> str:
    """The device type ``--device`` resolves to, without initialising anything heavy."""
    from utils import select_device

    return select_device(name).type


def validate_speed_options(opts: argparse.Namespace) -> None:
    """Raise ValueError naming the flag and the fix for an impossible speed setting."""
    precision = getattr(opts, "mixed_precision", "auto")
    if precision not in MIXED_PRECISION_CHOICES:
        raise ValueError(f"--mixed_precision must be one of {', '.join(MIXED_PRECISION_CHOICES)} "
                         f"(got {precision!r})")
    device_name = getattr(opts, "device", "auto")
    try:
        device_type = _device_type(device_name)
    except (RuntimeError, ValueError):
        return  # the device itself is reported where it is selected
    if precision == "bf16":
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("--mixed_precision bf16 needs a GPU with bfloat16 support (Ampere or newer); "
                             "this one has none: use --mixed_precision none")
        if device_type not in ("cuda", "cpu"):
            raise ValueError(f"--mixed_precision bf16 runs on CUDA or the CPU, not on {device_type}: "
                             "use --mixed_precision none")
    if getattr(opts, "compile", False) and not hasattr(torch, "compile"):
        raise ValueError("--compile needs torch >= 2.0: upgrade torch or drop --compile")
    if getattr(opts, "fused_optimizer", None) and device_type not in ("cuda", "cpu"):
        raise ValueError(f"--fused_optimizer has no {device_type} implementation: "
                         "use --no-fused_optimizer")
    cache = getattr(opts, "frame_cache", None)
    if cache and not (Path(cache).expanduser() / "index.json").is_file():
        raise ValueError(f"--frame_cache {cache} is not a frame cache: build it first with `python "
                         f"build_frame_cache.py --data_path {getattr(opts, 'data_path', '<root>')} --split "
                         f"{getattr(opts, 'split', '<split>')} --height {getattr(opts, 'height', '<H>')} "
                         f"--width {getattr(opts, 'width', '<W>')} --output {cache}`")


@dataclass(frozen=True)
class SpeedSettings:
    """The speed-ups in effect for one device (``auto`` values resolved).

    Attributes:
        device_type: "cuda", "cpu" or "mps".
        autocast_dtype: torch.bfloat16, or None for full float32.
        channels_last: NHWC network inputs and weights.
        fused_optimizer: True for ``fused=True``; None leaves PyTorch's default (foreach on
            CUDA, a for-loop on the CPU).
        compile: wrap the networks in ``torch.compile``.
    """

    device_type: str = "cpu"
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    fused_optimizer: bool | None = None
    compile: bool = False

    @classmethod
    def resolve(cls, opts: argparse.Namespace, device: torch.device) -> "SpeedSettings":
        """Decide every ``auto`` for ``device`` (options missing from ``opts`` count as auto)."""
        cuda = device.type == "cuda"
        precision = getattr(opts, "mixed_precision", "auto")
        channels_last = getattr(opts, "channels_last", None)
        fused = getattr(opts, "fused_optimizer", None)
        if getattr(opts, "fast", False) and device.type == "cpu":
            # --fast: what bench/step_profile.py measured fastest on the CPU (README, Speed).
            # Explicit flags still win.
            fast_path = CPU_FAST_PATH_NATIVE_BF16 if cpu_has_native_bf16() else CPU_FAST_PATH
            channels_last = fast_path["channels_last"] if channels_last is None else channels_last
            fused = fast_path["fused_optimizer"] if fused is None else fused
            if precision == "auto":
                precision = fast_path["mixed_precision"]
        if precision == "auto":
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "none"
        if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            logger.warning("--mixed_precision bf16 on a CPU without native bfloat16 (avx512_bf16/amx): "
                           "correct but slower than float32")
        return cls(device_type=device.type,
                   autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
                   channels_last=cuda if channels_last is None else bool(channels_last),
                   fused_optimizer=(True if cuda else None) if fused is None else bool(fused),
                   compile=bool(getattr(opts, "compile", False)))

    def describe(self) -> str:
        """One line for the log, e.g. ``bf16 autocast, channels_last, fused optimizer``."""
        parts = ["bf16 autocast" if self.autocast_dtype is not None else "fp32",
                 "channels_last" if self.channels_last else "contiguous (NCHW)",
                 {True: "fused optimizer", False: "for-loop optimizer", None: "default optimizer"}[
                     self.fused_optimizer],
                 "torch.compile" if self.compile else "eager"]
        return ", ".join(parts)

    def optimizer_kwargs(self) -> dict:
        """Extra keyword arguments for Adam/AdamW/SGD: ``fused=True``, or ``foreach=False``."""
        if self.fused_optimizer is None:
            return {}
        if self.fused_optimizer:
            return {"fused": True}
        return {"foreach": False}

    def wrap(self, network: nn.Module) -> nn.Module:
        """``network`` in NHWC and/or under autocast (and compiled), outputs in float32.

        Returns ``network`` itself when every option is off, so the default path is untouched.
        The parameters stay the same objects: optimisers and checkpoints that hold the inner
        modules are unaffected.
        """
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        if self.autocast_dtype is None and not self.channels_last and not self.compile:
            return network
        return FastNetwork(network, self.device_type, self.autocast_dtype, self.channels_last, self.compile)


def _to_float32(value):
    """Cast every floating tensor in a (nested) dict/tuple/list of network outputs to float32."""
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: _to_float32(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_float32(item) for item in value)
    return value


class FastNetwork(nn.Module):
    """Runs a network under autocast and/or on channels_last inputs; returns float32 outputs.

    Only the wrapped network runs in reduced precision: the float32 cast on the way out is the
    boundary after which warping, SSIM and disparity-to-depth run in full precision.

    Args:
        network: the depth or pose network (any module taking one B x C x H x W tensor).
        device_type: ``torch.autocast``'s device type ("cuda" or "cpu").
        autocast_dtype: torch.bfloat16, or None for no autocast.
        channels_last: convert the input to ``torch.channels_last``.
        compile: run a ``torch.compile``d copy of ``network`` (same parameters).
    """

    def __init__(self, network: nn.Module, device_type: str, autocast_dtype: torch.dtype | None,
                 channels_last: bool, compile: bool = False) -> None:
        super().__init__()
        self.network = network
        self.device_type = device_type
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        # Kept outside the module tree so that state_dict() and parameters() see each weight once.
        self._compiled = (torch.compile(network),) if compile else None

    def forward(self, images: torch.Tensor):
        """Args: images B x C x H x W float32. Returns the network's outputs, floats in float32."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        run = self._compiled[0] if self._compiled is not None else self.network
        if self.autocast_dtype is None:
            return run(images)
        with torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype):
            outputs = run(images)
        return _to_float32(outputs)


class PhaseTimer:
    """Wall time of the named phases of the training step, each exclusive of the phases nested in it.

    ``with timer.phase("losses"): ...`` adds the block's time to "losses"; a phase opened inside
    another (the depth network inside the forward pass) is subtracted from its parent, so the
    phases add up to the step. On CUDA the device is synchronised at every phase boundary,
    otherwise asynchronous kernels would be billed to whichever phase next waits for them; on
    the CPU nothing is synchronised (the work is done when the call returns), so the timer does
    not distort what it measures. A disabled timer (the Trainer's default) does nothing.
    """

    def __init__(self, device: torch.device | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.synchronize = (lambda: torch.cuda.synchronize(device)) if (
            device is not None and device.type == "cuda") else (lambda: None)
        self.reset()

    def reset(self) -> None:
        """Forget every total (e.g. after the warm-up steps)."""
        self.seconds: dict[str, float] = {}
        self._nested: list[float] = []

    @contextmanager
    def phase(self, name: str):
        if not self.enabled:
            yield
            return
        self.synchronize()
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            self.synchronize()
            elapsed = time.perf_counter() - start
            inner = self._nested.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
            if self._nested:
                self._nested[-1] += elapsed

    def timed(self, name: str, function: Callable) -> Callable:
        """``function`` with every call timed as the phase ``name``."""
        def run(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)
        return run


# The Trainer's default: phases cost one attribute check and a generator, nothing is measured.
NO_TIMER = PhaseTimer(enabled=False)
