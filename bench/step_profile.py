"""Where a training step's time goes, phase by phase, against the floor set by the networks alone.

    python bench/step_profile.py                        # both recipes on this machine's defaults below
    python bench/step_profile.py --short                # < 3 minutes on 2 CPU cores
    python bench/step_profile.py --recipes md2 --variant fp32= --variant fast=--fast

Recipes (as `bench/train_throughput.py`'s, at this script's CPU size: 320 x 96, batch 4, frames
0 -1 1, scratch weights): ``md2`` Monodepth2 (ResNet-18, four scales), ``bde`` BDEdepth (HRNet-18,
one scale, local crop and patch reshuffle).

Every (recipe, variant) builds the real ``Trainer`` and runs its real step (`Trainer.run_steps`,
its own loader with ``--num_workers`` processes) with an enabled `speed.PhaseTimer`: waiting for
data, batch preparation (`prepare_inputs`), the depth network, the pose network, view synthesis,
the rest of the forward pass, losses, the non-finite check, backward and the optimiser step
(with the scheduler). The depth and pose networks and view synthesis are timed by wrapping
``model.run_depth``, ``model.run_pose`` and ``model.synthesize_views``. Logging and checkpoints
are measured once each after the timed steps and shown amortised over ``--log_frequency`` and
``--save_frequency`` steps (train.py's defaults), as a run pays them.

The floor: right after each timed step, the same networks' forward and backward passes alone on
the same batch (depth network on every view the recipe uses, pose network on its pairs; the
loss is the sum of their outputs' means), with the same speed settings.

Variants (``--variant NAME=FLAGS``, flags for train.py split as a shell splits them) and recipes are
alternated step by step (A B A B ...) in one process, so every ratio comes from one run under
the same machine load. Times are wall-clock means per step in milliseconds; on a GPU the timer
synchronises at phase boundaries, on the CPU it does not need to.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    add_common_options, add_variant_option, chosen_variants, format_table, machine, synthetic_dataset)
from config_files import parse_args_with_config  # noqa: E402
from train_throughput import RECIPE_NAMES, RECIPES  # noqa: E402

PHASES = ("waiting for data", "batch preparation", "depth network", "pose network", "view synthesis",
          "forward (rest)", "losses", "non-finite check", "backward", "optimiser step",
          "logging and checkpoints")
LOG_FREQUENCY, SAVE_FREQUENCY = 250, 500  # train.py's defaults: what logging and checkpoints amortise over


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--recipes", nargs="+", default=["md2", "bde"], choices=sorted(RECIPES))
    add_variant_option(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="steps of each run before the clock starts")
    parser.add_argument("--steps", type=int, default=12, help="timed steps of each run")
    parser.add_argument("--short", action="store_true", help="2 warm-up and 6 timed steps (a quick look)")
    parser.add_argument("extra", nargs="*", help="train.py flags for every run, after --")
    return parser


class Run:
    """One (recipe, variant): its Trainer, an endless stream of its loader's batches, its timers."""

    def __init__(self, recipe: str, variant: str, flags: list[str], args, root: Path, run_dir: Path) -> None:
        import torch

        from options import parse_train_options
        from speed import PhaseTimer
        from trainer import Trainer

        self.recipe, self.variant = recipe, variant
        argv = ["--data_path", str(root), "--split", str(root / "splits" / "synthetic"), "--height",
                str(args.height), "--width", str(args.width), "--batch_size", str(args.batch_size),
                "--frame_ids", "0", "-1", "1", "--weights_init", "scratch", "--no_eval", "--device", args.device,
                "--num_workers", str(args.num_workers), "--log_dir", str(run_dir),
                "--exp_name", f"{recipe}_{variant}", "--overwrite", "--no-progress_bar",
                "--log_frequency", "1000000000", "--save_frequency", "1000000000", *RECIPES[recipe],
                *args.extra, *flags]
        self.trainer = trainer = Trainer(parse_train_options(argv))
        self.device = trainer.device
        self.timer = trainer.timer = PhaseTimer(trainer.device)
        model = trainer.model
        self.run_depth, self.run_pose = model.run_depth, model.run_pose  # the floor's networks
        model.run_depth = self.timer.timed("depth network", model.run_depth)
        if model.run_pose is not None:
            model.run_pose = self.timer.timed("pose network", model.run_pose)
        model.synthesize_views = self.timer.timed("view synthesis", model.synthesize_views)
        trainer.set_train()
        self.batches = self._numbered_batches()
        self.steps = 0
        self.step_seconds = 0.0
        self.floor_seconds = 0.0
        self.threads = torch.get_num_threads()

    def _numbered_batches(self):
        """(batch index, batch) from the trainer's own loader, epoch after epoch; the last batch is
        kept for the floor."""
        for epoch in itertools.count():
            for numbered in enumerate(self.trainer.train_loader(epoch)):
                self.last_batch = numbered[1]
                yield numbered

    def step(self, timed: bool) -> None:
        start = time.perf_counter()
        self.trainer.run_steps(0, self.batches, max_steps=1)
        self.timer.synchronize()
        if timed:
            self.steps += 1
            self.step_seconds += time.perf_counter() - start
            self.floor_seconds += self.network_floor(self.last_batch)

    def network_floor(self, batch: dict) -> float:
        """Seconds of the networks' forward and backward alone on ``batch`` (gradients discarded)."""
        from losses import LOCAL_VIEW, RESHUFFLE_VIEW

        model, timer = self.trainer.model, self.timer
        inputs = model.prepare_inputs(batch, self.device)
        images = [inputs[("color_aug", 0, 0)]]
        if LOCAL_VIEW in model.views:
            images.append(inputs[("color_local_aug", 0, 0)])
        if RESHUFFLE_VIEW in model.views:
            images.append(inputs[("color_reshuffle_aug", 0, 0)])
        timer.enabled = False  # model.run_pose is the timed wrapper: predict_poses must not count
        try:
            timer.synchronize()
            start = time.perf_counter()
            outputs = {}
            for i, image in enumerate(images):
                outputs.update({(i, key): value for key, value in self.run_depth(image).items()})
            if model.run_pose is not None:
                outputs.update(model.predict_poses(inputs, outputs))
            total = sum(value.float().mean() for value in outputs.values() if value.is_floating_point())
            model.zero_grad(set_to_none=True)
            total.backward()
            timer.synchronize()
            elapsed = time.perf_counter() - start
        finally:
            timer.enabled = True
        model.zero_grad(set_to_none=True)
        return elapsed

    def amortised_logging_and_checkpoints(self) -> float:
        """Seconds per step of one log entry every LOG_FREQUENCY steps and one resume checkpoint
        every SAVE_FREQUENCY steps (each measured once here)."""
        trainer = self.trainer
        inputs, outputs, losses = trainer.train_step(self.last_batch)
        self.timer.synchronize()
        start = time.perf_counter()
        trainer.flush_finite_checks()
        trainer.log_step(inputs, outputs, losses, 0.0, 0.0)
        self.timer.synchronize()
        logging = time.perf_counter() - start
        start = time.perf_counter()
        trainer.save_resume_checkpoint(0, 1)
        checkpoint = time.perf_counter() - start
        return logging / LOG_FREQUENCY + checkpoint / SAVE_FREQUENCY

    def column(self) -> dict:
        """Milliseconds per step by phase, the step, the floor and their ratio."""
        per_step = {phase: 1000.0 * self.timer.seconds.get(phase, 0.0) / self.steps for phase in PHASES}
        per_step["logging and checkpoints"] += 1000.0 * self.amortised_logging_and_checkpoints()
        step = 1000.0 * self.step_seconds / self.steps
        floor = 1000.0 * self.floor_seconds / self.steps
        above = step - per_step["waiting for data"]
        return {**per_step, "step (wall)": step, "networks' floor (fwd+bwd)": floor,
                "step without data wait / floor": above / floor,
                "samples/s": self.trainer.opts.batch_size * 1000.0 / step}


def main(argv: Sequence[str] | None = None) -> dict:
    import json

    args = parse_args_with_config(build_parser(), argv)
    if args.short:
        args.warmup, args.steps = 2, 6
    variants = chosen_variants(args)
    root = synthetic_dataset(args)
    with tempfile.TemporaryDirectory() as run_dir:
        runs = [Run(recipe, name, flags, args, root, Path(run_dir)) for recipe in args.recipes
                for name, flags in variants]
        try:
            for step in range(args.warmup + args.steps):
                for run in runs:  # A B A B: every run sees the same machine load
                    run.step(timed=step >= args.warmup)
                    if step == args.warmup - 1:
                        run.timer.reset()
                print(f"step {step + 1}/{args.warmup + args.steps} of every run done", flush=True)
            columns = {f"{run.recipe} {run.variant}": run.column() for run in runs}
            speeds = {f"{run.recipe} {run.variant}": run.trainer.speed.describe() for run in runs}
        finally:
            for run in runs:
                run.trainer.close()
    names = list(columns)
    def shown(label: str, value: float) -> str:
        return f"{value:.2f}" if label.startswith(("step without", "samples")) else f"{value:.1f}"

    rows = [{"phase (ms per step)": label, **{name: shown(label, columns[name][label]) for name in names}}
            for label in next(iter(columns.values()))]
    title = (f"Training step by phase, {args.width}x{args.height}, batch {args.batch_size}, "
             f"{args.num_workers} loader workers, {args.warmup} warm-up + {args.steps} timed steps, alternated")
    print(f"\n{title}\nmachine: {machine()}\n")
    for name in names:
        print(f"- {name}: {RECIPE_NAMES[name.split()[0]]}; {speeds[name]}")
    print()
    print(format_table(rows, ["phase (ms per step)", *names]))
    result = {"title": title, "machine": machine(), "command": " ".join(sys.argv), "columns": columns,
              "speed": speeds}
    if args.json:
        from utils import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
