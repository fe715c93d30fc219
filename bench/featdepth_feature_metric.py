"""Does FeatDepth's feature-metric loss change what a small depth run learns? The same run with and without it.

    python bench/featdepth_feature_metric.py --device cpu                        # all three steps
    python bench/featdepth_feature_metric.py --device cpu --steps autoencoder    # one step at a time (each
    python bench/featdepth_feature_metric.py --device cpu --steps baseline       # reuses what the others wrote
    python bench/featdepth_feature_metric.py --device cpu --steps feature_metric # in --work_dir)

On the synthetic drives of the end-to-end tests (3 drives of 60 frames, 414 x 125; drive 3 held out):

1. ``autoencoder``: FeatDepth's stage 1 (``--method autoencoder``) on the training drives;
2. ``baseline``: tests/e2e/test_learning.py's Monodepth2 run (ResNet-18 from scratch, 64 x 96, batch 8,
   Adam 3e-4, 4 epochs, seed 1234);
3. ``feature_metric``: the same run plus ``--feature_metric_weight W --feature_net_path <stage 1>`` (frozen).

Both depth runs see the same initial weights, batches and augmentations (same seed) and the same number
of steps; each is scored on the held-out drive after every epoch (Eigen protocol, median scaling). The
table gives the last epoch's abs_rel, rmse_log and a1 and their mean over the last two epochs (single
epochs swing this early in training). Flags after ``--`` go to every depth run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, machine  # noqa: E402
from config_files import parse_args_with_config  # noqa: E402

STEPS = ("autoencoder", "baseline", "feature_metric")
METRICS = ("abs_rel", "rmse_log", "a1")
DEPTH_SIZE = (64, 96)
AUTOENCODER_SIZE = (96, 128)  # its regularisers need 96 x 96 at least


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="bench_out/featdepth", help="data, runs and results")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--feature_metric_weight", type=float, default=1e-3, help="FeatDepth's 1e-3")
    parser.add_argument("--autoencoder_epochs", type=int, default=2)
    parser.add_argument("--autoencoder_learning_rate", type=float, default=1e-3)
    parser.add_argument("--num_epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("extra", nargs="*", help="train.py flags for both depth runs, after --")
    return parser


def dataset(work_dir: Path) -> Path:
    """The end-to-end tests' synthetic drives (tests/e2e/conftest.py), generated once."""
    root = work_dir / "synthetic"
    done = root / ".bench_complete"
    if not done.is_file():
        import export_gt_depth
        from make_synthetic_kitti import generate_dataset

        generate_dataset(root, num_drives=3, frames_per_drive=60, width=414, height=125, seed=7, overwrite=True)
        export_gt_depth.main(["--data_path", str(root), "--split", str(root / "splits" / "synthetic_test")])
        done.write_text("ok\n")
    return root


def common(root: Path, work_dir: Path, name: str, size: tuple[int, int], args) -> list[str]:
    return ["--data_path", str(root), "--split", str(root / "splits" / "synthetic"), "--log_dir",
            str(work_dir / "runs"), "--exp_name", name, "--weights_init", "scratch", "--height", str(size[0]),
            "--width", str(size[1]), "--num_workers", "2", "--device", args.device, "--seed", str(args.seed),
            "--no-progress_bar", "--log_frequency", "50", "--optimizer", "adam", "--overwrite"]


def autoencoder_weights(work_dir: Path, args) -> Path:
    return work_dir / "runs" / "autoencoder" / "models" / f"model{args.autoencoder_epochs - 1}.pth"


def run_step(step: str, root: Path, work_dir: Path, args) -> None:
    import train

    if step == "autoencoder":
        train.main(common(root, work_dir, step, AUTOENCODER_SIZE, args) + [
            "--method", "autoencoder", "--frame_ids", "0", "--no-eval", "--batch_size", "4", "--num_epochs",
            str(args.autoencoder_epochs), "--learning_rate", str(args.autoencoder_learning_rate), "--warmup_steps",
            "10", "--clip_grad", "35"])
        return
    extra = []
    if step == "feature_metric":
        extra = ["--feature_metric_weight", str(args.feature_metric_weight), "--feature_net_path",
                 str(autoencoder_weights(work_dir, args))]
    train.main(common(root, work_dir, step, DEPTH_SIZE, args) + [
        "--eval_split", str(root / "splits" / "synthetic_test"), "--batch_size", "8", "--num_epochs",
        str(args.num_epochs), "--learning_rate", "3e-4", "--decay_step", str(args.num_epochs), *extra, *args.extra])


def scores(work_dir: Path, step: str, args) -> dict | None:
    """The run's last-epoch metrics and their mean over the last two epochs, from its checkpoints."""
    from checkpoints import load_checkpoint

    models = work_dir / "runs" / step / "models"
    paths = [models / f"model{e}.pth" for e in range(args.num_epochs)]
    if not all(p.is_file() for p in paths):
        return None
    per_epoch = [load_checkpoint(p)["metrics"] for p in paths]
    row = {"run": step}
    for name in METRICS:
        row[f"{name} last"] = per_epoch[-1][name]
        row[f"{name} mean last 2"] = statistics.mean(m[name] for m in per_epoch[-2:])
    return row


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args_with_config(build_parser(), argv)
    work_dir = Path(args.work_dir)
    root = dataset(work_dir)
    for step in STEPS:
        if step in args.steps:
            run_step(step, root, work_dir, args)
    rows = [row for step in STEPS[1:] if (row := scores(work_dir, step, args)) is not None]
    columns = ["run"] + [f"{m} {kind}" for kind in ("last", "mean last 2") for m in METRICS]
    print(f"\nfeature-metric weight {args.feature_metric_weight}, {args.num_epochs} epochs at "
          f"{DEPTH_SIZE[1]}x{DEPTH_SIZE[0]}; machine: {machine()}\n")
    print(format_table(rows, columns))
    return rows


if __name__ == "__main__":
    main()
