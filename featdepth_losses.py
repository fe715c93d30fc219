"""FeatDepth's loss functions (methods spec 2.1 and 2.4; FeatDepth pitfalls 4 and 8).

Pure functions of tensors, in three groups:

- the auto-encoder's terms: ``reconstruction_loss`` (SSIM + Charbonnier per scale),
  ``discriminative_loss`` and ``convergent_loss`` (the feature regularisers), and their sum
  over the five encoder levels, ``feature_regularisation_loss``;
- the feature-metric term of depth training: ``feature_sampling_grid`` (depth + pose -> grid
  at the feature resolution), ``warp_features`` and ``feature_metric_loss``;
- FeatDepth's smoothness: ``smoothness_terms`` (first- and second-order, edge-aware with
  e^{-0.5 |grad I|}) and ``multiscale_smoothness_loss``.

``photometric_error`` (0.85 SSIM + 0.15 Charbonnier) is also FeatDepth's per-pixel photometric
error of depth training. Conventions (layouts, ``T = T_source_from_target``, align_corners=True
sampling) are those of ``layers``. Gradients are forward differences:
``dx[..., j] = x[..., j + 1] - x[..., j]`` (width W - 1) and ``dy`` likewise along rows.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from layers import SSIM_WEIGHT, SSIMReference, backproject, check_shape, project, ssim_loss_map, warp

# Charbonnier penalty sqrt(d^2 + eps^2): a differentiable L1 whose gradient stays bounded at
# d = 0. FeatDepth's eps (its ``robust_l1``): a perfect match still costs 1e-3 per element.
CHARBONNIER_EPS = 1e-3

# Weights of the auto-encoder's feature regularisers (FeatDepth cfg_kitti_autoencoder:
# dis = cvt = 1e-3). The discriminative term enters with a minus sign (it rewards large
# feature gradients), the convergent one with a plus sign (it penalises their curvature).
DISCRIMINATIVE_WEIGHT = 1e-3
CONVERGENT_WEIGHT = 1e-3

# Weight of the feature-metric term in depth training (FeatDepth ``perception_weight``).
FEATURE_METRIC_WEIGHT = 1e-3

# Weight of the disparity smoothness term (FeatDepth ``smoothness_weight``).
SMOOTHNESS_WEIGHT = 1e-3

# Edge sensitivity of the smoothness weights e^{-a |grad I|}: FeatDepth uses a = 0.5 for both
# orders, half Monodepth2's 1, so image edges relax the smoothness less. The feature
# regularisers use a = 1.
SMOOTHNESS_EDGE_FACTOR = 0.5
REGULARISER_EDGE_FACTOR = 1.0

# Keeps the mean-normalised disparity finite for an all-zero map (FeatDepth's ``disp_norm``).
DISP_NORM_EPS = 1e-7

# --------------------------------------------------------------------------------------------
# Penalties and gradients
# --------------------------------------------------------------------------------------------


def charbonnier(
    pred: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS
) -> torch.Tensor:
    """Elementwise Charbonnier penalty ``sqrt((pred - target)^2 + eps^2)``.

    Args:
        pred: any shape.
        target: same shape as ``pred``.
        eps: 1e-3 in FeatDepth (so eps^2 = 1e-6 inside the root).

    Returns:
        Tensor shaped like ``pred``, >= eps, in the unit of the inputs.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"charbonnier: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    return torch.sqrt((pred - target) ** 2 + eps**2)


def photometric_error(pred: torch.Tensor, target: torch.Tensor,
                      target_ssim: SSIMReference | None = None) -> torch.Tensor:
    """FeatDepth's per-pixel error ``0.85 mean_c SSIM_loss + 0.15 mean_c Charbonnier``.

    SSIM_loss is ``layers.ssim_loss_map`` (3x3 windows, reflection padding, C1 = 0.01^2,
    C2 = 0.03^2), the same as FeatDepth's.

    Args:
        pred: B x C x H x W image in [0, 1].
        target: B x C x H x W image in [0, 1].
        target_ssim: ``layers.ssim_reference(target)`` when the caller already has it (same result).

    Returns:
        B x 1 x H x W error; a perfect match gives 0.15 * 1e-3.
    """
    check_shape(target, "target", tuple(pred.shape))
    ssim = ssim_loss_map(pred, target if target_ssim is None else target_ssim).mean(dim=1, keepdim=True)
    robust = charbonnier(pred, target).mean(dim=1, keepdim=True)
    return SSIM_WEIGHT * ssim + (1.0 - SSIM_WEIGHT) * robust


def gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along width and height.

    Args:
        x: B x C x H x W.

    Returns:
        ``(dx, dy)``: B x C x H x (W-1) with ``x[..., j+1] - x[..., j]``, and B x C x (H-1) x W
        with ``x[..., i+1, :] - x[..., i, :]``.
    """
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    return dx, dy


def _second_differences(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(dxx, dxy, dyx, dyy)`` with ``dxy`` = dy of dx and ``dyx`` = dx of dy.

    For forward differences the two mixed terms are the same numbers; FeatDepth sums both, so
    the mixed derivative counts twice in its second-order terms, and so it does here.
    """
    dx, dy = gradients(x)
    dxx, dxy = gradients(dx)
    dyx, dyy = gradients(dy)
    return dxx, dxy, dyx, dyy


def _edge_weighted_mean(
    signal_grad: torch.Tensor, image_grad: torch.Tensor, edge_factor: float
) -> torch.Tensor:
    """``mean(|signal_grad| * exp(-edge_factor * mean_c |image_grad|))`` over all elements."""
    weight = torch.exp(-edge_factor * image_grad.abs().mean(dim=1, keepdim=True))
    return (signal_grad.abs() * weight).mean()


def _check_difference_size(x: torch.Tensor, name: str, order: int) -> None:
    # A mean over an empty difference map is NaN, which would silently poison training.
    height, width = x.shape[-2:]
    need = order + 1
    if height < need or width < need:
        raise ValueError(
            f"{name}: order-{order} differences need at least {need} x {need} pixels, got "
            f"{height} x {width}. Use inputs of at least 96 x 96 for the auto-encoder's "
            f"regularisers (coarsest feature H/32 x W/32) and 48 x 48 for the smoothness "
            f"(coarsest disparity, scale 3, H/16 x W/16)"
        )


def _image_at(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``image`` area-downsampled to the spatial size of ``like`` (FeatDepth's choice)."""
    check_shape(image, "image", (like.shape[0], None, None, None))
    if image.shape[-2:] == like.shape[-2:]:
        return image
    return F.interpolate(image, size=tuple(like.shape[-2:]), mode="area")


def first_order_edge_term(
    signal: torch.Tensor, image: torch.Tensor, edge_factor: float
) -> torch.Tensor:
    """``mean(|dx s| e^{-a mean_c |dx I|}) + mean(|dy s| e^{-a mean_c |dy I|})``.

    Args:
        signal: B x C x h x w (features or disparity), h and w at least 2.
        image: B x 3 x h x w, the image at the same size.
        edge_factor: a.

    Returns:
        Scalar (means over batch, channels and pixels).
    """
    check_shape(image, "image", (signal.shape[0], None, *signal.shape[2:]))
    _check_difference_size(signal, "first_order_edge_term", order=1)
    s_dx, s_dy = gradients(signal)
    i_dx, i_dy = gradients(image)
    return _edge_weighted_mean(s_dx, i_dx, edge_factor) + _edge_weighted_mean(
        s_dy, i_dy, edge_factor
    )


def second_order_edge_term(
    signal: torch.Tensor, image: torch.Tensor, edge_factor: float
) -> torch.Tensor:
    """Sum over (xx, xy, yx, yy) of ``mean(|d2 s| e^{-a mean_c |d2 I|})``.

    Args:
        signal: B x C x h x w, h and w at least 3.
        image: B x 3 x h x w, the image at the same size.
        edge_factor: a.

    Returns:
        Scalar (means over batch, channels and pixels of each term, then summed).
    """
    check_shape(image, "image", (signal.shape[0], None, *signal.shape[2:]))
    _check_difference_size(signal, "second_order_edge_term", order=2)
    return sum(
        _edge_weighted_mean(s2, i2, edge_factor)
        for s2, i2 in zip(_second_differences(signal), _second_differences(image))
    )


# --------------------------------------------------------------------------------------------
# Auto-encoder losses (methods spec 2.1)
# --------------------------------------------------------------------------------------------


def reconstruction_loss(
    reconstructions: Sequence[torch.Tensor], image: torch.Tensor, *, chained_resize: bool = True
) -> torch.Tensor:
    """Auto-encoder reconstruction loss, averaged over scales.

    Each reconstruction is compared with the image resized to its size (bilinear,
    align_corners=False, no antialiasing) by ``photometric_error`` averaged over pixels; the
    per-scale values are summed and divided by the number of scales (FeatDepth: 4).

    How the target is resized differs between FeatDepth's two models, and matters for scales
    2 and 3. Its stage-1 ``autoencoder`` overwrites its target inside the scale loop, so each
    scale's target is the *previous scale's* target resized (``chained_resize=True``): every
    bilinear halving averages 2 x 2 pixels, so scale s sees the 2^s x 2^s block means. Its
    ``mono_fm_joint`` resizes the full image every time (``chained_resize=False``), and a
    direct bilinear 1/4 or 1/8 resize reads only the 2 x 2 centre of each block.

    Args:
        reconstructions: B x 3 x h_s x w_s images in [0, 1], one per scale (the values of
            ``FeatureNet``'s reconstruction dict, any order; chaining goes from the largest to
            the smallest).
        image: B x 3 x H x W, the un-augmented input image in [0, 1].
        chained_resize: see above; True for stage 1, False for the joint model.

    Returns:
        Scalar; 0.15 * 1e-3 for perfect reconstructions.
    """
    if not reconstructions:
        raise ValueError("reconstruction_loss needs at least one reconstruction")
    total = image.new_zeros(())
    target = image
    for recon in sorted(reconstructions, key=lambda r: r.shape[-2] * r.shape[-1], reverse=True):
        check_shape(recon, "reconstruction", (image.shape[0], image.shape[1], None, None))
        source = target if chained_resize else image
        target = source
        if recon.shape[-2:] != source.shape[-2:]:
            target = F.interpolate(
                source, size=tuple(recon.shape[-2:]), mode="bilinear", align_corners=False
            )
        total = total + photometric_error(recon, target).mean()
    return total / len(reconstructions)


def discriminative_loss(
    feature: torch.Tensor, image: torch.Tensor, weight: float = DISCRIMINATIVE_WEIGHT
) -> torch.Tensor:
    """FeatDepth's discriminative feature loss: ``-weight * first-order edge term``.

    ``-weight * [mean(|dx f| e^{-|dx I|}) + mean(|dy f| e^{-|dy I|})]``, with the image
    area-downsampled to the feature's size and |grad I| averaged over RGB. Negative: minimising
    it *raises* feature gradients, most where the image itself is flat (textureless regions),
    which is what makes the features useful for matching there.

    Args:
        feature: B x C x h x w encoder feature.
        image: B x 3 x H x W un-normalised image in [0, 1] (H >= h, W >= w).
        weight: ``dis``.

    Returns:
        Scalar <= 0.
    """
    small = _image_at(image, feature)
    return -weight * first_order_edge_term(feature, small, REGULARISER_EDGE_FACTOR)


def convergent_loss(
    feature: torch.Tensor, image: torch.Tensor, weight: float = CONVERGENT_WEIGHT
) -> torch.Tensor:
    """FeatDepth's convergent feature loss: ``+weight * second-order edge term``.

    ``weight * sum_{xx, xy, yx, yy} mean(|d2 f| e^{-|d2 I|})`` with the image area-downsampled
    to the feature's size. Penalising curvature keeps the feature landscape smooth, so a
    gradient-based optimiser can descend it from a wrong match (a wide basin of convergence).

    Args:
        feature: B x C x h x w encoder feature, h and w at least 3.
        image: B x 3 x H x W un-normalised image in [0, 1].
        weight: ``cvt``.

    Returns:
        Scalar >= 0.
    """
    small = _image_at(image, feature)
    return weight * second_order_edge_term(feature, small, REGULARISER_EDGE_FACTOR)


def feature_regularisation_loss(
    features: Sequence[torch.Tensor],
    image: torch.Tensor,
    discriminative_weight: float = DISCRIMINATIVE_WEIGHT,
    convergent_weight: float = CONVERGENT_WEIGHT,
) -> torch.Tensor:
    """Both regularisers over the encoder levels: ``sum_i (L_dis,i + L_cvt,i) / 2^i / n``.

    Args:
        features: the n encoder features [f0, ..., f4] (n = 5 for ``FeatureEncoder``); level i
            weighs 1/2^i, so the fine levels dominate.
        image: B x 3 x H x W un-normalised image in [0, 1].
        discriminative_weight: ``dis``.
        convergent_weight: ``cvt``.

    Returns:
        Scalar.
    """
    if not features:
        raise ValueError("feature_regularisation_loss needs at least one feature level")
    total = image.new_zeros(())
    for level, feature in enumerate(features):
        term = discriminative_loss(feature, image, discriminative_weight) + convergent_loss(
            feature, image, convergent_weight
        )
        total = total + term / 2**level
    return total / len(features)


# --------------------------------------------------------------------------------------------
# Feature-metric loss (methods spec 2.4, item 3)
# --------------------------------------------------------------------------------------------


def halve_intrinsics(K: torch.Tensor) -> torch.Tensor:
    """Intrinsics for a map of half the resolution, FeatDepth's way: rows 0 and 1 halved.

    (fx, fy, cx, cy) all halve; there is no half-pixel correction of the principal point.

    Args:
        K: B x 4 x 4 intrinsics in pixels of the full-resolution image.

    Returns:
        New B x 4 x 4 tensor.
    """
    check_shape(K, "K", (None, 4, 4))
    return torch.cat([K[:, :2] / 2.0, K[:, 2:]], dim=1)


def feature_sampling_grid(depth: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Sampling grid that warps a source feature map into the target view.

    Args:
        depth: B x 1 x h x w target depth at the feature map's resolution (FeatDepth: the
            scale-0 disparity, at H/2, through ``disp_to_depth``).
        K: B x 4 x 4 intrinsics in pixels of that resolution (FeatDepth:
            ``halve_intrinsics(K_full)``); its inverse is taken here (FeatDepth uses a
            pseudo-inverse, equal for any valid K).
        T: B x 4 x 4 ``T_source_from_target``.

    Returns:
        B x h x w x 2 grid in align_corners=True coordinates (see ``layers.project``).
    """
    check_shape(depth, "depth", (None, 1, None, None))
    check_shape(K, "K", (depth.shape[0], 4, 4))
    height, width = depth.shape[-2:]
    points = backproject(depth, torch.linalg.inv(K))
    return project(points, K, T, height, width)


def warp_features(features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of a feature map with align_corners=True and border padding.

    FeatDepth normalises pixels by (W-1), which is the align_corners=True mapping (its code
    relied on the PyTorch <= 1.2 default), and pads with the border value (pitfall 4).

    Args:
        features: B x C x h x w source features.
        grid: B x h' x w' x 2 from ``feature_sampling_grid``.

    Returns:
        B x C x h' x w' warped features.
    """
    return warp(features, grid, padding_mode="border")


def feature_metric_error(
    target_features: torch.Tensor, warped_source_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Per-pixel minimum over sources of the channel-averaged Charbonnier error.

    No identity (unwarped) candidates take part, unlike the photometric automask.

    Args:
        target_features: B x C x h x w features of the un-augmented target frame.
        warped_source_features: one B x C x h x w map per source frame, already warped.

    Returns:
        B x 1 x h x w error map (>= 1e-3), in feature units.
    """
    if not warped_source_features:
        raise ValueError("feature_metric_error needs at least one source frame")
    errors = [
        charbonnier(warped, target_features).mean(dim=1, keepdim=True)
        for warped in warped_source_features
    ]
    return torch.cat(errors, dim=1).min(dim=1, keepdim=True).values


def feature_metric_loss(
    target_features: torch.Tensor,
    source_features: Sequence[torch.Tensor],
    grids: Sequence[torch.Tensor],
    weight: float = FEATURE_METRIC_WEIGHT,
) -> torch.Tensor:
    """FeatDepth's feature-metric loss: ``weight * mean(min_sources Charbonnier_c)``.

    Each source feature map is warped with its grid (``warp_features``), compared with the
    target features by the Charbonnier penalty averaged over channels, and the per-pixel
    minimum over sources is averaged. FeatDepth adds this once per scale divided by the number
    of scales, i.e. exactly once: the returned value is the whole term.

    Args:
        target_features: B x C x h x w level-0 features of the target (FeatDepth: f0 of the
            auto-encoder's encoder, 64 x H/2 x W/2, on the un-augmented frame).
        source_features: per source frame (-1, +1 and 's' when present), B x C x h_s x w_s.
        grids: per source, B x h x w x 2 from ``feature_sampling_grid``.
        weight: ``perception_weight``.

    Returns:
        Scalar.
    """
    if len(source_features) != len(grids):
        raise ValueError(
            f"feature_metric_loss: {len(source_features)} source feature maps but "
            f"{len(grids)} grids; pass one grid per source"
        )
    for grid in grids:
        check_shape(grid, "grid", (target_features.shape[0], *target_features.shape[2:], 2))
    warped = [warp_features(src, grid) for src, grid in zip(source_features, grids)]
    return weight * feature_metric_error(target_features, warped).mean()


# --------------------------------------------------------------------------------------------
# Smoothness (methods spec 2.4, item 4; pitfall 8)
# --------------------------------------------------------------------------------------------


def smoothness_terms(
    disp: torch.Tensor, image: torch.Tensor, *, normalise_disp: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """FeatDepth's first- and second-order edge-aware smoothness of one disparity map.

    The image is area-downsampled to the disparity's size; both orders weigh the disparity's
    differences by ``exp(-0.5 * mean_c |same difference of I|)``.

    Args:
        disp: B x 1 x h x w disparity (h, w >= 3).
        image: B x 3 x H x W target image in [0, 1] (H >= h, W >= w).
        normalise_disp: divide the disparity by its per-image mean (+1e-7) first (FeatDepth's
            ``disp_norm``, off whenever the stereo frame is used).

    Returns:
        ``(first_order, second_order)`` scalars, in disparity units (per pixel).
    """
    check_shape(disp, "disp", (None, 1, None, None))
    if normalise_disp:
        disp = disp / (disp.mean(dim=(2, 3), keepdim=True) + DISP_NORM_EPS)
    small = _image_at(image, disp)
    first = first_order_edge_term(disp, small, SMOOTHNESS_EDGE_FACTOR)
    second = second_order_edge_term(disp, small, SMOOTHNESS_EDGE_FACTOR)
    return first, second


def second_order_smoothness(
    disp: torch.Tensor, image: torch.Tensor, *, normalise_disp: bool
) -> torch.Tensor:
    """The sum of ``smoothness_terms`` (FeatDepth's ``get_smooth_loss``). Scalar."""
    first, second = smoothness_terms(disp, image, normalise_disp=normalise_disp)
    return first + second


def multiscale_smoothness_loss(
    disps: Mapping[int, torch.Tensor],
    image: torch.Tensor,
    *,
    normalise_disp: bool,
    weight: float = SMOOTHNESS_WEIGHT,
) -> torch.Tensor:
    """``sum_s weight * second_order_smoothness(disp_s) / 2^s / n`` over the n scales.

    Args:
        disps: {s: B x 1 x H/2^(s+1) x W/2^(s+1)} raw sigmoid disparities of
            ``FeatDepthDecoder`` at their own sizes (not upsampled).
        image: B x 3 x H x W un-augmented target image.
        normalise_disp: see ``smoothness_terms``.
        weight: ``smoothness_weight``.

    Returns:
        Scalar.
    """
    if not disps:
        raise ValueError("multiscale_smoothness_loss needs at least one scale")
    total = image.new_zeros(())
    for scale, disp in disps.items():
        term = second_order_smoothness(disp, image, normalise_disp=normalise_disp)
        total = total + weight * term / 2**scale
    return total / len(disps)
