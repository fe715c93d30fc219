"""What a benchmark is, for the evaluation builders beside each dataset.

`EvalProtocol` says how a prediction is scored against a ground-truth map, `EvalSet` is one
table of an evaluation (images, ground truth, protocol), `EvalOptions` is what every builder
takes, and `eval_split_file` finds a benchmark's test list. This module imports no dataset, so
each dataset module can define its protocol and its ``build_<name>_eval_sets(path, options)``
beside its reader; `evaluation.EVAL_DATASETS` collects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kitti_utils import MAX_EVAL_DEPTH, MIN_EVAL_DEPTH
from split_lists import split_file


@dataclass(frozen=True)
class EvalProtocol:
    """How a benchmark turns a predicted inverse depth and a ground-truth map into metrics.

    Attributes:
        name: the protocol's name in tables and JSON.
        gt_min, gt_max: ground truth counts where gt_min < gt < gt_max (metres; None: no bound).
        crop: (top, bottom, left, right) fractions of the ground-truth size, rows
            [int(top*h), int(bottom*h)) and columns [int(left*w), int(right*w)); None: no crop.
        interpolation: how the prediction reaches the ground-truth size, "bilinear"
            (align_corners=False, like cv2.resize) or "nearest".
        clamp_min, clamp_max: predictions are clamped to these after scaling (None: no bound).
        always_median_scaling: scale by the median even for stereo models (NYUv2).
        metric_set: a key of ``evaluation.METRIC_SETS``: "standard" (the seven KITTI metrics)
            or "make3d" (abs_rel, sq_rel, rmse and rmse_log10, the RMSE of base-10 logs).
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


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation builder needs besides the dataset's root folder.

    Attributes:
        height, width: the network input size the images are resized to.
        batch_size, num_workers: of the prediction loader.
        img_ext: image extension of KITTI-layout datasets (".png" or ".jpg").
        split: the benchmark's test list: a standard name ("eigen", "eigen_benchmark") or a
            folder with test_files.txt (and the ground truth); None: the benchmark's default.
        max_depth: the model's depth cap, for warnings when it does not suit the benchmark.
    """

    height: int
    width: int
    batch_size: int = 16
    num_workers: int = 4
    img_ext: str = ".png"
    split: str | None = None
    max_depth: float | None = None


@dataclass
class EvalSet:
    """One table of the evaluation: the images to predict, their ground truth and the protocol.

    Attributes:
        title: announced before the table, e.g. "KITTI with eigen split".
        loader: a DataLoader of dicts whose ``("color_uint8", 0, 0)`` is uint8 B x 3 x height x
            width RGB, in the order of ``gt_depths``; None when ``pred_disps`` is given.
        gt_depths: N ground-truth depth maps H_i x W_i in metres (0 = unknown).
        protocol: how a prediction is scored against its map.
        name: short key for file names and the JSON report (default: the protocol's name).
        pred_disps: N x h x w inverse depths (scaled disparities) computed elsewhere
            (``--ext_disp_to_eval``); when given, the network is not run.
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


def eval_split_file(key: str, split: str | None, filename: str = "test_files.txt") -> Path:
    """The list ``filename`` of benchmark ``key`` ("nyuv2", "cityscapes", "make3d", "odom").

    ``split`` (a folder, or a name under ``splits/``; ``--<key>_split`` on the command line)
    wins; otherwise ``splits/<key>/``, whose standard lists are downloaded on first use
    (``utils.split_file``).
    """
    path = split_file(split or key, filename)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass --{key}_split with a folder holding {filename}")
    return path
