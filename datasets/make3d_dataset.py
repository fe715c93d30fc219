"""Make3D (evaluation only): the 134 test images and their laser depth grids.

Layout: ``<root>/Test134/img-<name>.jpg`` (1704 x 2272 portrait photos) and
``<root>/Gridlaserdata/depth_sph_corr-<name>.mat`` (MATLAB v5; ``Position3DGrid`` is 55 x 305 x 4
and channel 3 is depth in metres). The C1 protocol scores rows 17:38 of the grid (the band that
the 2:1 centre crop of the photo, rows 710:1562, covers) where 0 < gt < 70, median-scaled, with
predictions capped at 70 m, on four metrics; the fourth is the RMSE of log10 depths
(``rmse_log10``), which the reference printed under the natural-log name ``rmse_log``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from datasets.benchmarks import EvalOptions, EvalProtocol, EvalSet, eval_split_file
from utils import image_to_tensor, read_rgb, readlines, resize_area

MAKE3D_IMAGE_DIR = "Test134"
MAKE3D_DEPTH_DIR = "Gridlaserdata"
# (left, top, right, bottom) of the 1704 x 2272 photo: the 2:1 band the laser grid covers.
MAKE3D_IMAGE_SIZE = (1704, 2272)  # (W, H) of the test photos
MAKE3D_IMAGE_CROP = (0, 710, 1704, 1562)
MAKE3D_GRID_ROWS = (17, 38)
MAKE3D_DEPTH_CHANNEL = 3
MAKE3D_MAX_DEPTH = 70.0


def make3d_paths(root: Path, name: str) -> tuple[Path, Path]:
    return (root / MAKE3D_IMAGE_DIR / f"img-{name}.jpg",
            root / MAKE3D_DEPTH_DIR / f"depth_sph_corr-{name}.mat")


def read_make3d_depth(path: str | Path) -> np.ndarray:
    """The scored band of a laser grid: 21 x 305 float32 metres (rows 17:38, channel 3)."""
    from scipy.io import loadmat

    try:
        grid = loadmat(str(path))["Position3DGrid"]
    except KeyError:
        raise ValueError(f"{path} has no Position3DGrid: is it a Make3D depth_sph_corr file?") from None
    if grid.ndim != 3 or grid.shape[2] <= MAKE3D_DEPTH_CHANNEL:
        raise ValueError(f"{path}: Position3DGrid has shape {grid.shape}, expected 55 x 305 x 4")
    return np.asarray(grid[MAKE3D_GRID_ROWS[0]:MAKE3D_GRID_ROWS[1], :, MAKE3D_DEPTH_CHANNEL], dtype=np.float32)


def crop_make3d_image(image: np.ndarray) -> np.ndarray:
    """The 2:1 centre band of an H x W x 3 photo. Crop fractions of the 1704 x 2272 original, so
    downsized copies crop the same band."""
    height, width = image.shape[:2]
    left, top, right, bottom = MAKE3D_IMAGE_CROP
    full_w, full_h = MAKE3D_IMAGE_SIZE
    return image[round(top * height / full_h):round(bottom * height / full_h),
                 round(left * width / full_w):round(right * width / full_w)]


class Make3DTestSet(torch.utils.data.Dataset):
    """Items: ``{("color_uint8", 0, 0): uint8 3 x height x width}`` (band crop, area resize)."""

    def __init__(self, root: str | Path, names: Sequence[str], height: int, width: int) -> None:
        self.root = Path(root)
        self.names = list(names)
        self.height, self.width = height, width
        if not self.names:
            raise FileNotFoundError(f"no {self.root / MAKE3D_IMAGE_DIR}/img-*.jpg found: --make3d_path must hold "
                                    f"{MAKE3D_IMAGE_DIR}/ and {MAKE3D_DEPTH_DIR}/")
        for name in self.names:
            for path in make3d_paths(self.root, name):
                if not path.is_file():
                    raise FileNotFoundError(f"Make3D test item {name}: {path} not found (unpack Test134.tar.gz "
                                            "and Test134Depth.tar.gz into --make3d_path)")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        path = make3d_paths(self.root, self.names[index])[0]
        image = crop_make3d_image(read_rgb(path))  # OpenCV decodes truncated JPEGs as far as they go
        return {("color_uint8", 0, 0): image_to_tensor(resize_area(image, self.height, self.width))}

    def ground_truth(self) -> list[np.ndarray]:
        return [read_make3d_depth(make3d_paths(self.root, name)[1]) for name in self.names]


def make3d_names(root: Path, split_file: Path | None = None) -> list[str]:
    """Test names from a split file (``img-<name>.jpg`` or ``<name>`` per line), else the folder."""
    if split_file is not None:
        names = [line.split()[0] for line in readlines(split_file) if line.strip()]
        return [n[len("img-"):] if n.startswith("img-") else n for n in (Path(n).stem for n in names)]
    return sorted(p.stem[len("img-"):] for p in (root / MAKE3D_IMAGE_DIR).glob("img-*.jpg"))


# Make3D C1: 0 < gt < 70 on the 21 x 305 laser band, nearest resize, predictions capped at
# 70 m (no lower clamp), four metrics with the log10 RMSE under its own name.
MAKE3D_PROTOCOL = EvalProtocol("make3d", gt_min=0.0, gt_max=MAKE3D_MAX_DEPTH, interpolation="nearest",
                               clamp_min=None, clamp_max=MAKE3D_MAX_DEPTH, metric_set="make3d")


def build_make3d_eval_sets(path: str, options: EvalOptions) -> list[EvalSet]:
    """``EVAL_DATASETS["make3d"]``: the C1 protocol on every ``Test134/img-*.jpg`` (or a split's list)."""
    from torch.utils.data import DataLoader

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"--make3d_path {path} does not exist or is not a folder")
    split_file = eval_split_file("make3d", options.split) if options.split else None
    dataset = Make3DTestSet(root, make3d_names(root, split_file), options.height, options.width)
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.num_workers)
    return [EvalSet(title="Make3D", loader=loader, gt_depths=dataset.ground_truth(), protocol=MAKE3D_PROTOCOL,
                    name="make3d")]
