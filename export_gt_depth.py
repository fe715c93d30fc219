"""Export the ground-truth depth maps of a KITTI test split to ``<split>/gt_depths.npz``.

Usage::

    python export_gt_depth.py --data_path KITTI_RAW_ROOT --split eigen
    python export_gt_depth.py --data_path SYNTH_ROOT --split SYNTH_ROOT/splits/synthetic_test

Each line of ``<split>/test_files.txt`` is ``folder frame side``; the side is ignored and camera 2
is always used, as in the reference. ``eigen`` (and any folder split not named
``eigen_benchmark``) projects the velodyne scan with ``generate_depth_map(..., vel_depth=True)``;
``eigen_benchmark`` (or ``--benchmark_gt``) reads the annotated KITTI depth PNGs from
``{data_path}/{folder}/proj_depth/groundtruth/image_02/{frame:010d}.png``, which must have been
merged into the raw tree.

File format and the safe reader: `ground_truth`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from config_files import parse_args_with_config
from ground_truth import save_gt_depths
from kitti_utils import generate_depth_map, read_kitti_depth_png
from split_lists import resolve_split_dir
from utils import configure_logging, readlines

logger = logging.getLogger(__name__)

BENCHMARK_SPLIT = "eigen_benchmark"


def _parse_line(line: str, line_number: int, split_file: Path) -> tuple[str, int]:
    tokens = line.split()
    if len(tokens) not in (2, 3):
        raise ValueError(f"{split_file}, line {line_number}: expected 'folder frame side', "
                         f"got {line.strip()!r}")
    try:
        return tokens[0], int(tokens[1])
    except ValueError:
        raise ValueError(f"{split_file}, line {line_number}: frame {tokens[1]!r} is not an "
                         "integer") from None


def export_gt_depths(data_path: str | os.PathLike, split_file: str | os.PathLike, benchmark: bool,
                     progress: bool = False) -> list[np.ndarray]:
    """Ground-truth depth for every line of a test list (camera 2, metres, 0 = invalid).

    Args:
        data_path: KITTI raw root (``<data_path>/<date>/<drive>``).
        split_file: ``test_files.txt``.
        benchmark: read annotated depth PNGs instead of projecting velodyne scans.
        progress: show a tqdm progress bar.

    Returns:
        One H x W float32 map per non-blank line, in list order.

    Raises:
        FileNotFoundError: a velodyne scan or PNG is missing (names the file and the split line).
    """
    from tqdm import tqdm

    data_path, split_file = Path(data_path), Path(split_file)
    lines = [(number, line) for number, line in enumerate(readlines(split_file), start=1) if line.strip()]
    if not lines:
        raise ValueError(f"{split_file} has no lines")
    depths = []
    for line_number, line in tqdm(lines, desc="exporting ground truth", unit="map", disable=not progress):
        folder, frame = _parse_line(line, line_number, split_file)
        if benchmark:
            source = data_path / folder / "proj_depth" / "groundtruth" / "image_02" / f"{frame:010d}.png"
        else:
            source = data_path / folder / "velodyne_points" / "data" / f"{frame:010d}.bin"
        if not source.is_file():
            kind = "annotated depth PNG" if benchmark else "velodyne scan"
            raise FileNotFoundError(f"{split_file}, line {line_number}: {kind} not found: {source} "
                                    "(check --data_path)")
        if benchmark:
            depth = read_kitti_depth_png(source)
        else:
            calib_dir = data_path / folder.split("/")[0]
            depth = generate_depth_map(calib_dir, source, cam=2, vel_depth=True)
        depths.append(depth.astype(np.float32))
    return depths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export KITTI ground-truth depth maps for a test split.")
    parser.add_argument("--data_path", required=True, help="KITTI raw root (or the synthetic dataset's root)")
    parser.add_argument("--split", required=True,
                        help="eigen, eigen_benchmark, or a folder holding test_files.txt")
    parser.add_argument("--benchmark_gt", action="store_true",
                        help="read annotated depth PNGs (proj_depth/groundtruth) whatever the split's name")
    parser.add_argument("--output", default=None, help="output file (default: <split folder>/gt_depths.npz)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args_with_config(build_parser(), argv)
    configure_logging("stderr")
    split_dir = resolve_split_dir(args.split)
    split_file = split_dir / "test_files.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"--split {args.split}: {split_file} not found")
    data_path = Path(args.data_path)
    if not data_path.is_dir():
        raise FileNotFoundError(f"--data_path {data_path} does not exist or is not a folder")
    benchmark = args.benchmark_gt or split_dir.name == BENCHMARK_SPLIT
    depths = export_gt_depths(data_path, split_file, benchmark, progress=True)
    output = Path(args.output) if args.output else split_dir / "gt_depths.npz"
    save_gt_depths(output, depths)
    logger.info("wrote %d ground-truth maps (%s) to %s", len(depths),
                "annotated PNGs" if benchmark else "velodyne", output)
    return output


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
