"""NYU Depth v2 (`NYUDataset` for training on the raw sequences, `NYUTestSet` for the labelled test set).

Training frames are the raw Kinect colour frames (640 x 480): undistorted with the published
calibration, then cropped by 16 pixels on every side (the undistortion leaves invalid borders),
giving 608 x 448 before the resize to the network size. Evaluation reads the 654 labelled test
images as ``.h5`` files (``rgb`` 3 x 480 x 640 uint8, ``depth`` 480 x 640 metres) and scores the
centre crop rows 44:471, columns 40:601 with depth capped at 10 m and median scaling always on.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from datasets.benchmarks import EvalOptions, EvalProtocol, EvalSet, eval_split_file
from datasets.mono_dataset import MonoDataset, SplitItem
from utils import image_to_tensor, read_rgb, readlines, resize_area

NYU_RAW_SIZE = (640, 480)  # (W, H) of the Kinect colour frames
# Published colour-camera calibration of the NYU Depth v2 toolbox (pixels of the 640 x 480 frame).
NYU_FX, NYU_FY = 518.85790117450188, 519.46961112127485
NYU_CX, NYU_CY = 325.58244941119034, 253.73616633400465
# OpenCV order k1, k2, p1, p2, k3.
NYU_DISTORTION = (0.20796615318809061, -0.58613825163911781, 7.2231363135888329e-4,
                  1.0479627195765181e-3, 0.49856986684705107)
# Pixels removed on every side after undistortion (its borders are invalid).
NYU_TRAIN_CROP = 16
# Labelled test crop (rows, columns) of the 480 x 640 maps: the area with valid Kinect depth.
NYU_TEST_ROWS = (44, 471)
NYU_TEST_COLS = (40, 601)
NYU_MAX_DEPTH = 10.0
# Frame offset of each token of a training line (the StructDepth/BDEdepth list format).
NYU_TOKEN_FRAME_IDS = (0, -4, -3, -2, -1, 1, 2, 3, 4)


def nyu_camera_matrix() -> np.ndarray:
    """3 x 3 float64 K of the raw 640 x 480 colour frames, in pixels."""
    return np.array([[NYU_FX, 0.0, NYU_CX], [0.0, NYU_FY, NYU_CY], [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=1)
def _undistort_maps() -> tuple[np.ndarray, np.ndarray]:
    # The same maps cv2.undistort builds on every call, built once per process.
    k = nyu_camera_matrix()
    return cv2.initUndistortRectifyMap(k, np.asarray(NYU_DISTORTION), None, k, NYU_RAW_SIZE, cv2.CV_32FC1)


def undistort_nyu(image: np.ndarray) -> np.ndarray:
    """Undistort a 480 x 640 x C raw NYU frame (keeping K; bilinear), as ``cv2.undistort`` does."""
    map_x, map_y = _undistort_maps()
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR)


class NYUDataset(MonoDataset):
    """Raw NYU Depth v2 sequences for training (``--dataset nyuv2``).

    Each split line lists frame paths relative to ``data_path``, by position: the target, then
    frames -4, -3, -2, -1, +1, +2, +3, +4 (the StructDepth/BDEdepth format; a line needs tokens up
    to the farthest of ``frame_ids``). Frames must be 640 x 480. The normalised K is that of the
    cropped 608 x 448 frame: (fx/608, fy/448, (cx-16)/608, (cy-16)/448), so cx ~ 0.509 and
    cy ~ 0.531; the base class mirrors cx when a sample is flipped.
    """

    def parse_line(self, line: str, line_number: int) -> SplitItem:
        tokens = line.split()
        needed = max(NYU_TOKEN_FRAME_IDS.index(f) for f in self._temporal_ids(line_number)) + 1
        if len(tokens) < needed:
            raise ValueError(f"{self.split_name}, line {line_number}: {len(tokens)} path(s) but frame_ids "
                             f"{self.frame_ids} need {needed}: a line lists the target, then frames "
                             "-4 -3 -2 -1 +1 +2 +3 +4 (in that order)")
        # The whole line is the "folder"; image_path picks the token of each frame offset.
        return SplitItem(folder=" ".join(tokens), frame_index=0, side=None, line_number=line_number)

    def _temporal_ids(self, line_number: int) -> list[int]:
        if "s" in self.frame_ids:
            raise ValueError(f"{self.split_name}, line {line_number}: NYUv2 has no stereo pairs: drop --use_stereo")
        unknown = [f for f in self.frame_ids if f not in NYU_TOKEN_FRAME_IDS]
        if unknown:
            raise ValueError(f"NYUv2 lines hold frames -4..+4 only; frame_ids {unknown} are out of range")
        return list(self.frame_ids)

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        return self.data_path / folder.split()[NYU_TOKEN_FRAME_IDS.index(frame_index)]

    def normalized_intrinsics(self, item: SplitItem) -> np.ndarray:
        width = NYU_RAW_SIZE[0] - 2 * NYU_TRAIN_CROP
        height = NYU_RAW_SIZE[1] - 2 * NYU_TRAIN_CROP
        k = np.eye(4, dtype=np.float32)
        k[0, 0], k[0, 2] = NYU_FX / width, (NYU_CX - NYU_TRAIN_CROP) / width
        k[1, 1], k[1, 2] = NYU_FY / height, (NYU_CY - NYU_TRAIN_CROP) / height
        return k

    def load_image(self, path: Path, do_flip: bool) -> np.ndarray:
        """Decode, undistort, crop 16 px per side, flip if asked, resize: uint8 H x W x 3 RGB.

        The crop is symmetric, so flipping after it equals the reference's flip before it.
        """
        image = read_rgb(path)
        if image.shape[:2] != NYU_RAW_SIZE[::-1]:
            raise ValueError(f"{path} is {image.shape[1]} x {image.shape[0]}: NYU training frames must be the "
                             "raw 640 x 480 Kinect frames (the calibration is for that size)")
        image = undistort_nyu(image)
        c = NYU_TRAIN_CROP
        image = image[c:-c, c:-c]
        if do_flip:
            image = image[:, ::-1]
        return resize_area(image, self.height, self.width)


def read_nyu_h5(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a labelled test file.

    Returns:
        rgb: 480 x 640 x 3 uint8; depth: 480 x 640 float32 metres.
    """
    import h5py

    with h5py.File(path, "r") as f:
        missing = [key for key in ("rgb", "depth") if key not in f]
        if missing:
            raise ValueError(f"{path} lacks dataset(s) {missing}: NYUv2 test files hold 'rgb' "
                             "(3 x 480 x 640 uint8) and 'depth' (480 x 640 metres)")
        rgb = np.asarray(f["rgb"])
        depth = np.asarray(f["depth"], dtype=np.float32)
    if rgb.shape != (3, 480, 640) or depth.shape != (480, 640):
        raise ValueError(f"{path}: rgb {rgb.shape} and depth {depth.shape}; expected (3, 480, 640) "
                         "and (480, 640)")
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)), depth


def crop_nyu_test(array: np.ndarray) -> np.ndarray:
    """The evaluation crop (rows 44:471, columns 40:601) of a 480 x 640 (x C) array -> 427 x 561."""
    return array[NYU_TEST_ROWS[0]:NYU_TEST_ROWS[1], NYU_TEST_COLS[0]:NYU_TEST_COLS[1]]


class NYUTestSet(torch.utils.data.Dataset):
    """Labelled NYUv2 test images (one ``.h5`` path per line, relative to ``root``).

    Items: ``{("color_uint8", 0, 0): uint8 3 x height x width}``, the cropped RGB area-resized.
    ``ground_truth()`` gives the 427 x 561 cropped depth maps in metres, in list order.
    """

    def __init__(self, root: str | Path, lines: Sequence[str], height: int, width: int,
                 split_name: str = "nyuv2/test_files.txt") -> None:
        self.root = Path(root)
        self.height, self.width = height, width
        self.paths = [self.root / line.split()[0] for line in lines if line.strip()]
        if not self.paths:
            raise ValueError(f"{split_name} lists no test files")
        for number, path in enumerate(self.paths, start=1):
            if not path.is_file():
                raise FileNotFoundError(f"{split_name}, line {number}: {path} not found; --nyuv2_path must "
                                        "be the folder the listed .h5 paths are relative to")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        rgb, _ = read_nyu_h5(self.paths[index])
        return {("color_uint8", 0, 0): image_to_tensor(resize_area(crop_nyu_test(rgb), self.height, self.width))}

    def ground_truth(self) -> list[np.ndarray]:
        return [crop_nyu_test(read_nyu_h5(path)[1]).copy() for path in self.paths]


# NYUv2: 0 < gt < 10 on the 427 x 561 crop, nearest resize, always median-scaled, cap 10 m.
NYUV2_PROTOCOL = EvalProtocol("nyuv2", gt_min=0.0, gt_max=NYU_MAX_DEPTH, interpolation="nearest", clamp_min=None,
                              clamp_max=NYU_MAX_DEPTH, always_median_scaling=True)


def build_nyuv2_eval_sets(path: str, options: EvalOptions) -> list[EvalSet]:
    """``EVAL_DATASETS["nyuv2"]``: the labelled test set under the ``nyuv2`` protocol."""
    from torch.utils.data import DataLoader

    if not Path(path).is_dir():
        raise FileNotFoundError(f"--nyuv2_path {path} does not exist or is not a folder")
    if options.max_depth is not None and options.max_depth != NYU_MAX_DEPTH:
        logging.getLogger(__name__).warning(
            " NYUv2: the checkpoint's max_depth is %g; NYU models are trained with --max_depth 10",
            options.max_depth)
    split_file = eval_split_file("nyuv2", options.split)
    dataset = NYUTestSet(path, readlines(split_file), options.height, options.width, split_name=str(split_file))
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.num_workers)
    return [EvalSet(title="NYUv2", loader=loader, gt_depths=dataset.ground_truth(), protocol=NYUV2_PROTOCOL,
                    name="nyuv2")]
