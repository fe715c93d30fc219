"""Write DDAD split files (``--dataset ddad``) from ``ddad.json``, for the cameras you choose.

    python prepare_ddad.py --data_path ddad_train_val                       # CAMERA_01, -> ddad_train_val/splits
    python prepare_ddad.py --data_path ddad_train_val --ddad_cameras CAMERA_01 CAMERA_05 CAMERA_06
    python train.py --dataset ddad --data_path ddad_train_val --split ddad_train_val/splits ...

train_files.txt lists the train split, val_files.txt and test_files.txt the val split (the one
evaluate_depth.py --ddad_split scores), one line ``<scene json> <sample> <camera>`` per sample and
camera whose context samples exist. ``--build_depth_cache`` also projects the LiDAR of the val
lines now (otherwise the first evaluation does it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from config_files import parse_args_with_config
from datasets.ddad_dataset import DDAD_CAMERAS, DDAD_JSON, DEFAULT_DDAD_CAMERA, DDADDataset, ddad_split_lines
from utils import UserError, atomic_output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Split files for --dataset ddad.")
    parser.add_argument("--data_path", required=True, help="the folder holding ddad.json and the scene folders")
    parser.add_argument("--ddad_json", default=DDAD_JSON, help="the index file inside --data_path "
                                                              "(ddad_tiny.json for DDAD tiny)")
    parser.add_argument("--ddad_cameras", nargs="+", default=[DEFAULT_DDAD_CAMERA], choices=DDAD_CAMERAS,
                        help="cameras to list (default: the front camera, as PackNet trains)")
    parser.add_argument("--output_dir", default=None, help="where the split files go (default: <data_path>/splits)")
    parser.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1],
                        help="the --frame_ids you will train with (lines need these context samples)")
    parser.add_argument("--build_depth_cache", action="store_true",
                        help="project the LiDAR of every val line into its camera now")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    opts = parse_args_with_config(build_parser(), argv)
    output = Path(opts.output_dir) if opts.output_dir else Path(opts.data_path) / "splits"
    train, dropped = ddad_split_lines(opts.data_path, "train", opts.ddad_cameras, opts.frame_ids, opts.ddad_json)
    val, dropped_val = ddad_split_lines(opts.data_path, "val", opts.ddad_cameras, opts.frame_ids, opts.ddad_json)
    test, _ = ddad_split_lines(opts.data_path, "val", opts.ddad_cameras, [0], opts.ddad_json)
    if not train and not val and not test:
        raise UserError(f"{opts.data_path}: no sample of cameras {' '.join(opts.ddad_cameras)} in the train or val "
                        "split of the dataset's json: check --ddad_cameras and --ddad_json")
    for name, lines in (("train_files.txt", train), ("val_files.txt", val), ("test_files.txt", test)):
        with atomic_output(output / name) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    print(f"{len(train)} training, {len(val)} validation and {len(test)} test lines written to {output} "
          f"({dropped + dropped_val} samples left out: their context samples fall outside the scene)")
    if opts.build_depth_cache and test:
        DDADDataset(opts.data_path, test, 32, 32, [0], 1, split_name=str(output / "test_files.txt")).ground_truth()
        print(f"LiDAR depth of {len(test)} test lines cached under <scene>/depth/lidar/")
    return output


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
