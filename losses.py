"""Loss terms of the self-supervised objective, as a plain dict of pluggable functions.

Each term takes the batch (``inputs``), the network outputs and the `LossSettings`, and returns a
scalar already averaged over the loss scales plus a dict of per-scale maps worth logging. The
trainer adds ``weight * term`` for every entry of `build_loss_terms`; a new method's loss (e.g. a
feature-metric or a depth-consistency term) is one more function and one more entry here, with
no change to the Trainer.

Monodepth2's total is the mean over scales of (photometric map mean + smoothness weight *
smoothness / 2^s); the two terms below each carry their own mean over scales, which sums to
exactly that.

BDEdepth (``--use_local_crop``, ``--use_patch_reshuffle``) adds a depth branch per augmented
view. Each branch has its own photometric and smoothness terms (the same functions, reading
the branch's keys through a `View`), and each augmented view a scale-invariant log
depth-consistency term against the original view. With n enabled branches
(1 + local + reshuffle), `build_loss_terms` weights them so that the total is exactly the
reference's::

    loss = (1/n) sum_branches (photometric_b + smoothness_weight * smoothness_b)
           + consistency_weight * (consistency_local + consistency_reshuffle)

i.e. ``loss_base + 0.07 loss_dc`` with ``loss_base`` the mean of the branches' base losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from augmentation import local_crop_footprint
from layers import (crop_footprint_grid, disp_to_depth, edge_aware_smoothness, per_pixel_min_loss,
                    reprojection_loss, scale_invariant_log_loss, upsample_disp)


@dataclass(frozen=True)
class View:
    """One depth branch: which images it is supervised with and where its outputs live.

    Attributes:
        name: "" for the original view, "local" or "reshuffle" for BDEdepth's views; output
            keys get the suffix ``_<name>`` (``("disp_local", s)``, ``("color_local", f, s)``
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

    @classmethod
    def from_options(cls, opts, source_frame_ids) -> "LossSettings":
        return cls(scales=tuple(range(opts.num_scales)), source_frame_ids=tuple(source_frame_ids),
                   use_ssim=opts.ssim, automask=opts.automask,
                   avg_reprojection=opts.avg_reprojection, v1_multiscale=opts.v1_multiscale,
                   min_depth=opts.min_depth, max_depth=opts.max_depth,
                   local_crop_reference=getattr(opts, "local_crop_geometry", "per_sample") == "reference",
                   consistency_stop_grad=getattr(opts, "consistency_stop_grad", False))

    def source_scale(self, scale: int) -> int:
        """Resolution at which images are warped and compared for decoder scale ``scale``."""
        return scale if self.v1_multiscale else 0


LossTerm = Callable[[dict, dict, LossSettings], "tuple[torch.Tensor, dict]"]


def view_photometric_loss(inputs: dict, outputs: dict, settings: LossSettings, view: View):
    """Per-pixel minimum reprojection error with auto-masking, averaged over pixels and scales.

    Reads ``outputs[(view.key("color"), f, s)]`` (source f warped into the target at scale s)
    and the unaugmented ``inputs[(view.images, f, source_scale)]``. Returns the loss and the
    auto-mask per scale under ``(view.key("automask"), s)`` (B x 1 x H x W, 1 where a warped
    frame won the minimum).
    """
    total = 0.0
    maps = {}
    warped_key = view.key("color")
    for scale in settings.scales:
        source_scale = settings.source_scale(scale)
        target = inputs[(view.images, 0, source_scale)]
        reprojection = torch.cat([
            reprojection_loss(outputs[(warped_key, f, scale)], target, use_ssim=settings.use_ssim)
            for f in settings.source_frame_ids], dim=1)
        identity = None
        if settings.automask:
            identity = torch.cat([
                reprojection_loss(inputs[(view.images, f, source_scale)], target, use_ssim=settings.use_ssim)
                for f in settings.source_frame_ids], dim=1)
        loss_map, auto_mask = per_pixel_min_loss(reprojection, identity, average=settings.avg_reprojection)
        if auto_mask is not None:
            maps[(view.key("automask"), scale)] = auto_mask.detach()
        total = total + loss_map.mean()
    return total / len(settings.scales), maps


def view_smoothness_loss(inputs: dict, outputs: dict, settings: LossSettings, view: View):
    """Edge-aware smoothness of each scale's disparity at its own resolution, divided by 2^s."""
    total = 0.0
    for scale in settings.scales:
        disp = outputs[(view.key("disp"), scale)]
        total = total + edge_aware_smoothness(disp, inputs[(view.images, 0, scale)]) / (2 ** scale)
    return total / len(settings.scales), {}


def photometric_term(inputs: dict, outputs: dict, settings: LossSettings):
    """The original view's photometric loss (`view_photometric_loss`)."""
    return view_photometric_loss(inputs, outputs, settings, ORIGINAL_VIEW)


def smoothness_term(inputs: dict, outputs: dict, settings: LossSettings):
    """The original view's smoothness loss (`view_smoothness_loss`)."""
    return view_smoothness_loss(inputs, outputs, settings, ORIGINAL_VIEW)


def photometric_local_term(inputs: dict, outputs: dict, settings: LossSettings):
    """The local (resized-cropped) view's photometric loss, all images being local crops."""
    return view_photometric_loss(inputs, outputs, settings, LOCAL_VIEW)


def smoothness_local_term(inputs: dict, outputs: dict, settings: LossSettings):
    """The local view's smoothness, guided by the local frame 0."""
    return view_smoothness_loss(inputs, outputs, settings, LOCAL_VIEW)


def photometric_reshuffle_term(inputs: dict, outputs: dict, settings: LossSettings):
    """The reshuffled view's photometric loss, from its restored disparity and original frames."""
    return view_photometric_loss(inputs, outputs, settings, RESHUFFLE_VIEW)


def smoothness_reshuffle_term(inputs: dict, outputs: dict, settings: LossSettings):
    """The reshuffled view's smoothness (restored disparity, original frame 0)."""
    return view_smoothness_loss(inputs, outputs, settings, RESHUFFLE_VIEW)


def _teacher(depth: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    return depth.detach() if settings.consistency_stop_grad else depth


def consistency_local_term(inputs: dict, outputs: dict, settings: LossSettings):
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


def consistency_reshuffle_term(inputs: dict, outputs: dict, settings: LossSettings):
    """Scale-invariant log loss between the restored reshuffled depth and the original's.

    Compared at each decoder scale's own resolution (no upsampling), as in the reference.
    """
    total = 0.0
    for scale in settings.scales:
        _, depth_view = disp_to_depth(outputs[("disp_reshuffle", scale)], settings.min_depth, settings.max_depth)
        _, depth_main = disp_to_depth(outputs[("disp", scale)], settings.min_depth, settings.max_depth)
        total = total + scale_invariant_log_loss(depth_view, _teacher(depth_main, settings))
    return total / len(settings.scales), {}


LOSS_TERMS: dict[str, LossTerm] = {
    "photometric": photometric_term,
    "smoothness": smoothness_term,
    "photometric_local": photometric_local_term,
    "smoothness_local": smoothness_local_term,
    "photometric_reshuffle": photometric_reshuffle_term,
    "smoothness_reshuffle": smoothness_reshuffle_term,
    "consistency_local": consistency_local_term,
    "consistency_reshuffle": consistency_reshuffle_term,
}


def enabled_views(opts) -> list[View]:
    """The depth branches the options switch on, original first."""
    views = [ORIGINAL_VIEW]
    if getattr(opts, "use_local_crop", False):
        views.append(LOCAL_VIEW)
    if getattr(opts, "use_patch_reshuffle", False):
        views.append(RESHUFFLE_VIEW)
    return views


def build_loss_terms(opts) -> list[tuple[str, LossTerm, float]]:
    """(name, function, weight) for every loss term the options switch on.

    Each branch's base loss (photometric + smoothness) is weighted by 1/n for n branches, and
    each augmented view's consistency term by ``--consistency_weight`` (module docstring).
    """
    views = enabled_views(opts)
    share = 1.0 / len(views)
    terms = []
    for view in views:
        name = view.key("photometric")
        terms.append((name, LOSS_TERMS[name], share))
        if opts.disparity_smoothness > 0:
            name = view.key("smoothness")
            terms.append((name, LOSS_TERMS[name], opts.disparity_smoothness * share))
    consistency_weight = getattr(opts, "consistency_weight", 0.0)
    for view in views[1:]:
        if consistency_weight > 0:
            name = view.key("consistency")
            terms.append((name, LOSS_TERMS[name], consistency_weight))
    return terms
