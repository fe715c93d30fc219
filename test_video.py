"""Depth for a folder of video frames: an animated GIF and an MP4, the input above its depth.

    python test_video.py --image_path FRAMES/ --ext png --pretrained_path RUN/models/model19.pth --output_dir out/

Frames are taken in numeric order of the numbers in their names (``frame2`` before ``frame10``),
so names need no zero padding. Each frame is area-resized to the network size and stacked above
its magma disparity (normalised per frame from the minimum to the 95th percentile), giving
2H x W composites whatever the frames' own sizes. Writes ``<folder>_depth.gif`` (loops forever)
and ``<folder>_depth.mp4`` (OpenCV, mp4v) to ``--output_dir`` (default: the frames' folder).

Exit status 1, with nothing written, when a frame cannot be read (a video with a frame missing
would be wrong) unless ``--skip_unreadable`` allows leaving it out, and when no frame can be read.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from config_files import parse_args_with_config
from test_simple import (SkippedInputsError, add_model_arguments, check_failures, check_finite_predictions,
                         list_images, predict, to_network_input)
from utils import atomic_output, check_output_folders, configure_logging, colorize_disparity, read_rgb, select_device
from weights import load_requested_model

logger = logging.getLogger(__name__)

# BDEdepth's GIF frame duration (Monodepth2-DDP used 200 ms).
DEFAULT_FRAME_DURATION_MS = 150


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Monocular depth for a folder of video frames.")
    parser.add_argument("--image_path", required=True, help="a folder of frames")
    parser.add_argument("--ext", default="png", help="frame extension")
    parser.add_argument("--output_dir", default=None, help="where to write (default: the frames' folder)")
    parser.add_argument("--frame_duration_ms", type=int, default=DEFAULT_FRAME_DURATION_MS,
                        help="display time of each frame; the MP4 runs at 1000 / this frames per second")
    parser.add_argument("--no_gif", dest="gif", action="store_false", help="skip the GIF")
    parser.add_argument("--no_mp4", dest="mp4", action="store_false", help="skip the MP4")
    add_model_arguments(parser, unit="frames")
    return parser


def numeric_order_key(path: Path) -> tuple:
    """Sort key comparing the digit runs of a name as integers: frame2 < frame10."""
    parts = re.split(r"(\d+)", path.stem)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p) + (path.suffix,)


def composite(resized: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """2H x W x 3 uint8: the H x W x 3 network input above its colour-mapped H x W disparity."""
    return np.concatenate([resized, colorize_disparity(disp)], axis=0)


def write_gif(path: Path, frames: Sequence[np.ndarray], duration_ms: int) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    with atomic_output(path, suffix=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms,
                       loop=0)


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    height, width = frames[0].shape[:2]
    with atomic_output(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write MP4 files here (no mp4v encoder): {path}; use --no_mp4")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Predict every frame; return the paths written.

    Raises:
        SkippedInputsError: before writing anything, when frames could not be read (unless
            --skip_unreadable) or none could.
    """
    configure_logging()
    parser = build_parser()
    opts = parse_args_with_config(parser, argv)
    folder = Path(opts.image_path)
    if not folder.is_dir():
        raise NotADirectoryError(f"--image_path {folder} must be a folder of frames")
    if opts.frame_duration_ms <= 0:
        raise ValueError(f"--frame_duration_ms must be positive (got {opts.frame_duration_ms})")
    paths = sorted(list_images(folder, opts.ext), key=numeric_order_key)
    output_dir = Path(opts.output_dir) if opts.output_dir else folder
    check_output_folders([output_dir])  # before predicting: the video is written only at the end
    device = select_device(opts.device)
    model = load_requested_model(opts, parser, device)
    spec = model.spec
    frames, failures = [], []
    for start in range(0, len(paths), opts.batch_size):
        images, read = [], []
        for path in paths[start:start + opts.batch_size]:
            try:
                images.append(read_rgb(path))
                read.append(path)
            except OSError as err:
                logger.error("%s", err)
                failures.append(path)
        if not images:
            continue
        resized = to_network_input(images, spec.height, spec.width)
        disp = predict(model, resized, device)[0]
        check_finite_predictions(disp, read)
        disp = disp[:, 0].cpu().numpy()
        frames.extend(composite(r, d) for r, d in zip(resized, disp))
        logger.info("Processed %d of %d frames", min(start + opts.batch_size, len(paths)), len(paths))
    check_failures(failures, len(frames), len(paths), opts.skip_unreadable, unit="frame")
    written = []
    if opts.gif:
        written.append(output_dir / f"{folder.resolve().name}_depth.gif")
        write_gif(written[-1], frames, opts.frame_duration_ms)
    if opts.mp4:
        written.append(output_dir / f"{folder.resolve().name}_depth.mp4")
        write_mp4(written[-1], frames, 1000.0 / opts.frame_duration_ms)
    logger.info("Wrote %s (%d frames)", ", ".join(map(str, written)), len(frames))
    return written


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
