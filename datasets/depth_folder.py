"""A user's own depth ground truth: a folder of depth maps named after the images they belong to.

    python evaluate_depth.py --pretrained_path model.pth --image_path my_frames --gt_folder my_depth

Each map ``<name>.npy`` / ``<name>.npz`` (metres) or ``<name>.png`` (16-bit, metres x
``--gt_png_scale``, 256 as KITTI's depth PNGs; 1000 for millimetres) belongs to the image
``<name>.png|jpg|jpeg`` of the image folder; a map may also end in ``_depth``, ``_gt`` or
``_groundtruth`` (``0005_depth.npy`` for ``0005.png``). 0 (or a non-finite value) marks a pixel
without depth. Every map must find its image, or the evaluation is refused naming the maps that do
not; images without a map are not scored (the log says how many). The maps may have any size: the
prediction is resized to each map, as on every benchmark.

`read_depth_map` is also what ``test_simple.py --gt_depth`` reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from datasets.benchmarks import EvalOptions, EvalProtocol, EvalSet
from kitti_utils import KITTI_DEPTH_PNG_SCALE, MAX_EVAL_DEPTH, MIN_EVAL_DEPTH, read_kitti_depth_png
from utils import image_to_tensor, read_rgb, resize_area

logger = logging.getLogger(__name__)

# Ground-truth files named after their image with one of these endings still match it.
GT_NAME_SUFFIXES = ("_depth", "_gt", "_groundtruth")
DEPTH_FILE_SUFFIXES = (".npy", ".npz", ".png")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_depth_map(path: Path, flag: str = "--gt_depth", png_scale: float = KITTI_DEPTH_PNG_SCALE) -> np.ndarray:
    """An H x W float64 depth map in metres (0 where there is none) from .npy, .npz or a 16-bit PNG.

    An ``.npz`` holds it under ``depth`` or as its only array; singleton axes are dropped (1 x 1 x H x W).
    A PNG holds metres x ``png_scale`` (KITTI's 256 by default).

    Raises:
        FileNotFoundError, ValueError: naming ``flag`` and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            depth = read_kitti_depth_png(path) * (KITTI_DEPTH_PNG_SCALE / png_scale)
        elif suffix == ".npy":
            depth = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.keys())
                if "depth" not in names and len(names) != 1:
                    raise ValueError(f"holds {names}: store the depth under 'depth' or alone")
                depth = archive["depth" if "depth" in names else names[0]]
        else:
            raise ValueError("is not .npy, .npz or a 16-bit .png")
    except (ValueError, OSError) as err:
        raise ValueError(f"{flag} {path}: {err}") from err
    depth = np.squeeze(np.asarray(depth, dtype=np.float64))
    if depth.ndim != 2:
        raise ValueError(f"{flag} {path}: expected an H x W depth map, got shape {depth.shape}")
    return depth


def image_stem(gt_path: Path) -> str:
    """The name of the image a ground-truth file belongs to: its stem less a `GT_NAME_SUFFIXES` ending."""
    stem = gt_path.stem
    for suffix in GT_NAME_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def match_depth_maps(image_folder: Path, gt_folder: Path) -> list[tuple[Path, Path]]:
    """``(image, depth map)`` pairs, in the maps' name order; every map must have its image.

    Raises:
        FileNotFoundError: a folder is missing or holds no file of its kind.
        ValueError: maps without an image (named, with the images' names for comparison), or two
            maps for one image.
    """
    for folder, flag in ((image_folder, "--image_path"), (gt_folder, "--gt_folder")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{flag} {folder} does not exist or is not a folder")
    images = {}
    for path in sorted(image_folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            images.setdefault(path.stem, path)
    maps = sorted(p for p in gt_folder.iterdir() if p.suffix.lower() in DEPTH_FILE_SUFFIXES and p.is_file()
                  and not (gt_folder == image_folder and p.stem in images))
    if not maps:
        raise FileNotFoundError(f"--gt_folder {gt_folder} holds no depth map ({', '.join(DEPTH_FILE_SUFFIXES)})")
    if not images:
        raise FileNotFoundError(f"--image_path {image_folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    pairs, unmatched, claimed = [], [], {}
    for gt_path in maps:
        stem = image_stem(gt_path) if image_stem(gt_path) in images else gt_path.stem
        if stem not in images:
            unmatched.append(gt_path.name)
            continue
        if stem in claimed:
            raise ValueError(f"--gt_folder: {claimed[stem].name} and {gt_path.name} both belong to image "
                             f"{images[stem].name}: keep one")
        claimed[stem] = gt_path
        pairs.append((images[stem], gt_path))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        examples = ", ".join(sorted(images)[:3])
        raise ValueError(f"--gt_folder {gt_folder}: {len(unmatched)} of {len(maps)} depth maps have no image of "
                         f"the same name in --image_path {image_folder}: {shown} (images there are named like "
                         f"{examples}); name each map after its image, optionally ending in "
                         f"{', '.join(GT_NAME_SUFFIXES)}")
    if len(pairs) < len(images):
        logger.info("--gt_folder: %d of the %d images in %s have a depth map; the others are not scored",
                    len(pairs), len(images), image_folder)
    return pairs


class ImageFiles(torch.utils.data.Dataset):
    """Image files as ``{("color_uint8", 0, 0): uint8 3 x height x width}``, area-resized like the training loader."""

    def __init__(self, paths: list[Path], height: int, width: int) -> None:
        self.paths, self.height, self.width = list(paths), height, width

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return {("color_uint8", 0, 0): image_to_tensor(resize_area(read_rgb(self.paths[index]), self.height,
                                                                   self.width))}


def gt_folder_protocol(min_depth: float = MIN_EVAL_DEPTH, max_depth: float = MAX_EVAL_DEPTH) -> EvalProtocol:
    """Monodepth2's KITTI scoring without a crop: min_depth < gt < max_depth, predictions clamped to the range."""
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= --gt_min_depth < --gt_max_depth (got {min_depth} and {max_depth})")
    return EvalProtocol(name="gt_folder", gt_min=min_depth, gt_max=max_depth, clamp_min=max(min_depth, 1e-3),
                        clamp_max=max_depth)


def build_gt_folder_eval_sets(image_folder: str | Path, gt_folder: str | Path, options: EvalOptions,
                              protocol: EvalProtocol | None = None,
                              png_scale: float = KITTI_DEPTH_PNG_SCALE) -> list[EvalSet]:
    """One EvalSet: the images of ``image_folder`` that have a map in ``gt_folder`` (`match_depth_maps`)."""
    pairs = match_depth_maps(Path(image_folder), Path(gt_folder))
    gt_depths = [read_depth_map(gt_path, "--gt_folder", png_scale) for _, gt_path in pairs]
    loader = torch.utils.data.DataLoader(ImageFiles([image for image, _ in pairs], options.height, options.width),
                                         batch_size=options.batch_size, num_workers=options.num_workers)
    return [EvalSet(title=f"{gt_folder} ({len(pairs)} depth maps)", loader=loader, gt_depths=gt_depths,
                    protocol=protocol or gt_folder_protocol(), name="gt_folder")]
