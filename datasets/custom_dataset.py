"""Users' own videos (``--dataset custom``): one folder of frames per sequence and an intrinsics file.

Layout::

    <data_path>/intrinsics.txt            normalised fx fy cx cy (or a 3 x 3 normalised K), or pixels
                                          followed by the image size they refer to: fx fy cx cy W H
    <data_path>/<sequence>/000000.jpg     frames of one video, in time order by the number in the name
    <data_path>/<sequence>/intrinsics.txt optional: overrides the root file for that sequence

Split lines are ``<sequence> <frame>``, where ``<frame>`` is the frame's position in the
sequence's frames in number order (0-based); `write_custom_splits` (or ``python
prepare_custom.py``) writes train/val lists with every frame whose neighbours exist.

Intrinsics are normalised: fx and cx divided by the image width, fy and cy by its height, so the
same numbers hold at any resolution the frames are resized to. Pixel values are accepted with the
image size they were calibrated at (``fx fy cx cy W H``, or a 3 x 3 K then ``W H``) and normalised
by it; frames of another aspect ratio than that size are refused (cropped frames need their own
calibration). ``--intrinsics`` on the command line overrides the files. They are checked when the
dataset is built, and the errors say how to fix a file written in pixels without its size.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.mono_dataset import MonoDataset, SplitItem
from utils import atomic_output, read_rgb

INTRINSICS_FILE = "intrinsics.txt"
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
# A normalised focal length of 10 is a 5.7-degree field of view; anything larger is almost
# certainly a focal length in pixels.
MAX_NORMALIZED_FOCAL = 10.0


# Calibrated and actual frames may differ this much in aspect ratio (rounding of odd sizes).
ASPECT_TOLERANCE = 0.01


def parse_intrinsics(text: str, source: str, image_size: tuple[int, int] | None = None,
                     pixels_at_native_size: bool = False) -> np.ndarray:
    """Parse and validate intrinsics: normalised, or pixels with the image size they refer to.

    Args:
        text: ``fx fy cx cy`` or the 9 entries of a 3 x 3 K (row-major), whitespace or commas;
            either may be followed by ``W H``, the image size in pixels the values refer to
            (then they are pixels, divided by that size).
        source: the file's name, for error messages.
        image_size: ``(width, height)`` of the frames in pixels, when known: a calibration size of
            another aspect ratio is refused.
        pixels_at_native_size: values without a size that look like pixels (any above
            ``MAX_NORMALIZED_FOCAL``) are divided by ``image_size`` instead of refused.

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
    calibration_size = None
    if len(values) in (6, 11):
        calibration_size, values = values[-2:], values[:-2]
    if len(values) == 4:
        fx, fy, cx, cy = values
    elif len(values) == 9:
        k = np.asarray(values).reshape(3, 3)
        if not np.allclose(k[2], [0, 0, 1]) or k[0, 1] != 0 or k[1, 0] != 0:
            raise ValueError(f"{source}: a 3 x 3 K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] "
                             "(no skew), row by row")
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    else:
        raise ValueError(f"{source}: expected 4 numbers 'fx fy cx cy' or 9 (a 3 x 3 K), each optionally followed "
                         f"by the image size 'W H' of pixel values, got {len(values)}")
    if not all(np.isfinite([fx, fy, cx, cy])) or fx <= 0 or fy <= 0:
        raise ValueError(f"{source}: focal lengths must be positive and finite (got fx={fx}, fy={fy})")
    if calibration_size is not None:
        width, height = calibration_size
        if not (width >= 1 and height >= 1 and float(width).is_integer() and float(height).is_integer()):
            raise ValueError(f"{source}: the image size after the intrinsics must be two whole numbers of pixels "
                             f"'W H' (got {width:g} {height:g})")
        if image_size is not None:
            frame_aspect, calibration_aspect = image_size[0] / image_size[1], width / height
            if abs(calibration_aspect / frame_aspect - 1) > ASPECT_TOLERANCE:
                raise ValueError(f"{source}: the intrinsics refer to {width:g} x {height:g} pixels but the frames are "
                                 f"{image_size[0]} x {image_size[1]}, another aspect ratio (cropped frames, or W and "
                                 "H swapped?): give the intrinsics of the frames as they are")
        fx, cx, fy, cy = fx / width, cx / width, fy / height, cy / height
    elif max(fx, fy, cx, cy) > MAX_NORMALIZED_FOCAL and pixels_at_native_size and image_size is not None:
        width, height = image_size
        fx, cx, fy, cy = fx / width, cx / width, fy / height, cy / height
    elif max(fx, fy, cx, cy) > MAX_NORMALIZED_FOCAL:
        raise ValueError(f"{source}: fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g} look like pixels; "
                         "add the image size they refer to, 'fx fy cx cy W H' (e.g. 721.5 721.5 609.6 172.9 "
                         "1242 375), or give normalised intrinsics: fx and cx divided by the image width, fy and cy "
                         "by the height (e.g. fx 721.5 at width 1242 -> 0.581)")
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
    ``intrinsics`` (``--intrinsics``): ``"fx fy cx cy [W H]"`` or the path of a file holding them,
    used for every sequence instead of the intrinsics files.
    """

    # Pixel values without a size are read as pixels of the frames themselves (image_folder does).
    pixels_at_native_size = False

    def __init__(self, data_path, filenames: Sequence[str], *args, intrinsics: str | None = None, **kwargs):
        self.intrinsics_override = intrinsics
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
        """4 x 4 normalised K of the sequence ``folder`` (at ``path``): --intrinsics, else its intrinsics file."""
        given = self.given_intrinsics(path)
        if given is None:
            raise FileNotFoundError(f"no intrinsics for sequence {folder}: write normalised "
                                    f"'fx fy cx cy' (or pixels and the image size: 'fx fy cx cy W H') to "
                                    f"{self._root / INTRINSICS_FILE} (all sequences) or {path / INTRINSICS_FILE}, "
                                    "or pass --intrinsics")
        return self.parse_sequence_intrinsics(path, *given)

    def given_intrinsics(self, path: Path) -> tuple[str, str] | None:
        """(text, where it comes from) of --intrinsics, else of the sequence's or the root's file; None if none."""
        if self.intrinsics_override is not None:
            return self._override_text()
        file = self.intrinsics_file(path)
        return (file.read_text(), str(file)) if file is not None else None

    def parse_sequence_intrinsics(self, path: Path, text: str, source: str) -> np.ndarray:
        """`parse_intrinsics` with the size of the sequence's first frame (its aspect ratio is checked)."""
        height, width = read_rgb(self.list_sequence_frames(path)[0]).shape[:2]
        return parse_intrinsics(text, source, image_size=(width, height),
                                pixels_at_native_size=self.pixels_at_native_size)

    def _override_text(self) -> tuple[str, str]:
        value = str(self.intrinsics_override).strip()
        if Path(value).expanduser().is_file():
            return Path(value).expanduser().read_text(), f"--intrinsics file {value}"
        if len(value.split()) == 1:
            try:
                float(value)
            except ValueError:
                raise FileNotFoundError(f"--intrinsics {value}: no such file; give 'fx fy cx cy' (normalised), "
                                        "'fx fy cx cy W H' (pixels of a W x H image) or an existing intrinsics "
                                        "file") from None
        return value, "--intrinsics"

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
