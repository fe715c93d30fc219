"""Evaluate one depth checkpoint on every dataset whose path is given.

    python evaluate_depth.py --pretrained_path RUN/models/model19.pth --kitti_path KITTI --eval_split eigen

The checkpoint describes its own architecture and depth range, so no model flags are needed
(released Monodepth2 folders and BDEdepth files are read by ``released_weights``). Datasets are
evaluated in the reference's order (KITTI eigen, eigen_benchmark, Make3D, NYUv2, Cityscapes)
through ``EVAL_DATASETS``: ``build(path, spec, opts) -> list[EvalSet]`` per dataset. One table
per set is printed, and all the numbers go into one JSON file.

Conventions (fixed once, shared with the per-epoch evaluation in the Trainer, pinned by tests):
- predictions are the scaled disparity of `disp_to_depth` with the checkpoint's min/max depth;
- the disparity is upsampled to the ground-truth size bilinearly with align_corners=False (what
  Monodepth2's cv2.resize does), then depth = 1 / disparity;
- eigen: valid where 1e-3 < gt < 80 inside the Garg crop; eigen_benchmark: where gt > 0;
- mono models are median-scaled per image with NumPy's median (mean of the two middle values);
  stereo models are multiplied by 5.4 instead; predictions are then clamped to [1e-3, 80];
- the reported numbers are the mean over images of per-image metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from checkpoints import ModelSpec
from datasets.cityscapes_dataset import build_cityscapes_eval_sets
from datasets.make3d_dataset import build_make3d_eval_sets
from datasets.nyu_dataset import build_nyuv2_eval_sets
from kitti_utils import (GARG_CROP, KITTI_DEPTH_PNG_SCALE, MAX_EVAL_DEPTH, MIN_EVAL_DEPTH,
                         STEREO_SCALE_FACTOR)
from layers import (DEPTH_METRIC_NAMES, compute_depth_metrics, disp_to_depth, median_scaling_ratio,
                    upsample_disp)
from utils import (atomic_output, image_to_tensor, read_rgb, readlines, resize_area, resolve_split_dir,
                   select_device, split_file)

logger = logging.getLogger(__name__)

# Post-processing ramp: the outer 5% of columns come from the prediction whose border is not
# invented (the flipped image sees that border as its interior), blending over a further 5%.
POST_PROCESS_RAMP_START = 0.05
POST_PROCESS_RAMP_SLOPE = 20.0


def post_process_disparity(disp: torch.Tensor, disp_flipped_back: torch.Tensor) -> torch.Tensor:
    """Monodepth's flip post-processing.

    Args:
        disp: B x 1 x H x W disparity of the input.
        disp_flipped_back: B x 1 x H x W disparity of the mirrored input, mirrored back.
    Returns:
        B x 1 x H x W: the left border from the flipped prediction, the right border from the
        plain one, the mean in between.
    """
    width = disp.shape[-1]
    x = torch.linspace(0, 1, width, device=disp.device, dtype=disp.dtype)
    left_ramp = 1.0 - torch.clamp(POST_PROCESS_RAMP_SLOPE * (x - POST_PROCESS_RAMP_START), 0, 1)
    right_ramp = torch.flip(left_ramp, dims=[0])
    mean = 0.5 * (disp + disp_flipped_back)
    return right_ramp * disp + left_ramp * disp_flipped_back + (1.0 - left_ramp - right_ramp) * mean


@torch.no_grad()
def predict_disparities(depth_net: torch.nn.Module, loader, device: torch.device, min_depth: float,
                        max_depth: float, post_process: bool = False) -> np.ndarray:
    """Run the depth network over a loader of ``("color", 0, 0)`` uint8 images.

    Returns:
        N x H x W float32 scaled disparities (network resolution), in loader order.
    """
    was_training = depth_net.training
    depth_net.eval()
    predictions = []
    for batch in loader:
        images = batch[("color", 0, 0)].to(device, non_blocking=True).float() / 255.0
        if post_process:
            images = torch.cat([images, torch.flip(images, dims=[3])], dim=0)
        disp = depth_net(images)[("disp", 0)].float()
        scaled_disp, _ = disp_to_depth(disp, min_depth, max_depth)
        if post_process:
            plain, flipped = scaled_disp.chunk(2, dim=0)
            scaled_disp = post_process_disparity(plain, torch.flip(flipped, dims=[3]))
        predictions.append(scaled_disp[:, 0].cpu().numpy())
    depth_net.train(was_training)
    return np.concatenate(predictions, axis=0)


@dataclass(frozen=True)
class EvalProtocol:
    """How a benchmark turns a predicted disparity and a ground-truth map into metrics.

    Attributes:
        name: the protocol's name in tables and JSON.
        gt_min, gt_max: ground truth counts where gt_min < gt < gt_max (metres; None: no bound).
        crop: (top, bottom, left, right) fractions of the ground-truth size, rows
            [int(top*h), int(bottom*h)) and columns [int(left*w), int(right*w)); None: no crop.
        interpolation: how the disparity reaches the ground-truth size, "bilinear"
            (align_corners=False, like cv2.resize) or "nearest".
        clamp_min, clamp_max: predictions are clamped to these after scaling (None: no bound).
        always_median_scaling: scale by the median even for stereo models (NYUv2).
        metric_set: a key of ``METRIC_SETS``: "standard" (the seven KITTI metrics) or "make3d"
            (abs_rel, sq_rel, rmse and rmse_log10, the RMSE of base-10 logs).
    """

    name: str
    gt_min: float | None = MIN_EVAL_DEPTH
    gt_max: float | None = MAX_EVAL_DEPTH
    crop: tuple[float, float, float, float] | None = None
    interpolation: str = "bilinear"
    clamp_min: float | None = MIN_EVAL_DEPTH
    clamp_max: float | None = MAX_EVAL_DEPTH
    always_median_scaling: bool = False
    metric_set: str = "standard"

    def valid_mask(self, gt: np.ndarray) -> np.ndarray:
        """H x W bool: the ground-truth pixels this protocol scores."""
        mask = np.ones(gt.shape, dtype=bool)
        if self.gt_min is not None:
            mask &= gt > self.gt_min
        if self.gt_max is not None:
            mask &= gt < self.gt_max
        if self.crop is not None:
            height, width = gt.shape
            top, bottom, left, right = self.crop
            crop = np.zeros_like(mask)
            crop[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
            mask &= crop
        return mask


EVAL_PROTOCOLS: dict[str, EvalProtocol] = {
    "eigen": EvalProtocol("eigen", crop=GARG_CROP),
    # The annotated maps are already filtered: every positive pixel counts, with no crop.
    "eigen_benchmark": EvalProtocol("eigen_benchmark", gt_min=0.0, gt_max=None),
    # Make3D C1: 0 < gt < 70 on the 21 x 305 laser band, nearest resize, predictions capped at
    # 70 m (no lower clamp), four metrics with the log10 RMSE under its own name.
    "make3d": EvalProtocol("make3d", gt_min=0.0, gt_max=70.0, interpolation="nearest", clamp_min=None,
                           clamp_max=70.0, metric_set="make3d"),
    # NYUv2: 0 < gt < 10 on the 427 x 561 crop, nearest resize, always median-scaled, cap 10 m.
    "nyuv2": EvalProtocol("nyuv2", gt_min=0.0, gt_max=10.0, interpolation="nearest", clamp_min=None,
                          clamp_max=10.0, always_median_scaling=True),
    # Cityscapes (ManyDepth): the maps are the top 75 % (768 x 2048) of the released ground truth;
    # rows 256:768 and columns 192:1856 of it are scored.
    "cityscapes": EvalProtocol("cityscapes", crop=(256 / 768, 1.0, 192 / 2048, 1856 / 2048)),
}


MAKE3D_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log10")


def compute_make3d_metrics(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Make3D's four metrics over N valid pixels (float64, shape (4,)).

    abs_rel, sq_rel and rmse as in `compute_depth_metrics`; the fourth is
    sqrt(mean((log10 gt - log10 pred)^2)), which the reference printed as "rmse_log" although it
    is not the natural-log RMSE of the KITTI table (nor the mean absolute log10 error that some
    papers report).
    """
    standard = compute_depth_metrics(gt, pred)
    log10_diff = torch.log10(gt.double()) - torch.log10(pred.double())
    return torch.cat([standard[:3], torch.sqrt((log10_diff ** 2).mean())[None]])


# metric_set -> (names, function(gt N, pred N) -> float64 tensor of len(names)).
METRIC_SETS = {
    "standard": (DEPTH_METRIC_NAMES, compute_depth_metrics),
    "make3d": (MAKE3D_METRIC_NAMES, compute_make3d_metrics),
}


def eigen_valid_mask(gt: np.ndarray, protocol: str) -> np.ndarray:
    """Pixels that count for the KITTI ``protocol`` ("eigen" or "eigen_benchmark")."""
    return EVAL_PROTOCOLS[protocol].valid_mask(gt)


@dataclass
class DepthEvaluation:
    """Mean metrics over images, and the per-image median-scaling ratios (empty when unscaled)."""

    metrics: dict
    ratios: np.ndarray
    num_images: int

    def ratio_statistics(self) -> tuple[float, float]:
        """(median ratio, std of the ratios divided by that median); call only when scaled."""
        median = float(np.median(self.ratios))
        return median, float(np.std(self.ratios / median))

    def ratio_summary(self) -> str:
        if self.ratios.size == 0:
            return ""
        median, std = self.ratio_statistics()
        return f"Scaling ratios | med: {median:0.3f} | std: {std:0.3f}"


def evaluate_predictions(pred_disps: Sequence[np.ndarray], gt_depths: Sequence[np.ndarray],
                         protocol: EvalProtocol | str = "eigen", median_scaling: bool = True,
                         pred_depth_scale_factor: float = 1.0) -> DepthEvaluation:
    """Score scaled disparities against ground-truth depth maps (metres), image by image.

    Args:
        pred_disps: N maps h x w of scaled disparity at network resolution.
        gt_depths: N ground-truth depth maps H_i x W_i in metres (0 where unknown).
        protocol: an ``EvalProtocol`` or a key of ``EVAL_PROTOCOLS``.
        median_scaling: per-image median scaling (forced on by ``protocol.always_median_scaling``).
        pred_depth_scale_factor: multiplies predicted depths first (5.4 for stereo models).
    """
    if isinstance(protocol, str):
        protocol = EVAL_PROTOCOLS[protocol]
    if len(pred_disps) != len(gt_depths):
        raise ValueError(f"{len(pred_disps)} predictions but {len(gt_depths)} ground-truth maps: "
                         "the test list and the ground truth do not match (for KITTI re-run "
                         "export_gt_depth.py)")
    median_scaling = median_scaling or protocol.always_median_scaling
    errors, ratios = [], []
    for pred_disp, gt in zip(pred_disps, gt_depths):
        gt = np.asarray(gt, dtype=np.float32)
        disp = torch.from_numpy(np.ascontiguousarray(pred_disp, dtype=np.float32))[None, None]
        if protocol.interpolation == "nearest":
            disp = torch.nn.functional.interpolate(disp, size=gt.shape, mode="nearest")[0, 0].double()
        else:
            disp = upsample_disp(disp, gt.shape)[0, 0].double()
        pred_depth = 1.0 / disp
        mask = torch.from_numpy(protocol.valid_mask(gt))
        if not mask.any():
            continue
        gt_valid = torch.from_numpy(gt).double()[mask]
        pred_valid = pred_depth[mask] * pred_depth_scale_factor
        if median_scaling:
            ratio = median_scaling_ratio(gt_valid, pred_valid)
            ratios.append(float(ratio))
            pred_valid = pred_valid * ratio
        pred_valid = pred_valid.clamp(protocol.clamp_min, protocol.clamp_max)
        errors.append(METRIC_SETS[protocol.metric_set][1](gt_valid, pred_valid))
    if not errors:
        raise ValueError(f"no image has a valid ground-truth pixel under the {protocol.name} protocol: "
                         "check the ground-truth files")
    mean = torch.stack(errors).mean(dim=0)
    metrics = {name: float(value) for name, value in zip(METRIC_SETS[protocol.metric_set][0], mean)}
    return DepthEvaluation(metrics=metrics, ratios=np.asarray(ratios), num_images=len(errors))


def format_metrics_table(metrics: dict) -> str:
    names = list(metrics)
    header = ("{:>8} | " * len(names)).format(*names)
    values = ("{: 8.3f} | " * len(names)).format(*metrics.values())
    return header + "\n" + values


def kitti_gt_path(eval_split: str) -> Path:
    return resolve_split_dir(eval_split) / "gt_depths.npz"


def kitti_protocol(eval_split: str) -> str:
    return "eigen_benchmark" if Path(eval_split).name == "eigen_benchmark" else "eigen"


def build_kitti_eval_loader(data_path: str | Path, eval_split: str, height: int, width: int,
                            batch_size: int, num_workers: int, img_ext: str = ".png"):
    """Loader over the split's test_files.txt (frame 0 only, no augmentation, in list order)."""
    from torch.utils.data import DataLoader

    from datasets import KITTIRAWDataset

    test_list = resolve_split_dir(eval_split) / "test_files.txt"
    if not test_list.is_file():
        raise FileNotFoundError(f"--eval_split {eval_split}: {test_list} not found")
    dataset = KITTIRAWDataset(data_path, readlines(test_list), height, width, [0], num_scales=1,
                              is_train=False, img_ext=img_ext, split_name=str(test_list))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=False, drop_last=False)


def load_kitti_gt(eval_split: str) -> list[np.ndarray]:
    from export_gt_depth import load_gt_depths

    path = kitti_gt_path(eval_split)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth {path} not found: run "
                                f"`python export_gt_depth.py --data_path <KITTI root> --split {eval_split}`")
    return load_gt_depths(path)


# --------------------------------------------------------------------------------------------
# The datasets main() evaluates: one registry entry per benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """One table of the evaluation: the images to predict, their ground truth and the protocol.

    Attributes:
        title: announced before the table, e.g. "KITTI with eigen split".
        loader: a DataLoader of dicts whose ``("color", 0, 0)`` is uint8 B x 3 x spec.height x
            spec.width RGB, in the order of ``gt_depths``; None when ``pred_disps`` is given.
        gt_depths: N ground-truth depth maps H_i x W_i in metres (0 = unknown).
        protocol: how a prediction is scored against its map.
        name: short key for file names and the JSON report (default: the protocol's name).
        pred_disps: N x h x w scaled disparities computed elsewhere (``--ext_disp_to_eval``);
            when given, the network is not run.
    """

    title: str
    loader: Any
    gt_depths: list
    protocol: EvalProtocol
    name: str = ""
    pred_disps: np.ndarray | None = None

    @property
    def key(self) -> str:
        return self.name or self.protocol.name


# build(path, spec, opts) -> the EvalSets of one dataset, given the value of its --<name>_path.
EvalBuilder = Callable[[str, ModelSpec, argparse.Namespace], list[EvalSet]]

# The order of the reference's report (KITTI eigen, eigen_benchmark, Make3D, NYUv2, Cityscapes).
DATASET_ORDER = ("kitti", "make3d", "nyuv2", "cityscapes")

# Which benchmark the Trainer evaluates after every epoch, by training --dataset (the reference's
# choice); datasets missing here (kitti_odom, custom) have no depth ground truth to score.
TRAINING_EVAL_DATASETS = {"kitti": "kitti", "kitti_depth": "kitti", "nyuv2": "nyuv2",
                          "cityscapes": "cityscapes"}


def build_training_eval_sets(opts: argparse.Namespace, spec: ModelSpec) -> list[EvalSet]:
    """The EvalSets of the per-epoch evaluation for the training options ``opts``.

    KITTI uses ``--eval_split`` (images under ``--eval_data_path``, default ``--data_path``); NYUv2
    and Cityscapes use their benchmark's test list (``--eval_split`` when it names a folder) with
    the images under ``--eval_data_path``. Returns [] for datasets without depth ground truth.
    """
    key = TRAINING_EVAL_DATASETS.get(opts.dataset)
    if key is None:
        logger.info("No per-epoch depth evaluation for --dataset %s (no ground truth)", opts.dataset)
        return []
    path = getattr(opts, "eval_data_path", None) or opts.data_path
    # The builders read evaluate_depth.py's flags: give them the training run's equivalents.
    custom_split = opts.eval_split if Path(opts.eval_split).expanduser().is_dir() else None
    builder_opts = argparse.Namespace(batch_size=opts.eval_batch_size, num_workers=min(opts.num_workers, 4),
                                      img_ext=opts.img_ext, eval_split=[opts.eval_split], ext_disp_to_eval=None,
                                      eval_eigen_to_benchmark=False, **{f"{key}_split": custom_split})
    return EVAL_DATASETS[key](path, spec, builder_opts)


# KITTI depth-prediction benchmark: test images and submitted maps are 1216 x 352; the server
# reads uint16 PNGs of depth x 256 (the same encoding as the annotated ground truth).
BENCHMARK_SPLIT = "benchmark"
BENCHMARK_SIZE = (352, 1216)
BENCHMARK_IMAGES = Path("depth_selection") / "test_depth_prediction_anonymous"


def load_ext_disps(path: str | Path) -> np.ndarray:
    """``--ext_disp_to_eval``: an .npy of N x h x w (or N x 1 x h x w) scaled disparities."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ext_disp_to_eval {path} not found")
    try:
        disps = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"--ext_disp_to_eval {path} is not a plain .npy array: {err}") from err
    if disps.ndim == 4 and disps.shape[1] == 1:
        disps = disps[:, 0]
    if disps.ndim != 3:
        raise ValueError(f"--ext_disp_to_eval {path}: expected N x h x w disparities, got shape "
                         f"{disps.shape}")
    return disps.astype(np.float32)


def resolve_kitti_splits(opts: argparse.Namespace) -> list[str]:
    """The KITTI splits to run: ``--eval_split`` or, by default, what the flags imply."""
    if opts.eval_split:
        return list(opts.eval_split)
    if opts.eval_eigen_to_benchmark:
        return ["eigen_benchmark"]
    if opts.ext_disp_to_eval:
        return ["eigen"]
    return ["eigen", "eigen_benchmark"]


def build_kitti_eval_sets(path: str, spec: ModelSpec, opts: argparse.Namespace) -> list[EvalSet]:
    """KITTI eigen / eigen_benchmark (or a folder split with test_files.txt and gt_depths.npz).

    The ``benchmark`` split has no ground truth; main() writes its PNGs instead.
    """
    data_path = Path(path)
    if not data_path.is_dir():
        raise FileNotFoundError(f"--kitti_path {path} does not exist or is not a folder")
    splits = [s for s in resolve_kitti_splits(opts) if s != BENCHMARK_SPLIT]
    external = None
    if opts.ext_disp_to_eval:
        if len(splits) != 1:
            raise ValueError("--ext_disp_to_eval holds the predictions of one split: pass exactly one "
                             f"--eval_split (got {splits})")
        external = load_ext_disps(opts.ext_disp_to_eval)
    if opts.eval_eigen_to_benchmark:
        if external is None:
            raise ValueError("--eval_eigen_to_benchmark selects the eigen_benchmark frames out of "
                             "--ext_disp_to_eval (697 eigen predictions); to evaluate a checkpoint on "
                             "the benchmark ground truth use --eval_split eigen_benchmark")
        from split_lists import ensure_split_file

        ids = np.load(ensure_split_file("benchmark", "eigen_to_benchmark_ids.npy"))
        if ids.max() >= len(external):
            raise ValueError(f"--eval_eigen_to_benchmark: {opts.ext_disp_to_eval} holds {len(external)} "
                             f"predictions but the eigen-to-benchmark ids reach {int(ids.max())}: it "
                             "must hold the eigen split's 697 predictions")
        external = external[ids]
    sets = []
    for split in splits:
        gt_depths = load_kitti_gt(split)
        name = Path(split).name
        if external is not None:
            loader, count = None, len(external)
        else:
            loader = build_kitti_eval_loader(data_path, split, spec.height, spec.width, opts.batch_size,
                                             opts.num_workers, opts.img_ext)
            count = len(loader.dataset)
        if count != len(gt_depths):
            raise ValueError(f"--eval_split {split}: {count} predictions to score but "
                             f"{kitti_gt_path(split)} holds {len(gt_depths)} maps; re-run "
                             f"`python export_gt_depth.py --split {split}`")
        sets.append(EvalSet(title=f"KITTI with {name} split", loader=loader, gt_depths=gt_depths,
                            protocol=EVAL_PROTOCOLS[kitti_protocol(split)], name=name,
                            pred_disps=external))
    return sets


EVAL_DATASETS: dict[str, EvalBuilder] = {
    "kitti": build_kitti_eval_sets,
    "make3d": build_make3d_eval_sets,
    "nyuv2": build_nyuv2_eval_sets,
    "cityscapes": build_cityscapes_eval_sets,
}


class KittiBenchmarkImages(torch.utils.data.Dataset):
    """The KITTI depth-prediction test images: lines ``image N`` -> ``<root>/image/{N:010d}.png``.

    Items are dicts with ``("color", 0, 0)``: uint8 3 x height x width RGB (area-resized, as the
    training loader does).
    """

    def __init__(self, root: str | Path, lines: Sequence[str], height: int, width: int,
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
                                    "set --benchmark_path to the unpacked "
                                    f"{BENCHMARK_IMAGES} folder")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = resize_area(read_rgb(self.paths[index]), self.height, self.width)
        return {("color", 0, 0): image_to_tensor(image)}


def write_benchmark_predictions(pred_disps: np.ndarray, out_dir: str | Path,
                                scale_factor: float = STEREO_SCALE_FACTOR) -> list[Path]:
    """Write the benchmark server's files: ``{i:010d}.png``, uint16 depth x 256 at 1216 x 352.

    Args:
        pred_disps: N x h x w scaled disparities, in test-list order.
        scale_factor: depth = scale_factor / disparity (Monodepth2 uses 5.4 whatever the model).
    Returns:
        The written paths; each file is written atomically.
    """
    import cv2

    out_dir = Path(out_dir)
    written = []
    for index, disp in enumerate(pred_disps):
        disp = torch.from_numpy(np.ascontiguousarray(disp, dtype=np.float32))[None, None]
        resized = upsample_disp(disp, BENCHMARK_SIZE)[0, 0].numpy()
        depth = np.clip(scale_factor / resized, 0.0, MAX_EVAL_DEPTH)
        path = out_dir / f"{index:010d}.png"
        with atomic_output(path, suffix=".png") as tmp:
            if not cv2.imwrite(str(tmp), (depth * KITTI_DEPTH_PNG_SCALE).astype(np.uint16)):
                raise OSError(f"could not write {path}")
        written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a depth checkpoint on every dataset whose path is given.",
        fromfile_prefix_chars="@")
    model = parser.add_argument_group("model")
    model.add_argument("--pretrained_path", "--load_weights", "--load_weights_folder",
                       dest="pretrained_path", default=None,
                       help="checkpoint written by train.py, a released BDEdepth .pth, or a released "
                            "Monodepth2 folder (encoder.pth, depth.pth)")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    model.add_argument("--no_cuda", dest="device", action="store_const", const="cpu", help=argparse.SUPPRESS)
    model.add_argument("--batch_size", type=int, default=16)
    model.add_argument("--num_workers", type=int, default=4)
    model.add_argument("--post_process", action="store_true",
                       help="average with the prediction of the mirrored image (ramped borders)")

    data = parser.add_argument_group("datasets (each is evaluated when its path is given)")
    data.add_argument("--kitti_path", "--data_path", dest="kitti_path", default=None,
                      help="KITTI raw root (or the synthetic dataset's root)")
    data.add_argument("--make3d_path", default=None, help="Make3D root")
    data.add_argument("--nyuv2_path", default=None, help="NYUv2 root")
    data.add_argument("--cityscapes_path", default=None, help="Cityscapes root")
    data.add_argument("--make3d_split", default=None,
                      help="folder with test_files.txt naming the Make3D images (default: every "
                           "Test134/img-*.jpg)")
    data.add_argument("--nyuv2_split", default=None,
                      help="folder with the NYUv2 test_files.txt (default: splits/nyuv2)")
    data.add_argument("--cityscapes_split", default=None,
                      help="folder with the Cityscapes test_files.txt and gt_depths/ (default: "
                           "splits/cityscapes)")
    data.add_argument("--eval_split", nargs="+", default=None,
                      help="KITTI splits: eigen, eigen_benchmark, benchmark (PNGs for the server), or "
                           "folders with test_files.txt and gt_depths.npz (default: eigen eigen_benchmark)")
    ext = data.add_mutually_exclusive_group()
    ext.add_argument("--jpg", dest="img_ext", action="store_const", const=".jpg")
    ext.add_argument("--png", dest="img_ext", action="store_const", const=".png")
    parser.set_defaults(img_ext=".png")
    data.add_argument("--benchmark_path", default=None,
                      help=f"KITTI benchmark test images (default: <kitti_path>/{BENCHMARK_IMAGES})")

    scaling = parser.add_argument_group("scaling")
    scaling.add_argument("--eval_stereo", "--use_stereo", dest="eval_stereo", action="store_true",
                         default=None, help="stereo evaluation: no median scaling, depth x 5.4 "
                                            "(default: from the checkpoint)")
    scaling.add_argument("--eval_mono", dest="eval_stereo", action="store_false",
                         help="mono evaluation with median scaling even for a stereo model")
    scaling.add_argument("--disable_median_scaling", action="store_true")
    scaling.add_argument("--pred_depth_scale_factor", type=float, default=1.0,
                         help="multiply predicted depths by this before any scaling")

    out = parser.add_argument_group("inputs and outputs")
    out.add_argument("--ext_disp_to_eval", default=None,
                     help="evaluate these N x h x w scaled disparities (.npy) instead of running a model")
    out.add_argument("--eval_eigen_to_benchmark", action="store_true",
                     help="with --ext_disp_to_eval on eigen: score its eigen_benchmark frames against "
                          "the eigen_benchmark ground truth")
    out.add_argument("--save_pred_disps", action="store_true",
                     help="write disps_<split>_split.npy (N x h x w) to --eval_out_dir")
    out.add_argument("--no_eval", action="store_true", help="stop after predicting (with --save_pred_disps)")
    out.add_argument("--eval_out_dir", default=None,
                     help="where predictions, benchmark PNGs and the JSON go (default: beside the "
                          "checkpoint)")
    out.add_argument("--output_json", default=None,
                     help="the metrics file (default: <eval_out_dir>/metrics_<checkpoint name>.json)")
    return parser


def _check_dataset_flags(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> list[str]:
    """The registry keys to evaluate, in the reference order; errors name the flag to fix."""
    given = [key for key in DATASET_ORDER if getattr(opts, f"{key}_path")]
    if not given:
        parser.error("give at least one of " + ", ".join(f"--{key}_path" for key in DATASET_ORDER))
    missing = [key for key in given if key not in EVAL_DATASETS]
    if missing:
        parser.error("; ".join(f"--{key}_path needs the '{key}' entry of evaluate_depth.EVAL_DATASETS, "
                               "which this version does not register" for key in missing)
                     + f" (registered: {sorted(EVAL_DATASETS)})")
    if not opts.pretrained_path and not opts.ext_disp_to_eval:
        parser.error("give --pretrained_path (or --ext_disp_to_eval with precomputed disparities)")
    if opts.ext_disp_to_eval and given != ["kitti"]:
        parser.error("--ext_disp_to_eval evaluates one KITTI split: give --kitti_path only")
    if opts.eval_eigen_to_benchmark and not opts.ext_disp_to_eval:
        parser.error("--eval_eigen_to_benchmark needs --ext_disp_to_eval (the 697 eigen predictions)")
    return given


def main(argv: Sequence[str] | None = None) -> dict:
    """Evaluate; return the report that is also written as JSON."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    parser = build_parser()
    opts = parser.parse_args(argv)
    datasets = _check_dataset_flags(parser, opts)

    device = select_device(opts.device)
    depth_net = None
    if opts.pretrained_path and not opts.ext_disp_to_eval:
        from released_weights import load_depth_model

        depth_net, spec = load_depth_model(opts.pretrained_path, device)
    else:
        spec = ModelSpec()  # precomputed disparities: the size is theirs, mono unless told
    stereo = spec.use_stereo if opts.eval_stereo is None else opts.eval_stereo
    scale_factor = opts.pred_depth_scale_factor * (STEREO_SCALE_FACTOR if stereo else 1.0)
    median_scaling = not (stereo or opts.disable_median_scaling)
    source = Path(opts.pretrained_path or opts.ext_disp_to_eval)
    out_dir = Path(opts.eval_out_dir) if opts.eval_out_dir else (source if source.is_dir() else source.parent)

    # Build every set first: a missing ground-truth file fails before minutes of prediction.
    eval_sets: list[EvalSet] = []
    for key in datasets:
        for eval_set in EVAL_DATASETS[key](getattr(opts, f"{key}_path"), spec, opts):
            eval_set.name = eval_set.name or (key if key != "kitti" else eval_set.protocol.name)
            eval_sets.append(eval_set)
    benchmark_loader = None
    if opts.kitti_path and BENCHMARK_SPLIT in (opts.eval_split or []):
        if depth_net is None:
            raise ValueError("--eval_split benchmark predicts with a model: give --pretrained_path")
        from torch.utils.data import DataLoader

        test_list = split_file(BENCHMARK_SPLIT, "test_files.txt")
        root = opts.benchmark_path or Path(opts.kitti_path) / BENCHMARK_IMAGES
        images = KittiBenchmarkImages(root, readlines(test_list), spec.height, spec.width,
                                      split_name=str(test_list))
        benchmark_loader = DataLoader(images, batch_size=opts.batch_size, num_workers=opts.num_workers)

    logger.info(" Evaluated at resolution %d * %d", spec.height, spec.width)
    logger.info(" Post-process is used" if opts.post_process else " No post-process")
    logger.info(" Mono evaluation - using median scaling" if median_scaling
                else f" Stereo evaluation - disabling median scaling\n Scaling by {scale_factor:g}")
    report = {"checkpoint": str(opts.pretrained_path) if opts.pretrained_path else None,
              "ext_disp_to_eval": opts.ext_disp_to_eval, "model_spec": spec.to_dict(),
              "post_process": opts.post_process, "median_scaling": median_scaling,
              "pred_depth_scale_factor": scale_factor, "results": []}

    for eval_set in eval_sets:
        if eval_set.pred_disps is not None:
            pred_disps = eval_set.pred_disps
        else:
            pred_disps = predict_disparities(depth_net, eval_set.loader, device, spec.min_depth,
                                             spec.max_depth, opts.post_process)
        if opts.save_pred_disps:
            path = out_dir / f"disps_{eval_set.key}_split.npy"
            with atomic_output(path, suffix=".npy") as tmp:
                np.save(tmp, pred_disps.astype(np.float32))
            logger.info(" Predictions saved to %s", path)
        if opts.no_eval:
            continue
        result = evaluate_predictions(pred_disps, eval_set.gt_depths, eval_set.protocol,
                                      median_scaling=median_scaling, pred_depth_scale_factor=scale_factor)
        if result.ratios.size:
            logger.info(" %s", result.ratio_summary())
        logger.info(" Evaluate on %s (%d images):", eval_set.title, result.num_images)
        logger.info(format_metrics_table(result.metrics))
        entry = {"name": eval_set.key, "title": eval_set.title, "protocol": eval_set.protocol.name,
                 "num_images": result.num_images, "metrics": result.metrics}
        if result.ratios.size:
            entry["scaling_ratio_median"], entry["scaling_ratio_std"] = result.ratio_statistics()
        report["results"].append(entry)

    if benchmark_loader is not None:
        if not stereo:
            logger.warning(" Benchmark PNGs use depth = %g / disparity: metric only for stereo-trained "
                           "models", STEREO_SCALE_FACTOR)
        pred_disps = predict_disparities(depth_net, benchmark_loader, device, spec.min_depth,
                                         spec.max_depth, opts.post_process)
        written = write_benchmark_predictions(pred_disps, out_dir / "benchmark_predictions")
        logger.info(" Wrote %d benchmark PNGs to %s", len(written), out_dir / "benchmark_predictions")
        report["benchmark_predictions"] = str(out_dir / "benchmark_predictions")

    if report["results"]:
        output = Path(opts.output_json) if opts.output_json else out_dir / f"metrics_{source.stem}.json"
        with atomic_output(output) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
        logger.info(" Metrics written to %s", output)
    return report


if __name__ == "__main__":
    main()
