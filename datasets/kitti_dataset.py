"""The KITTI datasets.

- `KITTIRAWDataset`: KITTI raw drives; the real dataset and the project's synthetic one share it.
- `KITTIOdomDataset`: the odometry benchmark's ``sequences/`` layout (``--dataset kitti_odom``).
- `KITTIDepthDataset`: raw images plus the depth benchmark's annotated maps (``--dataset kitti_depth``).

And the KITTI benchmarks: the Eigen protocols, `build_kitti_eval_sets` (a split's test list and
its exported ``gt_depths.npz``) and `KittiBenchmarkImages` (the depth-prediction server's test
images).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from datasets.benchmarks import EvalOptions, EvalProtocol, EvalSet
from datasets.mono_dataset import SIDE_TO_CAMERA, MonoDataset, SplitItem
from ground_truth import load_gt_depths
from kitti_utils import (GARG_CROP, KITTI_FULL_RES, KITTI_NORMALIZED_K, mercator_scale, oxts_packet_path, oxts_travel,
                         read_kitti_depth_png, read_oxts_packet)
from split_lists import resolve_split_dir
from utils import image_to_tensor, read_rgb, readlines, resize_area


class KITTIRAWDataset(MonoDataset):
    """KITTI raw drives: ``<data_path>/<date>/<date>_drive_NNNN_sync/image_0{2,3}/data/%010d.png``.

    Split lines are ``<date>/<date>_drive_NNNN_sync <frame> <side>`` with side l/r (or 2/3); the
    frame may be zero-padded (as in the eigen test list). Every drive uses the same normalised
    intrinsics (fx 0.58, fy 1.92, centred principal point), so images of any native size map to
    the same K at the network resolution.

    Args:
        translation_norms: add ``("translation_norm", f)`` for every temporal context f to each
            sample: float32 scalar, the metres the vehicle travelled between the target frame and
            frame f, from the drive's OXTS packets (``<drive>/oxts/data/%010d.txt``, positions on
            the Mercator map of the drive's frame 0, `kitti_utils.oxts_travel`). For PackNet's
            velocity loss (``--velocity_weight``); every packet is checked at construction.
        Other arguments: as `MonoDataset`.
    """

    def __init__(self, *args, translation_norms: bool = False, **kwargs):
        self.translation_norms = translation_norms
        # Drive folder -> Mercator scale of its frame 0 (read once per worker).
        self._mercator_scales: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    def _temporal_contexts(self) -> list[int]:
        return [f for f in self.frame_ids if f not in (0, "s")]

    def _check_files(self) -> None:
        super()._check_files()
        if not self.translation_norms:
            return
        for item in self.items:
            frames = [0, item.frame_index] + [item.frame_index + f for f in self._temporal_contexts()]
            for frame_index in frames:
                path = oxts_packet_path(self.data_path / item.folder, frame_index)
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{self.split_name}, line {item.line_number}: OXTS packet not found: {path}. Velocity "
                        "supervision (--velocity_weight) needs each drive's oxts/data folder (frame 0 gives the "
                        "map scale): unpack the drives' *_sync.zip archives with their oxts folders, or set "
                        "--velocity_weight 0")

    def drive_mercator_scale(self, folder: str) -> float:
        """`kitti_utils.mercator_scale` of the drive's frame 0, as KITTI's devkit projects a drive."""
        if folder not in self._mercator_scales:
            first = read_oxts_packet(oxts_packet_path(self.data_path / folder, 0))
            self._mercator_scales[folder] = mercator_scale(first[0])
        return self._mercator_scales[folder]

    def translation_norm(self, item: SplitItem, offset: int) -> float:
        """Metres travelled between the item's frame and frame ``frame_index + offset`` (OXTS)."""
        drive = self.data_path / item.folder
        scale = self.drive_mercator_scale(item.folder)
        return oxts_travel(read_oxts_packet(oxts_packet_path(drive, item.frame_index)),
                           read_oxts_packet(oxts_packet_path(drive, item.frame_index + offset)), scale)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        sample = super().__getitem__(key)
        if self.translation_norms:
            item = self.items[int(sample["index"])]
            for frame_id in self._temporal_contexts():
                sample[("translation_norm", frame_id)] = torch.tensor(self.translation_norm(item, frame_id),
                                                                      dtype=torch.float32)
        return sample

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


# --odom_camera: the odometry image folders of the left and right camera of each pair. Monodepth2
# reads the colour pair image_2/image_3; FeatDepth's odometry loader maps l/r to the greyscale
# pair image_0/image_1 (methods spec 4). Both pairs are rectified to the same intrinsics and have
# the same 0.54 m baseline, so K and stereo_T do not change.
ODOM_CAMERA_PAIRS = {"color": (2, 3), "grey": (0, 1)}


class KITTIOdomDataset(KITTIRAWDataset):
    """KITTI odometry: ``<data_path>/sequences/<SS>/image_{2,3}/<frame:06d>.png``.

    Split lines are ``<sequence> <frame> <side>`` with the sequence as an integer (``9 120 l``,
    as in Monodepth2's ``splits/odom``). The normalised intrinsics are KITTI raw's; the
    ground-truth poses for `evaluate_pose.py` live in ``<data_path>/poses/<SS>.txt``.

    Args:
        camera: "color" reads sides l/r from ``image_2``/``image_3`` (Monodepth2), "grey" from
            ``image_0``/``image_1`` (FeatDepth's convention; the grey frames are expanded to RGB).
        Other arguments: as `KITTIRAWDataset`.
    """

    def __init__(self, *args, camera: str = "color", **kwargs):
        if camera not in ODOM_CAMERA_PAIRS:
            raise ValueError(f"--odom_camera must be one of {sorted(ODOM_CAMERA_PAIRS)} (got {camera!r})")
        self.camera_pair = ODOM_CAMERA_PAIRS[camera]
        super().__init__(*args, **kwargs)

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
        camera = self.camera_pair[0 if SIDE_TO_CAMERA[side] == SIDE_TO_CAMERA["l"] else 1]
        return (self.data_path / "sequences" / f"{int(folder):02d}" / f"image_{camera}"
                / f"{frame_index:06d}{self.img_ext}")

    def _missing_image_message(self, item: SplitItem, path: Path) -> str:
        message = super()._missing_image_message(item, path)
        for name, pair in ODOM_CAMERA_PAIRS.items():
            other = path.parent.parent / f"image_{pair[self.camera_pair.index(int(path.parent.name[-1]))]}"
            if pair != self.camera_pair and (other / path.name).is_file():
                message += f"; the {name} pair has this frame ({other / path.name}): pass --odom_camera {name}"
        return message


def odometry_pose_path(data_path: str | Path, sequence: int) -> Path:
    """``<data_path>/poses/<SS>.txt``: one 3 x 4 camera-to-world matrix per frame, row-major."""
    return Path(data_path) / "poses" / f"{sequence:02d}.txt"


class KITTIDepthDataset(KITTIRAWDataset):
    """KITTI raw images with the annotated depth maps of the KITTI depth benchmark.

    Depth: ``<data_path>/<folder>/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png``.
    Images and split lines are KITTI raw's. Every line's depth map is checked at construction.

    Args:
        load_depth: add ``"depth_gt"`` (float32 1 x 375 x 1242 metres, nearest-resized to
            KITTI's most common size ``KITTI_FULL_RES``, flipped with the images) to each
            sample, as the reference's ``load_depth``.
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
            depth = cv2.resize(depth, KITTI_FULL_RES, interpolation=cv2.INTER_NEAREST)
            sample["depth_gt"] = torch.from_numpy(depth)[None]
        return sample


# --------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------

KITTI_PROTOCOLS = {
    "eigen": EvalProtocol("eigen", crop=GARG_CROP),
    # The annotated maps are already filtered: every positive pixel counts, with no crop.
    "eigen_benchmark": EvalProtocol("eigen_benchmark", gt_min=0.0, gt_max=None),
}

# KITTI depth-prediction benchmark: test images and submitted maps are 1216 x 352; the server
# reads uint16 PNGs of depth x 256 (the same encoding as the annotated ground truth).
BENCHMARK_SPLIT = "benchmark"
BENCHMARK_SIZE = (352, 1216)
BENCHMARK_IMAGES = Path("depth_selection") / "test_depth_prediction_anonymous"


def kitti_gt_path(eval_split: str) -> Path:
    return resolve_split_dir(eval_split) / "gt_depths.npz"


def kitti_protocol(eval_split: str) -> EvalProtocol:
    """The annotated-map protocol for ``eigen_benchmark``, the Eigen crop for everything else."""
    return KITTI_PROTOCOLS["eigen_benchmark" if Path(eval_split).name == "eigen_benchmark" else "eigen"]


def build_kitti_eval_loader(data_path: str | Path, eval_split: str, height: int, width: int,
                            batch_size: int, num_workers: int, img_ext: str = ".png"):
    """Loader over the split's test_files.txt (frame 0 only, no augmentation, in list order)."""
    from torch.utils.data import DataLoader

    test_list = resolve_split_dir(eval_split) / "test_files.txt"
    if not test_list.is_file():
        raise FileNotFoundError(f"--eval_split {eval_split}: {test_list} not found")
    dataset = KITTIRAWDataset(data_path, readlines(test_list), height, width, [0], num_scales=1,
                              is_train=False, img_ext=img_ext, split_name=str(test_list))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=False, drop_last=False)


def load_kitti_gt(eval_split: str) -> list[np.ndarray]:
    """The split's exported ground truth (``export_gt_depth.py``), N maps H_i x W_i in metres."""
    path = kitti_gt_path(eval_split)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth {path} not found: run "
                                f"`python export_gt_depth.py --data_path <KITTI root> --split {eval_split}`")
    return load_gt_depths(path)


def build_kitti_eval_sets(path: str, options: EvalOptions, pred_disps: np.ndarray | None = None) -> list[EvalSet]:
    """``EVAL_DATASETS["kitti"]``: one KITTI split (``options.split``, default eigen) as one table.

    The split is a standard name (eigen, eigen_benchmark) or a folder with test_files.txt and
    gt_depths.npz. ``pred_disps`` (N x h x w inverse depths computed elsewhere) replaces the
    network's predictions. Errors name the flag and the command that fixes them.
    """
    data_path = Path(path)
    if not data_path.is_dir():
        raise FileNotFoundError(f"--kitti_path {path} does not exist or is not a folder")
    split = options.split or "eigen"
    gt_depths = load_kitti_gt(split)
    if pred_disps is not None:
        loader, count = None, len(pred_disps)
    else:
        loader = build_kitti_eval_loader(data_path, split, options.height, options.width, options.batch_size,
                                         options.num_workers, options.img_ext)
        count = len(loader.dataset)
    if count != len(gt_depths):
        raise ValueError(f"--eval_split {split}: {count} predictions to score but {kitti_gt_path(split)} "
                         f"holds {len(gt_depths)} maps; re-run `python export_gt_depth.py --split {split}`")
    name = Path(split).name
    return [EvalSet(title=f"KITTI with {name} split", loader=loader, gt_depths=gt_depths,
                    protocol=kitti_protocol(split), name=name, pred_disps=pred_disps)]


class KittiBenchmarkImages(torch.utils.data.Dataset):
    """The KITTI depth-prediction test images: lines ``image N`` -> ``<root>/image/{N:010d}.png``.

    Items are dicts with ``("color_uint8", 0, 0)``: uint8 3 x height x width RGB (area-resized, as
    the training loader does).
    """

    def __init__(self, root: str | Path, lines: list[str], height: int, width: int,
                 split_name: str = "benchmark/test_files.txt") -> None:
        self.root = Path(root)
        self.height, self.width = height, width
        self.paths = []
        for number, line in enumerate(lines, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 2 or not tokens[1].isdigit():
                raise ValueError(f"{split_name}, line {number}: expected 'image N', got {line!r}")
            self.paths.append(self.root / tokens[0] / f"{int(tokens[1]):010d}.png")
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} benchmark test image(s) missing, first {missing[0]}: "
                                    f"set --benchmark_path to the unpacked {BENCHMARK_IMAGES} folder")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = resize_area(read_rgb(self.paths[index]), self.height, self.width)
        return {("color_uint8", 0, 0): image_to_tensor(image)}
