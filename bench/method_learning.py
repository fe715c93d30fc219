"""Does a method learn depth from scratch on the synthetic drives, and in which scale?

Trains each requested method with the learning test's recipe (tests/e2e/test_learning.py: 64 x 96,
Adam 3e-4, batch 8, from scratch, the same three synthetic drives of 60 frames) and scores the held-out
drive after each of the last two epochs, twice: median-scaled (the Eigen protocol) and unscaled (the
network's depth taken as metres, which the synthetic drives are in). Beside them, the untrained
network and a constant depth, scored the same way. The numbers are means over the last two epochs
(single epochs of a from-scratch network swing).

It is the measurement behind the PackNet claims of the README (the learning test cannot afford
PackNet's 77-128 million parameters on every CI run):

    python bench/method_learning.py --methods packnet packnet_velocity monodepth2 monodepth2_velocity

A velocity-supervised run (`--velocity_weight 0.1`) is metric when its unscaled abs_rel is within
2x of its median-scaled one; a plain monocular run's unscaled depth is off by an arbitrary factor.
The run that shows it is two-stage (the README's PackNet section says why):

    python bench/method_learning.py --methods monodepth2_static_velocity --epochs 6 --finetune_epochs 24

trains `monodepth2_static` (no auto-masking: the synthetic street is static) for 6 epochs, then
fine-tunes its last model with the velocity term for 24 more.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402  (importing common puts the repository on sys.path)

HEIGHT, WIDTH = 64, 96
SYNTH_WIDTH, SYNTH_HEIGHT = 414, 125  # tests/e2e/conftest.py's drives

PACKNET = ["--backbone", "packnet_slim", "--decoder", "packnet", "--pose_model_type", "packnet",
           "--pose_model_input", "all", "--loss_preset", "packnet", "--color_jitter_probability", "1.0",
           "--color_jitter_hue", "0.05", "--flip_mode", "depth_net"]
METHODS = {
    "monodepth2": [],
    "monodepth2_velocity": ["--velocity_weight", "0.1"],
    # The pose decoders scale their output by 0.01, so metric travel (0.5-1.5 m per frame here) needs raw
    # outputs near 100: at Adam's 3e-4 a short run does not get there; ten times the pose rate does.
    "monodepth2_velocity_fast_pose": ["--velocity_weight", "0.1", "--pose_lr_factor", "10"],
    # The synthetic street has no moving objects, so auto-masking only hides motion: with it, a
    # from-scratch pose net at this size did not learn the forward motion in 42 epochs (its own warp
    # ended worse than the unwarped frame), and the velocity term could then fix only the
    # translations' length.
    "monodepth2_static": ["--disable_automasking"],
    "monodepth2_static_velocity": ["--disable_automasking", "--velocity_weight", "0.1"],
    "packnet": PACKNET,
    "packnet_velocity": PACKNET + ["--velocity_weight", "0.1"],
    "packnet_velocity_fast_pose": PACKNET + ["--velocity_weight", "0.1", "--pose_lr_factor", "10"],
    "sqldepth": ["--backbone", "resnet", "--num_layers", "50", "--decoder", "sql", "--num_scales", "1",
                 "--sql_patch_size", "4", "--sql_num_queries", "32", "--sql_num_bins", "32",
                 "--min_depth", "0.1", "--max_depth", "10", "--pose_model_type", "posecnn"],
}
# Fine-tuned from the last model of another method (run first), for --finetune_epochs epochs: from
# scratch the depth starts at ~0.2 m, 50x too near, and at weight 0.1 the velocity term cannot move
# that scale within a CPU-sized run; once the geometry is learned it pulls depth and poses to metres.
FINE_TUNED_FROM = {"monodepth2_static_velocity": "monodepth2_static"}
SCORES = ("abs_rel", "rmse_log", "a1")


def synthetic_drives(work_dir: Path) -> Path:
    """The learning test's dataset (three drives of 60 frames, seed 7), generated once."""
    import export_gt_depth
    from make_synthetic_kitti import generate_dataset

    root = work_dir / "synthetic_learning"
    if not (root / "splits" / "synthetic_test" / "gt_depths.npz").is_file():
        generate_dataset(root, num_drives=3, frames_per_drive=60, width=SYNTH_WIDTH, height=SYNTH_HEIGHT, seed=7)
        export_gt_depth.main(["--data_path", str(root), "--split", str(root / "splits" / "synthetic_test")])
    return root


def score(model, loader, gt_depths) -> dict[str, dict[str, float]]:
    """Median-scaled and unscaled metrics of one model on the held-out drive."""
    from evaluation import evaluate_predictions, predict_inverse_depths

    preds = predict_inverse_depths(model, loader, torch.device("cpu"))
    domain = model.prediction_domain
    scaled = evaluate_predictions(preds, gt_depths, domain=domain)
    # The median ratio ground truth / prediction: 1 for a metric network.
    return {"median": {**scaled.metrics, "ratio": scaled.ratio_statistics()[0]},
            "unscaled": evaluate_predictions(preds, gt_depths, median_scaling=False, domain=domain).metrics}


def run_method(name: str, data: Path, out: Path, epochs: int, seed: int, extra: list[str]) -> dict:
    import train
    from checkpoints import ModelSpec
    from datasets.kitti_dataset import build_kitti_eval_loader, load_kitti_gt
    from evaluation import evaluate_predictions
    from model import SelfSupervisedDepth, load_model
    from options import parse_train_options
    from utils import seed_everything

    eval_split = str(data / "splits" / "synthetic_test")
    args = ["--data_path", str(data), "--split", str(data / "splits" / "synthetic"), "--eval_split", eval_split,
            "--log_dir", str(out), "--exp_name", name, "--overwrite", "--weights_init", "scratch",
            "--height", str(HEIGHT), "--width", str(WIDTH), "--batch_size", "8", "--num_epochs", str(epochs),
            "--optimizer", "adam", "--learning_rate", "3e-4", "--decay_step", str(epochs), "--num_workers", "2",
            "--device", "cpu", "--seed", str(seed), "--no-progress_bar", "--log_frequency", "100",
            *METHODS[name], *extra]
    gt_depths = load_kitti_gt(eval_split)
    loader = build_kitti_eval_loader(data, eval_split, HEIGHT, WIDTH, batch_size=8, num_workers=0)
    seed_everything(seed)  # the Trainer seeds the same way before building its networks
    untrained = SelfSupervisedDepth.for_inference(ModelSpec.from_options(parse_train_options(args))).eval()
    result = {"untrained": score(untrained, loader, gt_depths)}
    constant = np.ones((len(gt_depths), HEIGHT, WIDTH), np.float32)
    result["constant"] = {"median": evaluate_predictions(constant, gt_depths).metrics}
    start = time.perf_counter()
    train.main(args)
    result["train_seconds"] = time.perf_counter() - start
    per_epoch = [score(load_model(str(out / name / "models" / f"model{e}.pth")), loader, gt_depths)
                 for e in range(epochs)]
    result["per_epoch"] = [{mode: {k: m[mode][k] for k in (*SCORES, "ratio") if k in m[mode]} for mode in m}
                           for m in per_epoch]
    result["trained"] = {mode: {k: float(np.mean([m[mode][k] for m in per_epoch[-2:]]))
                                for k in (*SCORES, "ratio") if k in per_epoch[-1][mode]}
                         for mode in ("median", "unscaled")}
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["packnet", "packnet_velocity"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--finetune_epochs", type=int, default=24,
                        help="epochs of the methods fine-tuned from another's last model (FINE_TUNED_FROM)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--work_dir", default="bench_out")
    parser.add_argument("--json", default=None)
    parser.add_argument("extra", nargs="*", help="train.py flags for every run, after --")
    args = parser.parse_args(argv)
    work = Path(args.work_dir)
    data = synthetic_drives(work)
    out = work / "method_learning"
    methods = list(dict.fromkeys(m for name in args.methods for m in (FINE_TUNED_FROM.get(name), name) if m))
    results = {}
    for name in methods:
        extra, epochs = args.extra, args.epochs
        base = FINE_TUNED_FROM.get(name)
        if base is not None:
            extra = extra + ["--pretrained_path", str(out / base / "models" / f"model{args.epochs - 1}.pth")]
            epochs = args.finetune_epochs
        results[name] = run_method(name, data, out, epochs, args.seed, extra)
    rows = []
    for name, result in results.items():
        models = [("untrained", result["untrained"]), ("constant", result["constant"]),
                  *((f"epoch {e}", scores) for e, scores in enumerate(result["per_epoch"])),
                  ("trained (last two)", result["trained"])]
        for who, scores in models:
            for scaling, metrics in scores.items():
                rows.append({"method": name, "model": who, "scaling": scaling, **metrics,
                             "train s": result["train_seconds"] if who.startswith("trained") else None})
    title = f"Learning on the synthetic drives ({HEIGHT}x{WIDTH}, {args.epochs} epochs from scratch, " \
            f"{args.finetune_epochs} fine-tuning, mean of the last two)"
    return report(title, rows, ["method", "model", "scaling", *SCORES, "ratio", "train s"], args, {"results": results})


if __name__ == "__main__":
    main()
