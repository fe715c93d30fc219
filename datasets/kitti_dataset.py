"""KITTI raw (`KITTIRAWDataset`): the real dataset and the project's synthetic one share this loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.mono_dataset import SIDE_TO_CAMERA, MonoDataset, SplitItem
from kitti_utils import KITTI_NORMALIZED_K


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
