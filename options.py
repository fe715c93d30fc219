"""Command-line options shared by every script.

The parser is built from small group functions so that each script adds only the groups it
needs. Flags keep the names Monodepth2 and BDEdepth users know (`--disable_automasking`,
`--no_ssim`, `--png`, `--scales`, `--model_name`, ...); where the house style prefers a positive
name, the positive flag is the primary one and the lineage's name is an alias writing the same
destination.

After `parse_options` the namespace is read-only by convention: derived values (the frame list
including "s", the pose frames) come from the functions at the bottom, never written back, so
that `opt.json` always matches the command that was run.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from typing import Sequence

DEFAULT_DATA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kitti_data")

# Image sizes must be divisible by the encoder's total stride so every decoder scale lines up.
SIZE_MULTIPLE = 32
MAX_DECODER_SCALES = 5

logger = logging.getLogger(__name__)

# Monodepth2's --pose_model_type shared (a pose decoder on the depth encoder's features): refused.
SHARED_POSE_ENCODER = "shared"
# BDEdepth-only training flags: with --backbone resnet and no --decoder they select BDEdepth's decoder.
BDEDEPTH_RECIPE_FLAGS = ("use_local_crop", "use_patch_reshuffle", "data_path_pre", "warm_up")

KITTI_TRAIN_SPLITS = ("eigen_zhou", "eigen_full", "odom", "benchmark")
EVAL_SPLITS = ("eigen", "eigen_benchmark", "benchmark", "odom_9", "odom_10")


class _ScalesAction(argparse.Action):
    """Monodepth2's ``--scales 0 1 2 3``: stored as ``num_scales`` (the scales must be 0..n-1)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if list(values) != list(range(len(values))):
            parser.error(f"--scales must be 0 1 ... n-1 (got {' '.join(map(str, values))}); "
                         "or use --num_scales N")
        setattr(namespace, "num_scales", len(values))


class _SchedulerStepAction(argparse.Action):
    """Monodepth2's ``--scheduler_step_size N``: one step decay at epoch N."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, "decay_step", [values])


class _DeviceAliasAction(argparse.Action):
    """The lineage's ``--no_cuda`` is ``--device cpu``."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, "device", "cpu")


def add_path_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("paths")
    group.add_argument("--data_path", type=str, default=DEFAULT_DATA_PATH,
                       help="dataset root (KITTI raw layout: <date>/<date>_drive_NNNN_sync/...)")
    group.add_argument("--log_dir", type=str, default=os.path.join(os.path.expanduser("~"), "tmp"),
                       help="runs are written to <log_dir>/<exp_name>")
    group.add_argument("--exp_name", "--model_name", dest="exp_name", type=str, default="mdp",
                       help="name of the run folder inside --log_dir (--model_name is Monodepth2's spelling; released "
                            "models are initial weights through --pretrained_path NAME)")
    group.add_argument("--data_path_pre", type=str, default=None,
                       help="BDEdepth's spelling for Cityscapes: the prepared training triplets "
                            "(prepare_cityscapes.py); --data_path then names the raw root evaluated after every epoch "
                            "(our --eval_data_path)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    from datasets import DATASETS

    group = parser.add_argument_group("data")
    group.add_argument("--dataset", type=str, default="kitti", choices=sorted(DATASETS),
                       help="dataset class used for training and per-epoch evaluation")
    group.add_argument("--split", type=str, default="eigen_zhou",
                       help="training split: a folder under splits/ (e.g. "
                            f"{', '.join(KITTI_TRAIN_SPLITS)}) or a path to a folder holding "
                            "train_files.txt and val_files.txt")
    group.add_argument("--height", type=int, default=192, help="network input height (multiple of 32)")
    group.add_argument("--width", type=int, default=640, help="network input width (multiple of 32)")
    group.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1],
                       help="frames to load, relative to the target frame 0 (which must come first)")
    group.add_argument("--use_stereo", action="store_true",
                       help="add the other camera of the stereo pair as a source frame")
    group.add_argument("--stereo_baseline", type=float, default=0.1,
                       help="length of the stereo baseline in training units: Monodepth2's 0.1 (a stereo-trained "
                            "model is evaluated x5.4), FeatDepth's 0.015 (x36 = 0.54 m / 0.015)")
    ext = group.add_mutually_exclusive_group()
    ext.add_argument("--jpg", dest="img_ext", action="store_const", const=".jpg",
                     help="read .jpg images (as Monodepth2's converted KITTI)")
    ext.add_argument("--png", dest="img_ext", action="store_const", const=".png",
                     help="read .png images (the default; KITTI raw as downloaded)")
    group.set_defaults(img_ext=".png")
    group.add_argument("--num_workers", type=int, default=12, help="data-loader worker processes")
    group.add_argument("--intrinsics", nargs="+", default=None, metavar="FX_FY_CX_CY_OR_FILE",
                       help="--dataset custom or image_folder: 'fx fy cx cy' (normalised), 'fx fy cx cy W H' (pixels "
                            "of a W x H image), or a file holding them (default: intrinsics.txt in the folder; "
                            "image_folder: else KITTI's K, and pixels without a size are of the native frames)")
    group.add_argument("--odom_camera", type=str, default="color", choices=["color", "grey"],
                       help="--dataset kitti_odom: the stereo pair read as sides l/r: color (image_2/image_3, "
                            "Monodepth2) or grey (image_0/image_1, FeatDepth's odometry convention)")
    group.add_argument("--color_jitter", action=argparse.BooleanOptionalAction, default=True,
                       help="colour augmentation of training samples (see --color_jitter_probability)")
    group.add_argument("--color_jitter_probability", type=float, default=0.5,
                       help="chance that a training sample is colour-jittered (Monodepth2 0.5, PackNet-SfM 1.0)")
    group.add_argument("--color_jitter_hue", type=float, default=0.1,
                       help="hue shift range [-x, x] of the jitter, in turns of the colour wheel, 0..0.5 "
                            "(Monodepth2 0.1, PackNet-SfM 0.05)")
    group.add_argument("--jitter_per_frame", action="store_true",
                       help="draw colour-jitter parameters independently for every frame "
                            "(reproduces BDEdepth/DDP; the default shares one draw per sample, "
                            "as Monodepth2 intended)")
    group.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                       help="horizontal flips with probability 0.5 per training sample")
    group.add_argument("--flip_mode", choices=["sample", "depth_net"], default="sample",
                       help="what a flip mirrors: the whole sample (Monodepth2) or only the depth network's "
                            "input, its output flipped back, so the pose network and losses see the frames "
                            "as they are (PackNet-SfM)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    from networks import POSE_NETWORKS, SelfQuerySettings, depth_backbone_choices, depth_decoder_choices

    group = parser.add_argument_group("model")
    group.add_argument("--backbone", type=str, default="resnet", choices=depth_backbone_choices(),
                       help="depth encoder")
    group.add_argument("--num_layers", type=int, default=18, choices=[18, 34, 50, 101, 152],
                       help="ResNet depth of the depth encoder (and of the pose encoder unless "
                            "--pose_num_layers is given)")
    group.add_argument("--pose_num_layers", type=int, default=None, choices=[18, 34, 50, 101, 152],
                       help="ResNet depth of the pose encoder (default: --num_layers; the SQLdepth and "
                            "FeatDepth recipes keep a ResNet-18 pose net beside a ResNet-50 depth net)")
    group.add_argument("--decoder", type=str, default=None, choices=depth_decoder_choices(),
                       help="depth decoder (default: the backbone's only one; for resnet, bdedepth with BDEdepth's "
                            "--use_local_crop/--use_patch_reshuffle/--data_path_pre/--warm_up, else monodepth2)")
    group.add_argument("--weights_init", type=str, default="pretrained", choices=["pretrained", "scratch"],
                       help="ImageNet-pretrained encoders (downloaded once) or random initialisation")
    group.add_argument("--pose_model_type", type=str, default="separate_resnet",
                       choices=sorted(POSE_NETWORKS) + [SHARED_POSE_ENCODER],
                       help=f"pose network ({SHARED_POSE_ENCODER}, Monodepth2's pose decoder on the depth encoder's "
                            "features, is refused: not implemented)")
    group.add_argument("--pose_model_input", type=str, default="pairs", choices=["pairs", "all"],
                       help="pose from each (target, source) pair, or from all frames at once")
    scales = group.add_mutually_exclusive_group()
    scales.add_argument("--num_scales", type=int, default=4,
                        help="number of decoder scales used in the loss (0 .. n-1)")
    scales.add_argument("--scales", nargs="+", type=int, action=_ScalesAction, dest="scales_alias",
                        help="Monodepth2 spelling: --scales 0 1 2 3 is --num_scales 4")
    group.add_argument("--min_depth", type=float, default=0.1, help="depth at disparity 1 (metres, up to scale)")
    group.add_argument("--max_depth", type=float, default=100.0, help="depth at disparity 0")
    group.add_argument("--pose_input_size", nargs=2, type=int, default=None, metavar=("HEIGHT", "WIDTH"),
                       help="resize the pose network's input frames to this size (bilinear), whatever the training "
                            "size (FeatDepth: 192 640); default: the training size")
    group.add_argument("--pose_translation_scaling", type=str, default="none", choices=["none", "mean_inverse_depth"],
                       help="mean_inverse_depth multiplies the predicted translations by each target's mean "
                            "inverse depth before warping (SQLdepth's monocular runs; arXiv 1712.00175)")
    sql = parser.add_argument_group("SQLdepth's Self Query Layer (--decoder sql)")
    sql_defaults = SelfQuerySettings()  # SQLdepth's ResNet-50 640 x 192 model
    sql.add_argument("--sql_patch_size", type=int, default=sql_defaults.patch_size,
                     help="patch size p of the token embedding")
    sql.add_argument("--sql_num_queries", type=int, default=sql_defaults.num_queries,
                     help="queries Q (the first Q transformer tokens)")
    sql.add_argument("--sql_num_bins", type=int, default=sql_defaults.num_bins, help="adaptive depth bins D")
    sql.add_argument("--sql_model_dim", type=int, default=sql_defaults.model_dim,
                     help="channels of the fused feature map (E)")
    sql.add_argument("--sql_dim_feedforward", type=int, default=sql_defaults.dim_feedforward,
                     help="transformer feed-forward width; 0: 512 (lite) for ResNet-50, 1024 for the timm backbones")
    sql.add_argument("--sql_num_features", type=int, default=sql_defaults.num_features,
                     help="width F of the ResNet-50 fusion decoder")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method")
    group.add_argument("--method", type=str, default="depth", choices=["depth", "autoencoder"],
                       help="depth: depth and pose by view synthesis; autoencoder: FeatDepth's stage 1, the FeatureNet "
                            "auto-encoder whose encoder --feature_net_path gives to the feature-metric loss "
                            "(single frames: --frame_ids 0, --no-eval; at least 96 x 96)")


def add_loss_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("loss")
    group.add_argument("--disparity_smoothness", type=float, default=1e-3,
                       help="weight of the edge-aware smoothness term")
    group.add_argument("--ssim", action=argparse.BooleanOptionalAction, default=True,
                       help="mix SSIM into the photometric error (0.85 SSIM + 0.15 L1)")
    group.add_argument("--no_ssim", dest="ssim", action="store_false", help=argparse.SUPPRESS)
    group.add_argument("--automask", action=argparse.BooleanOptionalAction, default=True,
                       help="Monodepth2 auto-masking of pixels that do not move")
    group.add_argument("--disable_automasking", dest="automask", action="store_false",
                       help=argparse.SUPPRESS)
    group.add_argument("--predictive_mask", action="store_true",
                       help="Monodepth2's explainability mask (Zhou et al.): refused, not implemented; auto-masking "
                            "(--automask, on by default) replaces it, as in Monodepth2's paper")
    group.add_argument("--avg_reprojection", action="store_true",
                       help="average the reprojection error over source frames instead of the minimum")
    group.add_argument("--v1_multiscale", action="store_true",
                       help="Monodepth v1 multi-scale: warp and compare at each decoder resolution")
    group.add_argument("--loss_preset", type=str, default="monodepth2", choices=["monodepth2", "packnet", "featdepth"],
                       help="how the photometric and smoothness terms are computed: packnet pads warps with "
                            "zeros, adds no tie-break noise to the auto-mask and upsamples every scale to full "
                            "resolution by nearest neighbour for warping and smoothness; featdepth uses SSIM + "
                            "Charbonnier and FeatDepth's first- plus second-order smoothness of each scale at its own "
                            "size (losses.LOSS_PRESETS)")
    group.add_argument("--feature_metric_weight", type=float, default=0.0,
                       help="weight of FeatDepth's feature-metric loss (FeatDepth: 1e-3): the auto-encoder's level-0 "
                            "features of the source frames warped into the target; needs --feature_net_path or "
                            "--feature_net_joint")
    group.add_argument("--feature_net_path", type=str, default=None,
                       help="the FeatureNet auto-encoder for the feature-metric loss: a stage-1 checkpoint "
                            "(train.py --method autoencoder) or FeatDepth's released autoencoder/mono_fm file; frozen "
                            "unless --feature_net_joint, where it is only the starting point")
    group.add_argument("--feature_net_joint", action="store_true",
                       help="FeatDepth's mono_fm_joint: the auto-encoder trains alongside depth with its own "
                            "reconstruction and feature regularisers (ImageNet-initialised unless --feature_net_path)")
    group.add_argument("--velocity_weight", type=float, default=0.0,
                       help="weight of PackNet's velocity loss |‖t_pred‖ - ‖t_gt‖| with the camera travel "
                            "between frames from KITTI's OXTS packets or DDAD's poses (PackNet: 0.1); the "
                            "model then predicts metric depth and is evaluated without median scaling")


def add_bde_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("BDEdepth augmentations (resizing-cropping, splitting-permuting)")
    group.add_argument("--use_local_crop", action="store_true",
                       help="resizing-cropping branch: a second depth pass on each sample's frames "
                            "resized by a random ratio and cropped (one box per sample), with its own "
                            "photometric loss and a depth-consistency loss to the original view")
    group.add_argument("--use_patch_reshuffle", action="store_true",
                       help="splitting-permuting branch: a third depth pass on frame 0 split at a random "
                            "point and swapped (a cyclic shift), restored before its losses")
    group.add_argument("--resize_ratio", nargs=2, type=float, default=[1.2, 2.0], metavar=("LOW", "HIGH"),
                       help="range of the local crop's resize ratio")
    group.add_argument("--split_ratio", nargs=2, type=float, default=[0.1, 0.9], metavar=("LOW", "HIGH"),
                       help="range of the reshuffle's split point, as a fraction of the width and height")
    group.add_argument("--local_crop_geometry", type=str, default="per_sample",
                       choices=["per_sample", "reference"],
                       help="per_sample: warp the local view with its own crop intrinsics (any principal "
                            "point, each sample's focal length); reference: BDEdepth's pose correction, "
                            "which assumes a centred principal point and uses the batch's first focal "
                            "length (for comparison with the reference)")
    group.add_argument("--consistency_weight", type=float, default=0.07,
                       help="weight of the scale-invariant log depth-consistency loss between each "
                            "augmented view and the original")
    group.add_argument("--consistency_stop_grad", action=argparse.BooleanOptionalAction, default=False,
                       help="stop the consistency loss's gradient into the original view's depth "
                            "(the reference lets both views receive it)")


def add_optimization_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("optimisation")
    group.add_argument("--optimizer", type=str, default="adamw", choices=["adamw", "adam", "sgd"],
                       help="optimiser for all networks (one parameter group)")
    group.add_argument("--learning_rate", type=float, default=1e-4, help="initial learning rate")
    group.add_argument("--pose_lr_factor", type=float, default=1.0,
                       help="the pose network learns at --learning_rate times this (SQLdepth's recipe: 0.1)")
    group.add_argument("--weight_decay", type=float, default=0.01, help="AdamW weight decay")
    group.add_argument("--beta1", type=float, default=0.9, help="Adam/AdamW beta1")
    group.add_argument("--beta2", type=float, default=0.999, help="Adam/AdamW beta2")
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    group.add_argument("--lr_sche_type", type=str, default="step", choices=["step", "cos"],
                       help="step: multiply by --decay_rate at each epoch in --decay_step; "
                            "cos: cosine annealing to --eta_min over all steps")
    group.add_argument("--decay_step", nargs="+", type=int, default=[15],
                       help="epochs at which the step schedule decays")
    group.add_argument("--scheduler_step_size", type=int, action=_SchedulerStepAction,
                       dest="scheduler_step_alias", help="Monodepth2 spelling of a single --decay_step")
    group.add_argument("--decay_rate", type=float, default=0.1, help="step-schedule factor")
    group.add_argument("--eta_min", type=float, default=5e-6, help="cosine schedule floor")
    group.add_argument("--warm_up", type=float, default=None,
                       help="BDEdepth's flag, which its code never reads: accepted for its command lines and ignored "
                            "likewise (a warning says so when it is not 0); no warm-up is trained")
    group.add_argument("--batch_size", type=int, default=12, help="samples per step (per GPU)")
    group.add_argument("--num_epochs", type=int, default=20, help="training epochs")
    group.add_argument("--warmup_steps", type=int, default=0,
                       help="linear learning-rate warm-up over the first N steps, on top of the schedule (FeatDepth: "
                            "500); 0: none")
    group.add_argument("--warmup_ratio", type=float, default=1.0 / 3.0,
                       help="the warm-up's starting fraction of the learning rate (FeatDepth: 1/3)")
    group.add_argument("--clip_grad", type=float, default=0.0,
                       help="gradient-norm clipping threshold (0: off; the lineage's -1 means off too)")
    group.add_argument("--seed", type=int, default=1234,
                       help="random seed; <= 0 leaves runs unseeded and enables cudnn.benchmark")


def add_system_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("system")
    group.add_argument("--device", type=str, default="auto",
                       help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    group.add_argument("--no_cuda", action=_DeviceAliasAction, dest="no_cuda_alias",
                       help="same as --device cpu")
    # torchrun passes ranks in the environment; the deprecated torch.distributed.launch passes
    # --local_rank (older) or --local-rank (newer) on the command line.
    group.add_argument("--local_rank", "--local-rank", type=int, default=None,
                       help="set by the launcher; the environment's LOCAL_RANK takes precedence")
    group.add_argument("--sync_bn", action="store_true",
                       help="SyncBatchNorm across processes (CUDA only); off: per-process statistics")
    group.add_argument("--dist_timeout", type=float, default=1800.0,
                       help="seconds a collective waits for the other processes before the job fails")


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """Throughput switches (see speed.py); each can be turned off to measure what it buys."""
    group = parser.add_argument_group("speed (each can be switched off for comparison; see speed.py)")
    group.add_argument("--mixed_precision", type=str, default="auto", choices=["auto", "none", "bf16"],
                       help="bf16 autocast for the networks only (warping, SSIM, losses and "
                            "disparity-to-depth stay float32); auto: bf16 on CUDA GPUs that support "
                            "it, none elsewhere")
    group.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                       help="NHWC memory format for the networks (default: on for CUDA)")
    group.add_argument("--fused_optimizer", action=argparse.BooleanOptionalAction, default=None,
                       help="fused Adam/AdamW/SGD update (default: fused on CUDA, PyTorch's default "
                            "elsewhere; --no-fused_optimizer forces the per-parameter loop)")
    group.add_argument("--fast", action="store_true",
                       help="the fastest combination measured within the bf16 accuracy rule (README, Speed): on "
                            "the CPU the fused optimiser, plus bf16 autocast and channels_last where the CPU has "
                            "native bf16 (avx512_bf16/amx); on CUDA the defaults already are; explicit flags win")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the depth and pose networks (minutes of compilation first)")
    group.add_argument("--frame_cache", type=str, default=None, metavar="PATH",
                       help="read pre-resized uint8 frames from a cache built by build_frame_cache.py "
                            "for this --split, --height and --width (no PNG decoding in the loader)")


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging and checkpoints")
    group.add_argument("--log_frequency", type=int, default=250,
                       help="steps between tensorboard/text log entries")
    group.add_argument("--save_frequency", type=int, default=500,
                       help="optimiser steps between resume checkpoints (checkpoints/step*.pth); "
                            "one is also written at the end of every epoch, beside the weights "
                            "snapshot models/model{epoch}.pth")
    group.add_argument("--keep_last", type=int, default=2,
                       help="resume checkpoints kept (>= 2 leaves a fallback if the newest is corrupt)")
    group.add_argument("--finite_check", choices=["auto", "every_step", "deferred"], default="auto",
                       help="when non-finite losses, depths, poses and sampling grids stop the run: every step "
                            "before backward (one host sync per step; the CPU default), or deferred to log "
                            "steps and checkpoints (no per-step sync; the CUDA default)")
    group.add_argument("--resume", action="store_true",
                       help="continue the run in <log_dir>/<exp_name> from its newest readable "
                            "resume checkpoint, exactly where it stopped")
    group.add_argument("--overwrite", action="store_true",
                       help="start afresh in an existing run folder: once every check before training has "
                            "passed, its checkpoints, weights, tensorboard logs, logger.log, opt.json and "
                            "config.yaml are deleted (nothing outside the run folder)")
    group.add_argument("--force_resume", action="store_true",
                       help="with --resume, continue even though options that change the run's arithmetic "
                            "(batch size, learning rate, schedule, losses, networks, data, ...) differ from "
                            "the run's opt.json; without it such a resume is refused, naming the options")
    group.add_argument("--pretrained_path", "--load_weights_folder", "--load_weights", dest="pretrained_path",
                       type=str, default=None,
                       help="initial weights (ignored when resuming): a checkpoint, a released Monodepth2/SQLdepth "
                            "folder, a BDEdepth .pth, a PackNet-SfM .ckpt, or a released model's name (mono_640x192, "
                            "kitti_hrnet18_640x192, ...; downloaded once into --cache_dir); no ImageNet weights are "
                            "fetched for the networks it initialises")
    group.add_argument("--models_to_load", nargs="+", default=None, metavar="NETWORK",
                       help="the networks --pretrained_path initialises (encoder depth pose_encoder pose; default: "
                            "every network of this configuration); the others start as --weights_init says")
    group.add_argument("--cache_dir", type=str, default=None,
                       help="where released models are kept (default: $MONODEPTHKIT_CACHE_DIR, else "
                            "~/.cache/monodepthkit/models)")
    group.add_argument("--progress_bar", action=argparse.BooleanOptionalAction, default=True,
                       help="show a progress bar per epoch")


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation during training")
    group.add_argument("--eval_data_path", type=str, default=None,
                       help="images of the per-epoch evaluation (default: --data_path); for NYUv2 the "
                            "folder of labelled test .h5 files, for Cityscapes the raw dataset root")
    group.add_argument("--eval_split", type=str, default="eigen",
                       help="split evaluated after every epoch: a folder under splits/ or a path "
                            "to a folder with test_files.txt and gt_depths.npz")
    group.add_argument("--eval", dest="eval", action=argparse.BooleanOptionalAction, default=True,
                       help="evaluate depth on --eval_split after every epoch")
    group.add_argument("--no_eval", dest="eval", action="store_false", help=argparse.SUPPRESS)
    group.add_argument("--eval_batch_size", type=int, default=16, help="batch size for evaluation")
    group.add_argument("--val_batches", type=int, default=None,
                       help="after every epoch, the training losses (no gradient, no augmentation) on this many "
                            "batches of the split's val_files.txt, spread over the list, logged to "
                            "tensorboard/val and the log; 0: off; default: 10, at most a tenth of an epoch's steps")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``-h`` shows the default of each flag that takes a value, unless its help already speaks of
    it or it has none (a switch's "default" would be its destination's, which reads wrongly)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or action.default in (None, argparse.SUPPRESS)
                or "default" in text.lower()):
            return text
        return f"{text} (default: %(default)s)"


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a self-supervised monocular depth and pose model.",
        fromfile_prefix_chars="@", formatter_class=DefaultsHelpFormatter)
    for add in (add_path_options, add_data_options, add_method_options, add_model_options, add_loss_options,
                add_bde_options,
                add_optimization_options, add_system_options, add_speed_options, add_logging_options,
                add_eval_options):
        add(parser)
    return parser


def _require_finite(opts: argparse.Namespace, name: str, fix: str = "") -> float:
    value = getattr(opts, name)
    if not math.isfinite(value):
        raise ValueError(f"--{name} must be a finite number (got {value}){fix}")
    return value


def _require_range(opts: argparse.Namespace, name: str, low: float, high: float, low_open: bool = False,
                   high_open: bool = False, fix: str = "") -> None:
    """``low <= --name <= high`` (either end open if asked), finite; the message names the flag."""
    value = _require_finite(opts, name, fix)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        if high == math.inf:
            rule = f"be {'>' if low_open else '>='} {low:g}"
        else:
            rule = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"--{name} must {rule} (got {value}){fix}")


def _validate_numbers(opts: argparse.Namespace) -> None:
    """The numeric flags that would otherwise train silently with nonsense (NaN, inf, signs)."""
    for name in ("min_depth", "max_depth"):
        _require_finite(opts, name, "; e.g. --min_depth 0.1 --max_depth 100")
    if not 0 < opts.min_depth < opts.max_depth:
        raise ValueError(f"need 0 < --min_depth < --max_depth (got {opts.min_depth} and {opts.max_depth}); "
                         "e.g. --min_depth 0.1 --max_depth 100")
    lr = _require_finite(opts, "learning_rate", "; the reference uses 1e-4")
    if lr <= 0:
        raise ValueError(f"--learning_rate must be positive (got {lr}); the reference uses 1e-4")
    factor = _require_finite(opts, "pose_lr_factor")
    if factor <= 0:
        raise ValueError(f"--pose_lr_factor must be positive (got {factor}); 1 trains the pose net at "
                         "--learning_rate, SQLdepth uses 0.1")
    _require_range(opts, "weight_decay", 0.0, math.inf, high_open=True, fix="; use 0 for none (default 0.01)")
    for name in ("beta1", "beta2"):
        _require_range(opts, name, 0.0, 1.0, high_open=True, fix="; Adam's defaults are 0.9 and 0.999")
    _require_range(opts, "momentum", 0.0, 1.0, high_open=True, fix="; 0.9 is usual")
    _require_finite(opts, "eta_min")
    if opts.eta_min < 0 or (opts.lr_sche_type == "cos" and opts.eta_min > lr):
        raise ValueError(f"--eta_min must lie in [0, --learning_rate {lr}] (got {opts.eta_min}): it is the floor "
                         "the cosine schedule decays to")
    _require_range(opts, "decay_rate", 0.0, 1.0, low_open=True,
                   fix="; the step schedule multiplies the learning rate by it (the reference uses 0.1)")
    steps = list(opts.decay_step)
    if any(step < 1 for step in steps) or steps != sorted(set(steps)):
        raise ValueError(f"--decay_step must be increasing epoch numbers >= 1 (got {' '.join(map(str, steps))}); "
                         "e.g. --decay_step 15 or --decay_step 26 36")
    for name in ("disparity_smoothness", "consistency_weight", "velocity_weight", "feature_metric_weight"):
        if hasattr(opts, name):
            _require_range(opts, name, 0.0, math.inf, high_open=True, fix="; use 0 to switch the term off")
    clip = _require_finite(opts, "clip_grad", "; use 0 to switch clipping off")
    if clip < 0 and clip != -1:
        raise ValueError(f"--clip_grad must be >= 0 (got {clip}); 0 switches clipping off")
    _require_range(opts, "dist_timeout", 0.0, math.inf, low_open=True, high_open=True,
                   fix="; seconds, default 1800")
    if getattr(opts, "warmup_steps", 0) < 0:
        raise ValueError(f"--warmup_steps must be >= 0 (got {opts.warmup_steps}); 0 switches the warm-up off")
    if hasattr(opts, "warmup_ratio"):
        _require_range(opts, "warmup_ratio", 0.0, 1.0, low_open=True, fix="; FeatDepth starts at 1/3")
    if hasattr(opts, "stereo_baseline"):
        _require_range(opts, "stereo_baseline", 0.0, math.inf, low_open=True, high_open=True,
                       fix="; Monodepth2 uses 0.1, FeatDepth 0.015")


def _apply_reference_flags(opts: argparse.Namespace) -> None:
    """Monodepth2's and BDEdepth's training flags that have no place of their own here, in our terms.

    ``--data_path_pre P`` (Cityscapes) becomes ``--data_path P --eval_data_path <its --data_path>``;
    ``--warm_up`` is dropped (BDEdepth never reads it; a warning when not 0); without ``--decoder``
    the backbone's decoder is chosen (BDEdepth's for ``--backbone resnet`` with its flags, one log
    line saying so); ``--predictive_mask`` and ``--pose_model_type shared`` are refused.
    """
    if getattr(opts, "predictive_mask", False):
        raise ValueError("--predictive_mask (Monodepth2's explainability mask, after Zhou et al.) is not implemented: "
                         "Monodepth2 found auto-masking better, and it is on by default (--automask); drop the flag")
    if opts.pose_model_type == SHARED_POSE_ENCODER:
        raise ValueError(f"--pose_model_type {SHARED_POSE_ENCODER} (Monodepth2's pose decoder on the depth encoder's "
                         "features) is not implemented: Monodepth2's separate_resnet (the default, and its published "
                         "models) or posecnn")
    # Given at all (--warm_up 0 counts: only BDEdepth's command lines carry it).
    bdedepth_flags = [f"--{name}" for name in BDEDEPTH_RECIPE_FLAGS
                      if getattr(opts, name, None) is not None and getattr(opts, name) is not False]
    data_path_pre = getattr(opts, "data_path_pre", None)
    if data_path_pre is not None:
        if opts.dataset != "cityscapes":
            raise ValueError(f"--data_path_pre is BDEdepth's prepared Cityscapes root, and --dataset is "
                             f"{opts.dataset}: give the training data with --data_path")
        if opts.eval_data_path not in (None, opts.data_path):
            raise ValueError("--data_path_pre and --eval_data_path both move the raw Cityscapes root: with "
                             "--data_path_pre, --data_path is the raw root; or use --data_path PREPARED "
                             "--eval_data_path RAW without --data_path_pre")
        opts.data_path, opts.eval_data_path = data_path_pre, opts.data_path
    warm_up = getattr(opts, "warm_up", None)
    if warm_up:
        logger.warning("--warm_up %g is ignored: BDEdepth defines it but never reads it, so its recipe trains without "
                       "warm-up, as this run does", warm_up)
    for name in ("data_path_pre", "warm_up"):
        if hasattr(opts, name):
            delattr(opts, name)
    if opts.decoder is None:
        from networks import DEPTH_NETWORK_COMBINATIONS

        decoders = sorted(decoder for backbone, decoder in DEPTH_NETWORK_COMBINATIONS if backbone == opts.backbone)
        if len(decoders) == 1:
            opts.decoder = decoders[0]
        elif opts.backbone == "resnet" and bdedepth_flags:
            opts.decoder = "bdedepth"
            logger.info("--backbone resnet with BDEdepth's %s and no --decoder: BDEdepth's decoder (--decoder "
                        "bdedepth), as its recipe trains; pass --decoder monodepth2 for Monodepth2's",
                        " ".join(bdedepth_flags))
        else:
            opts.decoder = "monodepth2"


def validate_options(opts: argparse.Namespace) -> argparse.Namespace:
    """Check cross-flag rules and value ranges once; raise ValueError naming the flag and the fix."""
    _apply_reference_flags(opts)
    for name in ("height", "width"):
        value = getattr(opts, name)
        if value <= 0 or value % SIZE_MULTIPLE:
            suggestion = max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)
            raise ValueError(f"--{name} must be a positive multiple of {SIZE_MULTIPLE} "
                             f"(got {value}); try {suggestion}")
    pose_size = getattr(opts, "pose_input_size", None)
    if pose_size is not None and any(value <= 0 or value % SIZE_MULTIPLE for value in pose_size):
        raise ValueError(f"--pose_input_size must be two positive multiples of {SIZE_MULTIPLE} (got "
                         f"{' '.join(map(str, pose_size))}); FeatDepth uses 192 640")
    if not opts.frame_ids or opts.frame_ids[0] != 0:
        raise ValueError(f"--frame_ids must start with 0, the target frame (got {opts.frame_ids})")
    if len(set(opts.frame_ids)) != len(opts.frame_ids):
        raise ValueError(f"--frame_ids has repeated entries: {opts.frame_ids}")
    if getattr(opts, "method", "depth") == "autoencoder":
        _validate_autoencoder_options(opts)
    elif len(opts.frame_ids) == 1 and not opts.use_stereo:
        raise ValueError("--frame_ids 0 alone has no source frame: add temporal frames "
                         "(e.g. --frame_ids 0 -1 1) or train on stereo pairs with --use_stereo")
    if not 1 <= opts.num_scales <= MAX_DECODER_SCALES:
        raise ValueError(f"--num_scales must be between 1 and {MAX_DECODER_SCALES} (got {opts.num_scales})")
    for name in ("batch_size", "num_epochs", "log_frequency", "save_frequency", "eval_batch_size",
                 "keep_last"):
        if getattr(opts, name) <= 0:
            raise ValueError(f"--{name} must be positive (got {getattr(opts, name)})")
    if (getattr(opts, "val_batches", None) or 0) < 0:
        raise ValueError(f"--val_batches must be >= 0 (got {opts.val_batches}); 0 switches the validation loss off")
    if opts.num_workers < 0:
        raise ValueError(f"--num_workers must be >= 0 (got {opts.num_workers}); 0 loads in the main process")
    if getattr(opts, "odom_camera", "color") != "color" and opts.dataset != "kitti_odom":
        raise ValueError(f"--odom_camera {opts.odom_camera} chooses the KITTI odometry camera pair: it applies to "
                         f"--dataset kitti_odom only (got --dataset {opts.dataset}); drop it")
    if opts.resume and opts.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: choose one")
    if getattr(opts, "force_resume", False) and not opts.resume:
        raise ValueError("--force_resume only applies with --resume")
    from run_folder import check_exp_name

    check_exp_name(opts.exp_name)
    _validate_numbers(opts)
    from networks import check_depth_network_choice  # imported here: networks imports torch

    check_depth_network_choice(opts.backbone, opts.num_layers, opts.decoder)
    from networks import DEPTH_NETWORKS

    if (opts.backbone in DEPTH_NETWORKS or opts.decoder == "sql") and (
            getattr(opts, "use_local_crop", False) or getattr(opts, "use_patch_reshuffle", False)):
        raise ValueError(f"--use_local_crop and --use_patch_reshuffle are BDEdepth's views of a disparity "
                         f"network; --backbone {opts.backbone} --decoder {opts.decoder} predicts depth or inverse "
                         "depth: drop them")
    if opts.decoder == "sql":
        _validate_sql_options(opts)
    if opts.pose_translation_scaling != "none" and opts.use_stereo:
        raise ValueError("--pose_translation_scaling is for monocular runs: stereo pairs fix the scale (SQLdepth "
                         "skips it with --use_stereo); drop one of them")
    if opts.pose_model_input == "all" and opts.pose_model_type == "posecnn":
        raise ValueError("--pose_model_input all needs --pose_model_type separate_resnet or packnet")
    if opts.pose_model_type == "packnet" and opts.pose_model_input != "all":
        raise ValueError("--pose_model_type packnet sees the target and every context at once: add "
                         "--pose_model_input all")
    _validate_bde_options(opts)
    _validate_augmentation_options(opts)
    _validate_loss_preset_options(opts)
    _validate_feature_metric_options(opts)
    from speed import validate_speed_options  # imported here: speed imports torch

    validate_speed_options(opts)
    return opts


# Datasets that know the camera's travel between frames (velocity supervision).
VELOCITY_DATASETS = ("kitti", "kitti_depth", "ddad")


# The FeatureNet's coarsest feature (H/32 x W/32) needs 3 x 3 pixels for the convergent loss's
# second differences.
AUTOENCODER_MIN_SIZE = 96


def _validate_autoencoder_size(opts: argparse.Namespace, what: str) -> None:
    if min(opts.height, opts.width) < AUTOENCODER_MIN_SIZE:
        raise ValueError(f"{what} needs --height and --width of at least {AUTOENCODER_MIN_SIZE} (got {opts.height} x "
                         f"{opts.width}): the auto-encoder's regularisers take second differences of its H/32 x W/32 "
                         "feature")


def _validate_autoencoder_options(opts: argparse.Namespace) -> None:
    """FeatDepth's stage 1 reconstructs single frames and predicts no depth to evaluate."""
    if list(opts.frame_ids) != [0] or opts.use_stereo:
        raise ValueError("--method autoencoder reconstructs single frames: use --frame_ids 0 without --use_stereo")
    if opts.eval:
        raise ValueError("--method autoencoder predicts no depth to evaluate: add --no-eval")
    if getattr(opts, "feature_metric_weight", 0.0) > 0 or getattr(opts, "feature_net_joint", False):
        raise ValueError("--feature_metric_weight and --feature_net_joint belong to depth training (stage 2): drop "
                         "them from --method autoencoder")
    _validate_autoencoder_size(opts, "--method autoencoder")


def _validate_feature_metric_options(opts: argparse.Namespace) -> None:
    """The feature-metric loss needs an auto-encoder, a disparity network and source frames."""
    weight = getattr(opts, "feature_metric_weight", 0.0)
    joint = getattr(opts, "feature_net_joint", False)
    if getattr(opts, "method", "depth") != "depth":
        return
    if joint and weight <= 0:
        raise ValueError("--feature_net_joint trains the auto-encoder for the feature-metric loss: give "
                         "--feature_metric_weight (FeatDepth: 1e-3)")
    if weight <= 0:
        if getattr(opts, "feature_net_path", None):
            raise ValueError("--feature_net_path is read by the feature-metric loss only: give --feature_metric_weight "
                             "(FeatDepth: 1e-3) or drop it")
        return
    if not joint and not opts.feature_net_path:
        raise ValueError("--feature_metric_weight needs the stage-1 auto-encoder: give --feature_net_path (a "
                         "checkpoint of train.py --method autoencoder), or train one alongside with "
                         "--feature_net_joint")
    from networks import DEPTH_NETWORKS

    if opts.backbone in DEPTH_NETWORKS or opts.decoder == "sql":
        raise ValueError(f"--feature_metric_weight warps with a disparity network's scale-0 output; --backbone "
                         f"{opts.backbone} --decoder {opts.decoder} predicts depth or inverse depth: drop it")
    if joint:
        _validate_autoencoder_size(opts, "--feature_net_joint")


def _validate_loss_preset_options(opts: argparse.Namespace) -> None:
    """--loss_preset and --velocity_weight against the rest of the configuration."""
    if getattr(opts, "loss_preset", "monodepth2") == "featdepth":
        if opts.v1_multiscale:
            raise ValueError("--loss_preset featdepth warps every scale at full resolution: drop --v1_multiscale")
        if opts.use_stereo and opts.automask:
            raise ValueError("--loss_preset featdepth turns auto-masking off whenever the stereo frame is used, as "
                             "FeatDepth does: add --no-automask")
    if getattr(opts, "loss_preset", "monodepth2") == "packnet":
        if opts.v1_multiscale:
            raise ValueError("--loss_preset packnet warps every scale at full resolution (PackNet's "
                             "upsample_depth_maps): drop --v1_multiscale")
        if opts.jitter_per_frame:
            raise ValueError("--loss_preset packnet jitters target and contexts with one draw, as PackNet "
                             "does: drop --jitter_per_frame")
    if getattr(opts, "velocity_weight", 0.0) <= 0:
        return
    if opts.dataset not in VELOCITY_DATASETS:
        raise ValueError(f"--velocity_weight needs the camera's travel between frames, which --dataset "
                         f"{opts.dataset} does not provide: use one of {', '.join(VELOCITY_DATASETS)} or "
                         "--velocity_weight 0")
    if len(opts.frame_ids) < 2 or not uses_pose_network(opts):
        raise ValueError("--velocity_weight supervises the pose network's translations: add temporal frames "
                         "(e.g. --frame_ids 0 -1 1)")
    if opts.use_stereo:
        raise ValueError("--velocity_weight and --use_stereo both fix the scale, in different units (metres vs "
                         "the 0.1-unit stereo baseline): drop one of them")


def _validate_sql_options(opts: argparse.Namespace) -> None:
    """The Self Query Layer's sizes, and its token count at this input size, before anything is built."""
    from networks.sqldepth import OUTPUT_REDUCTIONS, check_token_count
    from networks import SQL_BACKBONES

    for name in ("sql_patch_size", "sql_num_queries", "sql_num_bins", "sql_model_dim", "sql_num_features"):
        if getattr(opts, name) <= 0:
            raise ValueError(f"--{name} must be positive (got {getattr(opts, name)})")
    if opts.sql_dim_feedforward < 0:
        raise ValueError(f"--sql_dim_feedforward must be positive, or 0 for the backbone's published width "
                         f"(got {opts.sql_dim_feedforward})")
    if opts.num_scales != 1:
        raise ValueError(f"--decoder sql predicts one depth map: use --num_scales 1 (got {opts.num_scales})")
    reduction = OUTPUT_REDUCTIONS[SQL_BACKBONES[opts.backbone]]
    check_token_count(opts.height // reduction, opts.width // reduction, opts.sql_patch_size, opts.sql_num_queries)


def _validate_augmentation_options(opts: argparse.Namespace) -> None:
    if not hasattr(opts, "flip_mode"):
        return
    _require_range(opts, "color_jitter_probability", 0.0, 1.0, fix="; Monodepth2 uses 0.5, PackNet-SfM 1.0")
    _require_range(opts, "color_jitter_hue", 0.0, 0.5, fix="; Monodepth2 uses 0.1, PackNet-SfM 0.05")
    if opts.flip_mode == "depth_net" and (opts.use_local_crop or opts.use_patch_reshuffle):
        raise ValueError("--flip_mode depth_net mirrors only the depth network's input of the original view; "
                         "BDEdepth's views (--use_local_crop, --use_patch_reshuffle) flip whole samples: use "
                         "--flip_mode sample")


def _validate_bde_options(opts: argparse.Namespace) -> None:
    if not hasattr(opts, "use_local_crop"):
        return
    low, high = opts.resize_ratio
    if not 1.0 <= low <= high < math.inf:
        raise ValueError(f"--resize_ratio must satisfy 1 <= LOW <= HIGH, finite (got {low} {high}); "
                         "the reference uses --resize_ratio 1.2 2.0")
    low, high = opts.split_ratio
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"--split_ratio must satisfy 0 < LOW <= HIGH < 1 (got {low} {high}); "
                         "the reference uses --split_ratio 0.1 0.9")


def parse_train_options(argv: Sequence[str] | None = None,
                        parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse and validate training options; a ValueError becomes a usage error naming the flag.

    ``--config FILE.yaml`` supplies defaults (see config_files.py); the command line overrides it.

    ``parser`` may extend `build_train_parser` with a tool's own flags (overfit.py does).
    """
    from config_files import parse_args_with_config

    parser = parser or build_train_parser()
    opts = parse_args_with_config(parser, argv)  # --config FILE.yaml sets defaults; flags override it
    for alias in ("scales_alias", "scheduler_step_alias", "no_cuda_alias"):
        if hasattr(opts, alias):
            delattr(opts, alias)
    try:
        return validate_options(opts)
    except ValueError as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits


# Derived values: computed from the options, never written back into them.

def training_frame_ids(opts: argparse.Namespace) -> list:
    """Every frame a training sample loads: the temporal ids, then "s" for the stereo partner."""
    return list(opts.frame_ids) + (["s"] if opts.use_stereo else [])


def uses_pose_network(opts: argparse.Namespace) -> bool:
    """The pose network is skipped when stereo pairs are the only source of supervision."""
    return len(opts.frame_ids) > 1
