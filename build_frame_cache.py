"""Build the decoded-frame cache that ``train.py --frame_cache PATH`` reads (see frame_cache.py).

    python build_frame_cache.py --data_path kitti_data --split eigen_zhou --height 192 --width 640 \\
        --output kitti_data/frame_cache_eigen_zhou_640x192 --num_workers 8

Every frame the split's ``train_files.txt`` reads (all ``--frame_ids``, and the other camera
with ``--use_stereo``) is decoded once and area-resized to ``--height x --width``, exactly as the
loader does, and stored as raw uint8 (H x W x 3 bytes per frame: about 370 kB at 640 x 192, so
~17 GB for eigen_zhou's ~45k images). Pass the same --dataset, --split, --height, --width and
--frame_ids to train.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from config_files import parse_args_with_config

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from datasets import DATASETS

    parser = argparse.ArgumentParser(description="Decode and resize a split's frames once, for --frame_cache.")
    parser.add_argument("--data_path", required=True, help="dataset root")
    parser.add_argument("--split", required=True,
                        help="the training --split: a name under splits/ or a folder with train_files.txt")
    parser.add_argument("--output", required=True, help="the cache folder to write (train.py --frame_cache)")
    parser.add_argument("--dataset", default="kitti", choices=sorted(DATASETS), help="as train.py --dataset")
    parser.add_argument("--height", type=int, default=192, help="as train.py --height")
    parser.add_argument("--width", type=int, default=640, help="as train.py --width")
    parser.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1], help="as train.py --frame_ids")
    parser.add_argument("--use_stereo", action="store_true", help="as train.py --use_stereo")
    ext = parser.add_mutually_exclusive_group()
    ext.add_argument("--jpg", dest="img_ext", action="store_const", const=".jpg")
    ext.add_argument("--png", dest="img_ext", action="store_const", const=".png")
    parser.set_defaults(img_ext=".png")
    parser.add_argument("--num_workers", type=int, default=4, help="decoding processes")
    parser.add_argument("--progress_bar", action=argparse.BooleanOptionalAction, default=True)
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Build the cache; return its folder."""
    from utils import configure_logging

    configure_logging()
    parser = build_parser()
    opts = parse_args_with_config(parser, argv)
    from datasets import DATASETS
    from frame_cache import build_frame_cache
    from split_lists import resolve_split_dir
    from utils import readlines

    train_file = resolve_split_dir(opts.split) / "train_files.txt"
    if not train_file.is_file():
        parser.error(f"--split {opts.split}: {train_file} not found")
    frame_ids = list(opts.frame_ids) + (["s"] if opts.use_stereo else [])
    try:
        dataset = DATASETS[opts.dataset](opts.data_path, readlines(train_file), opts.height, opts.width,
                                         frame_ids, 1, is_train=False, img_ext=opts.img_ext,
                                         split_name=str(train_file))
        started = time.perf_counter()
        root = build_frame_cache(dataset, opts.output, opts.split, num_workers=opts.num_workers,
                                 progress=opts.progress_bar)
    except ValueError as err:
        parser.error(str(err))
    size = (root / "frames.u8").stat().st_size
    logger.info("Frame cache %s: %.1f MB for %d split lines in %.1f s", root, size / 1e6, len(dataset),
                time.perf_counter() - started)
    return root


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
