"""Plain folders of numbered frames (``--dataset image_folder``), as PackNet-SfM's image dataset reads them.

Layout::

    <data_path>/000120.png ...            frames directly in the root form one sequence, named "."
    <data_path>/<sequence>/frame_0042.jpg frames of each sub-folder form one sequence each

A frame's number is the last run of digits in its file name (``cam2_000123.png`` is frame 123);
frames are ordered by that number (a natural sort, so ``9.png`` comes before ``10.png``) and
context frames are taken by *position* in that order, so gaps in the numbering do not matter. A
folder where a name carries no number, or two names carry the same one (``7.png`` and
``007.jpg``), is refused naming both files.

Split lines are ``<sequence> <frame number>``; without a split (``filenames=None``) every frame
of every sequence is a sample. Either way, a frame whose context frames fall outside its
sequence is left out, and the count is logged (PackNet drops such frames too).

Intrinsics, first match wins: the ``intrinsics`` argument (``--intrinsics``: ``fx fy cx cy`` or
a file holding them), the sequence's or the root's ``intrinsics.txt`` (as ``--dataset custom``),
else KITTI's normalised K (fx 0.58 W, fy 1.92 H, centred principal point), the default
Monodepth2 applies to any video. Values may be normalised or in pixels of the frames' native
size (anything above 10 is read as pixels). There is no ground truth.

Everything else (loading, the split-line checks, the intrinsics parser) is `CustomDataset`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.custom_dataset import FRAME_EXTENSIONS, CustomDataset, frame_number, numbered_frames
from datasets.mono_dataset import SplitItem
from kitti_utils import KITTI_NORMALIZED_K

logger = logging.getLogger(__name__)

# The sequence name of frames lying directly in --data_path.
ROOT_SEQUENCE = "."


def find_sequences(root: Path) -> list[str]:
    """Sequence names under ``root``: ``"."`` if it holds frames itself, then each sub-folder with frames."""
    def has_frames(folder: Path) -> bool:
        return any(p.suffix.lower() in FRAME_EXTENSIONS for p in folder.iterdir())

    names = [ROOT_SEQUENCE] if has_frames(root) else []
    names += sorted(p.name for p in root.iterdir() if p.is_dir() and has_frames(p))
    if not names:
        raise FileNotFoundError(f"--data_path {root} holds no frames ({', '.join(FRAME_EXTENSIONS)}) and no "
                                "sub-folder with frames")
    return names


def all_frame_lines(root: str | Path) -> list[str]:
    """``<sequence> <frame number>`` for every frame under ``root`` (no context check)."""
    root = Path(root)
    return [f"{name} {number}" for name in find_sequences(root) for number, _ in numbered_frames(root / name)]


def image_folder_split_lines(root: str | Path, frame_ids: Sequence[int] = (0, -1, 1)) -> tuple[list[str], int]:
    """Split lines of every frame under ``root`` whose context frames exist: (lines, number left out)."""
    root = Path(root)
    offsets = [int(f) for f in frame_ids]
    lines, dropped = [], 0
    for name in find_sequences(root):
        frames = numbered_frames(root / name)
        for position, (number, _) in enumerate(frames):
            if 0 <= position + min(offsets) and position + max(offsets) < len(frames):
                lines.append(f"{name} {number}")
            else:
                dropped += 1
    return lines, dropped


class ImageFolderDataset(CustomDataset):
    """Numbered frames in one or more folders; see the module docstring for the layout.

    Args:
        data_path: the folder of frames, or of sequence folders.
        filenames: split lines ``<sequence> <frame number>``, or None for every frame.
        intrinsics: ``"fx fy cx cy"`` (or 9 numbers of a 3 x 3 K), or the path of a file holding
            them; normalised or in pixels. None: ``intrinsics.txt`` if present, else KITTI's K.
        Other arguments: as `MonoDataset` (``img_ext`` is ignored; stereo is not supported).

    Attributes:
        num_dropped: how many frames were left out because a context frame is missing.
    """

    # The Trainer passes filenames=None when the --split folder has no train_files.txt.
    every_frame_without_split = True
    pixels_at_native_size = True

    def __init__(self, data_path, filenames: Sequence[str] | None, *args, intrinsics: str | None = None,
                 **kwargs):
        self.num_dropped = 0
        self._numbers: dict[str, dict[int, int]] = {}
        if filenames is None:
            filenames = all_frame_lines(data_path) if Path(data_path).is_dir() else []
            kwargs.setdefault("split_name", f"every frame of --data_path {data_path}")
        super().__init__(data_path, filenames, *args, intrinsics=intrinsics, **kwargs)

    # ----------------------------------------------------------------------------- CustomDataset hooks
    def list_sequence_frames(self, path: Path) -> list[Path]:
        return [frame for _, frame in numbered_frames(path)]

    def sequence_intrinsics(self, folder: str, path: Path) -> np.ndarray:
        given = self.given_intrinsics(path)
        if given is None:
            logger.info("image_folder: no --intrinsics and no intrinsics.txt for sequence %s: using KITTI's normalised K "
                        "(fx 0.58 W, fy 1.92 H, centred principal point)", folder)
            return np.asarray(KITTI_NORMALIZED_K, dtype=np.float32).copy()
        return self.parse_sequence_intrinsics(path, *given)

    # ----------------------------------------------------------------------------- split lines
    def parse_line(self, line: str, line_number: int) -> SplitItem:
        tokens = line.split()
        if len(tokens) != 2:
            raise ValueError(f"{self.split_name}, line {line_number}: expected '<sequence> <frame number>', "
                             f"got {line.strip()!r}")
        folder, number_text = tokens
        try:
            number = int(number_text)
        except ValueError:
            raise ValueError(f"{self.split_name}, line {line_number}: frame number {number_text!r} is not "
                             "an integer (the number in the frame's file name)") from None
        frames = self._sequence(folder, line_number)
        if folder not in self._numbers:
            self._numbers[folder] = {frame_number(path): position for position, path in enumerate(frames)}
        position = self._numbers[folder].get(number)
        if position is None:
            numbers = sorted(self._numbers[folder])
            raise ValueError(f"{self.split_name}, line {line_number}: sequence {folder} has no frame numbered "
                             f"{number} (its frames are numbered {numbers[0]} to {numbers[-1]}, "
                             f"{len(numbers)} in all)")
        return SplitItem(folder=folder, frame_index=position, side=None, line_number=line_number)

    def _parse_split(self, filenames: Sequence[str]) -> list[SplitItem]:
        """The base parse, less the frames whose context frames fall outside their sequence."""
        items = super()._parse_split(filenames)
        offsets = [f for f in self.frame_ids if f != "s"]
        kept = [item for item in items
                if 0 <= item.frame_index + min(offsets) and
                item.frame_index + max(offsets) < len(self._frames[item.folder])]
        self.num_dropped = len(items) - len(kept)
        if self.num_dropped:
            logger.warning("%s: %d of %d frames left out: their context frames (%s) fall outside the sequence",
                           self.split_name, self.num_dropped, len(items), offsets)
        if not kept:
            raise ValueError(f"{self.split_name}: no frame has all its context frames {offsets}: each sequence "
                             "needs more frames than the span of --frame_ids")
        return kept
