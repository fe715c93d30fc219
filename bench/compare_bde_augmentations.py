"""Does training with BDEdepth's augmentations learn at least as well as without, at equal steps?

Trains the same configuration (same seed, so the same initial weights and sample order) twice on
the synthetic KITTI-layout dataset, once plain and once with ``--use_local_crop
--use_patch_reshuffle``, for the same number of steps, evaluates both on the held-out drive
(Eigen protocol, median scaling) and reports whether the augmented run is at least as good.

    python bench/compare_bde_augmentations.py --work_dir bench_out            # full comparison
    python bench/compare_bde_augmentations.py --work_dir /tmp/smoke --num_epochs 1 --train_lines 4 \\
        --batch_size 2 --num_workers 0                                        # 2-step smoke run

The synthetic dataset is generated under ``<work_dir>/synthetic_kitti`` unless ``--data_path``
points at one (``make_synthetic_kitti.py`` output with its test ground truth exported). Results
go to ``<work_dir>/compare_bde.json``; the exit status is 0 when the augmented run is at least
as good on abs_rel and a1 (within ``--tolerance``), 1 otherwise. Extra ``train.py`` flags for both
runs follow ``--``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from config_files import parse_args_with_config  # noqa: E402
from utils import configure_logging  # noqa: E402

BDE_FLAGS = ("--use_local_crop", "--use_patch_reshuffle")
# abs_rel (lower is better) and a1 (higher is better) decide the verdict; the others are shown.
REPORTED_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", type=str, default="bench_out", help="runs, data and the JSON report")
    parser.add_argument("--data_path", type=str, default=None,
                        help="an existing synthetic dataset root (default: generate one in --work_dir)")
    parser.add_argument("--num_drives", type=int, default=3, help="drives of a generated dataset")
    parser.add_argument("--frames_per_drive", type=int, default=100, help="frames per generated drive")
    parser.add_argument("--train_lines", type=int, default=0,
                        help="train on the first N split lines only (0: all), e.g. for a smoke run")
    parser.add_argument("--num_epochs", type=int, default=8, help="epochs of each run (same steps for both)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--device", type=str, default="auto")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="relative slack on abs_rel and absolute slack on a1 for 'at least as good'")
    parser.add_argument("extra", nargs="*", help="train.py flags for both runs, after --")
    return parser


def synthetic_dataset(args) -> Path:
    """The dataset root: --data_path, or a generated one (with its test ground truth)."""
    if args.data_path:
        return Path(args.data_path)
    import export_gt_depth
    from make_synthetic_kitti import generate_dataset

    root = Path(args.work_dir) / "synthetic_kitti"
    test_split = root / "splits" / "synthetic_test"
    if not (test_split / "gt_depths.npz").is_file():
        generate_dataset(root, num_drives=args.num_drives, frames_per_drive=args.frames_per_drive,
                         width=414, height=125, seed=7, overwrite=True)
        export_gt_depth.main(["--data_path", str(root), "--split", str(test_split)])
    return root


def training_split(root: Path, args) -> Path:
    split = root / "splits" / "synthetic"
    if args.train_lines <= 0:
        return split
    lines = (split / "train_files.txt").read_text().splitlines()[:args.train_lines]
    subset = Path(args.work_dir) / f"split_first_{args.train_lines}"
    subset.mkdir(parents=True, exist_ok=True)
    for name in ("train_files.txt", "val_files.txt"):
        (subset / name).write_text("\n".join(lines) + "\n")
    return subset


def run(name: str, root: Path, split: Path, args, flags: Sequence[str]) -> dict:
    import train

    argv = ["--data_path", str(root), "--split", str(split), "--eval_split", str(root / "splits" / "synthetic_test"),
            "--log_dir", str(Path(args.work_dir) / "runs"),
            "--exp_name", name, "--overwrite", "--weights_init", "scratch", "--height", str(args.height),
            "--width", str(args.width), "--batch_size", str(args.batch_size), "--num_epochs", str(args.num_epochs),
            "--decay_step", str(args.num_epochs), "--num_workers", str(args.num_workers), "--device", args.device,
            "--seed", str(args.seed), "--no-progress_bar", "--log_frequency", "100", *args.extra, *flags]
    return train.main(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run both trainings and return ``{"baseline": metrics, "bde": metrics, "ok": bool}``."""
    args = parse_args_with_config(build_parser(), argv)
    configure_logging()
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    root = synthetic_dataset(args)
    split = training_split(root, args)
    baseline = run("baseline", root, split, args, [])
    bde = run("bde", root, split, args, BDE_FLAGS)
    ok = (bde["abs_rel"] <= baseline["abs_rel"] * (1.0 + args.tolerance)
          and bde["a1"] >= baseline["a1"] - args.tolerance)
    report = {"baseline": baseline, "bde": bde, "ok": ok, "args": vars(args)}
    (Path(args.work_dir) / "compare_bde.json").write_text(json.dumps(report, indent=2))
    print(f"\n{'metric':>10} {'baseline':>10} {'bde':>10}")
    for metric in REPORTED_METRICS:
        print(f"{metric:>10} {baseline[metric]:10.4f} {bde[metric]:10.4f}")
    print(f"BDE augmentations learn at least as well (tolerance {args.tolerance}): {'yes' if ok else 'NO'}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
