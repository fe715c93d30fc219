"""Online refinement: keep training a checkpoint, self-supervised, on a test split's own frames.

    python refine.py --pretrained_path runs/mono/models/model19.pth --data_path KITTI --eval_split eigen \\
        --log_dir runs --model_name mono_refined_eigen

FeatDepth popularised it (methods spec 2.7): resume the trained model and continue its usual losses
on the test list's frames, each with its temporal neighbours (and stereo partner when the model
was trained with stereo), then evaluate on the very same frames. Here that is the Trainer engine
with one change of data: the training lines are --eval_split's test_files.txt instead of
--split's train_files.txt; every epoch evaluates on that split as training does, and the
source checkpoint is scored first with the same protocol (`evaluation.evaluate_model`, as
evaluate_depth.py scores it), so the report holds the metrics before and after.

Where the options come from, later ones winning:

1. FeatDepth's refinement recipe (`FEATDEPTH_REFINE`): 20 epochs (its epochs 40 to 60), Adam
   without weight decay at 1e-4, halved after 10 epochs, batch 2, gradient clipping at 35, seed
   1024. Its linear warm-up is not re-triggered by a resume, so there is none here either.
2. The source run's loss options (its ``opt.json`` beside ``models/`` or ``checkpoints/``, when
   there is one): the same losses keep training, as FeatDepth's refinement keeps mono_fm's.
3. The checkpoint's architecture and frames (`checkpoints.ModelSpec`: networks, size, depth range,
   frame ids, stereo), so the weights fit; any weights `model.load_model` reads can be refined, as
   long as they include the pose network.
4. The command line: every train.py flag applies (``--num_steps`` stops after that many steps
   instead of ``--num_epochs``).

Refused before anything is written: a test list whose neighbours are missing (the error names the
file; FeatDepth silently reused the centre frame), a run folder that is, contains or lies inside the
source checkpoint's run folder (the refinement never writes there), weights without a pose network.
The run folder ``<log_dir>/<model_name>`` is the Trainer's (checkpoints, logs, opt.json), plus
``refinement.json`` with both evaluations.

Differences from FeatDepth: the Adam moments start afresh (FeatDepth resumes its optimiser state;
our weight snapshots and other methods' files hold none), and the epoch count restarts at 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from run_folder import OPTIONS_FILE, RESUME_DIR, WEIGHTS_DIR

logger = logging.getLogger(__name__)

# FeatDepth's cfg_kitti_fm_refine (methods spec 2.5, 2.7): resumed at epoch 40, trained to 60 with
# the learning rate halved at 50; 2 images per GPU, Adam lr 1e-4, no weight decay, clip 35, seed 1024.
FEATDEPTH_REFINE = dict(num_epochs=20, decay_step=[10], decay_rate=0.5, lr_sche_type="step", learning_rate=1e-4,
                        optimizer="adam", weight_decay=0.0, batch_size=2, clip_grad=35.0, seed=1024,
                        # refinement trains on the test frames themselves: --split's validation list
                        # has nothing to say about them
                        val_batches=0)

# The datasets whose test lists refinement can train on: frames with neighbours and an evaluation.
REFINE_DATASETS = ("kitti",)

REPORT_FILE = "refinement.json"


def build_parser() -> argparse.ArgumentParser:
    from options import build_train_parser

    parser = build_train_parser()
    parser.description = ("Online refinement: continue self-supervised training of a checkpoint on the frames of "
                          "--eval_split (with their neighbours), then evaluate on them; before and after.")
    parser.set_defaults(**FEATDEPTH_REFINE)
    group = parser.add_argument_group("refinement")
    group.add_argument("--num_steps", type=int, default=None,
                       help="stop after this many optimiser steps (default: --num_epochs epochs over the test list)")
    return parser


def source_run_folder(checkpoint: str | Path) -> Path:
    """The run folder a checkpoint belongs to: ``<run>`` for ``<run>/models/x.pth`` or
    ``<run>/checkpoints/x.pth``, else the file's folder (or the released model folder itself)."""
    path = Path(checkpoint).expanduser().resolve()
    folder = path if path.is_dir() else path.parent
    return folder.parent if folder.name in (WEIGHTS_DIR, RESUME_DIR) else folder


def check_outside_source_run(run_dir: str | Path, source_run: Path) -> None:
    """Refuse a refinement run folder that is the source run's folder, inside it, or holds it."""
    run_dir = Path(run_dir).expanduser().resolve()
    if run_dir == source_run or source_run in run_dir.parents or run_dir in source_run.parents:
        raise ValueError(f"the refinement run folder {run_dir} overlaps the source checkpoint's run folder "
                         f"{source_run}: refinement never writes into the run it starts from; choose another "
                         "--log_dir or --model_name")


def source_loss_options(parser: argparse.ArgumentParser, source_run: Path) -> dict:
    """The loss options of the source run's opt.json (empty when it has none): the flags of the
    parser's "loss" group, so that the refinement continues the losses the model was trained with."""
    path = source_run / OPTIONS_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(saved, dict):
        return {}
    loss_group = next((g for g in parser._action_groups if g.title == "loss"), None)
    names = {action.dest for action in loss_group._group_actions} if loss_group else set()
    options = {name: saved[name] for name in sorted(names) if name in saved}
    if options:
        logger.info("Loss options of the source run (%s): %s", path,
                    ", ".join(f"{name}={value}" for name, value in options.items()))
    return options


def architecture_options(spec) -> dict:
    """train.py option values that rebuild the checkpoint's networks and frames (`ModelSpec`)."""
    import dataclasses

    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
              if f.name not in ("scales", "velocity_supervised", "dataset")}
    # The checkpoint supplies every weight: no ImageNet download.
    return {**values, "num_scales": len(spec.scales), "weights_init": "scratch"}


def check_neighbours(opts: argparse.Namespace, test_file: Path) -> None:
    """Build the refinement's dataset once (it checks every frame it will load) and turn a missing
    frame into an error that names the file and the fix."""
    from datasets import DATASETS, dataset_options
    from options import training_frame_ids
    from utils import readlines

    try:
        DATASETS[opts.dataset](opts.data_path, readlines(test_file), opts.height, opts.width,
                               training_frame_ids(opts), opts.num_scales, is_train=False, img_ext=opts.img_ext,
                               split_name=str(test_file), **dataset_options(opts))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"online refinement trains on every test frame with its neighbours (frames "
            f"{training_frame_ids(opts)}), and one is missing: {err}. Fix: unpack the complete drives of the test "
            "split under --data_path (the raw *_sync archives, not only the test frames), or refine with "
            "--frame_ids (and --use_stereo) limited to the frames that exist") from None


def refinement_trainer_class():
    """`trainer.Trainer` training on --eval_split's test list (imported late: torch)."""
    from split_lists import resolve_split_dir
    from trainer import Trainer
    from utils import readlines

    class RefinementTrainer(Trainer):
        def training_lines(self) -> tuple[list[str], str]:
            test_file = resolve_split_dir(self.opts.eval_split) / "test_files.txt"
            return readlines(test_file), str(test_file)

    return RefinementTrainer


def main(argv: Sequence[str] | None = None) -> dict:
    """Refine; return the report also written to ``<run>/refinement.json``."""
    from config_files import parse_args_with_config
    from utils import configure_logging

    configure_logging()
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    # The checkpoint first (from the command line or --config, which this pass reads and checks): its
    # architecture and its run's losses become the defaults of the full parse.
    source = parse_args_with_config(build_parser(), args).pretrained_path
    if not source:
        parser.error("--pretrained_path is required: the checkpoint to refine")
    if not Path(source).exists():
        parser.error(f"--pretrained_path {source} does not exist")

    from checkpoints import spec_from_checkpoint
    from released_weights import to_checkpoint_payload

    try:
        payload = to_checkpoint_payload(source)
        spec = spec_from_checkpoint(payload, source)
    except (OSError, ValueError) as err:
        parser.error(f"--pretrained_path {source}: {err}")
    source_run = source_run_folder(source)
    parser.set_defaults(**source_loss_options(parser, source_run), **architecture_options(spec))

    from options import parse_train_options

    opts = parse_train_options(args, parser)
    test_file = check_refinement_options(parser, opts, payload, source_run)
    try:
        check_neighbours(opts, test_file)
    except FileNotFoundError as err:
        parser.error(str(err))

    from evaluation import Scaling, evaluate_model, format_metrics_table
    from model import load_model
    from utils import write_json

    trainer = refinement_trainer_class()(opts)
    report = {"source": str(source), "run_dir": str(trainer.run_dir), "eval_split": opts.eval_split,
              "data_path": str(opts.data_path)}
    if trainer.dist.is_main:
        # The source as evaluate_depth.py scores it: its own inference model, the same protocol and scaling.
        eval_set = trainer.eval_sets[0]
        scaling = Scaling.for_model(trainer.model_spec)
        _, before = evaluate_model(load_model(source, trainer.device), eval_set, trainer.device, scaling)
        logger.info("Before refinement, %s (%d images):\n%s", eval_set.title, before.num_images,
                    format_metrics_table(before.metrics))
        report.update(num_images=before.num_images, before=before.metrics)
    after = trainer.train()
    if trainer.dist.is_main:
        report.update(steps=trainer.step, after=after)
        logger.info("After %d refinement steps:\n%s", trainer.step, format_metrics_table(after))
        logger.info("abs_rel %.4f -> %.4f", report["before"]["abs_rel"], after["abs_rel"])
        write_json(trainer.run_dir / REPORT_FILE, report)
        logger.info("Report written to %s", trainer.run_dir / REPORT_FILE)
    return report


def check_refinement_options(parser: argparse.ArgumentParser, opts: argparse.Namespace, payload: dict,
                             source_run: Path) -> Path:
    """Refinement's own rules (after train.py's); returns the test list. Errors exit with the flag to fix."""
    from options import uses_pose_network
    from split_lists import resolve_split_dir

    if opts.dataset not in REFINE_DATASETS:
        parser.error(f"--dataset {opts.dataset}: refinement trains and evaluates on a test split with neighbouring "
                     f"frames and ground truth, which only {', '.join(REFINE_DATASETS)} provides here")
    if not opts.eval:
        parser.error("--no_eval: refinement reports the metrics after training on the test frames; drop it")
    if opts.num_steps is not None and opts.num_steps < 1:
        parser.error(f"--num_steps must be at least 1 (got {opts.num_steps})")
    if uses_pose_network(opts) and "pose" not in payload:
        parser.error(f"--pretrained_path {opts.pretrained_path} holds no pose network, and refinement trains depth "
                     "and pose together: use a checkpoint written by train.py (models/model<N>.pth) or a released "
                     "folder with pose_encoder.pth and pose.pth")
    try:
        check_outside_source_run(Path(opts.log_dir) / opts.exp_name, source_run)
    except ValueError as err:
        parser.error(str(err))
    test_file = resolve_split_dir(opts.eval_split) / "test_files.txt"
    if not test_file.is_file():
        parser.error(f"--eval_split {opts.eval_split}: {test_file} not found; refinement trains on its lines")
    return test_file


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
