"""Cityscapes: training on `prepare_cityscapes.py`'s stacked triplets, evaluation on the raw test set.

Training (``--dataset cityscapes --data_path <dump_root>``): split lines ``<city> <frame_name>``;
``<dump_root>/<city>/<frame_name>.png`` holds three frames stacked vertically (frames -1, 0, +1
from the top; each the raw frame resized and with the bottom quarter, the ego car, cropped) and
``<frame_name>_cam.txt`` its intrinsics ``fx,0,cx,0,fy,cy,0,0,1`` in pixels of one prepared frame.
Intrinsics are read per item (Cityscapes' focal lengths differ between cities), never stored in
shared state.

Evaluation (ManyDepth's protocol): ``<root>/leftImg8bit_sequence/test/<city>/<frame_name>_leftImg8bit.png``
with its top 75 % kept, against the released ``gt_depths/<iii>_depth.npy`` maps (1024 x 2048
metres, in test-list order) of which the same top 75 % is kept; rows 256:768 and columns
192:1856 of that 768 x 2048 area are scored, 1e-3 < gt < 80 m.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from datasets.benchmarks import EvalOptions, EvalProtocol, EvalSet, eval_split_file
from datasets.mono_dataset import MonoDataset, SplitItem
from utils import image_to_tensor, read_rgb, readlines, resize_area

# Frames in a prepared file, from the top: -1, 0, +1.
STACKED_FRAME_IDS = (-1, 0, 1)
# Fraction of the raw frame's height kept from the top (the bottom shows the ego car).
KEEP_TOP_FRACTION = 0.75
# ManyDepth's evaluation window, as (top, bottom, left, right) fractions of the 768 x 2048
# ground truth left after the top-75 % crop: rows [256, 768), columns [192, 1856).
CITYSCAPES_EVAL_CROP = (256 / 768, 1.0, 192 / 2048, 1856 / 2048)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header, without decoding the image."""
    with open(path, "rb") as f:
        header = f.read(24)
    if len(header) < 24 or header[:8] != _PNG_SIGNATURE or header[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return struct.unpack(">II", header[16:24])


def read_cam_txt(path: Path) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels from a ``_cam.txt`` (``fx,0,cx,0,fy,cy,0,0,1``)."""
    try:
        values = [float(v) for v in path.read_text().replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 9:
        raise ValueError(f"{path}: expected 9 comma-separated numbers fx,0,cx,0,fy,cy,0,0,1 "
                         "(re-run prepare_cityscapes.py)")
    return values[0], values[4], values[2], values[5]


class CityscapesDataset(MonoDataset):
    """Prepared Cityscapes triplets for training; see the module docstring for the layout.

    ``frame_ids`` must lie in -1, 0, +1 (the stacked frames); ``img_ext`` is ignored (.png).
    """

    def parse_line(self, line: str, line_number: int) -> SplitItem:
        tokens = line.split()
        if len(tokens) != 2:
            raise ValueError(f"{self.split_name}, line {line_number}: expected '<city> <frame_name>', "
                             f"got {line.strip()!r}")
        bad = [f for f in self.frame_ids if f not in STACKED_FRAME_IDS]
        if bad:
            raise ValueError(f"Cityscapes samples stack frames -1, 0, +1 only: frame_ids {bad} are not "
                             "available (use --frame_ids 0 -1 1)")
        return SplitItem(folder=f"{tokens[0]}/{tokens[1]}", frame_index=0, side=None, line_number=line_number)

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        return self.data_path / f"{folder}.png"

    def cam_path(self, item: SplitItem) -> Path:
        return self.data_path / f"{item.folder}_cam.txt"

    def _check_files(self) -> None:
        super()._check_files()
        for item in self.items:
            if not self.cam_path(item).is_file():
                raise FileNotFoundError(f"{self.split_name}, line {item.line_number}: {self.cam_path(item)} "
                                        "not found; --data_path must be prepare_cityscapes.py's --dump_root")

    def normalized_intrinsics(self, item: SplitItem) -> np.ndarray:
        fx, fy, cx, cy = read_cam_txt(self.cam_path(item))
        width, stacked_height = png_size(self.image_path(item.folder, 0, None))
        height = stacked_height / len(STACKED_FRAME_IDS)
        k = np.eye(4, dtype=np.float32)
        k[0, 0], k[0, 2] = fx / width, cx / width
        k[1, 1], k[1, 2] = fy / height, cy / height
        return k

    def load_frames(self, item: SplitItem, do_flip: bool) -> dict:
        """Decode the stacked file once and cut it into its three frames (each H x W x 3 RGB)."""
        path = self.image_path(item.folder, 0, None)
        image = read_rgb(path)
        if image.shape[0] % len(STACKED_FRAME_IDS):
            raise ValueError(f"{path} is {image.shape[0]} rows high, not 3 stacked frames: prepare the "
                             "data with prepare_cityscapes.py --seq_length 3")
        frame_height = image.shape[0] // len(STACKED_FRAME_IDS)
        frames = {}
        for frame_id in self.frame_ids:
            row = STACKED_FRAME_IDS.index(frame_id) * frame_height
            frame = image[row:row + frame_height]
            if do_flip:
                frame = frame[:, ::-1]
            frames[frame_id] = resize_area(frame, self.height, self.width)
        return frames


def keep_top(array: np.ndarray) -> np.ndarray:
    """The top 75 % rows (``int(round(0.75 h))``) of an H x W (x C) array."""
    return array[:int(round(KEEP_TOP_FRACTION * array.shape[0]))]


class CityscapesTestSet(torch.utils.data.Dataset):
    """Raw Cityscapes test frames; items ``{("color_uint8", 0, 0): uint8 3 x height x width}``."""

    def __init__(self, root: str | Path, lines: Sequence[str], height: int, width: int,
                 split_name: str = "cityscapes/test_files.txt") -> None:
        self.root = Path(root)
        self.height, self.width = height, width
        self.paths = []
        for number, line in enumerate(lines, start=1):
            tokens = line.replace("/", " ").split()
            if not tokens:
                continue
            if len(tokens) != 2:
                raise ValueError(f"{split_name}, line {number}: expected '<city> <frame_name>', got {line!r}")
            city, frame = tokens
            path = self.root / "leftImg8bit_sequence" / "test" / city / f"{frame}_leftImg8bit.png"
            if not path.is_file():
                raise FileNotFoundError(f"{split_name}, line {number}: {path} not found; --cityscapes_path "
                                        "must hold leftImg8bit_sequence/test/ (leftImg8bit_sequence_trainvaltest.zip)")
            self.paths.append(path)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = keep_top(read_rgb(self.paths[index]))
        return {("color_uint8", 0, 0): image_to_tensor(resize_area(image, self.height, self.width))}


def load_cityscapes_gt(gt_dir: Path, count: int) -> list[np.ndarray]:
    """``gt_dir/{i:03d}_depth.npy`` for i < count, each cut to its top 75 % (metres)."""
    maps = []
    for i in range(count):
        path = gt_dir / f"{i:03d}_depth.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the Cityscapes ground truth (ManyDepth's gt_depths, "
                                    "one .npy per test line) belongs in the split folder's gt_depths/")
        depth = np.load(path, allow_pickle=False)
        if depth.ndim != 2:
            raise ValueError(f"{path}: expected an H x W depth map, got shape {depth.shape}")
        maps.append(keep_top(depth.astype(np.float32)))
    return maps


# Cityscapes (ManyDepth): the maps are the top 75 % (768 x 2048) of the released ground truth,
# scored inside CITYSCAPES_EVAL_CROP with KITTI's depth range.
CITYSCAPES_PROTOCOL = EvalProtocol("cityscapes", crop=CITYSCAPES_EVAL_CROP)


def build_cityscapes_eval_sets(path: str, options: EvalOptions) -> list[EvalSet]:
    """``EVAL_DATASETS["cityscapes"]``: the raw test frames under the ``cityscapes`` protocol."""
    from torch.utils.data import DataLoader

    if not Path(path).is_dir():
        raise FileNotFoundError(f"--cityscapes_path {path} does not exist or is not a folder")
    split_file = eval_split_file("cityscapes", options.split)
    dataset = CityscapesTestSet(path, readlines(split_file), options.height, options.width, str(split_file))
    gt_depths = load_cityscapes_gt(split_file.parent / "gt_depths", len(dataset))
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.num_workers)
    return [EvalSet(title="Cityscapes", loader=loader, gt_depths=gt_depths, protocol=CITYSCAPES_PROTOCOL,
                    name="cityscapes")]
