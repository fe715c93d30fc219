"""Shared helpers of the bench scripts: synthetic data, a random-weights checkpoint, tables, JSON.

Every bench script generates its own synthetic KITTI-layout data (``make_synthetic_kitti``) into
``--work_dir`` when no ``--data_path`` is given; a dataset already there with the same flags is
reused, so repeated runs measure, not render.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# KITTI's most common raw size (2011_09_26): the loader's decode and resize cost depend on it.
KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
EIGEN_TEST_IMAGES = 697


def add_common_options(parser, frames_per_drive: int = 16) -> None:
    parser.add_argument("--data_path", default=None,
                        help="an existing synthetic (or KITTI-layout) dataset root; default: generate one")
    parser.add_argument("--work_dir", default="bench_out", help="generated data and outputs")
    parser.add_argument("--frames_per_drive", type=int, default=frames_per_drive,
                        help="frames per generated drive (2 drives: train and test)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--synthetic_size", type=int, nargs=2, default=[KITTI_WIDTH, KITTI_HEIGHT],
                        metavar=("WIDTH", "HEIGHT"),
                        help="size of the generated frames (default KITTI's; small for a quick CI run)")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=FLAGS`` (train.py flags split as a shell would, so a quoted path may hold spaces; FLAGS
    may be empty) -> (NAME, [flags])."""
    name, _, flags = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=FLAGS, e.g. fast=--fast")
    try:
        return name, shlex.split(flags)
    except ValueError as error:  # an unclosed quote
        raise argparse.ArgumentTypeError(f"--variant {text!r}: {error}") from None


def add_variant_option(parser) -> None:
    """--variant NAME=FLAGS, repeatable; `chosen_variants` reads it."""
    parser.add_argument("--variant", dest="variants", action="append", type=parse_variant, default=None,
                        metavar="NAME=FLAGS", help="a train.py configuration to compare (repeatable; "
                                                   "default: one variant, 'default', with no extra flag)")


def chosen_variants(args) -> list[tuple[str, list[str]]]:
    """The ``--variant`` configurations in the order given, or the one without extra flags."""
    return args.variants or [("default", [])]


def synthetic_dataset(args, velodyne: bool = False, gt: bool = False) -> Path:
    """``--data_path``, or a synthetic dataset (``--synthetic_size``, KITTI's by default) generated once
    under ``--work_dir``.

    With ``gt`` the test split's ground truth is exported too (needs the simulated lidar).
    """
    if args.data_path:
        return Path(args.data_path)
    from make_synthetic_kitti import generate_dataset

    velodyne = velodyne or gt
    width, height = getattr(args, "synthetic_size", (KITTI_WIDTH, KITTI_HEIGHT))
    size = "" if (width, height) == (KITTI_WIDTH, KITTI_HEIGHT) else f"_{width}x{height}"
    root = Path(args.work_dir) / f"synthetic_{args.frames_per_drive}f{size}{'_lidar' if velodyne else ''}"
    done = root / ".bench_complete"
    if not done.is_file():
        print(f"generating the synthetic dataset in {root} (once) ...", flush=True)
        generate_dataset(root, num_drives=2, frames_per_drive=args.frames_per_drive, width=width,
                         height=height, seed=11, velodyne=velodyne, overwrite=True,
                         num_workers=min(4, os.cpu_count() or 1), test_stride=1)
        if gt:
            import export_gt_depth

            export_gt_depth.main(["--data_path", str(root), "--split", str(root / "splits" / "synthetic_test")])
        done.write_text("ok\n")
    return root


def random_checkpoint(path: Path, backbone: str = "resnet", decoder: str = "monodepth2", height: int = 192,
                      width: int = 640, num_scales: int = 4) -> Path:
    """A checkpoint of randomly initialised networks (timing does not depend on the weights)."""
    import torch

    from checkpoints import CHECKPOINT_FORMAT, ModelSpec, save_checkpoint
    from networks import build_depth_network

    torch.manual_seed(0)
    net = build_depth_network(backbone=backbone, decoder=decoder, scales=tuple(range(num_scales)))
    spec = ModelSpec(backbone=backbone, decoder=decoder, height=height, width=width,
                     scales=list(range(num_scales)))
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": spec.to_dict(),
                           "encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict()})
    return path


def machine() -> str:
    """A one-line description of this machine: CPU model and cores, GPU, torch version."""
    import torch

    from speed import usable_cpu_cores

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {usable_cpu_cores()} cores usable; {gpu}; torch {torch.__version__}"


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (dicts) with the given column order; floats get 4 significant digits."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, rows: Sequence[dict], columns: Sequence[str], args, extra: dict | None = None) -> dict:
    """Print the table (with the machine) and write the JSON when ``--json`` is given."""
    from utils import atomic_output

    result = {"title": title, "machine": machine(), "command": " ".join(sys.argv), "rows": list(rows),
              **(extra or {})}
    print(f"\n{title}\nmachine: {result['machine']}\n")
    print(format_table(rows, columns))
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=str))
    return result


def peak_memory_mb(device) -> float:
    """Peak memory in MB: allocated CUDA memory on a GPU, the process's peak RSS on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports kB


def main(argv: Sequence[str] | None = None) -> Path:
    """``python bench/common.py [--work_dir ... --synthetic_size W H ...]``: print the data folder the
    bench scripts use for these flags, generating it first if needed (progress goes to stderr, so
    ``ROOT=$(python bench/common.py ...)`` captures the path alone)."""
    import contextlib

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    add_common_options(parser)
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):
        root = synthetic_dataset(args)
    print(root)
    return root


if __name__ == "__main__":  # the generator's worker pool re-imports this module: keep the guard
    main()
