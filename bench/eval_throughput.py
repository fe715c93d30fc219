"""Evaluation time on an Eigen-sized (697 images) synthetic test split.

    python bench/eval_throughput.py --device cuda
    python bench/eval_throughput.py --device cpu --num_images 100 --backbones resnet

The synthetic test drive's lines (and ground truth) are repeated up to ``--num_images`` lines,
so the split has Eigen's size without rendering 697 frames. Each backbone's randomly
initialised checkpoint is evaluated with ``evaluate_depth.main`` exactly as a user runs it
(loading, decoding, prediction, metrics, JSON); the table gives wall time and images per second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EIGEN_TEST_IMAGES, add_common_options, random_checkpoint, report, synthetic_dataset  # noqa: E402
from config_files import parse_args_with_config  # noqa: E402

MODELS = {"resnet": ("resnet", "monodepth2", 4), "hrnet": ("hrnet", "bdedepth", 1)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, frames_per_drive=8)
    parser.add_argument("--num_images", type=int, default=EIGEN_TEST_IMAGES)
    parser.add_argument("--backbones", nargs="+", default=["resnet", "hrnet"], choices=sorted(MODELS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    return parser


def eigen_sized_split(root: Path, out: Path, num_images: int) -> Path:
    """A split folder with ``num_images`` test lines cycling over the synthetic test drive."""
    import numpy as np

    from ground_truth import load_gt_depths
    from utils import readlines

    source = root / "splits" / "synthetic_test"
    lines = readlines(source / "test_files.txt")
    gt = load_gt_depths(source / "gt_depths.npz")
    out.mkdir(parents=True, exist_ok=True)
    picks = [i % len(lines) for i in range(num_images)]
    (out / "test_files.txt").write_text("\n".join(lines[i] for i in picks) + "\n")
    maps = np.empty(num_images, dtype=object)
    for j, i in enumerate(picks):
        maps[j] = gt[i]
    np.savez_compressed(out / "gt_depths.npz", data=maps)
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args_with_config(build_parser(), argv)
    import evaluate_depth

    root = synthetic_dataset(args, gt=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        split = eigen_sized_split(root, Path(tmp) / "eigen_sized", args.num_images)
        for backbone in args.backbones:
            name, decoder, scales = MODELS[backbone]
            ckpt = random_checkpoint(Path(tmp) / f"{backbone}.pth", name, decoder, args.height, args.width, scales)
            start = time.perf_counter()
            result = evaluate_depth.main(["--pretrained_path", str(ckpt), "--kitti_path", str(root),
                                          "--eval_split", str(split), "--device", args.device,
                                          "--batch_size", str(args.batch_size), "--num_workers",
                                          str(args.num_workers), "--eval_out_dir", tmp])
            elapsed = time.perf_counter() - start
            rows.append({"model": f"{name} + {decoder}", "device": args.device, "images": args.num_images,
                         "seconds": elapsed, "images/s": args.num_images / elapsed,
                         "abs_rel (random weights)": result["results"][0]["metrics"]["abs_rel"]})
    return report(f"Evaluation of a {args.num_images}-image synthetic split ({args.width}x{args.height}, "
                  f"batch {args.batch_size}, {args.num_workers} workers)", rows,
                  ["model", "device", "images", "seconds", "images/s"], args)


if __name__ == "__main__":
    main()
