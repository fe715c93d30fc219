"""Write train/val split files for your own videos (``--dataset custom`` or ``--dataset image_folder``).

    python prepare_custom.py --data_path my_videos                 # -> my_videos/splits/{train,val}_files.txt
    python train.py --dataset custom --data_path my_videos --split my_videos/splits --no_eval ...
    python prepare_custom.py --dataset image_folder --data_path my_frames
    python train.py --dataset image_folder --data_path my_frames --split my_frames/splits --no_eval ...

See the README's "Your own videos" section for the folder layouts and the intrinsics file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from config_files import parse_args_with_config
from datasets.custom_dataset import write_custom_splits, write_split_files
from datasets.image_folder_dataset import image_folder_split_lines
from utils import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Split files for --dataset custom or image_folder.")
    parser.add_argument("--data_path", required=True, help="folder with one sub-folder of frames per video "
                                                           "(image_folder: or the frames themselves)")
    parser.add_argument("--dataset", default="custom", choices=["custom", "image_folder"],
                        help="custom: lines name frames by position in the name-sorted folder; image_folder: "
                             "by the frame number in their file names")
    parser.add_argument("--output_dir", default=None, help="where the split files go (default: <data_path>/splits)")
    parser.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1],
                        help="the --frame_ids you will train with (lines need these neighbours)")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="share of lines for val_files.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val draw")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    opts = parse_args_with_config(build_parser(), argv)
    output = Path(opts.output_dir) if opts.output_dir else Path(opts.data_path) / "splits"
    if opts.dataset == "image_folder":
        lines, dropped = image_folder_split_lines(opts.data_path, opts.frame_ids)
        if not lines:
            raise UserError(f"{opts.data_path}: no frame has all its context frames {opts.frame_ids}: each video "
                            "needs more frames than the span of --frame_ids")
        print(f"{dropped} frames left out: their context frames {opts.frame_ids} fall outside the sequence")
        num_train, num_val = write_split_files(lines, output, opts.val_fraction, opts.seed)
    else:
        num_train, num_val = write_custom_splits(opts.data_path, output, opts.frame_ids, opts.val_fraction,
                                                 opts.seed)
    print(f"{num_train} training and {num_val} validation lines written to {output}")
    return output


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
