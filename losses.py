"""Loss terms of the self-supervised objective: a registry of declared, pluggable terms.

Each entry of ``LOSS_TERMS`` is a `LossTerm`: a function ``(inputs, outputs, settings, networks)
-> (scalar, maps)`` returning a value already averaged over the loss scales plus a dict of maps
worth logging, the weight the options give it (0 switches it off), and what it needs beyond the
model's standard outputs: auxiliary networks it owns (built by the model, trained with it when
they have trainable parameters, saved in its checkpoints under their names) and optional outputs
(``"depth_features"``). The model adds ``weight * value`` for every enabled entry; a new method's
loss (a feature-metric term with its own network, a depth-consistency term) is one function and
one entry here, with no change to the model or the Trainer.

Monodepth2's total is the mean over scales of (photometric map mean + smoothness weight *
smoothness / 2^s); the two terms below each carry their own mean over scales, which sums to
exactly that.

BDEdepth (``--use_local_crop``, ``--use_patch_reshuffle``) adds a depth branch per augmented
view. Each branch has its own photometric and smoothness terms (the same functions, reading
the branch's keys through a `View`), and each augmented view a scale-invariant log
depth-consistency term against the original view. With n enabled branches
(1 + local + reshuffle), the weights make the total exactly the reference's::

    loss = (1/n) sum_branches (photometric_b + smoothness_weight * smoothness_b)
           + consistency_weight * (consistency_local + consistency_reshuffle)

i.e. ``loss_base + 0.07 loss_dc`` with ``loss_base`` the mean of the branches' base losses.

PackNet-SfM's loss is the same two terms computed its way (``--loss_preset packnet``,
`LOSS_PRESETS`), plus its velocity term (``--velocity_weight``, `velocity_term`).

FeatDepth's (methods spec 2.4) is the same two terms computed its way (``--loss_preset featdepth``:
SSIM + Charbonnier, first- plus second-order smoothness at each scale's own size), plus the
feature-metric term (``--feature_metric_weight``, `feature_metric_term`), whose auto-encoder is a
network the term declares: frozen (``feature_extractor``, the encoder of a stage-1 checkpoint) or
trained alongside (``feature_net``, ``--feature_net_joint``) with its own losses (`autoencoder_term`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

import featdepth_losses
from layers import (IDENTITY_TIE_NOISE, SSIMReference, disp_to_depth, edge_aware_smoothness, per_pixel_min_loss,
                    reprojection_loss, scale_invariant_log_loss, ssim_reference, upsample_disp)
from local_crop import crop_footprint_grid, local_crop_footprint
from networks.featdepth import FeatureEncoder, FeatureNet


@dataclass(frozen=True)
class View:
    """One depth branch: which images it is supervised with and where its outputs live.

    Attributes:
        name: "" for the original view, "local" or "reshuffle" for BDEdepth's views; output
            keys get the suffix ``_<name>`` (``("disp_local", s)``, ``("warped_local", f, s)``
            for the warped frames, ``("automask_local", s)``).
        images: the ``inputs`` key prefix of the target, source and smoothness-guide images:
            ``"color"`` or ``"color_local"`` (the reshuffled view is supervised by the original
            frames once its disparity has been restored).
    """

    name: str
    images: str

    def key(self, base: str) -> str:
        return f"{base}_{self.name}" if self.name else base


ORIGINAL_VIEW = View("", "color")
LOCAL_VIEW = View("local", "color_local")
RESHUFFLE_VIEW = View("reshuffle", "color")


# ``--loss_preset``: how the photometric and smoothness terms are computed, as LossSettings
# values. The term weights, SSIM and auto-masking stay flags (a recipe sets them: PackNet's
# configuration uses smoothness 0.001, SSIM 0.85 with L1 0.15, auto-masking on, which are also
# our defaults). "packnet" reproduces PackNet-SfM's MultiViewPhotometricLoss (methods_spec 1.4):
# grid_sample with zeros padding (align_corners=True, as every warp here), no tie-break noise in
# the auto-mask minimum with each warped frame listed before its unwarped copy, every scale's
# inverse depth upsampled to full resolution by nearest neighbour for warping and smoothness
# (PackNet's upsample_depth_maps), the smoothness of scale s still divided by 2^s, and PackNet's
# floors where we offset: projected depth clamped to >= 1e-5, the smoothness mean to >= 1e-6.
# "featdepth" reproduces FeatDepth's mono_fm losses (methods_spec 2.4): 0.85 SSIM + 0.15 Charbonnier
# instead of L1, and its first- plus second-order edge-aware smoothness (e^{-0.5 |grad I|}) of each
# scale's disparity at its own size with the frame area-downsampled to it, normalised by its mean
# only without the stereo frame (FeatDepth's disp_norm); warping as Monodepth2's (border, bilinear).
DEFAULT_LOSS_PRESET = "monodepth2"
LOSS_PRESETS: dict[str, dict] = {
    "monodepth2": {},
    "packnet": {"padding_mode": "zeros", "tie_noise": 0.0, "interleave_min": True,
                "upsample_mode": "nearest", "smooth_full_resolution": True,
                "projection_depth_floor": 1e-5, "smoothness_mean_floor": 1e-6},
    "featdepth": {"photometric_penalty": "charbonnier", "smoothness": "featdepth"},
}


@dataclass(frozen=True)
class LossSettings:
    """The options the loss terms read, resolved once from the command line."""

    scales: tuple[int, ...]
    source_frame_ids: tuple
    use_ssim: bool = True
    automask: bool = True
    avg_reprojection: bool = False
    v1_multiscale: bool = False
    min_depth: float = 0.1
    max_depth: float = 100.0
    local_crop_reference: bool = False
    consistency_stop_grad: bool = False
    # The depth network's output key and meaning (set by the model): the smoothness term
    # regularises that map divided by its mean, whatever it is.
    output_kind: str = "disp"
    # How view synthesis and the photometric minimum are computed (`LOSS_PRESETS`).
    # grid_sample padding for points that project outside the source frame.
    padding_mode: str = "border"
    # Gaussian noise added to the unwarped errors before the per-pixel minimum (0: none).
    tie_noise: float = IDENTITY_TIE_NOISE
    # Order the per-pixel minimum lists its candidates (`layers.per_pixel_min_loss`).
    interleave_min: bool = False
    # How each scale's output is brought to full resolution for warping (and smoothness).
    upsample_mode: str = "bilinear"
    # Smoothness of each scale's output upsampled to full resolution, guided by the full-size
    # frame (PackNet), instead of at the scale's own size with the frame at that size.
    smooth_full_resolution: bool = False
    # Floors instead of offsets (PackNet): the projected depth of a warp and the mean that
    # normalises the smoothed map are clamped to at least these (None: + 1e-7, Monodepth2).
    projection_depth_floor: float | None = None
    smoothness_mean_floor: float | None = None
    # The robust penalty mixed with SSIM in the photometric error: "l1" or "charbonnier" (FeatDepth).
    photometric_penalty: str = "l1"
    # The smoothness regulariser: "monodepth2" (first order, e^{-|grad I|}) or "featdepth".
    smoothness: str = "monodepth2"

    @classmethod
    def from_options(cls, opts, source_frame_ids) -> "LossSettings":
        preset = LOSS_PRESETS[getattr(opts, "loss_preset", DEFAULT_LOSS_PRESET)]
        return cls(scales=tuple(range(opts.num_scales)), source_frame_ids=tuple(source_frame_ids),
                   use_ssim=opts.ssim, automask=opts.automask,
                   avg_reprojection=opts.avg_reprojection, v1_multiscale=opts.v1_multiscale,
                   min_depth=opts.min_depth, max_depth=opts.max_depth,
                   local_crop_reference=getattr(opts, "local_crop_geometry", "per_sample") == "reference",
                   consistency_stop_grad=getattr(opts, "consistency_stop_grad", False), **preset)

    def source_scale(self, scale: int) -> int:
        """Resolution at which images are warped and compared for decoder scale ``scale``."""
        return scale if self.v1_multiscale else 0

    def photometric_error(self, pred: torch.Tensor, target: torch.Tensor,
                          target_ssim: SSIMReference | None = None) -> torch.Tensor:
        """B x 1 x H x W error of ``pred`` against ``target`` (B x 3 x H x W) under these settings;
        ``target_ssim`` is ``ssim_reference(target)`` when the caller already has it (same result)."""
        if self.photometric_penalty == "charbonnier":
            if not self.use_ssim:
                return featdepth_losses.charbonnier(pred, target).mean(dim=1, keepdim=True)
            return featdepth_losses.photometric_error(pred, target, target_ssim)
        return reprojection_loss(pred, target, use_ssim=self.use_ssim, target_ssim=target_ssim)


LossFunction = Callable[[dict, dict, LossSettings, "torch.nn.ModuleDict"], "tuple[torch.Tensor, dict]"]


@dataclass(frozen=True)
class LossTerm:
    """One registry entry.

    Attributes:
        function: ``(inputs, outputs, settings, networks) -> (scalar, maps)``; ``networks`` is
            the model's ModuleDict ("depth", "pose" and every auxiliary network).
        weight: the term's weight under the options; 0 leaves the term out.
        networks: ``options -> {name: nn.Module}``, auxiliary networks the term owns (None: none).
        needs: optional model outputs the term reads (``"depth_features"``).
    """

    function: LossFunction
    weight: Callable[[argparse.Namespace], float]
    networks: Callable[[argparse.Namespace], dict] | None = None
    needs: frozenset = frozenset()


def view_photometric_loss(inputs: dict, outputs: dict, settings: LossSettings, view: View):
    """Per-pixel minimum reprojection error with auto-masking, averaged over pixels and scales.

    Reads ``outputs[(view.key("warped"), f, s)]`` (source f warped into the target at scale s)
    and the unaugmented ``inputs[(view.images, f, source_scale)]``. Returns the loss and the
    auto-mask per scale under ``(view.key("automask"), s)`` (B x 1 x H x W, 1 where a warped
    frame won the minimum). What depends on the images alone (the target's SSIM statistics, the
    unwarped frames' errors) is computed once per resolution (`image_only_photometric`).
    """
    total = 0.0
    maps = {}
    warped_key = view.key("warped")
    for scale in settings.scales:
        source_scale = settings.source_scale(scale)
        target = inputs[(view.images, 0, source_scale)]
        target_ssim, identity = image_only_photometric(inputs, outputs, settings, view.images, source_scale)
        reprojection = torch.cat([settings.photometric_error(outputs[(warped_key, f, scale)], target, target_ssim)
                                  for f in settings.source_frame_ids], dim=1)
        # The tie-break noise is drawn here, once per scale, as it always was: the identity
        # errors are shared, the random stream and so the total are unchanged.
        loss_map, auto_mask = per_pixel_min_loss(reprojection, identity, average=settings.avg_reprojection,
                                                 tie_noise=settings.tie_noise, interleave=settings.interleave_min)
        if auto_mask is not None:
            maps[(view.key("automask"), scale)] = auto_mask.detach()
        total = total + loss_map.mean()
    return total / len(settings.scales), maps


def image_only_photometric(inputs: dict, outputs: dict, settings: LossSettings, images: str, source_scale: int):
    """``(target's SSIM statistics or None, unwarped errors or None)`` at one resolution, cached.

    Neither depends on the networks: the target's `ssim_reference` (None without SSIM) and the
    B x N x H x W errors of the unwarped source frames against the target (None without
    auto-masking). Every scale compared at the same resolution (all of them unless
    --v1_multiscale) and every view supervised by the same images (the original and the
    reshuffled view) reads the same numbers, so they are computed for the first and kept in
    ``outputs[("image_only_photometric", images, source_scale)]`` for the others.
    """
    key = ("image_only_photometric", images, source_scale)
    if key not in outputs:
        target = inputs[(images, 0, source_scale)]
        target_ssim = ssim_reference(target) if settings.use_ssim else None
        identity = None
        if settings.automask:
            identity = torch.cat([settings.photometric_error(inputs[(images, f, source_scale)], target, target_ssim)
                                  for f in settings.source_frame_ids], dim=1)
        outputs[key] = (target_ssim, identity)
    return outputs[key]


def view_smoothness_loss(inputs: dict, outputs: dict, settings: LossSettings, view: View):
    """Edge-aware smoothness of each scale's network output (over its mean), divided by 2^s.

    The output is guided by the frame at its scale's resolution; an output coarser than that
    frame (SQLdepth's depth at H/2) is first upsampled to it (``settings.upsample_mode``, as for
    warping), as SQLdepth smooths at full size. With ``settings.smooth_full_resolution`` (PackNet)
    every scale's output is upsampled to the full-size frame that guides it. ``settings.smoothness``
    "featdepth" is FeatDepth's term instead (`featdepth_losses.multiscale_smoothness_loss`): each
    scale's disparity at its own size, the full-size frame area-downsampled to it, mean-normalised
    only when no stereo frame is used.
    """
    if settings.smoothness == "featdepth":
        disps = {scale: outputs[(view.key(settings.output_kind), scale)] for scale in settings.scales}
        return featdepth_losses.multiscale_smoothness_loss(
            disps, inputs[(view.images, 0, 0)], normalise_disp="s" not in settings.source_frame_ids, weight=1.0), {}
    total = 0.0
    for scale in settings.scales:
        output = outputs[(view.key(settings.output_kind), scale)]
        guide = inputs[(view.images, 0, 0 if settings.smooth_full_resolution else scale)]
        if output.shape[-2:] != guide.shape[-2:]:  # upsampled as for warping
            output = upsample_disp(output, guide.shape[-2:], mode=settings.upsample_mode)
        total = total + edge_aware_smoothness(output, guide, settings.smoothness_mean_floor) / (2 ** scale)
    return total / len(settings.scales), {}


def photometric_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """The original view's photometric loss (`view_photometric_loss`)."""
    return view_photometric_loss(inputs, outputs, settings, ORIGINAL_VIEW)


def smoothness_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """The original view's smoothness loss (`view_smoothness_loss`)."""
    return view_smoothness_loss(inputs, outputs, settings, ORIGINAL_VIEW)


def photometric_local_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """The local (resized-cropped) view's photometric loss, all images being local crops."""
    return view_photometric_loss(inputs, outputs, settings, LOCAL_VIEW)


def smoothness_local_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """The local view's smoothness, guided by the local frame 0."""
    return view_smoothness_loss(inputs, outputs, settings, LOCAL_VIEW)


def photometric_reshuffle_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """The reshuffled view's photometric loss, from its restored disparity and original frames."""
    return view_photometric_loss(inputs, outputs, settings, RESHUFFLE_VIEW)


def smoothness_reshuffle_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """The reshuffled view's smoothness (restored disparity, original frame 0)."""
    return view_smoothness_loss(inputs, outputs, settings, RESHUFFLE_VIEW)


def _teacher(depth: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    return depth.detach() if settings.consistency_stop_grad else depth


def consistency_local_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """Scale-invariant log loss between the local view's depth and the original's, per scale.

    For each original pixel inside the crop's footprint, the local disparity of scale s is
    sampled bilinearly at the pixel's position in the crop (``F.interpolate``'s
    align_corners=False mapping, as the reference's resize of the local map to the window) and
    compared with the original disparity upsampled to H x W, as depths; the local depth is
    multiplied by the crop's depth scale (the magnification W_r / W, or the ratio r with
    ``local_crop_reference``). One vectorised pass replaces the reference's loop over samples;
    pixels outside the footprint are masked, so the window never leaves the image.
    """
    height, width = inputs[("color", 0, 0)].shape[-2:]
    offset, size, depth_scale = local_crop_footprint(inputs["local_crop"], height, width,
                                                     reference=settings.local_crop_reference)
    # The footprint is the same at every scale: the disparities are sampled at full resolution.
    dtype = outputs[("disp_local", settings.scales[0])].dtype
    grid, mask = crop_footprint_grid(offset.to(dtype), size.to(dtype), height, width)
    total = 0.0
    for scale in settings.scales:
        disp_local = outputs[("disp_local", scale)]
        sampled = F.grid_sample(disp_local, grid, mode="bilinear", padding_mode="border", align_corners=False)
        _, depth_local = disp_to_depth(sampled, settings.min_depth, settings.max_depth)
        _, depth_main = disp_to_depth(upsample_disp(outputs[("disp", scale)], (height, width)),
                                      settings.min_depth, settings.max_depth)
        depth_local = depth_local * depth_scale.to(depth_local.dtype).view(-1, 1, 1, 1)
        total = total + scale_invariant_log_loss(depth_local, _teacher(depth_main, settings), mask=mask)
    return total / len(settings.scales), {}


def consistency_reshuffle_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """Scale-invariant log loss between the restored reshuffled depth and the original's.

    Compared at each decoder scale's own resolution (no upsampling), as in the reference.
    """
    total = 0.0
    for scale in settings.scales:
        _, depth_view = disp_to_depth(outputs[("disp_reshuffle", scale)], settings.min_depth, settings.max_depth)
        _, depth_main = disp_to_depth(outputs[("disp", scale)], settings.min_depth, settings.max_depth)
        total = total + scale_invariant_log_loss(depth_view, _teacher(depth_main, settings))
    return total / len(settings.scales), {}


def translation_norm_key(frame_id: int) -> tuple:
    """Batch key of the ground-truth camera travel between the target and temporal frame
    ``frame_id``: a float32 B tensor in metres, added by the datasets with velocity supervision."""
    return ("translation_norm", frame_id)


def velocity_term(inputs: dict, outputs: dict, settings: LossSettings, networks=None):
    """PackNet's velocity loss: mean over temporal sources of mean_b | ||t_pred|| - ||t_gt|| |.

    ``t_pred`` is the translation column of ``("cam_T_cam", 0, f)``, the transform the warp uses
    (after any --pose_translation_scaling and the inversion of past frames, which keeps the norm),
    as PackNet reads its pose matrices; ``||t_gt||`` is ``inputs[translation_norm_key(f)]``
    (metres), so the poses, and through the photometric loss the depths, become metric.
    """
    frame_ids = [f for f in settings.source_frame_ids if f != "s"]
    total = 0.0
    for frame_id in frame_ids:
        predicted = outputs[("cam_T_cam", 0, frame_id)][:, :3, 3].norm(dim=1)
        target = inputs[translation_norm_key(frame_id)].to(predicted.dtype)
        total = total + (predicted - target).abs().mean()
    return total / len(frame_ids), {}


# Where the auto-encoder's target features wait for the joint auto-encoder term: the five levels
# of the un-augmented frame 0, computed once by `feature_metric_term`.
AUTOENCODER_FEATURES = ("autoencoder_features", 0)


def feature_encoder(networks) -> torch.nn.Module:
    """The auto-encoder's encoder among the model's networks: the trained-alongside ``feature_net``'s
    (``--feature_net_joint``) or the frozen ``feature_extractor``."""
    if "feature_net" in networks:
        return networks["feature_net"].encoder
    return networks["feature_extractor"]


def feature_metric_term(inputs: dict, outputs: dict, settings: LossSettings, networks):
    """FeatDepth's feature-metric loss (methods spec 2.4, item 3), before its weight.

    The auto-encoder's level-0 features (64 x H/2 x W/2) of the un-augmented target and sources
    (one batched pass for a frozen encoder; one pass per frame for one in training mode, whose
    batch-norm statistics are then each frame's, as in FeatDepth's joint model) are warped with
    the scale-0 disparity's depth (FeatDepth's decoder gives it at H/2; any other size is resized
    bilinearly to the features') and the intrinsics halved to that resolution; the error is the
    Charbonnier penalty averaged over channels, its per-pixel minimum over the sources (temporal
    poses, the stereo transform) averaged over pixels. FeatDepth adds it in each of its scale
    iterations divided by their number, i.e. once, as here.
    A frozen encoder runs without building a graph: depth and pose get their gradient through
    the sampling grids, and nothing flows into the frozen weights.
    """
    encoder = feature_encoder(networks)
    frames = [0, *settings.source_frame_ids]
    trainable = any(p.requires_grad for p in encoder.parameters())
    with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
        if encoder.training:  # batch statistics per frame, as FeatDepth's joint model computes them
            per_frame = [[level.float() for level in encoder(inputs[("color", f, 0)])] for f in frames]
        else:  # fixed statistics: one batched pass gives the same features
            batch = inputs[("color", 0, 0)].shape[0]
            levels = encoder(torch.cat([inputs[("color", f, 0)] for f in frames]))
            per_frame = [[level[i * batch:(i + 1) * batch].float() for level in levels] for i in range(len(frames))]
    features = [levels[0] for levels in per_frame]
    target = features[0]
    disp = outputs[("disp", 0)]
    if disp.shape[-2:] != target.shape[-2:]:
        disp = F.interpolate(disp, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
    _, depth = disp_to_depth(disp, settings.min_depth, settings.max_depth)
    K = featdepth_losses.halve_intrinsics(inputs[("K", 0)])
    grids = [featdepth_losses.feature_sampling_grid(
        depth, K, inputs["stereo_T"] if f == "s" else outputs[("cam_T_cam", 0, f)]) for f in frames[1:]]
    value = featdepth_losses.feature_metric_loss(target, features[1:], grids, weight=1.0)
    return value, {AUTOENCODER_FEATURES: per_frame[0]}


def autoencoder_term(inputs: dict, outputs: dict, settings: LossSettings, networks):
    """The joint auto-encoder's own losses (FeatDepth's mono_fm_joint): reconstruction of the
    un-augmented frame 0 from its features plus the discriminative and convergent regularisers
    (methods spec 2.1), with the target resized from the full frame at every scale as that model
    does. Reads the features `feature_metric_term` computed."""
    image = inputs[("color", 0, 0)]
    features = outputs.get(AUTOENCODER_FEATURES)
    if features is None:
        features = [level.float() for level in networks["feature_net"].encoder(image)]
    reconstructions = [r.float() for r in networks["feature_net"].decoder(features).values()]
    reconstruction = featdepth_losses.reconstruction_loss(reconstructions, image, chained_resize=False)
    return reconstruction + featdepth_losses.feature_regularisation_loss(features, image), {}


def feature_metric_networks(opts: argparse.Namespace) -> dict:
    """The auto-encoder the feature-metric term owns.

    ``--feature_net_joint``: ``feature_net``, a whole `FeatureNet` that trains with the model
    (from --feature_net_path when given, else ImageNet or random as --weights_init says).
    Otherwise ``feature_extractor``: the `FeatureEncoder` of --feature_net_path, frozen (no
    gradient, out of the optimiser, kept in eval mode by the model).
    """
    from pathlib import Path

    from featdepth_weights import load_feature_net_weights

    if opts.feature_net_path and not Path(opts.feature_net_path).is_file():
        # Checked here, not by the option parser, so that a recipe can name where stage 1 writes it.
        raise FileNotFoundError(f"--feature_net_path {opts.feature_net_path} does not exist: train the auto-encoder "
                                "first (train.py --config configs/featdepth_autoencoder_800x256.yaml) and give "
                                "its models/model<epoch>.pth")
    if opts.feature_net_joint:
        network = FeatureNet(pretrained=opts.weights_init == "pretrained" and not opts.feature_net_path)
        if opts.feature_net_path:
            encoder_state, decoder_state = load_feature_net_weights(opts.feature_net_path)
            network.encoder.load_state_dict(encoder_state)
            if decoder_state is None:
                raise ValueError(f"--feature_net_path {opts.feature_net_path} holds the encoder only (a mono_fm "
                                 "extractor); --feature_net_joint trains the whole auto-encoder: give a stage-1 "
                                 "checkpoint")
            network.decoder.load_state_dict(decoder_state)
        return {"feature_net": network}
    extractor = FeatureEncoder(pretrained=False)
    extractor.load_state_dict(load_feature_net_weights(opts.feature_net_path)[0])
    extractor.requires_grad_(False)
    return {"feature_extractor": extractor.eval()}


def enabled_views(opts: argparse.Namespace) -> list[View]:
    """The depth branches the options switch on, original first (the model runs these, and each
    branch's base loss weighs 1/n of the total)."""
    views = [ORIGINAL_VIEW]
    if getattr(opts, "use_local_crop", False):
        views.append(LOCAL_VIEW)
    if getattr(opts, "use_patch_reshuffle", False):
        views.append(RESHUFFLE_VIEW)
    return views


def _base_weight(flag: str | None):
    """Photometric weight of a branch: 1/n of the base loss, when its view is on."""
    def weight(opts: argparse.Namespace) -> float:
        return 1.0 / len(enabled_views(opts)) if flag is None or getattr(opts, flag, False) else 0.0
    return weight


def _smoothness_weight(flag: str | None):
    def weight(opts: argparse.Namespace) -> float:
        return opts.disparity_smoothness * _base_weight(flag)(opts)
    return weight


def _consistency_weight(flag: str):
    def weight(opts: argparse.Namespace) -> float:
        return getattr(opts, "consistency_weight", 0.0) if getattr(opts, flag, False) else 0.0
    return weight


# In the order the total is summed (the reference's: branch by branch, then consistency).
LOSS_TERMS: dict[str, LossTerm] = {
    "photometric": LossTerm(photometric_term, _base_weight(None)),
    "smoothness": LossTerm(smoothness_term, _smoothness_weight(None)),
    "photometric_local": LossTerm(photometric_local_term, _base_weight("use_local_crop")),
    "smoothness_local": LossTerm(smoothness_local_term, _smoothness_weight("use_local_crop")),
    "photometric_reshuffle": LossTerm(photometric_reshuffle_term, _base_weight("use_patch_reshuffle")),
    "smoothness_reshuffle": LossTerm(smoothness_reshuffle_term, _smoothness_weight("use_patch_reshuffle")),
    "consistency_local": LossTerm(consistency_local_term, _consistency_weight("use_local_crop")),
    "consistency_reshuffle": LossTerm(consistency_reshuffle_term, _consistency_weight("use_patch_reshuffle")),
    "velocity": LossTerm(velocity_term, lambda opts: getattr(opts, "velocity_weight", 0.0)),
    "feature_metric": LossTerm(feature_metric_term, lambda opts: getattr(opts, "feature_metric_weight", 0.0),
                               networks=feature_metric_networks),
    # The joint auto-encoder's losses weigh 1, as FeatDepth sums them; its network is the one the
    # feature-metric term declares (that term is required with --feature_net_joint).
    "autoencoder": LossTerm(autoencoder_term, lambda opts: 1.0 if getattr(opts, "feature_net_joint", False) else 0.0),
}


def build_loss_terms(opts: argparse.Namespace) -> list[tuple[str, LossTerm, float]]:
    """(name, term, weight) for every registered term whose weight under ``opts`` is positive."""
    terms = []
    for name, term in LOSS_TERMS.items():
        weight = term.weight(opts)
        if weight > 0:
            terms.append((name, term, weight))
    return terms
