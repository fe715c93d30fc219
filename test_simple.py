"""Predict depth for one image or a folder of images from a checkpoint.

    python test_simple.py --image_path assets/test_image.jpg --pretrained_path RUN/models/model19.pth

Writes ``<name>_disp.jpeg`` (magma colour map, normalised from the map's minimum to its 95th
percentile, at the input's size) and, with ``--save_npy``, ``<name>_disp.npy`` (the scaled
disparity at network resolution, 1 x 1 x H x W). ``--save_depth`` also writes the depth at network
resolution: ``npy`` (``<name>_depth.npy``, 1 x 1 x H x W float32), ``npz`` (``<name>_depth.npz``,
key ``depth``, H x W float32, as PackNet-SfM's infer.py) or ``png16`` (``<name>_depth.png``, uint16
depth x 256 clipped to 0..65535, KITTI's depth-PNG encoding; `kitti_utils.read_kitti_depth_png`
reads it back). The depth is in metres for a stereo-trained model (x 5.4) and in the model's
units (up to scale) otherwise; ``--pred_metric_depth`` multiplies by 5.4 regardless and, alone,
means ``--save_depth npy``.

``--image_shape H W`` (PackNet-SfM's infer.py option) resizes the inputs to H x W instead of the
size stored in the checkpoint; sizes the network cannot take are refused, naming the nearest one
it can.

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
from kitti_utils import KITTI_DEPTH_PNG_SCALE, STEREO_SCALE_FACTOR
from layers import upsample_disp
from utils import (atomic_output, check_output_folders, colorize_disparity, positive_int, read_rgb, resize_area,
                   select_device)

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = ("_disp", "_depth")

# Every depth network here halves its input five times (ResNet/HRNet strides, PackNet's packings),
# so both input sides must be multiples of 2^5.
NETWORK_INPUT_MULTIPLE = 32
# ...and the deepest map must be at least 2 pixels on each side: Monodepth2's decoder reflection-
# pads it by 1, which needs 2.
NETWORK_MIN_SIDE = 2 * NETWORK_INPUT_MULTIPLE

# --save_depth formats -> file suffix; "none" writes no depth file.
DEPTH_FORMATS = {"none": None, "npy": ".npy", "npz": ".npz", "png16": ".png"}
UINT16_MAX = np.iinfo(np.uint16).max


class SkippedInputsError(RuntimeError):
    """Some inputs could not be read (without --skip_unreadable), or none could: exit status 1."""


def add_model_arguments(parser: argparse.ArgumentParser, unit: str = "images") -> None:
    """The weights, batch, device and skipping flags shared by test_simple.py and test_video.py."""
    parser.add_argument("--pretrained_path", required=True,
                        help="checkpoint written by train.py, a released BDEdepth .pth, a released "
                             "Monodepth2 or SQLdepth folder, or a PackNet-SfM .ckpt")
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
    parser.add_argument("--save_depth", choices=list(DEPTH_FORMATS), default=None,
                        help="also save the depth at network resolution: npy (1 x 1 x H x W float32), npz (key "
                             "'depth', H x W float32) or png16 (uint16 depth x 256, as KITTI's depth PNGs); "
                             "default: npy with --pred_metric_depth, else none")
    parser.add_argument("--image_shape", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="resize inputs to H x W instead of the checkpoint's size (multiples of "
                             f"{NETWORK_INPUT_MULTIPLE}, at least {NETWORK_MIN_SIDE})")
    add_model_arguments(parser)
    return parser


def check_image_shape(spec, height: int, width: int, size_flags: str = "--image_shape {height} {width}") -> None:
    """Refuse an ``--image_shape`` the network cannot take, naming the nearest size it can.

    ``size_flags`` spells a size as the calling script's flags do (export_model.py: ``--height
    {height} --width {width}``).

    Raises:
        ValueError: a side is not a multiple of 32 or is below 64, or (SQLdepth) the size gives a token
            count outside its Self Query Layer's range.
    """
    if min(height, width) < NETWORK_MIN_SIDE or height % NETWORK_INPUT_MULTIPLE or width % NETWORK_INPUT_MULTIPLE:
        nearest = [max(NETWORK_MIN_SIDE, NETWORK_INPUT_MULTIPLE * round(side / NETWORK_INPUT_MULTIPLE))
                   for side in (height, width)]
        raise ValueError(f"{size_flags.format(height=height, width=width)}: the network needs both sides to be "
                         f"multiples of {NETWORK_INPUT_MULTIPLE} and at least {NETWORK_MIN_SIDE}; the nearest valid "
                         f"size is {size_flags.format(height=nearest[0], width=nearest[1])}")
    if spec.decoder == "sql":
        from networks.sqldepth import OUTPUT_REDUCTIONS, SQL_BACKBONES_BY_NAME, check_token_count

        reduction = OUTPUT_REDUCTIONS[SQL_BACKBONES_BY_NAME[spec.backbone]]
        try:
            check_token_count(height // reduction, width // reduction, spec.sql_patch_size, spec.sql_num_queries)
        except ValueError as err:
            raise ValueError(f"{size_flags.format(height=height, width=width)}: {err} (this checkpoint was trained "
                             f"at {size_flags.format(height=spec.height, width=spec.width)})") from err


def encode_depth_png16(depth: np.ndarray) -> np.ndarray:
    """Depth in metres as KITTI's depth PNGs store it: uint16 of depth x 256, truncated.

    Values are clipped to 0 .. 65535 (0 to 255.996 m) first, so a far or infinite depth saturates
    instead of wrapping around; NaN becomes 0, KITTI's "no depth".

    Args:
        depth: H x W depth in metres (float).

    Returns:
        H x W uint16.
    """
    scaled = np.nan_to_num(np.asarray(depth, dtype=np.float64) * KITTI_DEPTH_PNG_SCALE, nan=0.0)
    return np.clip(scaled, 0, UINT16_MAX).astype(np.uint16)


def write_depth(path_stem: Path, depth: np.ndarray, depth_format: str) -> Path:
    """Write a 1 x 1 x H x W float32 depth map as ``<stem>_depth.<npy|npz|png>``; return the path."""
    path = path_stem.with_name(f"{path_stem.name}_depth{DEPTH_FORMATS[depth_format]}")
    with atomic_output(path, suffix=path.suffix) as tmp:
        if depth_format == "npy":
            np.save(tmp, depth.astype(np.float32))
        elif depth_format == "npz":
            with open(tmp, "wb") as f:
                np.savez_compressed(f, depth=depth[0, 0].astype(np.float32))
        elif not cv2.imwrite(str(tmp), encode_depth_png16(depth[0, 0])):
            raise OSError(f"could not write {path}")
    return path


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
    depth_format = opts.save_depth or ("npy" if opts.pred_metric_depth else "none")
    if depth_format != "none" and metric_scale is None:
        logger.info("Depth is saved in the model's units: a monocular model's depth is up to scale")
    height, width = spec.height, spec.width
    if opts.image_shape is not None:
        height, width = opts.image_shape
        check_image_shape(spec, height, width)
        logger.info("Inputs resized to %d x %d (--image_shape; the checkpoint was trained at %d x %d)", height,
                    width, spec.height, spec.width)
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
        scaled_disp, depth = predict(model, to_network_input(images, height, width), device)
        check_finite_predictions(scaled_disp, [path for _, path, _ in loaded])
        for i, (position, path, image) in enumerate(loaded):
            output_dir = Path(opts.output_dir) if opts.output_dir else path.parent
            full = upsample_disp(scaled_disp[i:i + 1], image.shape[:2])[0, 0].cpu().numpy()
            jpeg = output_dir / f"{path.stem}_disp.jpeg"
            with atomic_output(jpeg, suffix=".jpeg") as tmp:
                if not cv2.imwrite(str(tmp), cv2.cvtColor(colorize_disparity(full), cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write {jpeg}")
            outputs = [jpeg]
            if opts.save_npy:
                npy = output_dir / f"{path.stem}_disp.npy"
                with atomic_output(npy, suffix=".npy") as tmp:
                    np.save(tmp, scaled_disp[i:i + 1].cpu().numpy().astype(np.float32))
                outputs.append(npy)
            if depth_format != "none":
                scaled_depth = (metric_scale or 1.0) * depth[i:i + 1]
                outputs.append(write_depth(output_dir / path.stem, scaled_depth.cpu().numpy(), depth_format))
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
