"""``test_simple.py`` latency per image and batched throughput, on the CPU and (when present) the GPU.

    python bench/inference_latency.py                          # every available device
    python bench/inference_latency.py --devices cpu --images 8 --backbones resnet

For each device and backbone (randomly initialised checkpoints; speed does not depend on the
weights), two figures:

- ``latency``: the network on one image (``test_simple.predict``, batch 1, device
  synchronised), median of ``--repeats`` runs after warm-up: what an interactive user waits for
  the model;
- ``test_simple.py``: ``test_simple.main`` end to end on a folder of ``--images`` KITTI-size
  frames at ``--batch_size`` (decode, resize, predict, colour map, JPEG writing; model loading
  excluded by timing a second call), as images per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_options, random_checkpoint, report, synthetic_dataset  # noqa: E402
from config_files import parse_args_with_config  # noqa: E402

MODELS = {"resnet": ("resnet", "monodepth2", 4), "hrnet": ("hrnet", "bdedepth", 1)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, frames_per_drive=8)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--backbones", nargs="+", default=["resnet", "hrnet"], choices=sorted(MODELS))
    parser.add_argument("--images", type=int, default=16, help="images in the test_simple.py folder")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10, help="timed single-image runs")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    return parser


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def single_image_latency(ckpt: Path, image_path: Path, device, repeats: int) -> float:
    """Median seconds of the network on one image (batch 1), after two warm-up runs."""
    import test_simple
    from model import load_model
    from utils import read_rgb

    net = load_model(ckpt, device)
    resized = test_simple.to_network_input([read_rgb(image_path)], net.spec.height, net.spec.width)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        test_simple.predict(net, resized, device)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args_with_config(build_parser(), argv)
    import shutil

    import torch

    import test_simple

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    root = synthetic_dataset(args)
    frames = sorted((root).rglob("image_02/data/*.png"))[:args.images]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(args.images):
            shutil.copy(frames[i % len(frames)], folder / f"{i:04d}.png")
        for backbone in args.backbones:
            name, decoder, scales = MODELS[backbone]
            ckpt = random_checkpoint(Path(tmp) / f"{backbone}.pth", name, decoder, args.height, args.width, scales)
            for device_name in devices:
                device = torch.device(device_name)
                latency = single_image_latency(ckpt, folder / "0000.png", device, args.repeats)
                cli = ["--image_path", str(folder), "--pretrained_path", str(ckpt), "--output_dir",
                       str(Path(tmp) / "out"), "--batch_size", str(args.batch_size), "--device", device_name]
                test_simple.main(cli)  # warm-up (and caches the weights file)
                start = time.perf_counter()
                test_simple.main(cli)
                elapsed = time.perf_counter() - start
                rows.append({"model": f"{name} + {decoder}", "device": device_name,
                             "latency, 1 image (ms)": 1000 * latency,
                             f"test_simple.py, batch {args.batch_size} (images/s)": args.images / elapsed})
    return report(f"Inference at {args.width}x{args.height}", rows,
                  ["model", "device", "latency, 1 image (ms)", f"test_simple.py, batch {args.batch_size} (images/s)"],
                  args)


if __name__ == "__main__":
    main()
