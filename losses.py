"""Loss terms of the self-supervised objective, as a plain dict of pluggable functions.

Each term takes the batch (``inputs``), the network outputs and the `LossSettings`, and returns a
scalar already averaged over the loss scales plus a dict of per-scale maps worth logging. The
trainer adds ``weight * term`` for every entry of `build_loss_terms`; a new method's loss (e.g. a
feature-metric or a depth-consistency term) is one more function and one more entry here, with
no change to the Trainer.

Monodepth2's total is the mean over scales of (photometric map mean + smoothness weight *
smoothness / 2^s); the two terms below each carry their own mean over scales, which sums to
exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from layers import edge_aware_smoothness, per_pixel_min_loss, reprojection_loss


@dataclass(frozen=True)
class LossSettings:
    """The options the loss terms read, resolved once from the command line."""

    scales: tuple[int, ...]
    source_frame_ids: tuple
    use_ssim: bool = True
    automask: bool = True
    avg_reprojection: bool = False
    v1_multiscale: bool = False

    @classmethod
    def from_options(cls, opts, source_frame_ids) -> "LossSettings":
        return cls(scales=tuple(range(opts.num_scales)), source_frame_ids=tuple(source_frame_ids),
                   use_ssim=opts.ssim, automask=opts.automask,
                   avg_reprojection=opts.avg_reprojection, v1_multiscale=opts.v1_multiscale)

    def source_scale(self, scale: int) -> int:
        """Resolution at which images are warped and compared for decoder scale ``scale``."""
        return scale if self.v1_multiscale else 0


LossTerm = Callable[[dict, dict, LossSettings], "tuple[torch.Tensor, dict]"]


def photometric_term(inputs: dict, outputs: dict, settings: LossSettings):
    """Per-pixel minimum reprojection error with auto-masking, averaged over pixels and scales.

    Reads ``outputs[("color", f, s)]`` (source f warped into the target at scale s) and the
    unaugmented ``inputs[("color", f, source_scale)]``. Returns the loss and the auto-mask per
    scale under ``("automask", s)`` (B x 1 x H x W, 1 where a warped frame won the minimum).
    """
    total = 0.0
    maps = {}
    for scale in settings.scales:
        source_scale = settings.source_scale(scale)
        target = inputs[("color", 0, source_scale)]
        reprojection = torch.cat([
            reprojection_loss(outputs[("color", f, scale)], target, use_ssim=settings.use_ssim)
            for f in settings.source_frame_ids], dim=1)
        identity = None
        if settings.automask:
            identity = torch.cat([
                reprojection_loss(inputs[("color", f, source_scale)], target, use_ssim=settings.use_ssim)
                for f in settings.source_frame_ids], dim=1)
        loss_map, auto_mask = per_pixel_min_loss(reprojection, identity, average=settings.avg_reprojection)
        if auto_mask is not None:
            maps[("automask", scale)] = auto_mask.detach()
        total = total + loss_map.mean()
    return total / len(settings.scales), maps


def smoothness_term(inputs: dict, outputs: dict, settings: LossSettings):
    """Edge-aware smoothness of each scale's disparity at its own resolution, divided by 2^s."""
    total = 0.0
    for scale in settings.scales:
        disp = outputs[("disp", scale)]
        total = total + edge_aware_smoothness(disp, inputs[("color", 0, scale)]) / (2 ** scale)
    return total / len(settings.scales), {}


LOSS_TERMS: dict[str, LossTerm] = {
    "photometric": photometric_term,
    "smoothness": smoothness_term,
}


def build_loss_terms(opts) -> list[tuple[str, LossTerm, float]]:
    """(name, function, weight) for every loss term the options switch on."""
    terms = [("photometric", LOSS_TERMS["photometric"], 1.0)]
    if opts.disparity_smoothness > 0:
        terms.append(("smoothness", LOSS_TERMS["smoothness"], opts.disparity_smoothness))
    return terms
