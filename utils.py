"""Small helpers shared by the scripts: files, splits, devices, seeding, colour maps."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent
SPLITS_DIR = REPO_ROOT / "splits"


def readlines(path: str | os.PathLike) -> list[str]:
    """Return the lines of a text file without line endings (carriage returns dropped too)."""
    with open(path, encoding="utf-8") as f:
        return f.read().replace("\r", "").splitlines()


def resolve_split_dir(split: str) -> Path:
    """Map a ``--split``/``--eval_split`` value to its folder.

    A value naming an existing folder is used as it is (the synthetic generator writes its
    splits next to the data); anything else is a name under the repository's ``splits/``
    folder, e.g. ``eigen_zhou`` -> ``splits/eigen_zhou``.
    """
    as_path = Path(split).expanduser()
    if as_path.is_dir():
        return as_path.resolve()
    return SPLITS_DIR / split


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers therefore see either the old file or the complete new one, never a half-written
    file, and a failure leaves nothing behind. The data is fsynced before the rename.
    ``suffix`` keeps the extension for writers that insist on it (``np.savez`` adds ``.npz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def select_device(name: str = "auto") -> torch.device:
    """Resolve ``--device``: ``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with one value."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive Python and NumPy seeds from the worker's torch seed.

    torch seeds each worker from the loader's generator; Python's ``random`` and NumPy would
    otherwise repeat the same stream in every worker (and every epoch with forked workers).
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def colorize_disparity(disp: np.ndarray, cmap: str = "magma", vmax_percentile: float = 95.0) -> np.ndarray:
    """Colour-map a disparity map for display.

    Args:
        disp: H x W disparity (any positive scale).
        cmap: matplotlib colour map name.
        vmax_percentile: the upper end of the normalisation, as in monodepth2 (the minimum is
            the map's minimum), so a few very near pixels do not wash out the rest.

    Returns:
        H x W x 3 uint8 RGB image.
    """
    import matplotlib

    disp = np.asarray(disp, dtype=np.float64)
    vmin = float(disp.min())
    vmax = float(np.percentile(disp, vmax_percentile))
    if vmax <= vmin:
        vmax = vmin + 1e-6
    normalized = np.clip((disp - vmin) / (vmax - vmin), 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](normalized)
    return (rgba[..., :3] * 255).astype(np.uint8)


def format_hms(seconds: float) -> str:
    """Format seconds as ``HHhMMmSSs`` (the reference's progress-line style)."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:02d}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"
