"""Users' own videos (``--dataset custom``): one folder of frames per sequence and an intrinsics file.

Layout::

    <data_path>/intrinsics.txt            normalised fx fy cx cy (or a 3 x 3 normalised K)
    <data_path>/<sequence>/000000.jpg     frames of one video, in time order by the number in the name
    <data_path>/<sequence>/intrinsics.txt optional: overrides the root file for that sequence

Split lines are ``<sequence> <frame>``, where ``<frame>`` is the frame's position in the
sequence's frames in number order (0-based); `write_custom_splits` (or ``python
prepare_custom.py``) writes train/val lists with every frame whose neighbours exist.

Intrinsics are normalised: fx and cx divided by the image width, fy and cy by its height, so the
same numbers hold at any resolution the frames are resized to. They are checked when the dataset
is built, and the errors say how to fix a file written in pixels.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.mono_dataset import MonoDataset, SplitItem
from utils import atomic_output

INTRINSICS_FILE = "intrinsics.txt"
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
# A normalised focal length of 10 is a 5.7-degree field of view; anything larger is almost
# certainly a focal length in pixels.
MAX_NORMALIZED_FOCAL = 10.0


def parse_intrinsics(text: str, source: str, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Parse and validate a normalised intrinsics file.

    Args:
        text: ``fx fy cx cy`` or the 9 entries of a 3 x 3 K (row-major), whitespace or commas.
        source: the file's name, for error messages.
        image_size: ``(width, height)`` of the frames in pixels. When given, values that look
            like pixels (any above ``MAX_NORMALIZED_FOCAL``) are divided by it instead of refused.

    Returns:
        4 x 4 float32 K with row 0 divided by the width and row 1 by the height.

    Raises:
        ValueError: naming the file, what is wrong and how to fix it.
    """
    tokens = text.replace(",", " ").split()
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise ValueError(f"{source}: expected numbers 'fx fy cx cy' (normalised), got {text.strip()!r}") from None
    if len(values) == 4:
        fx, fy, cx, cy = values
    elif len(values) == 9:
        k = np.asarray(values).reshape(3, 3)
        if not np.allclose(k[2], [0, 0, 1]) or k[0, 1] != 0 or k[1, 0] != 0:
            raise ValueError(f"{source}: a 3 x 3 K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] "
                             "(no skew), row by row")
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    else:
        raise ValueError(f"{source}: expected 4 numbers 'fx fy cx cy' or 9 (a 3 x 3 K), got {len(values)}")
    if not all(np.isfinite([fx, fy, cx, cy])) or fx <= 0 or fy <= 0:
        raise ValueError(f"{source}: focal lengths must be positive and finite (got fx={fx}, fy={fy})")
    if max(fx, fy, cx, cy) > MAX_NORMALIZED_FOCAL and image_size is not None:
        width, height = image_size
        fx, cx, fy, cy = fx / width, cx / width, fy / height, cy / height
    elif max(fx, fy, cx, cy) > MAX_NORMALIZED_FOCAL:
        raise ValueError(f"{source}: fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g} look like pixels; "
                         "the file takes normalised intrinsics: divide fx and cx by the image width "
                         "and fy and cy by the image height (e.g. fx 721.5 at width 1242 -> 0.581)")
    if not (0.0 < cx < 1.0 and 0.0 < cy < 1.0):
        raise ValueError(f"{source}: the principal point (cx={cx:g}, cy={cy:g}) lies outside the image: "
                         "normalised cx and cy must be between 0 and 1 (usually near 0.5); if they "
                         "were divided by the wrong side, cx goes with the width and cy with the height")
    k4 = np.eye(4, dtype=np.float32)
    k4[0, 0], k4[1, 1], k4[0, 2], k4[1, 2] = fx, fy, cx, cy
    return k4


# A frame's number: the last run of digits in its name.
DIGIT_RUN = re.compile(r"\d+")


def frame_number(path: Path) -> int | None:
    """The last run of digits in the file's stem as an integer, or None when it has none."""
    runs = DIGIT_RUN.findall(path.stem)
    return int(runs[-1]) if runs else None


def numbered_frames(folder: Path) -> list[tuple[int, Path]]:
    """``(frame number, path)`` of every frame in ``folder``, sorted by number.

    Raises:
        ValueError: a frame's name has no number, or two frames share one; the message names
            the files and the fix.
    """
    by_number: dict[int, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS):
        number = frame_number(path)
        if number is None:
            raise ValueError(f"{path}: the file name has no frame number; frames are put in time order by the "
                             "last number in their names (e.g. 000123.png, img7.png): rename or move the file")
        if number in by_number:
            raise ValueError(f"{by_number[number]} and {path} both carry frame number {number}: keep one "
                             "(frames are ordered by the last number in their names)")
        by_number[number] = path
    return sorted(by_number.items())


def list_frames(folder: Path) -> list[Path]:
    """The sequence's frames in time order: by the number in their names, so that unpadded names
    (img1, img2, ..., img10) are not taken in text order (img1, img10, img11, img2)."""
    return [path for _, path in numbered_frames(folder)]


class CustomDataset(MonoDataset):
    """Folders of video frames with normalised intrinsics; see the module docstring for the layout.

    ``img_ext`` is ignored: frames may be .png, .jpg or .jpeg. Stereo (``"s"``) is not supported.
    """

    def __init__(self, data_path, filenames: Sequence[str], *args, **kwargs):
        self._frames: dict[str, list[Path]] = {}
        self._intrinsics: dict[str, np.ndarray] = {}
        self._root = Path(data_path)
        super().__init__(data_path, filenames, *args, **kwargs)
        if "s" in self.frame_ids:
            raise ValueError("--dataset custom has no stereo pairs: drop --use_stereo")

    def _sequence(self, folder: str, line_number: int) -> list[Path]:
        if folder not in self._frames:
            path = self._root / folder
            if not path.is_dir():
                raise FileNotFoundError(f"{self.split_name}, line {line_number}: sequence folder {path} "
                                        "not found; check --data_path")
            frames = self.list_sequence_frames(path)
            if not frames:
                raise FileNotFoundError(f"{path} holds no frames ({', '.join(FRAME_EXTENSIONS)})")
            self._frames[folder] = frames
            self._intrinsics[folder] = self.sequence_intrinsics(folder, path)
        return self._frames[folder]

    def list_sequence_frames(self, path: Path) -> list[Path]:
        """The frames of the sequence folder ``path`` in time order (`list_frames`: by number)."""
        return list_frames(path)

    def intrinsics_file(self, path: Path) -> Path | None:
        """The sequence's own ``intrinsics.txt``, else the root's, else None."""
        own, shared = path / INTRINSICS_FILE, self._root / INTRINSICS_FILE
        return own if own.is_file() else shared if shared.is_file() else None

    def sequence_intrinsics(self, folder: str, path: Path) -> np.ndarray:
        """4 x 4 normalised K of the sequence ``folder`` (at ``path``), from its intrinsics file."""
        source = self.intrinsics_file(path)
        if source is None:
            raise FileNotFoundError(f"no intrinsics for sequence {folder}: write normalised "
                                    f"'fx fy cx cy' to {self._root / INTRINSICS_FILE} (all sequences) "
                                    f"or {path / INTRINSICS_FILE}")
        return parse_intrinsics(source.read_text(), str(source))

    def parse_line(self, line: str, line_number: int) -> SplitItem:
        tokens = line.split()
        if len(tokens) != 2:
            raise ValueError(f"{self.split_name}, line {line_number}: expected '<sequence> <frame>', "
                             f"got {line.strip()!r}")
        try:
            frame_index = int(tokens[1])
        except ValueError:
            raise ValueError(f"{self.split_name}, line {line_number}: frame {tokens[1]!r} is not an "
                             "integer (the frame's position in the sorted folder)") from None
        self._sequence(tokens[0], line_number)
        return SplitItem(folder=tokens[0], frame_index=frame_index, side=None, line_number=line_number)

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        frames = self._frames[folder]
        if not 0 <= frame_index < len(frames):
            # A path that does not exist: the base class reports the line and the neighbour rule.
            return self._root / folder / f"<frame {frame_index} of {len(frames)}>"
        return frames[frame_index]

    def normalized_intrinsics(self, item: SplitItem) -> np.ndarray:
        return self._intrinsics[item.folder]


def write_custom_splits(data_path: str | Path, output_dir: str | Path, frame_ids: Sequence[int] = (0, -1, 1),
                        val_fraction: float = 0.1, seed: int = 0) -> tuple[int, int]:
    """Write ``train_files.txt`` and ``val_files.txt`` for every sequence folder of ``data_path``.

    Every frame whose neighbours (``frame_ids``) exist is listed; a random ``val_fraction`` of
    them goes to validation. Returns (train lines, val lines).
    """
    root = Path(data_path)
    offsets = [int(f) for f in frame_ids]
    lines = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        count = len(list_frames(folder))
        lines += [f"{folder.name} {i}" for i in range(-min(offsets), count - max(offsets))]
    if not lines:
        raise ValueError(f"{root} has no sequence folder with enough frames for frame_ids {offsets}")
    return write_split_files(lines, output_dir, val_fraction, seed)


def write_split_files(lines: Sequence[str], output_dir: str | Path, val_fraction: float = 0.1,
                      seed: int = 0) -> tuple[int, int]:
    """Shuffle ``lines`` with ``seed``, write a ``val_fraction`` of them to ``val_files.txt`` and the
    rest to ``train_files.txt`` (each sorted, atomically). Returns (train lines, val lines)."""
    lines = list(lines)
    random.Random(seed).shuffle(lines)
    num_val = int(round(len(lines) * val_fraction)) if len(lines) > 1 else 0
    val, train = sorted(lines[:num_val]), sorted(lines[num_val:])
    for name, content in (("train_files.txt", train), ("val_files.txt", val or train[:1])):
        with atomic_output(Path(output_dir) / name) as tmp:
            tmp.write_text("\n".join(content) + "\n")
    return len(train), len(val)
