"""Evaluate a checkpoint's pose network on KITTI odometry sequences (09 and 10, or any with poses).

    python evaluate_pose.py --pretrained_path RUN/models/model19.pth --data_path kitti_odom --eval_split odom_9 odom_10
    python evaluate_pose.py --load_weights_folder models/mono_640x192 --data_path kitti_odom --eval_split odom_9

``odom_<N>`` evaluates sequence N: its pairs come from ``test_files_<NN>.txt`` in ``--odom_split``
when that list exists (Monodepth2's lists for 09 and 10 are fetched), otherwise from every frame
pair of ``<data_path>/poses/<NN>.txt`` (lines ``N t l`` for t = 0 .. frames - 2).

Monodepth2's protocol, kept number for number:
- the pose network sees each pair (t, t+1) of the test list (frames 0 and 1 of every line) and
  gives T_{t+1<-t} = transformation_from_parameters(axisangle, translation), not inverted;
- the ground-truth camera-to-world poses G_t (``<data_path>/poses/<SS>.txt``) give the local
  transforms inv(inv(G_{t-1}) G_t), the same T_{t<-t-1} convention;
- for every t = 0 .. N-2 (N poses), the 5-frame snippet starting at t chains 4 local transforms from
  the identity (``M <- M @ T`` for T in order, exactly as Monodepth2's ``dump_xyz``; near the end
  of the sequence the snippets are shorter, the last one a single transform) and collects the
  translations: N-1 snippets, one per frame pair, as Monodepth2's ``range(num_frames - 1)``;
- ATE of a snippet: align the first positions, scale the prediction by
  sum(gt . pred) / sum(pred^2), then sqrt(sum ||s pred - gt||^2) / number of positions (metres);
- the table reports the mean and standard deviation over snippets.

Beside the numbers, ``trajectory_<SS>.png`` plots the whole predicted trajectory (relative poses
composed properly, then scaled to the ground truth by least squares) over the ground truth, seen
from above.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from config_files import parse_args_with_config
from utils import (atomic_output, configure_logging, image_extension, non_negative_int, positive_int, readlines,
                   select_device, write_json)
from weights import add_weights_arguments, check_requested_architecture, chosen_weights, resolve_weights

logger = logging.getLogger(__name__)

TRACK_LENGTH = 5  # frames per ATE snippet (Monodepth2, after Zhou et al.)
ODOM_SPLIT_PREFIX = "odom_"


def odometry_sequence(split: str) -> int:
    """``odom_<N>`` -> N (``odom_9``, ``odom_09`` and ``odom_10`` as Monodepth2 names them).

    Raises:
        ValueError: not of that form, naming the flag and the form.
    """
    number = split[len(ODOM_SPLIT_PREFIX):] if split.startswith(ODOM_SPLIT_PREFIX) else ""
    if not number.isdigit():
        raise ValueError(f"--eval_split {split}: expected odom_<sequence number>, e.g. odom_9 or odom_0")
    return int(number)


def sequence_test_lines(opts: argparse.Namespace, sequence: int, num_poses: int) -> tuple[list[str], str]:
    """The frame pairs of one sequence, and where they come from (for messages).

    ``test_files_<NN>.txt`` of ``--odom_split`` when it exists (fetched for Monodepth2's 09 and
    10), else every pair of the ground-truth trajectory: ``<N> <t> l`` for t = 0 .. num_poses - 2.
    """
    from split_lists import SPLIT_FILES, split_file

    name = f"test_files_{sequence:02d}.txt"
    standard = opts.odom_split == "odom" and f"odom/{name}" in SPLIT_FILES
    path = split_file(opts.odom_split, name)
    if standard or path.is_file():
        return readlines(path), str(path)
    return [f"{sequence} {t} l" for t in range(num_poses - 1)], f"every frame pair of sequence {sequence:02d}"


def load_poses_file(path: str | Path) -> np.ndarray:
    """KITTI odometry poses: one row-major 3 x 4 camera-to-world matrix per line.

    Returns:
        N x 4 x 4 float64.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth poses {path} not found: put the odometry poses "
                                "(data_odometry_poses.zip) in <data_path>/poses/")
    poses = []
    for number, line in enumerate(readlines(path), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            values = []
        if len(values) != 12:
            raise ValueError(f"{path}, line {number}: expected 12 numbers (a 3 x 4 pose), got {line[:80]!r}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{path}, line {number}: the pose holds non-finite values ({line[:80]!r}); "
                             "re-extract the odometry poses (data_odometry_poses.zip)")
        pose = np.eye(4)
        pose[:3] = np.reshape(values, (3, 4))
        poses.append(pose)
    if len(poses) < 2:
        raise ValueError(f"{path} holds {len(poses)} pose(s): a trajectory needs at least 2")
    return np.stack(poses)


def local_transforms(global_poses: np.ndarray) -> np.ndarray:
    """(N-1) x 4 x 4 T_{t<-t-1} = inv(inv(G_{t-1}) G_t) from N camera-to-world poses G."""
    relative = np.linalg.inv(global_poses[:-1]) @ global_poses[1:]
    return np.linalg.inv(relative)


def snippet_positions(transforms: np.ndarray) -> np.ndarray:
    """(K+1) x 3 positions from chaining K transforms as Monodepth2's ``dump_xyz`` does."""
    current = np.eye(4)
    positions = [current[:3, 3].copy()]
    for transform in transforms:
        current = current @ transform
        positions.append(current[:3, 3].copy())
    return np.stack(positions)


def compute_ate(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """Scale-aligned absolute trajectory error of one snippet (K x 3 positions, metres)."""
    pred_xyz = pred_xyz + (gt_xyz[0] - pred_xyz[0])[None]
    denominator = np.sum(pred_xyz ** 2)
    scale = np.sum(gt_xyz * pred_xyz) / denominator if denominator > 0 else 0.0
    return float(np.sqrt(np.sum((scale * pred_xyz - gt_xyz) ** 2)) / gt_xyz.shape[0])


def snippet_ates(pred_local: np.ndarray, gt_local: np.ndarray, track_length: int = TRACK_LENGTH) -> np.ndarray:
    """ATE of every snippet: one per local transform, as Monodepth2 (the last ones shorter, down to
    one transform: Monodepth2 scores ``range(num_frames - 1)`` snippets of num_frames poses).

    Args:
        pred_local, gt_local: M x 4 x 4 T_{t+1<-t} for t = 0 .. M-1.
    """
    if len(pred_local) != len(gt_local):
        raise ValueError(f"{len(pred_local)} predicted transforms but {len(gt_local)} ground-truth ones: the "
                         "test list must cover every frame pair of the sequence (N poses -> N-1 lines)")
    return np.array([compute_ate(snippet_positions(gt_local[i:i + track_length - 1]),
                                 snippet_positions(pred_local[i:i + track_length - 1]))
                     for i in range(len(gt_local))])


def check_finite_ates(ates: np.ndarray, source: str) -> None:
    """Refuse non-finite errors (a diverged pose network), naming the first snippet that has one.

    Snippet i starts at line i + 1 of the pair list ``source``.
    """
    bad = np.flatnonzero(~np.isfinite(ates))
    if len(bad):
        raise ValueError(f"the trajectory error of {len(bad)} snippet(s) is not finite, first the one starting at "
                         f"line {bad[0] + 1} of {source}: the pose network predicts non-finite transforms "
                         "(a diverged checkpoint?); no metrics were written")


def compose_trajectory(local: np.ndarray) -> np.ndarray:
    """(M+1) x 3 camera positions in the first camera's frame from M transforms T_{t+1<-t}."""
    cam_to_world = np.eye(4)
    positions = [cam_to_world[:3, 3].copy()]
    for transform in local:
        cam_to_world = cam_to_world @ np.linalg.inv(transform)
        positions.append(cam_to_world[:3, 3].copy())
    return np.stack(positions)


def plot_trajectory(gt_xyz: np.ndarray, pred_xyz: np.ndarray, path: Path, title: str) -> Path:
    """Top view (x right, z forward) of both trajectories, the prediction scaled to the ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    denominator = np.sum(pred_xyz ** 2)
    scale = np.sum(gt_xyz * pred_xyz) / denominator if denominator > 0 else 1.0
    figure, axes = plt.subplots(figsize=(6, 6))
    axes.plot(gt_xyz[:, 0], gt_xyz[:, 2], "k-", label="ground truth")
    axes.plot(scale * pred_xyz[:, 0], scale * pred_xyz[:, 2], "r--", label=f"prediction x {scale:.3g}")
    axes.plot(gt_xyz[0, 0], gt_xyz[0, 2], "ko")
    axes.set_xlabel("x (m)")
    axes.set_ylabel("z (m)")
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_title(title)
    axes.legend()
    with atomic_output(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return path


def build_pose_network_from_checkpoint(path: str | Path, device: torch.device, check=None):
    """(PoseNetwork for pairs in eval mode, ModelSpec) from any weights with a pose network: a train.py
    checkpoint or a released Monodepth2 folder (`released_weights.read_weights`).

    Args:
        check: called with the weights' ModelSpec before loading (raises to refuse).
    """
    from checkpoints import spec_from_checkpoint
    from model import SelfSupervisedDepth, describe_spec
    from released_weights import WEIGHT_FORMATS, read_weights

    if not Path(path).exists():
        raise FileNotFoundError(f"--pretrained_path {path} does not exist")
    payload, kind = read_weights(path)
    spec = spec_from_checkpoint(payload, path)
    if check is not None:
        check(spec)
    if "pose" not in payload:
        raise ValueError(f"{path} has no pose network (trained with stereo only, or a depth-only release): "
                         "nothing to evaluate")
    if spec.pose_model_input != "pairs":
        raise ValueError(f"{path}: the pose network takes all {len(spec.frame_ids)} frames at once "
                         "(--pose_model_input all); evaluate_pose.py needs a pairs model")
    model = SelfSupervisedDepth(spec)
    model.load_state_dicts(payload, str(path))
    logger.info("Loaded the %s %s: pose network %s (%s)", WEIGHT_FORMATS[kind], path, spec.pose_model_type,
                describe_spec(spec))
    return model.networks["pose"].to(device).eval(), spec


@torch.no_grad()
def predict_local_transforms(pose_net, loader, device: torch.device) -> np.ndarray:
    """M x 4 x 4 float64 T_{t+1<-t} for every line of a frames [0, 1] loader, in order."""
    from layers import transformation_from_parameters

    transforms = []
    for batch in loader:
        pair = torch.cat([batch[("color_uint8", 0, 0)], batch[("color_uint8", 1, 0)]], dim=1).to(device).float() / 255.0
        axisangle, translation = pose_net(pair)
        transforms.append(transformation_from_parameters(axisangle[:, 0], translation[:, 0]).cpu().double())
    return torch.cat(transforms).numpy()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Absolute trajectory error on KITTI odometry sequences.")
    add_weights_arguments(parser)
    parser.add_argument("--data_path", required=True,
                        help="KITTI odometry root (sequences/<SS>/image_2, poses/<SS>.txt)")
    parser.add_argument("--eval_split", nargs="+", default=["odom_9", "odom_10"],
                        help="sequences to evaluate, odom_<N> for any sequence N with <data_path>/poses/<NN>.txt")
    parser.add_argument("--odom_split", default="odom",
                        help="folder (or name under splits/) with test_files_<NN>.txt; a sequence without one is "
                             "evaluated on every frame pair of its poses")
    ext = parser.add_mutually_exclusive_group()
    ext.add_argument("--jpg", dest="img_ext", action="store_const", const=".jpg")
    ext.add_argument("--png", dest="img_ext", action="store_const", const=".png")
    ext.add_argument("--ext", dest="img_ext", type=image_extension, help="image extension (BDEdepth's spelling)")
    parser.set_defaults(img_ext=".png")
    parser.add_argument("--odom_camera", default="color", choices=["color", "grey"],
                        help="color: image_2 (Monodepth2); grey: image_0, FeatDepth's convention (use what the "
                             "model was trained on)")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="frame pairs per forward pass (>= 1)")
    parser.add_argument("--num_workers", type=non_negative_int, default=4,
                        help="data-loader worker processes (0: load in the main process)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--eval_out_dir", default=None,
                        help="where poses_<SS>.npy, trajectory_<SS>.png and pose_metrics.json go "
                             "(default: beside the checkpoint)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Evaluate; return the report also written to ``pose_metrics.json``."""
    configure_logging()
    parser = build_parser()
    opts = parse_args_with_config(parser, argv)
    try:
        sequences = [odometry_sequence(split) for split in opts.eval_split]
    except ValueError as err:
        parser.error(str(err))
    from torch.utils.data import DataLoader

    from datasets import KITTIOdomDataset
    from datasets.kitti_dataset import odometry_pose_path

    # Every sequence's poses are read before the network runs: a missing file fails at once.
    gt_poses = {sequence: load_poses_file(odometry_pose_path(opts.data_path, sequence)) for sequence in sequences}
    device = select_device(opts.device)
    weights = resolve_weights(chosen_weights(opts, parser), opts.cache_dir)
    pose_net, spec = build_pose_network_from_checkpoint(
        weights, device, check=lambda found: check_requested_architecture(opts, found, weights))
    out_dir = Path(opts.eval_out_dir) if opts.eval_out_dir else weights if weights.is_dir() else weights.parent
    report = {"checkpoint": str(weights), "track_length": TRACK_LENGTH, "sequences": {}}
    for sequence, gt_global in gt_poses.items():
        lines, source = sequence_test_lines(opts, sequence, len(gt_global))
        dataset = KITTIOdomDataset(opts.data_path, lines, spec.height, spec.width, [0, 1],
                                   num_scales=1, is_train=False, img_ext=opts.img_ext, split_name=source,
                                   camera=opts.odom_camera)
        loader = DataLoader(dataset, batch_size=opts.batch_size, shuffle=False, num_workers=opts.num_workers)
        pred_local = predict_local_transforms(pose_net, loader, device)
        ates = snippet_ates(pred_local, local_transforms(gt_global))
        check_finite_ates(ates, source)
        with atomic_output(out_dir / f"poses_{sequence:02d}.npy", suffix=".npy") as tmp:
            np.save(tmp, pred_local)
        plot = plot_trajectory(gt_global[:, :3, 3] - gt_global[0, :3, 3],
                               compose_trajectory(pred_local) @ gt_global[0, :3, :3].T,
                               out_dir / f"trajectory_{sequence:02d}.png",
                               f"KITTI odometry {sequence:02d}: ATE {ates.mean():0.3f} m")
        logger.info(" Sequence %02d (%d snippets of %d frames):", sequence, len(ates), TRACK_LENGTH)
        logger.info("   Trajectory error: %0.3f, std: %0.3f", ates.mean(), ates.std())
        logger.info("   Trajectory plot: %s", plot)
        report["sequences"][f"{sequence:02d}"] = {"ate_mean": float(ates.mean()), "ate_std": float(ates.std()),
                                                  "num_snippets": int(len(ates)), "plot": str(plot)}
    write_json(out_dir / "pose_metrics.json", report)
    return report


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
