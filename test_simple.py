"""Predict depth for one image or a folder of images from a checkpoint.

    python test_simple.py --image_path assets/test_image.jpg --pretrained_path RUN/models/model19.pth

Writes ``<name>_disp.jpeg`` (magma colour map, normalised from the map's minimum to its 95th
percentile, at the input's size) and, with ``--save_npy``, ``<name>_disp.npy`` (the scaled
disparity at network resolution, 1 x 1 x H x W) or, with ``--pred_metric_depth``,
``<name>_depth.npy`` (metric depth of a stereo-trained model).

Exit status: 0 when every image was processed; 1 when an image could not be read (missing,
truncated, not an image), unless ``--skip_unreadable`` allows skipping it, and always 1 when no
image at all was processed. The readable images are processed either way.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from config_files import parse_args_with_config
from kitti_utils import STEREO_SCALE_FACTOR
from layers import upsample_disp
from utils import (atomic_output, check_output_folders, colorize_disparity, positive_int, read_rgb, resize_area,
                   select_device)

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = ("_disp", "_depth")


class SkippedInputsError(RuntimeError):
    """Some inputs could not be read (without --skip_unreadable), or none could: exit status 1."""


def add_model_arguments(parser: argparse.ArgumentParser, unit: str = "images") -> None:
    """The weights, batch, device and skipping flags shared by test_simple.py and test_video.py."""
    parser.add_argument("--pretrained_path", required=True,
                        help="checkpoint written by train.py, a released BDEdepth .pth, or a released "
                             "Monodepth2 folder (encoder.pth, depth.pth)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help=f"{unit} per forward pass (>= 1)")
    parser.add_argument("--skip_unreadable", action="store_true",
                        help=f"leave out {unit} that cannot be read (missing, truncated, not an image) and "
                             "exit 0 if the others were processed; by default such inputs make the exit "
                             "status 1")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--no_cuda", dest="device", action="store_const", const="cpu", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Monocular depth for images.")
    parser.add_argument("--image_path", required=True, help="an image file or a folder of images")
    parser.add_argument("--ext", default="png", help="image extension to look for in a folder")
    parser.add_argument("--output_dir", default=None,
                        help="where to write the results (default: beside each image)")
    parser.add_argument("--save_npy", action="store_true", help="also save the scaled disparity as .npy")
    parser.add_argument("--pred_metric_depth", action="store_true",
                        help="save metric depth (x5.4) as .npy; meaningful for stereo-trained models")
    add_model_arguments(parser)
    return parser


def list_images(image_path: Path, ext: str) -> list[Path]:
    """The input images in name order, never our own outputs."""
    if image_path.is_file():
        return [image_path]
    if not image_path.is_dir():
        raise FileNotFoundError(f"--image_path {image_path} does not exist")
    ext = "." + ext.lstrip(".").lower()
    # Suffixes compare case-insensitively (IMG_0001.JPG); our own outputs are never inputs.
    paths = sorted(p for p in image_path.iterdir() if p.is_file() and p.suffix.lower() == ext
                   and not p.stem.endswith(OUTPUT_SUFFIXES))
    if not paths:
        raise FileNotFoundError(f"no *{ext} images in {image_path}: check --ext")
    return paths


def to_network_input(images: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """B x height x width x 3 uint8: each RGB image area-resized (as the training loader does)."""
    return np.stack([resize_area(im, height, width) for im in images])


def predict(model, resized: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(inverse depth, depth), each B x 1 x H x W float32 on ``device``, of B x H x W x 3 uint8 images."""
    batch = torch.from_numpy(resized).permute(0, 3, 1, 2).to(device).float() / 255.0
    return model.predict(batch)


def check_finite_predictions(disp: torch.Tensor, paths: Sequence[Path]) -> None:
    """Refuse non-finite disparities (a diverged checkpoint), naming the inputs that produced them."""
    finite = torch.isfinite(disp.flatten(1)).all(dim=1).cpu().tolist()
    bad = [str(path) for path, ok in zip(paths, finite) if not ok]
    if bad:
        raise ValueError(f"the network predicts non-finite disparities for {', '.join(bad)}: the weights are "
                         "broken (a diverged or damaged checkpoint); nothing was written for them")


def check_failures(failures: Sequence[Path], processed: int, total: int, skip_unreadable: bool,
                   unit: str = "image") -> None:
    """Raise SkippedInputsError when nothing was processed, or inputs failed without --skip_unreadable."""
    if not failures:
        return
    names = ", ".join(map(str, failures[:10])) + (" ..." if len(failures) > 10 else "")
    if not processed:
        raise SkippedInputsError(f"none of the {total} {unit}s could be read: {names}")
    if not skip_unreadable:
        raise SkippedInputsError(f"{len(failures)} of {total} {unit}s could not be read: {names}; fix or remove "
                                 "them, or pass --skip_unreadable to leave them out")
    logger.warning("Left out %d unreadable %s(s) (--skip_unreadable): %s", len(failures), unit, names)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Run the predictions; return the paths written.

    Raises:
        SkippedInputsError: after processing the readable images, when some could not be read
            (unless --skip_unreadable) or none could.
        OSError: an output folder is not writable (checked before any prediction).
        ValueError: the network predicts non-finite values (a diverged checkpoint).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    opts = parse_args_with_config(build_parser(), argv)
    from model import load_model

    device = select_device(opts.device)
    model = load_model(opts.pretrained_path, device)
    spec = model.spec
    metric_scale = spec.metric_depth_scale
    if opts.pred_metric_depth and metric_scale is None:
        logger.warning("Warning: --pred_metric_depth is only meaningful for stereo-trained models; "
                       "this checkpoint was trained without stereo, so the depth is not metric")
        metric_scale = STEREO_SCALE_FACTOR
    paths = list_images(Path(opts.image_path), opts.ext)
    check_output_folders([Path(opts.output_dir)] if opts.output_dir else [path.parent for path in paths])
    written, failures = [], []
    for start in range(0, len(paths), opts.batch_size):
        # (position in the whole list, path, image): the progress counter counts every input,
        # readable or not, so "i of N" stays right when some images fail.
        loaded = []
        for position, path in enumerate(paths[start:start + opts.batch_size], start=start + 1):
            try:
                loaded.append((position, path, read_rgb(path)))
            except OSError as err:
                logger.error("%s", err)
                failures.append(path)
        images = [image for _, _, image in loaded]
        if not loaded:
            continue
        scaled_disp, depth = predict(model, to_network_input(images, spec.height, spec.width), device)
        check_finite_predictions(scaled_disp, [path for _, path, _ in loaded])
        for i, (position, path, image) in enumerate(loaded):
            output_dir = Path(opts.output_dir) if opts.output_dir else path.parent
            full = upsample_disp(scaled_disp[i:i + 1], image.shape[:2])[0, 0].cpu().numpy()
            jpeg = output_dir / f"{path.stem}_disp.jpeg"
            with atomic_output(jpeg, suffix=".jpeg") as tmp:
                if not cv2.imwrite(str(tmp), cv2.cvtColor(colorize_disparity(full), cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write {jpeg}")
            outputs = [jpeg]
            if opts.pred_metric_depth:
                npy = output_dir / f"{path.stem}_depth.npy"
                array = (metric_scale * depth[i:i + 1]).cpu().numpy()
            elif opts.save_npy:
                npy = output_dir / f"{path.stem}_disp.npy"
                array = scaled_disp[i:i + 1].cpu().numpy()
            if opts.pred_metric_depth or opts.save_npy:
                with atomic_output(npy, suffix=".npy") as tmp:
                    np.save(tmp, array.astype(np.float32))
                outputs.append(npy)
            written.extend(outputs)
            logger.info("Processed %d of %d images - saved predictions to: %s",
                        position, len(paths), ", ".join(map(str, outputs)))
    check_failures(failures, len(paths) - len(failures), len(paths), opts.skip_unreadable)
    return written


if __name__ == "__main__":
    try:
        main()
    except (SkippedInputsError, OSError, ValueError) as err:
        logger.error("error: %s", err)
        sys.exit(1)
