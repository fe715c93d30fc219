"""Predict depth for one image or a folder of images from a checkpoint.

    python test_simple.py --image_path assets/test_image.jpg --pretrained_path RUN/models/model19.pth
    python test_simple.py --image_path assets/test_image.jpg --model_name mono+stereo_640x192 --pred_metric_depth

The weights are any that `weights.resolve_weights` reads: a checkpoint, a released folder or file, or
a released model's name (``--model_name``, fetched once into the cache); BDEdepth's ``--backbone
--num_layers --height --width`` are checked against them.

Writes ``<name>_disp.jpeg`` (magma colour map, normalised from the map's minimum to its 95th
percentile, at the input's size) and, with ``--save_npy``, ``<name>_disp.npy`` (the scaled
disparity at network resolution, 1 x 1 x H x W). ``--save_depth`` also writes the depth at network
resolution: ``npy`` (``<name>_depth.npy``, 1 x 1 x H x W float32), ``npz`` (``<name>_depth.npz``,
key ``depth``, H x W float32, as PackNet-SfM's infer.py) or ``png16`` (``<name>_depth.png``, uint16
depth x 256 clipped to 0..65535, KITTI's depth-PNG encoding; `kitti_utils.read_kitti_depth_png`
reads it back). The depth is in metres for a stereo-trained model (x 5.4) and in the model's
units (up to scale) otherwise; ``--pred_metric_depth`` multiplies by 5.4 regardless and, alone,
means ``--save_depth npy``.

Depth in metres at the INPUT image's resolution: ``--depth_scale`` multiplies the model's depth,
resized to the input's size (bilinearly, in inverse depth; in depth for a network that predicts
depth, as SQLdepth is evaluated), by ``auto`` (the checkpoint's own factor: 5.4 for a model that
saw stereo pairs, `ModelSpec.metric_depth_scale`; refused for a monocular model, whose depth is
up to scale), ``stereo`` (5.4 regardless) or a number; ``--gt_depth FILE`` instead takes the
median ratio of a ground-truth depth map (``.npy``/``.npz`` in metres or a KITTI 16-bit PNG, 0 = no
depth) to the prediction for the image it belongs to, and applies that one factor to every image
(one camera, one scale). That depth is what ``--save_depth`` then writes (default ``npy``: 1 x 1 x
H x W float32 at the input's size).

``--save_ply`` writes ``<name>_points.ply``: a binary little-endian PLY point cloud (x y z float32,
red green blue uint8) of every pixel with a finite positive metric depth, in the camera frame
(OpenCV axes: x right, y down, z forward; metres), coloured by the image. The pinhole intrinsics
are ``--intrinsics FX FY CX CY`` in pixels of the input image, or ``--normalized_intrinsics FX FY
CX CY`` as fractions of its width and height (KITTI's K, the default: 0.58 1.92 0.5 0.5). Pixel
(u, v) is the centre of column u and row v, counted from 0, as the training loader's camera model
counts. The point cloud needs a metric scale: ``--depth_scale`` or ``--gt_depth`` (``auto`` by
default).

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
from datasets.depth_folder import image_stem, read_depth_map
from kitti_utils import KITTI_DEPTH_PNG_SCALE, KITTI_NORMALIZED_K, STEREO_SCALE_FACTOR
from layers import upsample_disp
from utils import (UserError, atomic_output, check_output_folders, colorize_disparity, configure_logging, positive_int,
                   read_rgb, resize_area, select_device)
from weights import add_weights_arguments, load_requested_model

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = ("_disp", "_depth", "_points")

# Every depth network here halves its input five times (ResNet/HRNet strides, PackNet's packings),
# so both input sides must be multiples of 2^5.
NETWORK_INPUT_MULTIPLE = 32
# ...and the deepest map must be at least 2 pixels on each side: Monodepth2's decoder reflection-
# pads it by 1, which needs 2.
NETWORK_MIN_SIDE = 2 * NETWORK_INPUT_MULTIPLE

# --save_depth formats -> file suffix; "none" writes no depth file.
DEPTH_FORMATS = {"none": None, "npy": ".npy", "npz": ".npz", "png16": ".png"}
UINT16_MAX = np.iinfo(np.uint16).max

# --depth_scale words (anything else must be a positive number).
DEPTH_SCALE_WORDS = ("auto", "stereo", "median")
# KITTI's normalised intrinsics (fx / W, fy / H, cx / W, cy / H): --normalized_intrinsics' default.
KITTI_NORMALIZED_INTRINSICS = (float(KITTI_NORMALIZED_K[0, 0]), float(KITTI_NORMALIZED_K[1, 1]),
                               float(KITTI_NORMALIZED_K[0, 2]), float(KITTI_NORMALIZED_K[1, 2]))
# One point of a PLY cloud as written: x y z float32, red green blue uint8, little-endian, packed.
PLY_VERTEX_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                             ("blue", "u1")])


class SkippedInputsError(UserError, RuntimeError):
    """Some inputs could not be read (without --skip_unreadable), or none could: exit status 1."""


def add_model_arguments(parser: argparse.ArgumentParser, unit: str = "images") -> None:
    """The weights (`weights.add_weights_arguments`), batch, device and skipping flags shared by
    test_simple.py and test_video.py."""
    add_weights_arguments(parser)
    parser.add_argument("--batch_size", type=positive_int, default=8, help=f"{unit} per forward pass (>= 1)")
    parser.add_argument("--skip_unreadable", action="store_true",
                        help=f"leave out {unit} that cannot be read (missing, truncated, not an image) and "
                             "exit 0 if the others were processed; by default such inputs make the exit "
                             "status 1")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--no_cuda", dest="device", action="store_const", const="cpu", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Monocular depth for images.")
    parser.add_argument("--image_path", "--image", required=True, help="an image file or a folder of images")
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
    parser.add_argument("--depth_scale", type=depth_scale_argument, default=None,
                        metavar="{auto,stereo,median,VALUE}",
                        help="write depth in metres at the input image's resolution (through --save_depth, "
                             "default npy): the model's depth times auto (5.4 for a stereo-trained model; refused "
                             "for a monocular one), stereo (5.4), median (the ratio to --gt_depth) or VALUE")
    parser.add_argument("--gt_depth", default=None, metavar="FILE",
                        help="ground-truth depth of one input image (.npy/.npz in metres, or a KITTI 16-bit PNG; "
                             "0 = no depth), named like that image when --image_path is a folder: the median "
                             "ratio of it to the prediction scales every image (--depth_scale median)")
    parser.add_argument("--save_ply", action="store_true",
                        help="also write <name>_points.ply, a binary coloured point cloud of the metric depth "
                             "(needs a scale: --depth_scale, --gt_depth or a stereo-trained model)")
    intrinsics = parser.add_mutually_exclusive_group()
    intrinsics.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), default=None,
                            help="pinhole intrinsics for --save_ply, in pixels of the input image")
    intrinsics.add_argument("--normalized_intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                            default=None,
                            help="pinhole intrinsics for --save_ply as fractions of the input's width (fx, cx) and "
                                 "height (fy, cy); default: KITTI's %s" % " ".join(
                                     f"{v:g}" for v in KITTI_NORMALIZED_INTRINSICS))
    parser.add_argument("--image_shape", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="resize inputs to H x W instead of the checkpoint's size (multiples of "
                             f"{NETWORK_INPUT_MULTIPLE}, at least {NETWORK_MIN_SIDE})")
    add_model_arguments(parser)
    # The Monodepth2 fork's spelling: --model pretrained/mono_640x192 (a folder or a released name).
    parser.add_argument("--model", dest="pretrained_path", help=argparse.SUPPRESS)
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


def depth_scale_argument(text: str) -> str | float:
    """argparse ``type=`` of ``--depth_scale``: one of `DEPTH_SCALE_WORDS`, or a positive finite number."""
    if text in DEPTH_SCALE_WORDS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected {', '.join(DEPTH_SCALE_WORDS)} or a positive number (got {text!r})")
    return value


def resolve_depth_scale(choice: str | float, spec) -> float:
    """The factor that turns the model's depth into metres, for ``--depth_scale auto|stereo|VALUE``.

    Raises:
        ValueError: ``auto`` for a model trained without stereo pairs (its depth is up to scale),
            naming the flags that give a scale.
    """
    if choice == "stereo":
        return STEREO_SCALE_FACTOR
    if choice == "auto":
        factor = spec.metric_depth_scale
        if factor is None:
            raise ValueError("this model was trained monocularly, so its depth is up to scale: give the scale with "
                             "--depth_scale VALUE (metres per model unit), --depth_scale stereo (x5.4) or "
                             "--gt_depth FILE (the median ratio to a ground-truth depth map)")
        return float(factor)
    return float(choice)


def median_scale(predicted_depth: np.ndarray, gt_depth: np.ndarray, flag: str = "--gt_depth") -> float:
    """median(ground truth) / median(prediction) over the pixels with a finite positive ground truth.

    The two maps have one size (the prediction resized to the ground truth's). This is the lineage's
    per-image median scaling, used once to calibrate a camera.

    Raises:
        ValueError: no pixel has both a valid ground truth and a valid prediction.
    """
    valid = np.isfinite(gt_depth) & (gt_depth > 0) & np.isfinite(predicted_depth) & (predicted_depth > 0)
    if not valid.any():
        raise ValueError(f"{flag}: no pixel has a positive ground-truth depth (0 means none): nothing to scale by")
    return float(np.median(gt_depth[valid]) / np.median(predicted_depth[valid]))


def gt_depth_image(gt_path: Path, image_path: Path, images: Sequence[Path]) -> Path:
    """The input image ``--gt_depth`` belongs to: the only one, or the one named like the file.

    ``0000000005.png`` (KITTI's annotated depth), ``frame_depth.npy`` and ``frame_gt.npz`` match
    ``0000000005.png`` and ``frame.jpg``.

    Raises:
        ValueError: a folder holds no image of that name.
    """
    if image_path.is_file():
        return image_path
    stem = image_stem(gt_path)
    matches = [path for path in images if path.stem in (stem, gt_path.stem)]
    if not matches:
        raise ValueError(f"--gt_depth {gt_path}: no image named {stem}.* in --image_path {image_path}; name the file "
                         "after the image it belongs to (optionally ending in _depth or _gt)")
    return matches[0]


def depth_at_size(inverse_depth: torch.Tensor, depth: torch.Tensor, size: Sequence[int],
                  domain: str = "inverse_depth") -> torch.Tensor:
    """B x 1 x H x W depth (model units) at ``size = (H, W)`` from the network's B x 1 x h x w maps.

    Resized bilinearly (align_corners=False, as evaluation and the colour map do) in the model's
    ``prediction_domain``: inverse depth for the Monodepth2 lineage and PackNet (then inverted),
    depth itself for a network that predicts depth (SQLdepth).
    """
    if domain == "depth":
        return upsample_disp(depth, size)
    return 1.0 / upsample_disp(inverse_depth, size)


def pixel_intrinsics(height: int, width: int, pixels: Sequence[float] | None = None,
                     normalized: Sequence[float] | None = None) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of an H x W image: ``pixels`` as given, else ``normalized`` (fx and cx
    as fractions of the width, fy and cy of the height; KITTI's by default) times the image size."""
    if pixels is not None:
        return tuple(float(v) for v in pixels)
    fx, fy, cx, cy = normalized if normalized is not None else KITTI_NORMALIZED_INTRINSICS
    return fx * width, fy * height, cx * width, cy * height


def backproject_depth_map(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Camera-frame 3-D point of every pixel of a depth map (pinhole model, no distortion).

    Pixel (u, v), the centre of column u and row v counted from 0, at depth z is
    ``((u - cx) z / fx, (v - cy) z / fy, z)``: x right, y down, z forward (OpenCV axes), in the
    depth's units.

    Args:
        depth: H x W depth (z along the optical axis).
        fx, fy, cx, cy: intrinsics in pixels of this map.

    Returns:
        H x W x 3 float64 points; non-finite depths give non-finite points.
    """
    depth = np.asarray(depth, dtype=np.float64)
    height, width = depth.shape
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    return np.stack([(u - cx) * depth / fx, (v - cy) * depth / fy, depth], axis=-1)


def point_cloud(depth: np.ndarray, rgb: np.ndarray, intrinsics: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The coloured points of every pixel with a finite positive depth, in row-major pixel order.

    Args:
        depth: H x W depth (metres).
        rgb: H x W x 3 uint8 colours of the same pixels.
        intrinsics: (fx, fy, cx, cy) in pixels of this size.

    Returns:
        (N x 3 float32 points, N x 3 uint8 colours), N = the number of valid pixels.
    """
    if rgb.shape[:2] != depth.shape:
        raise ValueError(f"the image is {rgb.shape[:2]} but the depth {depth.shape}: they must be one size")
    valid = np.isfinite(depth) & (depth > 0)
    points = backproject_depth_map(depth, *intrinsics)[valid]
    return points.astype(np.float32), np.asarray(rgb, dtype=np.uint8)[valid]


def ply_header(count: int) -> bytes:
    """The ASCII header of a binary little-endian PLY file of ``count`` x y z / red green blue vertices."""
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {count}"]
    lines += [f"property {'float' if PLY_VERTEX_DTYPE[name] == np.float32 else 'uchar'} {name}"
              for name in PLY_VERTEX_DTYPE.names]
    return ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> Path:
    """Write N x 3 points (float32) and N x 3 colours (uint8) as a binary PLY file, atomically.

    Returns:
        ``path``.
    """
    if points.shape != colors.shape or points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points {points.shape} and colours {colors.shape} must both be N x 3")
    vertices = np.empty(len(points), dtype=PLY_VERTEX_DTYPE)
    for axis, name in enumerate(("x", "y", "z")):
        vertices[name] = points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, channel]
    with atomic_output(path, suffix=".ply") as tmp:
        with open(tmp, "wb") as f:
            f.write(ply_header(len(vertices)))
            f.write(vertices.tobytes())
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


def metric_scale_choice(opts: argparse.Namespace) -> str | float | None:
    """How the metric depth at input resolution is scaled (``--depth_scale``'s value, ``median`` with
    ``--gt_depth``, ``auto`` for ``--save_ply`` alone), or None when it is not asked for.

    Raises:
        ValueError: contradictory flags, named.
    """
    if opts.gt_depth is not None and opts.depth_scale not in (None, "median"):
        raise ValueError(f"--gt_depth sets the scale (the median ratio): drop --depth_scale {opts.depth_scale}, or "
                         "--gt_depth to use that scale")
    if opts.depth_scale == "median" and opts.gt_depth is None:
        raise ValueError("--depth_scale median needs --gt_depth FILE, the ground-truth depth to take the ratio to")
    choice = "median" if opts.gt_depth is not None else opts.depth_scale
    if choice is None and opts.save_ply:
        choice = "auto"
    if choice is not None and opts.pred_metric_depth:
        raise ValueError("--pred_metric_depth (x5.4 at network resolution) and --depth_scale/--gt_depth/--save_ply "
                         "(metres at the input's resolution) exclude each other: use --depth_scale stereo instead")
    return choice


def gt_median_scale(model, gt_path: Path, image_path: Path, images: Sequence[Path], height: int, width: int,
                    device: torch.device) -> float:
    """``--gt_depth``'s factor: median ground truth / median predicted depth, for the image it belongs to.

    The prediction (model units) is resized to the ground truth's size as `depth_at_size` does.

    Raises:
        FileNotFoundError, ValueError: the file, its image or its valid pixels are missing (named).
    """
    gt_depth = read_depth_map(gt_path)
    image_file = gt_depth_image(gt_path, image_path, images)
    inverse_depth, depth = predict(model, to_network_input([read_rgb(image_file)], height, width), device)
    predicted = depth_at_size(inverse_depth, depth, gt_depth.shape, model.prediction_domain)[0, 0].cpu().numpy()
    factor = median_scale(predicted, gt_depth)
    logger.info("--gt_depth %s: median ratio to the prediction for %s is %g", gt_path, image_file, factor)
    return factor


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Run the predictions; return the paths written.

    Raises:
        SkippedInputsError: after processing the readable images, when some could not be read
            (unless --skip_unreadable) or none could.
        OSError: an output folder is not writable (checked before any prediction).
        FileNotFoundError: ``--gt_depth`` does not exist.
        ValueError: the network predicts non-finite values (a diverged checkpoint); contradictory
            scale flags; a monocular model asked for metres without a scale; an unusable ``--gt_depth``.
    """
    configure_logging()
    parser = build_parser()
    opts = parse_args_with_config(parser, argv)
    scale_choice = metric_scale_choice(opts)
    device = select_device(opts.device)
    model = load_requested_model(opts, parser, device)
    spec = model.spec
    metric_scale = spec.metric_depth_scale
    if opts.pred_metric_depth and metric_scale is None:
        logger.warning("Warning: --pred_metric_depth is only meaningful for stereo-trained models; "
                       "this checkpoint was trained without stereo, so the depth is not metric")
        metric_scale = STEREO_SCALE_FACTOR
    # With --depth_scale, --gt_depth or --save_ply: metric depth at each input's own size.
    at_input_size = scale_choice is not None
    if at_input_size and scale_choice != "median":
        metric_scale = resolve_depth_scale(scale_choice, spec)
    explicit_scale = opts.pred_metric_depth or opts.depth_scale is not None or opts.gt_depth is not None
    depth_format = opts.save_depth or ("npy" if explicit_scale else "none")
    if depth_format != "none" and metric_scale is None and not at_input_size:
        logger.info("Depth is saved in the model's units: a monocular model's depth is up to scale")
    height, width = spec.height, spec.width
    if opts.image_shape is not None:
        height, width = opts.image_shape
        check_image_shape(spec, height, width)
        logger.info("Inputs resized to %d x %d (--image_shape; the checkpoint was trained at %d x %d)", height,
                    width, spec.height, spec.width)
    paths = list_images(Path(opts.image_path), opts.ext)
    if scale_choice == "median":
        metric_scale = gt_median_scale(model, Path(opts.gt_depth), Path(opts.image_path), paths, height, width,
                                       device)
    if at_input_size:
        logger.info("Depth in metres at each input's resolution: the model's depth x %g (--depth_scale %s)",
                    metric_scale, scale_choice)
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
            if at_input_size:
                metric_depth = metric_scale * depth_at_size(scaled_disp[i:i + 1], depth[i:i + 1], image.shape[:2],
                                                            model.prediction_domain)
                metric_depth = metric_depth.cpu().numpy()
                if depth_format != "none":
                    outputs.append(write_depth(output_dir / path.stem, metric_depth, depth_format))
                if opts.save_ply:
                    intrinsics = pixel_intrinsics(*image.shape[:2], opts.intrinsics, opts.normalized_intrinsics)
                    points, colors = point_cloud(metric_depth[0, 0], image, intrinsics)
                    outputs.append(write_ply(output_dir / f"{path.stem}_points.ply", points, colors))
            elif depth_format != "none":
                scaled_depth = (metric_scale or 1.0) * depth[i:i + 1]
                outputs.append(write_depth(output_dir / path.stem, scaled_depth.cpu().numpy(), depth_format))
            written.extend(outputs)
            logger.info("Processed %d of %d images - saved predictions to: %s",
                        position, len(paths), ", ".join(map(str, outputs)))
    check_failures(failures, len(paths) - len(failures), len(paths), opts.skip_unreadable)
    return written


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
