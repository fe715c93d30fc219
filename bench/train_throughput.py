"""End-to-end training throughput (data loading included, warm-up excluded) and peak memory.

    python bench/train_throughput.py --device cuda                          # both recipes, defaults below
    python bench/train_throughput.py --device cpu --steps 2 --warmup 1 --recipes md2
    python bench/train_throughput.py --device cuda -- --mixed_precision none --no-channels_last   # ablation
    python bench/train_throughput.py --device cuda --variant defaults= --variant fp32=--mixed_precision=none

Recipes (640 x 192, batch 12, frames 0 -1 1, scratch weights so nothing is downloaded):

- ``md2``: Monodepth2, ResNet-18 + Monodepth2 decoder, 4 scales;
- ``bde``: BDEdepth, ``--backbone hrnet --decoder bdedepth --num_scales 1 --use_local_crop
  --use_patch_reshuffle``.

Each recipe builds the real ``Trainer`` and runs ``train_step`` on batches from its real
``train_loader`` (``--num_workers`` processes); the clock starts after ``--warmup`` steps and
stops after ``--steps`` more, with the device synchronised. Peak memory is CUDA's peak allocated
memory on a GPU and the process's peak RSS on the CPU (a high-water mark: on the CPU, a later
run of the same process shows at least an earlier run's peak). Flags after ``--`` go to train.py
for every run (e.g. ``--mixed_precision none``, ``--compile``, ``--frame_cache PATH``); each
``--variant NAME=FLAGS`` adds a configuration, run for every recipe one after the other in this
process, so several configurations cost one start-up (``bench/gpu_check.sh`` runs five this way).
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
    add_common_options, add_variant_option, chosen_variants, peak_memory_mb, report, synthetic_dataset)
from config_files import parse_args_with_config  # noqa: E402

RECIPES = {
    "md2": ["--backbone", "resnet", "--decoder", "monodepth2", "--num_scales", "4"],
    "bde": ["--backbone", "hrnet", "--decoder", "bdedepth", "--num_scales", "1", "--use_local_crop",
            "--use_patch_reshuffle"],
}
RECIPE_NAMES = {"md2": "Monodepth2 (ResNet-18, 4 scales)", "bde": "BDEdepth (HRNet-18, 1 scale, both augs)"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--recipes", nargs="+", default=["md2", "bde"], choices=sorted(RECIPES))
    add_variant_option(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch_size", type=int, default=12)
    parser.add_argument("--num_workers", type=int, default=None, help="default: min(8, CPU cores)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before the clock starts")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("extra", nargs="*", help="train.py flags for every recipe, after --")
    return parser


def batches(trainer):
    """Batches from the trainer's own loader, epoch after epoch, forever."""
    for epoch in itertools.count():
        yield from trainer.train_loader(epoch)


def run_recipe(name: str, variant: str, flags: list[str], args, root: Path, run_dir: Path) -> dict:
    import os

    import torch

    from options import parse_train_options
    from trainer import Trainer

    workers = args.num_workers if args.num_workers is not None else min(8, os.cpu_count() or 1)
    argv = ["--data_path", str(root), "--split", str(root / "splits" / "synthetic"), "--height", str(args.height),
            "--width", str(args.width), "--batch_size", str(args.batch_size), "--frame_ids", "0", "-1", "1",
            "--weights_init", "scratch", "--no_eval", "--device", args.device, "--num_workers", str(workers),
            "--log_dir", str(run_dir), "--exp_name", f"{name}_{variant}", "--overwrite", "--no-progress_bar",
            "--log_frequency", "1000000", "--save_frequency", "1000000", *RECIPES[name], *args.extra, *flags]
    trainer = Trainer(parse_train_options(argv))
    device = trainer.device
    try:
        trainer.set_train()
        stream = batches(trainer)
        for _ in range(args.warmup):
            trainer.train_step(next(stream))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(next(stream))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
    finally:
        trainer.close()
    return {"variant": variant, "recipe": RECIPE_NAMES[name], "device": str(device),
            "speed": trainer.speed.describe(),
            "samples/s": args.steps * args.batch_size / elapsed, "s/step": elapsed / args.steps,
            "peak memory (MB)": peak_memory_mb(device), "workers": workers}


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args_with_config(build_parser(), argv)
    root = synthetic_dataset(args)
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:
        for variant, flags in chosen_variants(args):
            for name in args.recipes:
                rows.append(run_recipe(name, variant, flags, args, root, Path(run_dir)))
                print(f"{variant} {name}: {rows[-1]}", flush=True)  # a slow CPU run still shows each run
    return report(f"Training throughput, {args.width}x{args.height}, batch {args.batch_size}, "
                  f"{args.warmup} warm-up + {args.steps} timed steps",
                  rows, ["variant", "recipe", "device", "speed", "samples/s", "s/step", "peak memory (MB)", "workers"],
                  args)


if __name__ == "__main__":
    main()
