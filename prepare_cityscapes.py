"""Prepare Cityscapes sequences for training (``--dataset cityscapes``).

    python prepare_cityscapes.py --dataset_dir cityscapes_raw --dump_root cs_prepared \
        --img_height 512 --img_width 1024 --seq_length 3 --num_threads 8

For every frame whose neighbours at +-``sample_gap`` (x (seq_length-1)/2) exist in
``<dataset_dir>/leftImg8bit_sequence/<split>/<city>/``, writes

- ``<dump_root>/<city>/<city>_<seq>_<frame>.png``: the ``seq_length`` frames stacked vertically,
  earliest on top, each resized to img_width x img_height (Lanczos) and cut to its top 75 % rows
  (the bottom shows the ego car); 1024 x 512 gives 1024 x 384 frames;
- ``..._cam.txt``: ``fx,0,cx,0,fy,cy,0,0,1`` from ``camera/<split>/<city>/<city>_<seq>_*_camera.json``
  scaled to the resized frame (the top crop changes neither);
- ``<dump_root>/prepared_files.txt``: one ``<city> <frame_name>`` line per written sample.

Every file is written atomically, so an interrupted run leaves only complete samples.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from config_files import parse_args_with_config
from datasets.cityscapes_dataset import KEEP_TOP_FRACTION
from utils import atomic_output

FRAME_PATTERN = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")


@dataclass(frozen=True)
class Target:
    city: str
    seq: str
    frame: int
    sources: tuple  # the stacked frames' paths, earliest first

    @property
    def name(self) -> str:
        return f"{self.city}_{self.seq}_{self.frame:06d}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Stack Cityscapes sequence frames for training.")
    parser.add_argument("--dataset_dir", required=True,
                        help="raw Cityscapes root (leftImg8bit_sequence/ and camera/)")
    parser.add_argument("--dump_root", required=True, help="output folder (the training --data_path)")
    parser.add_argument("--seq_length", type=int, required=True,
                        help="frames per sample, odd (3 for training: frames -1, 0, +1)")
    parser.add_argument("--img_height", type=int, default=128, help="frame height before the 75 %% top crop")
    parser.add_argument("--img_width", type=int, default=416, help="frame width")
    parser.add_argument("--split", default="train", help="leftImg8bit_sequence/<split> to prepare")
    parser.add_argument("--sample_gap", type=int, default=2,
                        help="raw frames between stacked frames (2: Cityscapes' 17 Hz becomes 8.5 Hz)")
    parser.add_argument("--num_threads", type=int, default=4, help="worker threads")
    parser.add_argument("--no-progress_bar", dest="progress_bar", action="store_false")
    return parser


def collect_targets(dataset_dir: Path, split: str, seq_length: int, sample_gap: int) -> list[Target]:
    """Every frame whose stacked neighbours all exist, sorted by name."""
    folder = dataset_dir / "leftImg8bit_sequence" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found: --dataset_dir must hold leftImg8bit_sequence/{split}/ "
                                "(leftImg8bit_sequence_trainvaltest.zip)")
    frames = {}
    for path in sorted(folder.glob("*/*_leftImg8bit.png")):
        match = FRAME_PATTERN.match(path.name)
        if match:
            frames[(match["city"], match["seq"], int(match["frame"]))] = path
    half = (seq_length - 1) // 2
    offsets = [sample_gap * k for k in range(-half, half + 1)]
    targets = []
    for (city, seq, frame) in sorted(frames):
        sources = [frames.get((city, seq, frame + o)) for o in offsets]
        if all(sources):
            targets.append(Target(city, seq, frame, tuple(sources)))
    return targets


def read_intrinsics(dataset_dir: Path, split: str, target: Target, raw_size: tuple[int, int],
                    size: tuple[int, int]) -> np.ndarray:
    """3 x 3 K of the resized frame (pixels): fx, cx scaled by width, fy, cy by height."""
    folder = dataset_dir / "camera" / split / target.city
    matches = sorted(folder.glob(f"{target.city}_{target.seq}_*_camera.json"))
    if not matches:
        raise FileNotFoundError(f"no camera file {folder}/{target.city}_{target.seq}_*_camera.json: "
                                "unpack camera_trainvaltest.zip into --dataset_dir")
    intrinsic = json.loads(matches[0].read_text())["intrinsic"]
    sx, sy = size[0] / raw_size[0], size[1] / raw_size[1]
    return np.array([[intrinsic["fx"] * sx, 0.0, intrinsic["u0"] * sx],
                     [0.0, intrinsic["fy"] * sy, intrinsic["v0"] * sy],
                     [0.0, 0.0, 1.0]])


def prepare_target(target: Target, dataset_dir: Path, dump_root: Path, split: str,
                   size: tuple[int, int]) -> str:
    """Write one stacked PNG and its _cam.txt; return the split line."""
    width, height = size
    keep = int(KEEP_TOP_FRACTION * height)
    stacked, raw_size = [], None
    for path in target.sources:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"could not decode {path}")
        raw_size = raw_size or (image.shape[1], image.shape[0])
        stacked.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_LANCZOS4)[:keep])
    k = read_intrinsics(dataset_dir, split, target, raw_size, size)
    out = dump_root / target.city / f"{target.name}.png"
    ok, encoded = cv2.imencode(".png", np.concatenate(stacked, axis=0))
    if not ok:
        raise OSError(f"could not encode {out}")
    with atomic_output(out, suffix=".png") as tmp:
        tmp.write_bytes(encoded.tobytes())
    with atomic_output(out.with_name(f"{target.name}_cam.txt")) as tmp:
        tmp.write_text(",".join(f"{v:f}" for v in k.ravel()) + "\n")
    return f"{target.city} {target.name}"


def main(argv: Sequence[str] | None = None) -> list[str]:
    parser = build_parser()
    opts = parse_args_with_config(parser, argv)
    if opts.seq_length < 1 or opts.seq_length % 2 == 0:
        parser.error(f"--seq_length must be odd (got {opts.seq_length}): the target sits in the middle")
    for name in ("img_height", "img_width", "sample_gap", "num_threads"):
        if getattr(opts, name) <= 0:
            parser.error(f"--{name} must be positive (got {getattr(opts, name)})")
    dataset_dir, dump_root = Path(opts.dataset_dir), Path(opts.dump_root)
    targets = collect_targets(dataset_dir, opts.split, opts.seq_length, opts.sample_gap)
    if not targets:
        parser.error(f"no frame of {dataset_dir}/leftImg8bit_sequence/{opts.split} has all its "
                     f"{opts.seq_length} neighbours {opts.sample_gap} frames apart")
    size = (opts.img_width, opts.img_height)
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=opts.num_threads) as pool:
        jobs = pool.map(lambda t: prepare_target(t, dataset_dir, dump_root, opts.split, size), targets)
        lines = list(tqdm(jobs, total=len(targets), desc="prepare_cityscapes", unit="sample",
                          disable=not opts.progress_bar))
    with atomic_output(dump_root / "prepared_files.txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} samples written to {dump_root}")
    return lines


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
