"""EuRoC MAV stereo sequences (``--dataset euroc``), as FeatDepth trains on them (methods spec 4).

Layout: ``--data_path`` is one sequence folder (e.g. ``MH_02_easy``) holding the two cameras, either
as the ASL download unpacks them or as FeatDepth's loader expects them (without the ``mav0`` level)::

    <data_path>/mav0/cam0/data/<timestamp ns>.png   left camera (side l)
    <data_path>/mav0/cam1/data/<timestamp ns>.png   right camera (side r, the stereo partner "s")
    or <data_path>/cam0/data/..., <data_path>/cam1/data/...

Frames are the file names of ``cam0/data`` in sorted order (the timestamps have the same number of
digits, so this is time order); a frame's temporal neighbours are the previous and next *index*,
and its stereo partner is the ``cam1`` frame of the same name (the two cameras are triggered
together). Split lines are ``<frame index> <side l|r>``; without a split (``filenames=None``)
every cam0 frame whose neighbours exist is a sample. FeatDepth wraps index 0's frame -1 round to
the last frame; here a line whose neighbours fall outside the sequence is refused (with a split)
or left out (without one).

Camera: FeatDepth's pinhole K, fx = fy = 435.2047 px over the 752 x 480 frames with the principal
point at the centre, normalised by that size, so any network size (FeatDepth: 480 x 768) gets the
same field of view; frames of another native size are refused, since this K would not describe
them. No undistortion or rectification is applied: FeatDepth reads the frames as they are with
this K and no distortion (the spec notes it looks like a rectified camera; the ASL frames as
published are radial-tangentially distorted and the pair is not rectified, so rectify them first,
at 752 x 480, for exact geometry). The stereo translation is FeatDepth's 0.1 training unit
(`mono_dataset.STEREO_BASELINE_UNITS`, sign -1 for the left camera, mirrored with a flip). There
is no ground truth (no evaluation set).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from datasets.mono_dataset import MonoDataset, SplitItem

logger = logging.getLogger(__name__)

# FeatDepth's EuRoC camera (FD mono/datasets/euroc_dataset.py): focal length in pixels of the
# 752 x 480 frames, principal point at the centre.
EUROC_FOCAL_PX = 435.2047
EUROC_IMAGE_SIZE = (752, 480)  # width, height
EUROC_CAMERAS = {"l": "cam0", "r": "cam1"}
EUROC_FRAME_EXT = ".png"


def euroc_normalized_intrinsics() -> np.ndarray:
    """4 x 4 float32 K of FeatDepth's EuRoC camera, row 0 divided by 752 and row 1 by 480."""
    width, height = EUROC_IMAGE_SIZE
    K = np.eye(4, dtype=np.float32)
    K[0, 0], K[1, 1] = EUROC_FOCAL_PX / width, EUROC_FOCAL_PX / height
    K[0, 2], K[1, 2] = 0.5, 0.5
    return K


def euroc_camera_root(sequence: str | Path) -> Path:
    """The folder holding ``cam0/`` and ``cam1/``: ``<sequence>/mav0`` (ASL layout) or ``<sequence>``.

    Raises:
        FileNotFoundError: neither holds ``cam0/data``; the message names both places.
    """
    sequence = Path(sequence)
    for root in (sequence / "mav0", sequence):
        if (root / "cam0" / "data").is_dir():
            return root
    raise FileNotFoundError(f"--data_path {sequence}: no EuRoC camera folder; expected {sequence}/mav0/cam0/data "
                            f"(the ASL layout) or {sequence}/cam0/data with the {EUROC_FRAME_EXT} frames: point "
                            "--data_path at one sequence folder, e.g. MH_02_easy")


class EuRoCDataset(MonoDataset):
    """One EuRoC sequence; see the module docstring for the layout, camera and split lines.

    Args:
        data_path: the sequence folder.
        filenames: split lines ``<frame index> <side l|r>``, or None for every cam0 frame whose
            temporal neighbours exist.
        Other arguments: as `MonoDataset` (``img_ext`` is ignored: EuRoC frames are PNGs).

    Attributes:
        frame_names: the cam0 file names in time order (index -> name).
        num_dropped: frames left out (no split) because a neighbour falls outside the sequence.
    """

    every_frame_without_split = True

    def __init__(self, data_path, filenames: Sequence[str] | None, *args, **kwargs):
        self.camera_root = euroc_camera_root(data_path) if Path(data_path).is_dir() else Path(data_path)
        frames = self.camera_root / "cam0" / "data"
        self.frame_names = sorted(p.name for p in frames.glob(f"*{EUROC_FRAME_EXT}")) if frames.is_dir() else []
        if Path(data_path).is_dir() and not self.frame_names:
            raise FileNotFoundError(f"{frames} holds no {EUROC_FRAME_EXT} frames: EuRoC cameras store one PNG per "
                                    "timestamp there")
        self.num_dropped = 0
        self._every_frame = filenames is None
        if filenames is None:
            filenames = [f"{index} l" for index in range(len(self.frame_names))]
            kwargs.setdefault("split_name", f"every cam0 frame of --data_path {data_path}")
        super().__init__(data_path, filenames, *args, **kwargs)

    # ----------------------------------------------------------------------------- MonoDataset hooks
    def parse_line(self, line: str, line_number: int) -> SplitItem:
        tokens = line.split()
        if len(tokens) != 2 or tokens[1] not in EUROC_CAMERAS:
            raise ValueError(f"{self.split_name}, line {line_number}: expected '<frame index> <side l|r>' "
                             f"(e.g. '120 l'), got {line.strip()!r}")
        try:
            frame_index = int(tokens[0])
        except ValueError:
            raise ValueError(f"{self.split_name}, line {line_number}: frame index {tokens[0]!r} is not an integer "
                             "(EuRoC lines count frames in time order, from 0)") from None
        return SplitItem(folder=".", frame_index=frame_index, side=tokens[1], line_number=line_number)

    def _parse_split(self, filenames: Sequence[str]) -> list[SplitItem]:
        """The parsed lines; without a split, less the frames whose neighbours fall outside the sequence."""
        items = super()._parse_split(filenames)
        if not self._every_frame:
            return items
        kept = [item for item in items if self._outside(item) is None]
        self.num_dropped = len(items) - len(kept)
        if self.num_dropped:
            logger.info("%s: %d of %d frames left out: their neighbours %s fall outside the sequence",
                        self.split_name, self.num_dropped, len(items), self.frame_ids)
        if not kept:
            raise ValueError(f"{self.split_name}: no frame has all its neighbours {self.frame_ids}: the sequence has "
                             f"{len(self.frame_names)} frames")
        return kept

    def _outside(self, item: SplitItem) -> int | None:
        """The first frame index the item loads that the sequence does not have, else None."""
        for frame_index, _ in self._frame_sources(item).values():
            if not 0 <= frame_index < len(self.frame_names):
                return frame_index
        return None

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        return self.camera_root / EUROC_CAMERAS[side] / "data" / self.frame_names[frame_index]

    def normalized_intrinsics(self, item: SplitItem) -> np.ndarray:
        return euroc_normalized_intrinsics()

    # ----------------------------------------------------------------------------- construction checks
    def _check_files(self) -> None:
        """Indices inside the sequence, every frame present in its camera, and the native size."""
        for item in self.items:
            outside = self._outside(item)
            if outside is not None:
                raise FileNotFoundError(
                    f"{self.split_name}, line {item.line_number}: frame {item.frame_index} needs frame {outside} "
                    f"(neighbours {self.frame_ids}), but the sequence has frames 0 to {len(self.frame_names) - 1}: "
                    "drop the lines at the ends of the sequence")
        super()._check_files()  # the cam1 frame of each name (side r, or the stereo partner "s")
        sides = {side for item in self.items for _, side in self._frame_sources(item).values()}
        for side in sorted(sides):
            self._check_native_size(self.image_path(".", self.items[0].frame_index, side))

    def _missing_image_message(self, item: SplitItem, path: Path) -> str:
        return (f"{self.split_name}, line {item.line_number}: {path} not found: every cam0 frame needs the cam1 frame "
                "of the same timestamp for side r or stereo (--use_stereo); copy the sequence's complete "
                f"{path.parent.parent.name}/data folder")

    @staticmethod
    def _check_native_size(path: Path) -> None:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise OSError(f"could not read the EuRoC frame {path}")
        size = (image.shape[1], image.shape[0])
        if size != EUROC_IMAGE_SIZE:
            raise ValueError(f"{path} is {size[0]} x {size[1]} pixels; EuRoC's camera (fx = fy = {EUROC_FOCAL_PX} px, "
                             f"centred principal point) is defined for {EUROC_IMAGE_SIZE[0]} x {EUROC_IMAGE_SIZE[1]} "
                             "frames: use the sequence's frames at their native size (the network size is "
                             "--height/--width)")
