"""Depth evaluation as a library: predictions, protocols, metrics and the benchmark registry.

Used by `evaluate_depth.py` (a thin command line over it), by the Trainer's per-epoch
validation and by the learning tests. Conventions, fixed once and pinned by tests:

- predictions are inverse depths (the scaled disparity of Monodepth2's ``disp_to_depth``) from
  `SelfSupervisedDepth.predict_depth(..., inverse=True)`;
- the inverse depth is upsampled to the ground-truth size bilinearly with align_corners=False
  (what Monodepth2's cv2.resize does), or nearest for NYUv2 and Make3D, then depth = 1 / it;
  a network that predicts depth itself (SQLdepth, ``SelfSupervisedDepth.prediction_domain``
  "depth") has its depth resized and flip-blended instead, as its authors evaluate it;
- whether predictions are median-scaled per image (NumPy's median) or multiplied by 5.4 is
  `ModelSpec.metric_depth_scale`, the one rule for training, evaluation and inference;
  predictions are then clamped to the protocol's range;
- the reported numbers are the mean over images of per-image metrics, and a non-finite metric is
  an error naming the image, never a ``nan`` in a table.

That is the Monodepth2 convention, the default. ``convention="packnet"`` (`EVAL_CONVENTIONS`)
scores as PackNet-SfM does (methods spec 1.7): depth (1 / inverse depth) resized bilinearly with
align_corners=True, ground truth in (0, cap) with the protocol's cap (80 m on KITTI), predictions
clamped to [0, cap], the per-image median ratio with ``torch.median`` (the lower middle value),
and its four modes (`PACKNET_MODES`: plain, post-processed, median-scaled, both). Its flip
post-processing is the same formula as `post_process_disparity` (see there).

Benchmarks are registered in ``EVAL_DATASETS``: ``build(path, EvalOptions) -> list[EvalSet]``,
each defined beside its dataset (`datasets.kitti_dataset`, `datasets.nyu_dataset`, ...).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from checkpoints import ModelSpec
from datasets.benchmarks import EvalOptions, EvalProtocol, EvalSet
from datasets.cityscapes_dataset import CITYSCAPES_PROTOCOL, build_cityscapes_eval_sets
from datasets.ddad_dataset import DDAD_PROTOCOL, build_ddad_eval_sets
from datasets.kitti_dataset import BENCHMARK_SIZE, KITTI_PROTOCOLS, build_kitti_eval_sets
from datasets.make3d_dataset import MAKE3D_PROTOCOL, build_make3d_eval_sets
from datasets.nyu_dataset import NYUV2_PROTOCOL, build_nyuv2_eval_sets
from kitti_utils import KITTI_DEPTH_PNG_SCALE, MAX_EVAL_DEPTH
from layers import DEPTH_METRIC_NAMES, compute_depth_metrics, median_scaling_ratio, upsample_disp
from utils import atomic_output

logger = logging.getLogger(__name__)

# Post-processing ramp: the outer 5% of columns come from the prediction whose border is not
# invented (the flipped image sees that border as its interior), blending over a further 5%.
POST_PROCESS_RAMP_START = 0.05
POST_PROCESS_RAMP_SLOPE = 20.0

EVAL_PROTOCOLS: dict[str, EvalProtocol] = {
    **KITTI_PROTOCOLS,
    "make3d": MAKE3D_PROTOCOL,
    "nyuv2": NYUV2_PROTOCOL,
    "cityscapes": CITYSCAPES_PROTOCOL,
    "ddad": DDAD_PROTOCOL,
}

# build(path, options) -> the EvalSets of one dataset, given the value of its --<name>_path.
EvalBuilder = Callable[[str, EvalOptions], "list[EvalSet]"]

EVAL_DATASETS: dict[str, EvalBuilder] = {
    "kitti": build_kitti_eval_sets,
    "make3d": build_make3d_eval_sets,
    "nyuv2": build_nyuv2_eval_sets,
    "cityscapes": build_cityscapes_eval_sets,
    "ddad": build_ddad_eval_sets,
}

# The order of the reference's report (KITTI eigen, eigen_benchmark, Make3D, NYUv2, Cityscapes), then DDAD.
DATASET_ORDER = ("kitti", "make3d", "nyuv2", "cityscapes", "ddad")

# Which benchmark the Trainer evaluates after every epoch, by training --dataset (the reference's
# choice, and PackNet's for DDAD); datasets missing here (kitti_odom, custom, image_folder) have no
# depth ground truth to score.
TRAINING_EVAL_DATASETS = {"kitti": "kitti", "kitti_depth": "kitti", "nyuv2": "nyuv2", "cityscapes": "cityscapes",
                          "ddad": "ddad"}


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def post_process_disparity(disp: torch.Tensor, disp_flipped_back: torch.Tensor) -> torch.Tensor:
    """Monodepth's flip post-processing of inverse depths.

    Args:
        disp: B x 1 x H x W inverse depth of the input.
        disp_flipped_back: B x 1 x H x W inverse depth of the mirrored input, mirrored back.
    Returns:
        B x 1 x H x W: the left border from the flipped prediction, the right border from the
        plain one, the mean in between.

    PackNet-SfM's ``post_process_inv_depth`` (mean fusion) is this very formula: its mask
    1 - clamp(20 (x - 0.05), 0, 1) over x = linspace(0, 1, W) is ``left_ramp``, its flipped
    mask ``right_ramp``, and it blends ``right_ramp * d + left_ramp * flip(d') + (1 - both) *
    mean`` in inverse depth at network resolution, so the PackNet convention reuses it.
    """
    width = disp.shape[-1]
    x = torch.linspace(0, 1, width, device=disp.device, dtype=disp.dtype)
    left_ramp = 1.0 - torch.clamp(POST_PROCESS_RAMP_SLOPE * (x - POST_PROCESS_RAMP_START), 0, 1)
    right_ramp = torch.flip(left_ramp, dims=[0])
    mean = 0.5 * (disp + disp_flipped_back)
    return right_ramp * disp + left_ramp * disp_flipped_back + (1.0 - left_ramp - right_ramp) * mean


def post_process_in_domain(inverse_depth: torch.Tensor, flipped_back: torch.Tensor, domain: str) -> torch.Tensor:
    """`post_process_disparity` of two B x 1 x h x w inverse-depth maps, blended in ``domain``
    ("inverse_depth", or "depth" for networks that predict depth); returns inverse depth."""
    if domain == "depth":
        return 1.0 / post_process_disparity(1.0 / inverse_depth, 1.0 / flipped_back)
    return post_process_disparity(inverse_depth, flipped_back)


@torch.no_grad()
def predict_inverse_depths(model, loader, device: torch.device, post_process: bool = False) -> np.ndarray:
    """Run ``model.predict_depth`` over a loader of ``("color_uint8", 0, 0)`` images.

    Args:
        model: a `model.SelfSupervisedDepth` (training or inference build).
        loader: batches of uint8 B x 3 x H x W images at the model's input size.
        post_process: average with the mirrored image's prediction (`post_process_disparity`),
            in the model's ``prediction_domain`` (inverse depth, or depth for SQLdepth).

    Returns:
        N x h x w float32 inverse depths (the network's output resolution), in loader order.
    """
    was_training = model.training
    model.eval()
    predictions = []
    for batch in loader:
        images = batch[("color_uint8", 0, 0)].to(device, non_blocking=True).float() / 255.0
        if post_process:
            images = torch.cat([images, torch.flip(images, dims=[3])], dim=0)
        inverse_depth = model.predict_depth(images, inverse=True)
        if post_process:
            plain, flipped = inverse_depth.chunk(2, dim=0)
            inverse_depth = post_process_in_domain(plain, torch.flip(flipped, dims=[3]), model.prediction_domain)
        predictions.append(inverse_depth[:, 0].cpu().numpy())
    model.train(was_training)
    return np.concatenate(predictions, axis=0)


@torch.no_grad()
def predict_plain_and_post_processed(model, loader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Both predictions of every image (PackNet's modes need both), as PackNet computes them.

    The mirrored images go through a forward pass of their own, so the plain maps are exactly
    those of ``predict_inverse_depths(post_process=False)`` whichever modes are asked for.

    Returns:
        (plain, post-processed): each N x h x w float32 inverse depths, in loader order.
    """
    was_training = model.training
    model.eval()
    plains, blends = [], []
    for batch in loader:
        images = batch[("color_uint8", 0, 0)].to(device, non_blocking=True).float() / 255.0
        plain = model.predict_depth(images, inverse=True)
        flipped_back = torch.flip(model.predict_depth(torch.flip(images, dims=[3]), inverse=True), dims=[3])
        blended = post_process_in_domain(plain, flipped_back, model.prediction_domain)
        plains.append(plain[:, 0].cpu().numpy())
        blends.append(blended[:, 0].cpu().numpy())
    model.train(was_training)
    return np.concatenate(plains, axis=0), np.concatenate(blends, axis=0)


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
        raise ValueError(f"--ext_disp_to_eval {path}: expected N x h x w disparities, got shape {disps.shape}")
    return disps.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class EvalConvention:
    """How a prediction is brought to the ground truth and scaled: one method's evaluation code.

    Attributes:
        name: "monodepth2" (the default; the lineage's numbers) or "packnet".
        resize_domain: what is resized to the ground truth's size: None for the prediction's own
            domain (the ``domain`` argument of `evaluate_predictions`), "depth" to resize depth.
        align_corners: bilinear resizing with align_corners=True (PackNet's ``interpolate_image``)
            instead of False (cv2.resize, Monodepth2); applies to every protocol when True.
        lower_median: median ratio from ``torch.median`` (the lower of the two middle values of an
            even count, as PackNet) instead of NumPy's mean of the two.
        zero_floor: ground truth counts where 0 < gt < cap and predictions are clamped to
            [0, cap] (PackNet's min_depth 0), the cap being the protocol's (`depth_cap`).
    """

    name: str
    resize_domain: str | None = None
    align_corners: bool = False
    lower_median: bool = False
    zero_floor: bool = False

    def adapt(self, protocol: EvalProtocol) -> EvalProtocol:
        """The protocol under this convention (the Monodepth2 convention keeps it as it is)."""
        if not self.zero_floor:
            return protocol
        cap = depth_cap(protocol)
        return dataclasses.replace(protocol, gt_min=0.0, gt_max=cap, clamp_min=0.0, clamp_max=cap)


def depth_cap(protocol: EvalProtocol) -> float:
    """The protocol's upper depth bound: its ground-truth cap, else its clamp (80 m on KITTI)."""
    cap = protocol.gt_max if protocol.gt_max is not None else protocol.clamp_max
    return MAX_EVAL_DEPTH if cap is None else cap


EVAL_CONVENTIONS: dict[str, EvalConvention] = {
    "monodepth2": EvalConvention("monodepth2"),
    # PackNet-SfM's compute_depth_metrics / scale_depth (methods spec 1.7; utils/depth.py).
    "packnet": EvalConvention("packnet", resize_domain="depth", align_corners=True, lower_median=True,
                              zero_floor=True),
}

# PackNet's four reported modes: name -> (post-processed, median-scaled). Its tables print them as
# the metric name plus "", "_pp", "_gt", "_pp_gt".
PACKNET_MODES: dict[str, tuple[bool, bool]] = {
    "plain": (False, False),
    "pp": (True, False),
    "gt": (False, True),
    "pp_gt": (True, True),
}

# PackNet inverts with 1 / clamp(inverse depth, 1e-6) (utils/depth.py inv2depth).
PACKNET_MIN_INVERSE_DEPTH = 1e-6


@dataclass(frozen=True)
class Scaling:
    """How predicted depths are brought to metres before scoring.

    Attributes:
        median: per-image median scaling (up-to-scale models).
        factor: multiplies predicted depths first (5.4 for stereo-trained models, times any
            ``--pred_depth_scale_factor``).
    """

    median: bool
    factor: float

    @classmethod
    def for_model(cls, spec: ModelSpec, eval_stereo: bool | None = None, disable_median_scaling: bool = False,
                  pred_depth_scale_factor: float = 1.0) -> "Scaling":
        """`ModelSpec.metric_depth_scale` decides, unless ``eval_stereo`` (--eval_stereo /
        --eval_mono) overrides it; ``disable_median_scaling`` scores raw depths."""
        metric_scale = spec.metric_depth_scale
        if eval_stereo is not None:
            metric_scale = ModelSpec(use_stereo=eval_stereo).metric_depth_scale
        factor = pred_depth_scale_factor * (metric_scale if metric_scale is not None else 1.0)
        return cls(median=metric_scale is None and not disable_median_scaling, factor=factor)

    def describe(self) -> str:
        if self.median:
            return " Mono evaluation - using median scaling"
        return f" Stereo evaluation - disabling median scaling\n Scaling by {self.factor:g}"


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
                         pred_depth_scale_factor: float = 1.0, names: Sequence[str] | None = None,
                         domain: str = "inverse_depth",
                         convention: EvalConvention | str = "monodepth2") -> DepthEvaluation:
    """Score inverse depths against ground-truth depth maps (metres), image by image.

    Args:
        pred_disps: N maps h x w of inverse depth (scaled disparity) at network resolution.
        domain: what is resized to the ground truth's size: "inverse_depth" (then inverted, the
            Monodepth2 lineage) or "depth" (inverted first: networks that predict depth).
        gt_depths: N ground-truth depth maps H_i x W_i in metres (0 where unknown).
        protocol: an ``EvalProtocol`` or a key of ``EVAL_PROTOCOLS``.
        median_scaling: per-image median scaling (forced on by ``protocol.always_median_scaling``).
        pred_depth_scale_factor: multiplies predicted depths first (5.4 for stereo models).
        names: how errors name image i (default "image i of the test list").
        convention: a key of ``EVAL_CONVENTIONS`` or an `EvalConvention`: how the prediction is
            resized, which pixels count and how the median is taken (default Monodepth2's).

    Raises:
        ValueError: the counts differ, no image has a valid pixel, or an image's metrics are
            not finite (a non-finite ground truth or prediction), naming that image.
    """
    if isinstance(protocol, str):
        protocol = EVAL_PROTOCOLS[protocol]
    if len(pred_disps) != len(gt_depths):
        raise ValueError(f"{len(pred_disps)} predictions but {len(gt_depths)} ground-truth maps: "
                         "the test list and the ground truth do not match (for KITTI re-run "
                         "export_gt_depth.py)")
    if domain not in ("inverse_depth", "depth"):
        raise ValueError(f"domain must be inverse_depth or depth (got {domain!r})")
    if isinstance(convention, str):
        if convention not in EVAL_CONVENTIONS:
            raise ValueError(f"unknown evaluation convention {convention!r}: one of {sorted(EVAL_CONVENTIONS)}")
        convention = EVAL_CONVENTIONS[convention]
    protocol = convention.adapt(protocol)
    resize_domain = convention.resize_domain or domain
    median_scaling = median_scaling or protocol.always_median_scaling
    metric_names, metric_function = METRIC_SETS[protocol.metric_set]
    errors, ratios = [], []
    for index, (pred_disp, gt) in enumerate(zip(pred_disps, gt_depths)):
        gt = np.asarray(gt, dtype=np.float32)
        prediction = torch.from_numpy(np.ascontiguousarray(pred_disp, dtype=np.float32))[None, None]
        if resize_domain == "depth":
            if convention.resize_domain == "depth":  # PackNet's inv2depth
                prediction = prediction.clamp(min=PACKNET_MIN_INVERSE_DEPTH)
            prediction = 1.0 / prediction
        if convention.align_corners:
            prediction = F.interpolate(prediction, size=gt.shape, mode="bilinear", align_corners=True)[0, 0].double()
        elif protocol.interpolation == "nearest":
            prediction = F.interpolate(prediction, size=gt.shape, mode="nearest")[0, 0].double()
        else:
            prediction = upsample_disp(prediction, gt.shape)[0, 0].double()
        pred_depth = prediction if resize_domain == "depth" else 1.0 / prediction
        mask = torch.from_numpy(protocol.valid_mask(gt))
        if not mask.any():
            continue
        gt_valid = torch.from_numpy(gt).double()[mask]
        pred_valid = pred_depth[mask] * pred_depth_scale_factor
        if median_scaling:
            if convention.lower_median:
                ratio = torch.median(gt_valid) / torch.median(pred_valid)
            else:
                ratio = median_scaling_ratio(gt_valid, pred_valid)
            ratios.append(float(ratio))
            pred_valid = pred_valid * ratio
        pred_valid = pred_valid.clamp(protocol.clamp_min, protocol.clamp_max)
        values = metric_function(gt_valid, pred_valid)
        if not torch.isfinite(values).all():
            name = names[index] if names is not None else f"image {index} of the test list"
            bad = ", ".join(n for n, v in zip(metric_names, values.tolist()) if not np.isfinite(v))
            source = "ground truth" if not np.isfinite(gt).all() else "prediction"
            raise ValueError(f"{name}: non-finite {bad} under the {protocol.name} protocol (its {source} holds "
                             "inf or nan values): fix or re-export that map")
        errors.append(values)
    if not errors:
        raise ValueError(f"no image has a valid ground-truth pixel under the {protocol.name} protocol: "
                         "check the ground-truth files")
    mean = torch.stack(errors).mean(dim=0)
    metrics = {name: float(value) for name, value in zip(metric_names, mean)}
    return DepthEvaluation(metrics=metrics, ratios=np.asarray(ratios), num_images=len(errors))


def format_metrics_table(metrics: dict) -> str:
    names = list(metrics)
    header = ("{:>8} | " * len(names)).format(*names)
    values = ("{: 8.3f} | " * len(names)).format(*metrics.values())
    return header + "\n" + values


def eval_set_predictions(model, eval_set: EvalSet, device: torch.device, post_process: bool = False) -> np.ndarray:
    """The EvalSet's own predictions (``--ext_disp_to_eval``), or the model's inverse depths of its images."""
    if eval_set.pred_disps is not None:
        return eval_set.pred_disps
    return predict_inverse_depths(model, eval_set.loader, device, post_process)


def evaluate_model(model, eval_set: EvalSet, device: torch.device, scaling: Scaling,
                   post_process: bool = False) -> tuple[np.ndarray, DepthEvaluation]:
    """Predict one EvalSet (unless it carries predictions) and score it: (inverse depths, result)."""
    pred_disps = eval_set_predictions(model, eval_set, device, post_process)
    domain = model.prediction_domain if eval_set.pred_disps is None else "inverse_depth"
    result = evaluate_predictions(pred_disps, eval_set.gt_depths, eval_set.protocol, median_scaling=scaling.median,
                                  pred_depth_scale_factor=scaling.factor, domain=domain)
    return pred_disps, result


def evaluate_packnet_modes(model, eval_set: EvalSet, device: torch.device, scaling: Scaling,
                           modes: Sequence[str] = tuple(PACKNET_MODES)
                           ) -> tuple[np.ndarray, dict[str, DepthEvaluation]]:
    """Score one EvalSet in PackNet's modes under the PackNet convention.

    Args:
        modes: keys of ``PACKNET_MODES``; the post-processed ones need a model (one pass predicts
            both the plain and the post-processed maps).
        scaling: only its ``factor`` is used (5.4 for stereo models, --pred_depth_scale_factor):
            each mode decides median scaling itself.

    Returns:
        (plain inverse depths N x h x w, {mode: result} in ``modes``' order).

    Raises:
        ValueError: an unknown mode, or a post-processed mode for precomputed predictions.
    """
    unknown = [mode for mode in modes if mode not in PACKNET_MODES]
    if unknown:
        raise ValueError(f"unknown PackNet mode(s) {unknown}: choose from {list(PACKNET_MODES)}")
    needs_post_process = any(PACKNET_MODES[mode][0] for mode in modes)
    if eval_set.pred_disps is not None:
        if needs_post_process:
            raise ValueError("--ext_disp_to_eval holds one prediction per image, so the post-processed PackNet "
                             "modes cannot be scored: use --packnet_modes plain gt")
        plain, post_processed, domain = eval_set.pred_disps, None, "inverse_depth"
    elif needs_post_process:
        plain, post_processed = predict_plain_and_post_processed(model, eval_set.loader, device)
        domain = model.prediction_domain
    else:
        plain, post_processed = predict_inverse_depths(model, eval_set.loader, device), None
        domain = model.prediction_domain
    results = {}
    for mode in modes:
        post_process, median = PACKNET_MODES[mode]
        results[mode] = evaluate_predictions(post_processed if post_process else plain, eval_set.gt_depths,
                                             eval_set.protocol, median_scaling=median,
                                             pred_depth_scale_factor=scaling.factor, domain=domain,
                                             convention="packnet")
    return plain, results


def format_modes_table(results: dict[str, dict]) -> str:
    """One row of metrics per mode, PackNet's layout: ``{mode: {metric: value}}`` -> text."""
    names = list(next(iter(results.values())))
    width = max(len(mode) for mode in results)
    header = " " * width + " | " + ("{:>8} | " * len(names)).format(*names)
    rows = [mode.ljust(width) + " | " + ("{: 8.3f} | " * len(names)).format(*metrics.values())
            for mode, metrics in results.items()]
    return "\n".join([header, *rows])


# --------------------------------------------------------------------------------------------
# Per-epoch evaluation and benchmark files
# --------------------------------------------------------------------------------------------


def build_training_eval_sets(dataset: str, data_path: str, eval_split: str, options: EvalOptions) -> list[EvalSet]:
    """The EvalSets of the per-epoch evaluation of a model trained on ``--dataset dataset``.

    KITTI uses ``eval_split`` (a standard split or a folder); NYUv2 and Cityscapes use their
    benchmark's test list, or ``eval_split`` when it names a folder. Images are read under
    ``data_path``. Returns [] for datasets without depth ground truth.
    """
    key = TRAINING_EVAL_DATASETS.get(dataset)
    if key is None:
        logger.info("No per-epoch depth evaluation for --dataset %s (no ground truth)", dataset)
        return []
    folder_split = eval_split if Path(eval_split).expanduser().is_dir() else None
    split = eval_split if key == "kitti" else folder_split
    return EVAL_DATASETS[key](data_path, EvalOptions(**{**vars(options), "split": split}))


def write_benchmark_predictions(pred_disps: np.ndarray, out_dir: str | Path, scale_factor: float) -> list[Path]:
    """Write the KITTI benchmark server's files: ``{i:010d}.png``, uint16 depth x 256 at 1216 x 352.

    Args:
        pred_disps: N x h x w inverse depths, in test-list order.
        scale_factor: depth = scale_factor / inverse depth (Monodepth2 uses 5.4 whatever the model).
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
