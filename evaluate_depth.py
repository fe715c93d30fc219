"""Evaluate one depth checkpoint on every dataset whose path is given.

    python evaluate_depth.py --pretrained_path RUN/models/model19.pth --kitti_path KITTI --eval_split eigen

A thin command line over `evaluation` (protocols, prediction, metrics, the ``EVAL_DATASETS``
registry). The checkpoint describes its own architecture, depth range and scaling (released
Monodepth2 folders and BDEdepth files are read through `model.load_model`), so no model flags
are needed. Datasets are evaluated in the reference's order (KITTI eigen, eigen_benchmark,
Make3D, NYUv2, Cityscapes); one table is printed per set, and all the numbers go into one JSON.

Your own ground truth: ``--image_path FRAMES --gt_folder DEPTHS`` scores the images of FRAMES
that have a depth map of the same name in DEPTHS (`datasets.depth_folder`; .npy/.npz in metres or
16-bit PNGs of metres x ``--gt_png_scale``), between ``--gt_min_depth`` and ``--gt_max_depth``,
uncropped, scaled as every other table; a map without its image is an error naming it.

``--eval_convention packnet`` scores as PackNet-SfM does (`evaluation.EVAL_CONVENTIONS`) and prints
one row per PackNet mode (``--packnet_modes``, default all four: plain, pp, gt, pp_gt), so its
published table and ours can be compared side by side:

    python evaluate_depth.py --pretrained_path PackNet01_MR_selfsup_K.ckpt --kitti_path KITTI \
        --eval_split eigen --eval_convention packnet
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from checkpoints import ModelSpec
from config_files import parse_args_with_config
from datasets.benchmarks import EvalOptions, EvalSet
from datasets.depth_folder import build_gt_folder_eval_sets, gt_folder_protocol
from datasets.kitti_dataset import BENCHMARK_IMAGES, BENCHMARK_SPLIT, KittiBenchmarkImages, build_kitti_eval_sets
from evaluation import (DATASET_ORDER, EVAL_CONVENTIONS, EVAL_DATASETS, PACKNET_MODES, Scaling, eval_set_predictions,
                        evaluate_model, evaluate_packnet_modes, evaluate_predictions, format_metrics_table,
                        format_modes_table, load_ext_disps, predict_inverse_depths, write_benchmark_predictions)
from kitti_utils import KITTI_DEPTH_PNG_SCALE, MAX_EVAL_DEPTH, MIN_EVAL_DEPTH, STEREO_SCALE_FACTOR
from split_lists import split_file
from utils import (atomic_output, check_output_folders, configure_logging, image_extension, readlines, select_device,
                   write_json)
from weights import add_weights_arguments, load_requested_model

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a depth checkpoint on every dataset whose path is given.",
        fromfile_prefix_chars="@")
    add_weights_arguments(parser)
    model = parser.add_argument_group("model")
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
    data.add_argument("--ddad_path", default=None, help="DDAD root (the folder holding ddad.json)")
    data.add_argument("--make3d_split", default=None,
                      help="folder with test_files.txt naming the Make3D images (default: every "
                           "Test134/img-*.jpg)")
    data.add_argument("--nyuv2_split", default=None,
                      help="folder with the NYUv2 test_files.txt (default: splits/nyuv2)")
    data.add_argument("--cityscapes_split", default=None,
                      help="folder with the Cityscapes test_files.txt and gt_depths/ (default: "
                           "splits/cityscapes)")
    data.add_argument("--ddad_split", default=None,
                      help="folder with a DDAD test_files.txt from prepare_ddad.py (default: the val split "
                           "of ddad.json, CAMERA_01)")
    data.add_argument("--eval_split", nargs="+", default=None,
                      help="KITTI splits: eigen, eigen_benchmark, benchmark (PNGs for the server), or "
                           "folders with test_files.txt and gt_depths.npz (default: eigen eigen_benchmark)")
    ext = data.add_mutually_exclusive_group()
    ext.add_argument("--jpg", dest="img_ext", action="store_const", const=".jpg")
    ext.add_argument("--png", dest="img_ext", action="store_const", const=".png")
    ext.add_argument("--ext", dest="img_ext", type=image_extension, help="image extension (BDEdepth's spelling)")
    parser.set_defaults(img_ext=".png")
    data.add_argument("--benchmark_path", default=None,
                      help=f"KITTI benchmark test images (default: <kitti_path>/{BENCHMARK_IMAGES})")

    own = parser.add_argument_group("your own ground truth (--image_path with --gt_folder)")
    own.add_argument("--gt_folder", default=None,
                     help="folder of depth maps named after the images of --image_path (0005.npy or 0005_depth.png "
                          "for 0005.jpg): .npy/.npz in metres, or 16-bit PNGs of metres x --gt_png_scale")
    own.add_argument("--image_path", default=None, help="the folder of images --gt_folder's maps belong to")
    own.add_argument("--gt_png_scale", type=float, default=KITTI_DEPTH_PNG_SCALE,
                     help="a 16-bit PNG map holds metres times this (KITTI: 256; millimetres: 1000)")
    own.add_argument("--gt_min_depth", type=float, default=MIN_EVAL_DEPTH,
                     help="ground truth counts above this depth (metres)")
    own.add_argument("--gt_max_depth", type=float, default=MAX_EVAL_DEPTH,
                     help="ground truth counts below this depth (metres); predictions are clamped to it")

    scaling = parser.add_argument_group("scaling")
    scaling.add_argument("--eval_stereo", "--use_stereo", dest="eval_stereo", action="store_true",
                         default=None, help="stereo evaluation: no median scaling, depth x 5.4 "
                                            "(default: from the checkpoint)")
    scaling.add_argument("--eval_mono", dest="eval_stereo", action="store_false",
                         help="mono evaluation with median scaling even for a stereo model")
    scaling.add_argument("--disable_median_scaling", action="store_true")
    scaling.add_argument("--pred_depth_scale_factor", type=float, default=1.0,
                         help="multiply predicted depths by this before any scaling")
    scaling.add_argument("--eval_convention", choices=sorted(EVAL_CONVENTIONS), default="monodepth2",
                         help="monodepth2 (default): inverse depth resized as cv2.resize does, NumPy median; "
                              "packnet: PackNet-SfM's evaluation (depth resized bilinearly with "
                              "align_corners=True, 0 < gt < cap, lower median) in the modes of --packnet_modes")
    scaling.add_argument("--packnet_modes", nargs="+", choices=list(PACKNET_MODES), default=list(PACKNET_MODES),
                         help="with --eval_convention packnet: the rows to print: plain, pp (flip "
                              "post-processed), gt (per-image median scaling), pp_gt (default: all four)")

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
    if (opts.gt_folder is None) != (opts.image_path is None):
        parser.error("--gt_folder (your depth maps) and --image_path (the images they belong to) go together")
    if opts.gt_png_scale <= 0:
        parser.error(f"--gt_png_scale must be positive (got {opts.gt_png_scale}); KITTI's PNGs use 256")
    if not given and not opts.gt_folder:
        parser.error("give at least one of " + ", ".join(f"--{key}_path" for key in DATASET_ORDER)
                     + ", or --image_path with --gt_folder")
    missing = [key for key in given if key not in EVAL_DATASETS]
    if missing:
        parser.error("; ".join(f"--{key}_path needs the '{key}' entry of evaluation.EVAL_DATASETS, "
                               "which this version does not register" for key in missing)
                     + f" (registered: {sorted(EVAL_DATASETS)})")
    if not opts.pretrained_path and not opts.model_name and not opts.ext_disp_to_eval:
        parser.error("give --pretrained_path or --model_name (or --ext_disp_to_eval with precomputed disparities)")
    if opts.ext_disp_to_eval and (given != ["kitti"] or opts.gt_folder):
        parser.error("--ext_disp_to_eval evaluates one KITTI split: give --kitti_path only")
    if opts.no_eval and not opts.save_pred_disps and BENCHMARK_SPLIT not in (opts.eval_split or []):
        parser.error("--no_eval stops after predicting, so without --save_pred_disps nothing would be written: "
                     "add --save_pred_disps or drop --no_eval")
    if opts.eval_eigen_to_benchmark and not opts.ext_disp_to_eval:
        parser.error("--eval_eigen_to_benchmark needs --ext_disp_to_eval (the 697 eigen predictions)")
    if opts.eval_convention == "packnet":
        chosen = [flag for flag, given_flag in (("--post_process", opts.post_process),
                                                ("--disable_median_scaling", opts.disable_median_scaling))
                  if given_flag]
        if chosen:
            parser.error(f"{' and '.join(chosen)}: with --eval_convention packnet the modes decide post-processing "
                         "and median scaling: choose rows with --packnet_modes plain pp gt pp_gt")
        if opts.ext_disp_to_eval and any(PACKNET_MODES[mode][0] for mode in opts.packnet_modes):
            parser.error("--ext_disp_to_eval holds one prediction per image: the post-processed modes need a "
                         "model; use --packnet_modes plain gt")
    return given


def resolve_kitti_splits(opts: argparse.Namespace) -> list[str]:
    """The KITTI splits to run: ``--eval_split`` or, by default, what the flags imply."""
    if opts.eval_split:
        return list(opts.eval_split)
    if opts.eval_eigen_to_benchmark:
        return ["eigen_benchmark"]
    if opts.ext_disp_to_eval:
        return ["eigen"]
    return ["eigen", "eigen_benchmark"]


def external_predictions(opts: argparse.Namespace, splits: list[str]) -> np.ndarray | None:
    """``--ext_disp_to_eval`` (one split), reduced to the benchmark frames by --eval_eigen_to_benchmark."""
    if not opts.ext_disp_to_eval:
        return None
    if len(splits) != 1:
        raise ValueError("--ext_disp_to_eval holds the predictions of one split: pass exactly one "
                         f"--eval_split (got {splits})")
    external = load_ext_disps(opts.ext_disp_to_eval)
    if opts.eval_eigen_to_benchmark:
        from split_lists import ensure_split_file

        ids = np.load(ensure_split_file("benchmark", "eigen_to_benchmark_ids.npy"), allow_pickle=False)
        if ids.max() >= len(external):
            raise ValueError(f"--eval_eigen_to_benchmark: {opts.ext_disp_to_eval} holds {len(external)} "
                             f"predictions but the eigen-to-benchmark ids reach {int(ids.max())}: it "
                             "must hold the eigen split's 697 predictions")
        external = external[ids]
    return external


def build_eval_sets(opts: argparse.Namespace, datasets: list[str], spec: ModelSpec) -> list[EvalSet]:
    """Every table to produce, built before any prediction: a missing ground-truth file fails early."""
    eval_sets: list[EvalSet] = []
    for key in datasets:
        path = getattr(opts, f"{key}_path")
        options = EvalOptions(height=spec.height, width=spec.width, batch_size=opts.batch_size,
                              num_workers=opts.num_workers, img_ext=opts.img_ext, max_depth=spec.max_depth,
                              split=getattr(opts, f"{key}_split", None))
        if key == "kitti":
            splits = [s for s in resolve_kitti_splits(opts) if s != BENCHMARK_SPLIT]
            if opts.eval_eigen_to_benchmark and not opts.ext_disp_to_eval:
                raise ValueError("--eval_eigen_to_benchmark selects the eigen_benchmark frames out of "
                                 "--ext_disp_to_eval (697 eigen predictions); to evaluate a checkpoint on "
                                 "the benchmark ground truth use --eval_split eigen_benchmark")
            external = external_predictions(opts, splits)
            for split in splits:
                eval_sets += build_kitti_eval_sets(path, EvalOptions(**{**vars(options), "split": split}), external)
        else:
            eval_sets += EVAL_DATASETS[key](path, options)
    if opts.gt_folder:
        protocol = gt_folder_protocol(opts.gt_min_depth, opts.gt_max_depth)
        options = EvalOptions(height=spec.height, width=spec.width, batch_size=opts.batch_size,
                              num_workers=opts.num_workers, max_depth=spec.max_depth)
        eval_sets += build_gt_folder_eval_sets(opts.image_path, opts.gt_folder, options, protocol, opts.gt_png_scale)
    for eval_set in eval_sets:
        eval_set.name = eval_set.key
    return eval_sets


def _save_predictions(opts: argparse.Namespace, out_dir: Path, eval_set: EvalSet, pred_disps: np.ndarray) -> None:
    """``--save_pred_disps``: disps_<set>_split.npy (N x h x w) in --eval_out_dir."""
    if not opts.save_pred_disps:
        return
    path = out_dir / f"disps_{eval_set.key}_split.npy"
    with atomic_output(path, suffix=".npy") as tmp:
        np.save(tmp, pred_disps.astype(np.float32))
    logger.info(" Predictions saved to %s", path)


def _packnet_entry(eval_set: EvalSet, mode: str, result) -> dict:
    """One JSON row of a PackNet-convention table (one per set and mode)."""
    entry = {"name": eval_set.key, "title": eval_set.title, "protocol": eval_set.protocol.name, "mode": mode,
             "num_images": result.num_images, "metrics": result.metrics}
    if result.ratios.size:
        entry["scaling_ratio_median"], entry["scaling_ratio_std"] = result.ratio_statistics()
    return entry


def main(argv: Sequence[str] | None = None) -> dict:
    """Evaluate; return the report that is also written as JSON."""
    configure_logging()
    parser = build_parser()
    opts = parse_args_with_config(parser, argv)
    datasets = _check_dataset_flags(parser, opts)

    device = select_device(opts.device)
    model = None
    if not opts.ext_disp_to_eval:
        model = load_requested_model(opts, parser, device)
        spec = model.spec
        source = Path(model.source)
    else:
        spec = ModelSpec()  # precomputed disparities: the size is theirs, mono unless told
        source = Path(opts.ext_disp_to_eval)
    scaling = Scaling.for_model(spec, opts.eval_stereo, opts.disable_median_scaling, opts.pred_depth_scale_factor)
    out_dir = Path(opts.eval_out_dir) if opts.eval_out_dir else (source if source.is_dir() else source.parent)
    output_json = Path(opts.output_json) if opts.output_json else out_dir / f"metrics_{source.stem}.json"
    # Before any prediction: a folder that cannot be written fails now, not after minutes of work.
    check_output_folders([out_dir, output_json.parent], flag="--eval_out_dir (or --output_json)")

    eval_sets = build_eval_sets(opts, datasets, spec)
    benchmark_loader = None
    if opts.kitti_path and BENCHMARK_SPLIT in (opts.eval_split or []):
        if model is None:
            raise ValueError("--eval_split benchmark predicts with a model: give --pretrained_path or --model_name")
        from torch.utils.data import DataLoader

        test_list = split_file(BENCHMARK_SPLIT, "test_files.txt")
        root = opts.benchmark_path or Path(opts.kitti_path) / BENCHMARK_IMAGES
        images = KittiBenchmarkImages(root, readlines(test_list), spec.height, spec.width,
                                      split_name=str(test_list))
        benchmark_loader = DataLoader(images, batch_size=opts.batch_size, num_workers=opts.num_workers)

    logger.info(" Evaluated at resolution %d * %d", spec.height, spec.width)
    packnet = opts.eval_convention == "packnet"
    if packnet:
        logger.info(" PackNet-SfM evaluation: depth resized bilinearly (align_corners=True), 0 < gt < cap, "
                    "per-image torch.median scaling in the gt modes; modes %s", ", ".join(opts.packnet_modes))
    else:
        logger.info(" Post-process is used" if opts.post_process else " No post-process")
        logger.info(scaling.describe())
    report = {"checkpoint": None if model is None else str(source),
              "ext_disp_to_eval": opts.ext_disp_to_eval, "model_spec": spec.to_dict(),
              "eval_convention": opts.eval_convention,
              "post_process": opts.post_process, "median_scaling": scaling.median,
              "pred_depth_scale_factor": scaling.factor, "results": []}

    for eval_set in eval_sets:
        if packnet and not opts.no_eval:
            pred_disps, by_mode = evaluate_packnet_modes(model, eval_set, device, scaling, opts.packnet_modes)
            report["results"] += [_packnet_entry(eval_set, mode, result) for mode, result in by_mode.items()]
            logger.info(" Evaluate on %s (%d images), PackNet-SfM convention:", eval_set.title,
                        next(iter(by_mode.values())).num_images)
            logger.info(format_modes_table({mode: result.metrics for mode, result in by_mode.items()}))
            _save_predictions(opts, out_dir, eval_set, pred_disps)
            continue
        if opts.no_eval:
            pred_disps = eval_set_predictions(model, eval_set, device, opts.post_process)
        else:
            pred_disps, result = evaluate_model(model, eval_set, device, scaling, opts.post_process)
        _save_predictions(opts, out_dir, eval_set, pred_disps)
        if opts.no_eval:
            continue
        if result.ratios.size:
            logger.info(" %s", result.ratio_summary())
        logger.info(" Evaluate on %s (%d images):", eval_set.title, result.num_images)
        logger.info(format_metrics_table(result.metrics))
        entry = {"name": eval_set.key, "title": eval_set.title, "protocol": eval_set.protocol.name,
                 "num_images": result.num_images, "metrics": result.metrics}
        if result.ratios.size:
            entry["scaling_ratio_median"], entry["scaling_ratio_std"] = result.ratio_statistics()
        if spec.velocity_supervised and not scaling.median and model is not None:
            # A scale-aware model is scored as metres above; PackNet-SfM also reports it median-scaled,
            # which is how monocular tables compare.
            median = evaluate_predictions(pred_disps, eval_set.gt_depths, eval_set.protocol,
                                          domain=model.prediction_domain)
            logger.info(" The same predictions with per-image median scaling (%s):", median.ratio_summary())
            logger.info(format_metrics_table(median.metrics))
            entry["metrics_median_scaled"] = median.metrics
        report["results"].append(entry)

    if benchmark_loader is not None:
        if scaling.median:
            logger.warning(" Benchmark PNGs use depth = %g / disparity: metric only for stereo-trained "
                           "models", STEREO_SCALE_FACTOR)
        pred_disps = predict_inverse_depths(model, benchmark_loader, device, opts.post_process)
        written = write_benchmark_predictions(pred_disps, out_dir / "benchmark_predictions", STEREO_SCALE_FACTOR)
        logger.info(" Wrote %d benchmark PNGs to %s", len(written), out_dir / "benchmark_predictions")
        report["benchmark_predictions"] = str(out_dir / "benchmark_predictions")

    if report["results"]:
        write_json(output_json, report)
        logger.info(" Metrics written to %s", output_json)
    return report


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
