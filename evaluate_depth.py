"""Evaluate a depth checkpoint on the KITTI Eigen protocols.

    python evaluate_depth.py --pretrained_path RUN/models/model19.pth --kitti_path KITTI --eval_split eigen

The checkpoint describes its own architecture and depth range, so no model flags are needed.

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
from typing import Sequence

import numpy as np
import torch

from kitti_utils import GARG_CROP, MAX_EVAL_DEPTH, MIN_EVAL_DEPTH, STEREO_SCALE_FACTOR
from layers import (DEPTH_METRIC_NAMES, compute_depth_metrics, disp_to_depth, median_scaling_ratio,
                    upsample_disp)
from utils import atomic_output, readlines, resolve_split_dir, select_device

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
    """

    name: str
    gt_min: float | None = MIN_EVAL_DEPTH
    gt_max: float | None = MAX_EVAL_DEPTH
    crop: tuple[float, float, float, float] | None = None
    interpolation: str = "bilinear"
    clamp_min: float | None = MIN_EVAL_DEPTH
    clamp_max: float | None = MAX_EVAL_DEPTH
    always_median_scaling: bool = False

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

    def ratio_summary(self) -> str:
        if self.ratios.size == 0:
            return ""
        median = np.median(self.ratios)
        return f"Scaling ratios | med: {median:0.3f} | std: {np.std(self.ratios / median):0.3f}"


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
        errors.append(compute_depth_metrics(gt_valid, pred_valid))
    if not errors:
        raise ValueError(f"no image has a valid ground-truth pixel under the {protocol.name} protocol: "
                         "check the ground-truth files")
    mean = torch.stack(errors).mean(dim=0)
    metrics = {name: float(value) for name, value in zip(DEPTH_METRIC_NAMES, mean)}
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

    split_file = resolve_split_dir(eval_split) / "test_files.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"--eval_split {eval_split}: {split_file} not found")
    dataset = KITTIRAWDataset(data_path, readlines(split_file), height, width, [0], num_scales=1,
                              is_train=False, img_ext=img_ext, split_name=str(split_file))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=False, drop_last=False)


def load_kitti_gt(eval_split: str) -> list[np.ndarray]:
    from export_gt_depth import load_gt_depths

    path = kitti_gt_path(eval_split)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth {path} not found: run "
                                f"`python export_gt_depth.py --data_path <KITTI root> --split {eval_split}`")
    return load_gt_depths(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a depth checkpoint on KITTI.")
    parser.add_argument("--pretrained_path", "--load_weights", required=True,
                        help="checkpoint written by train.py (models/model{epoch}.pth or ckpt.pth)")
    parser.add_argument("--kitti_path", "--data_path", dest="kitti_path", required=True,
                        help="KITTI raw root (or the synthetic dataset's root)")
    parser.add_argument("--eval_split", default="eigen",
                        help="eigen, eigen_benchmark, or a folder with test_files.txt and gt_depths.npz")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--post_process", action="store_true", help="flip post-processing")
    parser.add_argument("--eval_stereo", "--use_stereo", dest="eval_stereo", action="store_true",
                        default=None, help="stereo evaluation: no median scaling, depth x 5.4 "
                                           "(default: from the checkpoint)")
    parser.add_argument("--eval_mono", dest="eval_stereo", action="store_false",
                        help="mono evaluation with median scaling even for a stereo model")
    parser.add_argument("--disable_median_scaling", action="store_true")
    parser.add_argument("--pred_depth_scale_factor", type=float, default=1.0,
                        help="multiply predicted depths by this before any scaling")
    ext = parser.add_mutually_exclusive_group()
    ext.add_argument("--jpg", dest="img_ext", action="store_const", const=".jpg")
    ext.add_argument("--png", dest="img_ext", action="store_const", const=".png")
    parser.set_defaults(img_ext=".png")
    parser.add_argument("--output_json", default=None,
                        help="write the metrics here (default: metrics_<split>.json beside the checkpoint)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    opts = build_parser().parse_args(argv)
    from checkpoints import build_depth_network_from_checkpoint

    device = select_device(opts.device)
    depth_net, spec = build_depth_network_from_checkpoint(opts.pretrained_path, device)
    stereo = spec.use_stereo if opts.eval_stereo is None else opts.eval_stereo
    scale_factor = opts.pred_depth_scale_factor * (STEREO_SCALE_FACTOR if stereo else 1.0)
    median_scaling = not (stereo or opts.disable_median_scaling)

    loader = build_kitti_eval_loader(opts.kitti_path, opts.eval_split, spec.height, spec.width,
                                     opts.batch_size, opts.num_workers, opts.img_ext)
    gt_depths = load_kitti_gt(opts.eval_split)
    logger.info(" Evaluated at resolution %d * %d", spec.height, spec.width)
    logger.info(" Post-process is used" if opts.post_process else " No post-process")
    logger.info(" Mono evaluation - using median scaling" if median_scaling
                else f" Stereo evaluation - disabling median scaling, scaling by {scale_factor:g}")
    pred_disps = predict_disparities(depth_net, loader, device, spec.min_depth, spec.max_depth,
                                     opts.post_process)
    result = evaluate_predictions(pred_disps, gt_depths, kitti_protocol(opts.eval_split),
                                  median_scaling=median_scaling, pred_depth_scale_factor=scale_factor)
    if result.ratios.size:
        logger.info(" %s", result.ratio_summary())
    logger.info(" Evaluate on KITTI with %s split (%d images):", opts.eval_split, result.num_images)
    logger.info(format_metrics_table(result.metrics))

    output = Path(opts.output_json) if opts.output_json else (
        Path(opts.pretrained_path).parent / f"metrics_{Path(opts.eval_split).name}.json")
    report = {"checkpoint": str(opts.pretrained_path), "eval_split": opts.eval_split,
              "post_process": opts.post_process, "median_scaling": median_scaling,
              "num_images": result.num_images, "metrics": result.metrics}
    with atomic_output(output) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    logger.info(" Metrics written to %s", output)
    return report


if __name__ == "__main__":
    main()
