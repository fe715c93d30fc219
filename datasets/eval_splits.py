"""Where the evaluation builders of the other benchmarks find their test lists."""

from __future__ import annotations

import argparse
from pathlib import Path

from utils import split_file


def eval_split_file(key: str, opts: argparse.Namespace, filename: str = "test_files.txt") -> Path:
    """The list ``filename`` of benchmark ``key`` ("nyuv2", "cityscapes", "make3d", "odom").

    ``--<key>_split`` (a folder, or a name under ``splits/``) wins; otherwise ``splits/<key>/``,
    whose standard lists are downloaded on first use (``utils.split_file``).
    """
    split = getattr(opts, f"{key}_split", None) or key
    path = split_file(split, filename)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass --{key}_split with a folder holding {filename}")
    return path
