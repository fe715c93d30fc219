"""The training data loader alone, per worker, beside a straightforward per-sample PIL pipeline.

    python bench/loader_throughput.py                       # generates full-size synthetic frames once
    python bench/loader_throughput.py --samples 60 --json bench_out/loader.json

One worker is one process with one thread (as in a DataLoader worker), so the figures are
samples per second per worker; multiply by the workers a machine can feed. Measured in the
same run, on the same split lines, each pass over the same samples:

- ``PIL reference``: what the lineage's loader does per sample, written here plainly: decode
  the 3 full-size frames with PIL, flip half the samples, build a 4-scale LANCZOS pyramid of
  every frame, colour-jitter every level of half the samples with torchvision's PIL
  ``ColorJitter`` (the same draw for a sample's frames), and convert everything to tensors.
- ``ours (decode)``: ``KITTIRAWDataset`` as training uses it: OpenCV decode, one area resize per
  frame to the network size, uint8 tensors; jitter parameters are drawn here and applied later,
  batched on the device.
- ``ours (frame cache)``: the same dataset reading ``--frame_cache`` (built here first).
- ``device-side prep``: for transparency, the batched jitter and pyramid that ``prepare_batch``
  runs per sample on the training device, timed here on the CPU with one thread.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_options, report, synthetic_dataset  # noqa: E402
from config_files import parse_args_with_config  # noqa: E402

NUM_SCALES = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--samples", type=int, default=36, help="samples timed per pipeline (after 2 warm-up)")
    parser.add_argument("--frame_cache", default=None,
                        help="an existing cache folder for this split and size (default: build one in a temp dir)")
    return parser


class PILReferencePipeline:
    """Per-sample PIL loading as in the Monodepth2 lineage (decode, LANCZOS pyramid, PIL jitter).

    Args:
        dataset: our dataset, used only for its split lines and image paths.
        height, width: network size in pixels (scale 0 of the pyramid).
    """

    def __init__(self, dataset, height: int, width: int) -> None:
        from torchvision import transforms

        self.dataset, self.height, self.width = dataset, height, width
        self.to_tensor = transforms.ToTensor()
        self.color_jitter = transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)

    def __call__(self, index: int, rng: random.Random) -> dict:
        from PIL import Image

        item = self.dataset.items[index]
        do_flip, do_aug = rng.random() > 0.5, rng.random() > 0.5
        sample = {}
        for frame_id, (frame_index, side) in self.dataset._frame_sources(item).items():
            with Image.open(self.dataset.image_path(item.folder, frame_index, side)) as f:
                image = f.convert("RGB")
            if do_flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            level = image
            for scale in range(NUM_SCALES):
                size = (self.width // 2**scale, self.height // 2**scale)
                level = level.resize(size, Image.LANCZOS)
                sample[("color", frame_id, scale)] = level
        jitter = self.color_jitter.get_params(self.color_jitter.brightness, self.color_jitter.contrast,
                                              self.color_jitter.saturation, self.color_jitter.hue)
        out = {}
        for key, image in sample.items():
            out[key] = self.to_tensor(image)
            out[("color_aug",) + key[1:]] = self.to_tensor(self._jitter(image, jitter) if do_aug else image)
        return out

    @staticmethod
    def _jitter(image, params):
        from torchvision.transforms import functional as TF

        order, brightness, contrast, saturation, hue = params
        for op in order.tolist():
            if op == 0 and brightness is not None:
                image = TF.adjust_brightness(image, brightness)
            elif op == 1 and contrast is not None:
                image = TF.adjust_contrast(image, contrast)
            elif op == 2 and saturation is not None:
                image = TF.adjust_saturation(image, saturation)
            elif op == 3 and hue is not None:
                image = TF.adjust_hue(image, hue)
        return image


def time_samples(load, indices: Sequence[int], warmup: int = 2) -> float:
    """Samples per second of ``load(index, seed)`` over ``indices`` after ``warmup`` calls."""
    for i in indices[:warmup]:
        load(i, i)
    start = time.perf_counter()
    for seed, i in enumerate(indices):
        load(i, seed)
    return len(indices) / (time.perf_counter() - start)


def device_prep_rate(dataset, batch_size: int = 12) -> float:
    """Samples per second of prepare_batch (jitter on every frame, frame 0's pyramid), CPU, one thread."""
    import torch
    from torch.utils.data import default_collate

    from model import prepare_batch

    batch = default_collate([dataset[(i % len(dataset), i)] for i in range(batch_size)])
    batch["do_color_aug"] = torch.ones_like(batch["do_color_aug"])  # the worst case: all jittered
    prepare_batch(batch, torch.device("cpu"), dataset.frame_ids, NUM_SCALES, False)
    start, repeats = time.perf_counter(), 3
    for _ in range(repeats):
        prepare_batch(batch, torch.device("cpu"), dataset.frame_ids, NUM_SCALES, False)
    return repeats * batch_size / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args_with_config(build_parser(), argv)
    import cv2
    import torch

    from datasets import KITTIRAWDataset
    from frame_cache import FrameCache, build_frame_cache
    from utils import readlines

    torch.set_num_threads(1)  # one DataLoader worker = one process with one thread
    cv2.setNumThreads(1)
    root = synthetic_dataset(args)
    lines = readlines(root / "splits" / "synthetic" / "train_files.txt")
    dataset = KITTIRAWDataset(root, lines, args.height, args.width, [0, -1, 1], NUM_SCALES, is_train=True,
                              split_name="synthetic train_files.txt")
    indices = [i % len(dataset) for i in range(args.samples)]
    pil = PILReferencePipeline(dataset, args.height, args.width)
    rows = []
    pil_rate = time_samples(lambda i, seed: pil(i, random.Random(seed)), indices)
    rows.append({"pipeline": "PIL reference (3 decodes, 4-scale LANCZOS, PIL jitter)", "samples/s": pil_rate})
    ours_rate = time_samples(lambda i, seed: dataset[(i, seed)], indices)
    rows.append({"pipeline": "ours (OpenCV decode + 1 area resize per frame)", "samples/s": ours_rate})
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.frame_cache or build_frame_cache(dataset, Path(tmp) / "cache", "synthetic", progress=False)
        dataset.use_frame_cache(FrameCache.open(cache_dir))
        cache_rate = time_samples(lambda i, seed: dataset[(i, seed)], indices)
        rows.append({"pipeline": "ours (--frame_cache)", "samples/s": cache_rate})
        prep_rate = device_prep_rate(dataset)
    rows.append({"pipeline": "device-side prep (prepare_batch on the CPU, batch 12)", "samples/s": prep_rate})
    for row in rows:
        row["vs PIL"] = f"{row['samples/s'] / pil_rate:.1f}x"
    rows[-1]["vs PIL"] = "(runs on the training device)"
    return report(f"Training loader per worker, {args.width}x{args.height}, frames 0 -1 1, "
                  f"{args.samples} samples", rows, ["pipeline", "samples/s", "vs PIL"], args,
                  {"speedup_decode": ours_rate / pil_rate, "speedup_cache": cache_rate / pil_rate})


if __name__ == "__main__":
    main()
