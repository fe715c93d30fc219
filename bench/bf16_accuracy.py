"""Does bf16 autocast worsen accuracy beyond the spread between seeds? Train both ways, evaluate, compare.

    python bench/bf16_accuracy.py --device cuda                                     # the real comparison
    python bench/bf16_accuracy.py --device cpu --num_epochs 1 --height 64 --width 192 --seeds 1 2 \\
        --frames_per_drive 12                                                       # a tiny CPU run

For every seed, the same configuration (same seed: same initial weights and sample order) is
trained with ``--mixed_precision none`` and ``--mixed_precision bf16`` on the synthetic dataset
and evaluated on its held-out drive (Eigen protocol, median scaling). A run's score is the mean
abs_rel of its last ``--average_last`` epochs' checkpoints: short runs swing by 0.1 and more from
one epoch to the next, which would drown any precision effect in a single epoch's score (the
final epoch's abs_rel is reported too). The verdict compares the mean difference (bf16 - fp32)
with the spread of fp32's scores across seeds (max - min): bf16 passes when its mean is within
that spread. Flags after ``--`` go to train.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_options, report, synthetic_dataset  # noqa: E402
from config_files import parse_args_with_config  # noqa: E402

PRECISIONS = ("none", "bf16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, frames_per_drive=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--num_epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--average_last", type=int, default=3,
                        help="score a run by the mean abs_rel of its last N epochs' checkpoints")
    parser.add_argument("extra", nargs="*", help="train.py flags for every run, after --")
    return parser


def train_and_evaluate(root: Path, run_dir: Path, seed: int, precision: str, args) -> list[float]:
    """abs_rel on the synthetic test drive of each of the last ``--average_last`` epochs of one run."""
    import evaluate_depth
    import train

    name = f"seed{seed}_{precision}"
    train.main(["--data_path", str(root), "--split", str(root / "splits" / "synthetic"), "--height",
                str(args.height), "--width", str(args.width), "--batch_size", str(args.batch_size), "--num_epochs",
                str(args.num_epochs), "--seed", str(seed), "--weights_init", "scratch", "--no_eval",
                "--device", args.device, "--num_workers", str(args.num_workers), "--log_dir", str(run_dir),
                "--exp_name", name, "--no-progress_bar", "--mixed_precision", precision, *args.extra])
    scores = []
    for epoch in range(max(0, args.num_epochs - args.average_last), args.num_epochs):
        result = evaluate_depth.main([
            "--pretrained_path", str(run_dir / name / "models" / f"model{epoch}.pth"), "--kitti_path", str(root),
            "--eval_split", str(root / "splits" / "synthetic_test"), "--device", args.device,
            "--num_workers", "0", "--eval_out_dir", str(run_dir / name)])
        scores.append(result["results"][0]["metrics"]["abs_rel"])
    return scores


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args_with_config(build_parser(), argv)
    root = synthetic_dataset(args, gt=True)
    scores = {p: [] for p in PRECISIONS}
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:
        for seed in args.seeds:
            row = {"seed": seed}
            for precision in PRECISIONS:
                per_epoch = train_and_evaluate(root, Path(run_dir), seed, precision, args)
                scores[precision].append(statistics.mean(per_epoch))
                row[f"abs_rel {precision}"] = scores[precision][-1]
                row[f"last epoch {precision}"] = per_epoch[-1]
            row["bf16 - fp32"] = row["abs_rel bf16"] - row["abs_rel none"]
            rows.append(row)
    spread = max(scores["none"]) - min(scores["none"])
    mean_delta = statistics.mean(r["bf16 - fp32"] for r in rows)
    ok = mean_delta <= spread
    rows.append({"seed": "mean", "abs_rel none": statistics.mean(scores["none"]),
                 "abs_rel bf16": statistics.mean(scores["bf16"]), "bf16 - fp32": mean_delta,
                 **{f"last epoch {p}": statistics.mean(r[f"last epoch {p}"] for r in rows) for p in PRECISIONS}})
    verdict = (f"fp32 spread between seeds {spread:.4f}; mean bf16 - fp32 {mean_delta:+.4f}: "
               + ("bf16 within the seed spread" if ok else "bf16 WORSE than the seed spread"))
    result = report(f"bf16 vs fp32 abs_rel on the synthetic test drive ({args.width}x{args.height}, "
                    f"{args.num_epochs} epochs, mean of the last {args.average_last}, device {args.device})",
                    rows, ["seed", "abs_rel none", "abs_rel bf16", "bf16 - fp32", "last epoch none",
                           "last epoch bf16"], args,
                    {"fp32_seed_spread": spread, "mean_bf16_minus_fp32": mean_delta, "bf16_ok": ok})
    print(verdict)
    return result


if __name__ == "__main__":
    main()
