"""The KITTI datasets.

- `KITTIRAWDataset`: KITTI raw drives; the real dataset and the project's synthetic one share it.
- `KITTIOdomDataset`: the odometry benchmark's ``sequences/`` layout (``--dataset kitti_odom``).
- `KITTIDepthDataset`: raw images plus the depth benchmark's annotated maps (``--dataset kitti_depth``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from datasets.mono_dataset import SIDE_TO_CAMERA, MonoDataset, SplitItem
from kitti_utils import KITTI_NORMALIZED_K, read_kitti_depth_png


class KITTIRAWDataset(MonoDataset):
    """KITTI raw drives: ``<data_path>/<date>/<date>_drive_NNNN_sync/image_0{2,3}/data/%010d.png``.

    Split lines are ``<date>/<date>_drive_NNNN_sync <frame> <side>`` with side l/r (or 2/3); the
    frame may be zero-padded (as in the eigen test list). Every drive uses the same normalised
    intrinsics (fx 0.58, fy 1.92, centred principal point), so images of any native size map to
    the same K at the network resolution.
    """

    def parse_line(self, line: str, line_number: int) -> SplitItem:
        tokens = line.split()
        if len(tokens) != 3 or tokens[2] not in SIDE_TO_CAMERA:
            raise ValueError(f"{self.split_name}, line {line_number}: expected "
                             f"'<date>/<drive> <frame> <side l|r>', got {line.strip()!r}")
        folder, frame, side = tokens
        try:
            frame_index = int(frame)
        except ValueError:
            raise ValueError(f"{self.split_name}, line {line_number}: frame index {frame!r} is not "
                             "an integer") from None
        return SplitItem(folder=folder, frame_index=frame_index, side=side, line_number=line_number)

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        camera = SIDE_TO_CAMERA[side]
        return self.data_path / folder / f"image_0{camera}" / "data" / f"{frame_index:010d}{self.img_ext}"

    def normalized_intrinsics(self, item: SplitItem) -> np.ndarray:
        return np.asarray(KITTI_NORMALIZED_K, dtype=np.float32)


class KITTIOdomDataset(KITTIRAWDataset):
    """KITTI odometry: ``<data_path>/sequences/<SS>/image_{2,3}/<frame:06d>.png``.

    Split lines are ``<sequence> <frame> <side>`` with the sequence as an integer (``9 120 l``,
    as in Monodepth2's ``splits/odom``). The normalised intrinsics are KITTI raw's; the
    ground-truth poses for `evaluate_pose.py` live in ``<data_path>/poses/<SS>.txt``.
    """

    def parse_line(self, line: str, line_number: int) -> SplitItem:
        item = super().parse_line(line, line_number)
        try:
            int(item.folder)
        except ValueError:
            raise ValueError(f"{self.split_name}, line {line_number}: the odometry sequence "
                             f"{item.folder!r} is not an integer; odometry lines read "
                             "'<sequence> <frame> <side>', e.g. '9 120 l' (is this a raw-KITTI "
                             "split? use --dataset kitti)") from None
        return item

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        camera = SIDE_TO_CAMERA[side]
        return (self.data_path / "sequences" / f"{int(folder):02d}" / f"image_{camera}"
                / f"{frame_index:06d}{self.img_ext}")


def odometry_pose_path(data_path: str | Path, sequence: int) -> Path:
    """``<data_path>/poses/<SS>.txt``: one 3 x 4 camera-to-world matrix per frame, row-major."""
    return Path(data_path) / "poses" / f"{sequence:02d}.txt"


# (W, H) the reference resizes depth to for its 1 x H x W ``depth_gt`` (KITTI's most common size).
KITTI_FULL_RES_SHAPE = (1242, 375)


class KITTIDepthDataset(KITTIRAWDataset):
    """KITTI raw images with the annotated depth maps of the KITTI depth benchmark.

    Depth: ``<data_path>/<folder>/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png``.
    Images and split lines are KITTI raw's. Every line's depth map is checked at construction.

    Args:
        load_depth: add ``"depth_gt"`` (float32 1 x 375 x 1242 metres, nearest-resized,
            flipped with the images) to each sample, as the reference's ``load_depth``.
        Other arguments: as `MonoDataset`.
    """

    def __init__(self, *args, load_depth: bool = False, **kwargs):
        self.load_depth = load_depth
        super().__init__(*args, **kwargs)

    def depth_path(self, item: SplitItem) -> Path:
        camera = SIDE_TO_CAMERA[item.side]
        return (self.data_path / item.folder / "proj_depth" / "groundtruth" / f"image_0{camera}"
                / f"{item.frame_index:010d}.png")

    def _check_files(self) -> None:
        super()._check_files()
        for item in self.items:
            path = self.depth_path(item)
            if not path.is_file():
                raise FileNotFoundError(
                    f"{self.split_name}, line {item.line_number}: annotated depth not found: {path}. "
                    "Unpack data_depth_annotated.zip into the raw drive folders "
                    "(<drive>/proj_depth/groundtruth/image_0{2,3}/)")

    def get_depth(self, item: SplitItem, do_flip: bool = False) -> np.ndarray:
        """H x W float32 metres at the map's native size (0 = unknown), mirrored if ``do_flip``."""
        depth = read_kitti_depth_png(self.depth_path(item))
        return np.ascontiguousarray(depth[:, ::-1]) if do_flip else depth

    def ground_truth(self) -> list[np.ndarray]:
        """The native-size depth maps of every split line, in order (for evaluation)."""
        return [self.get_depth(item) for item in self.items]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        sample = super().__getitem__(key)
        if self.load_depth:
            depth = self.get_depth(self.items[int(sample["index"])], bool(sample["do_flip"]))
            depth = cv2.resize(depth, KITTI_FULL_RES_SHAPE, interpolation=cv2.INTER_NEAREST)
            sample["depth_gt"] = torch.from_numpy(depth)[None]
        return sample
