"""Overfit a few fixed samples: the capacity check to run before a full training.

    python overfit.py --data_path KITTI --split eigen_zhou --samples 2 --max_steps 500 \\
        --output_dir overfit_out --backbone resnet --num_layers 50 --learning_rate 1e-4

Every train.py flag applies (networks, losses, optimiser); the first ``--samples`` lines of the
split's train_files.txt form one batch, without flips or colour jitter, which the model sees at
every step. Every ``--log_every`` steps the photometric loss is logged and each sample's
predicted inverse depth is written as ``step{N}_sample{i}.jpeg``; training stops at
``--max_steps`` or once the loss has flattened (the mean of the last ``--log_every`` steps
improved on the previous window's by less than ``--flat_tolerance``, relative). ``losses.json``
holds the curve. A network and loss that cannot drive this loss well below its start on two
samples will not learn a dataset either (SQLdepth's authors ran this check before full runs).
Automasking caps the loss at the unwarped frames' error, so pass ``--no-automask`` to see the
capacity itself; on the synthetic data a ResNet-18 from scratch (Adam 1e-4, 64x96, two samples)
reaches 27% of its first step's loss after 100 steps and 17% after 300.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from options import build_train_parser

    parser = build_train_parser()
    parser.description = "Overfit a few fixed training samples (a capacity check)."
    group = parser.add_argument_group("overfitting")
    group.add_argument("--samples", type=int, default=2, help="how many fixed samples (the batch)")
    group.add_argument("--max_steps", type=int, default=1000, help="steps at the most")
    group.add_argument("--log_every", type=int, default=50, help="steps between log lines and depth images")
    group.add_argument("--flat_tolerance", type=float, default=0.01,
                       help="stop when a window's mean loss improves on the previous one by less than this "
                            "fraction (0: run all --max_steps)")
    group.add_argument("--output_dir", default="overfit_out", help="depth images and losses.json go here")
    return parser


def fixed_batch(opts: argparse.Namespace, frame_ids: list) -> dict:
    """The first ``--samples`` lines of the split, unaugmented, collated into one batch."""
    from torch.utils.data import default_collate

    from datasets import DATASETS, dataset_options
    from split_lists import resolve_split_dir
    from trainer import bde_dataset_options
    from utils import readlines

    train_file = resolve_split_dir(opts.split) / "train_files.txt"
    if not train_file.is_file():
        raise FileNotFoundError(f"--split {opts.split}: {train_file} not found")
    lines = [line for line in readlines(train_file) if line.strip()][:opts.samples]
    if len(lines) < opts.samples:
        raise ValueError(f"--samples {opts.samples}: {train_file} has only {len(lines)} lines")
    dataset = DATASETS[opts.dataset](opts.data_path, lines, opts.height, opts.width, frame_ids, opts.num_scales,
                                     is_train=True, img_ext=opts.img_ext, color_jitter=False, flip=False,
                                     split_name=str(train_file), **bde_dataset_options(opts),
                                     **dataset_options(opts))
    return default_collate([dataset[(index, 0)] for index in range(len(dataset))])


def write_inverse_depths(model, outputs: dict, folder: Path, step: int) -> list[Path]:
    """Each sample's inverse depth at scale 0, colour-mapped, as ``step{step:06d}_sample{i}.jpeg``."""
    import cv2

    from model import output_to_depth
    from utils import atomic_output, colorize_disparity

    inverse, _ = output_to_depth(outputs[(model.output_kind, 0)].detach().float(), model.output_kind,
                                 model.spec.min_depth, model.spec.max_depth)
    written = []
    for index, map_ in enumerate(inverse[:, 0].cpu().numpy()):
        path = folder / f"step{step:06d}_sample{index}.jpeg"
        with atomic_output(path, suffix=".jpeg") as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(colorize_disparity(map_), cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {path}")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> dict:
    """Overfit; return ``{"photometric": [per step], "steps": n, "flattened": bool, ...}``."""
    from model import SelfSupervisedDepth, raise_if_not_finite
    from options import parse_train_options, training_frame_ids
    from trainer import make_optimizer, optimizer_step
    from utils import check_output_folders, configure_logging, seed_everything, select_device, write_json

    configure_logging()
    parser = build_parser()
    opts = parse_train_options(argv, parser)
    for name in ("samples", "max_steps", "log_every"):
        if getattr(opts, name) < 1:
            parser.error(f"--{name} must be at least 1 (got {getattr(opts, name)})")
    if opts.method != "depth":
        parser.error(f"overfit.py tracks depth training's photometric loss: drop --method {opts.method}")
    if not 0.0 <= opts.flat_tolerance < 1.0:
        parser.error(f"--flat_tolerance must lie in [0, 1) (got {opts.flat_tolerance})")
    output_dir = Path(opts.output_dir)
    check_output_folders([output_dir], flag="--output_dir")
    if opts.seed > 0:
        seed_everything(opts.seed)
    device = select_device(opts.device)
    model = SelfSupervisedDepth.from_options(opts).to(device).train()
    optimizer = make_optimizer(opts, model)
    batch = fixed_batch(opts, training_frame_ids(opts))
    if "photometric" not in dict((name, term) for name, term, _ in model.loss_terms):
        raise ValueError("overfit.py tracks the photometric loss: its term must be enabled")

    curve: list[float] = []
    flattened = False
    for step in range(1, opts.max_steps + 1):
        inputs = model.prepare_inputs(batch, device)
        outputs = model(inputs)
        losses = model.losses(inputs, outputs)
        raise_if_not_finite(step, *SelfSupervisedDepth.finite_flags(outputs, losses), "lower --learning_rate")
        optimizer_step(losses["loss"], optimizer, model.trainable_parameters(), opts.clip_grad)
        curve.append(float(losses["loss/photometric"].detach()))
        if step % opts.log_every == 0:
            write_inverse_depths(model, outputs, output_dir, step)
            window = float(np.mean(curve[-opts.log_every:]))
            logger.info("step %d | photometric %.4f (window mean %.4f, %.1f%% of the first step's)", step,
                        curve[-1], window, 100.0 * window / curve[0])
            if step >= 2 * opts.log_every and opts.flat_tolerance > 0:
                previous = float(np.mean(curve[-2 * opts.log_every:-opts.log_every]))
                if previous - window < opts.flat_tolerance * previous:
                    flattened = True
                    break
    report = {"photometric": curve, "steps": len(curve), "flattened": flattened,
              "first": curve[0], "last_window_mean": float(np.mean(curve[-opts.log_every:])),
              "samples": opts.samples, "backbone": opts.backbone, "decoder": opts.decoder}
    write_json(output_dir / "losses.json", report)
    logger.info("photometric loss %.4f -> %.4f (%.1f%%) in %d steps%s; depth images and losses.json in %s",
                report["first"], report["last_window_mean"], 100.0 * report["last_window_mean"] / report["first"],
                report["steps"], ", flattened" if flattened else "", output_dir)
    return report


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
