"""Geometry, photometric losses, smoothness and depth metrics for self-supervised depth.

Every function here is pure: it takes tensors and plain numbers, and derives the batch size,
image size, device and dtype from its inputs, so any batch size (including a last partial
batch) works on any device.

Conventions, fixed once for the whole module:

- Layouts: images are ``B x 3 x H x W`` floats in [0, 1]; depth and disparity are
  ``B x 1 x H x W``; ``K`` and ``inv_K`` are ``B x 4 x 4`` intrinsics in pixels of the scale
  being processed (row 0 scaled by that scale's width, row 1 by its height).
- Transforms: an argument named ``T`` is ``T_source_from_target``. It maps a point expressed in
  the target camera frame into the source camera frame, ``X_source = T @ X_target``.
- Pixels: integer indices ``(u, v)`` (column, row) address pixel *centres*; the homogeneous
  pixel grid is ``(u, v, 1)`` with ``u = 0..W-1`` and ``v = 0..H-1``.
- Sampling: pixel coordinates are normalised for ``grid_sample`` as ``2u/(W-1) - 1`` (and
  ``2v/(H-1) - 1``), so -1 and +1 are the centres of the first and last pixels. That is the
  ``align_corners=True`` mapping, and every ``grid_sample`` here passes ``align_corners=True``.
  The monodepth2 lineage normalises by ``W-1`` but monodepth2 itself called ``grid_sample``
  without ``align_corners``, which since PyTorch 1.3 means False and shifts every sample by up
  to half a pixel; we pass it explicitly everywhere.
- Resizing disparity maps (``upsample_disp``) is a different operation and uses
  ``align_corners=False`` (see there).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

# Added to the rotation angle before dividing by it, so the axis (and its gradient) stays
# finite at zero rotation, where a pose network starts.
AXISANGLE_EPS = 1e-7

# SSIM stabilisers for signals with a dynamic range of 1 (Wang et al. 2004: K1 = 0.01,
# K2 = 0.03, C = (K L)^2 with L = 1).
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2

# Weight of the SSIM term in the photometric error; the rest goes to L1 (Monodepth2).
SSIM_WEIGHT = 0.85

# Standard deviation of the noise added to the identity (unwarped) loss before the per-pixel
# minimum; far below any meaningful photometric difference, it only breaks exact ties.
IDENTITY_TIE_NOISE = 1e-5

# Keeps the mean-normalised disparity finite for an all-zero disparity map.
SMOOTHNESS_EPS = 1e-7

# Order of the values returned by ``compute_depth_metrics``.
DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

# Accuracy thresholds: a prediction counts for a_k when max(gt/pred, pred/gt) < 1.25**k.
DELTA_THRESHOLD = 1.25


def check_shape(x: torch.Tensor, name: str, expected: Sequence[int | None]) -> None:
    """Raise ValueError unless ``x``'s shape matches ``expected`` (None matches any size)."""
    ok = x.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        shown = "x".join("*" if e is None else str(e) for e in expected)
        raise ValueError(f"{name}: expected shape {shown}, got {'x'.join(map(str, x.shape))}")


# --------------------------------------------------------------------------------------------
# Depth <-> disparity
# --------------------------------------------------------------------------------------------


def disp_to_depth(
    disp: torch.Tensor, min_depth: float, max_depth: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a sigmoid disparity in [0, 1] to a disparity in [1/max_depth, 1/min_depth] and depth.

    Args:
        disp: network output in [0, 1], any shape (usually B x 1 x H x W).
        min_depth: depth reached at ``disp == 1`` (same unit as the returned depth).
        max_depth: depth reached at ``disp == 0``.

    Returns:
        ``(scaled_disp, depth)``, both shaped like ``disp``, with ``depth = 1 / scaled_disp``.
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


# --------------------------------------------------------------------------------------------
# Rotations and rigid transforms
# --------------------------------------------------------------------------------------------


def _as_vectors(x: torch.Tensor, name: str) -> torch.Tensor:
    """Accept ``B x 1 x 3`` or ``B x 3`` and return ``B x 3``."""
    if x.dim() == 3:
        check_shape(x, name, (None, 1, 3))
        return x[:, 0]
    check_shape(x, name, (None, 3))
    return x


def rot_from_axisangle(vec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors (Rodrigues' formula).

    ``theta = |vec|``, ``axis = vec / (theta + 1e-7)`` and
    ``R = cos(theta) I + (1 - cos(theta)) axis axis^T + sin(theta) [axis]_x``. The epsilon keeps
    the value and gradient finite at zero rotation; it damps rotations smaller than about 1e-7
    rad (whose gradient at exactly zero is therefore 0), which pose networks never output.

    Args:
        vec: ``B x 1 x 3`` or ``B x 3`` axis-angle vectors, angle in radians.

    Returns:
        ``B x 4 x 4`` homogeneous matrices with R in the top-left block and ``[3, 3] = 1``.
    """
    v = _as_vectors(vec, "axisangle")
    theta = torch.linalg.vector_norm(v, dim=1, keepdim=True)  # B x 1
    axis = v / (theta + AXISANGLE_EPS)
    cos = torch.cos(theta)[:, :, None]
    sin = torch.sin(theta)[:, :, None]
    x, y, z = axis.unbind(dim=1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    eye3 = torch.eye(3, device=v.device, dtype=v.dtype)
    rot3 = cos * eye3 + (1.0 - cos) * (axis[:, :, None] * axis[:, None, :]) + sin * skew
    rot = torch.zeros(v.shape[0], 4, 4, device=v.device, dtype=v.dtype)
    rot[:, :3, :3] = rot3
    rot[:, 3, 3] = 1.0
    return rot


def get_translation_matrix(translation: torch.Tensor) -> torch.Tensor:
    """Homogeneous translation matrices.

    Args:
        translation: ``B x 1 x 3`` or ``B x 3`` translations.

    Returns:
        ``B x 4 x 4`` identity matrices with the translation in column 3.
    """
    t = _as_vectors(translation, "translation")
    mat = torch.eye(4, device=t.device, dtype=t.dtype).repeat(t.shape[0], 1, 1)
    mat[:, :3, 3] = t
    return mat


def transformation_from_parameters(
    axisangle: torch.Tensor, translation: torch.Tensor, invert: bool = False
) -> torch.Tensor:
    """Rigid transform from a pose network's axis-angle and translation outputs.

    Args:
        axisangle: ``B x 1 x 3`` or ``B x 3`` rotation (radians).
        translation: ``B x 1 x 3`` or ``B x 3`` translation.
        invert: if False, ``M = T(t) R``, i.e. ``x -> R x + t``; if True, the exact inverse
            ``M = R^T T(-t)``, i.e. ``x -> R^T (x - t)``.

    Returns:
        ``B x 4 x 4`` transforms.
    """
    rot = rot_from_axisangle(axisangle)
    t = _as_vectors(translation, "translation")
    if invert:
        return rot.transpose(1, 2) @ get_translation_matrix(-t)
    return get_translation_matrix(t) @ rot


# --------------------------------------------------------------------------------------------
# Camera projection
# --------------------------------------------------------------------------------------------


def pixel_grid(
    height: int, width: int, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Homogeneous pixel-centre coordinates in row-major order.

    Returns:
        ``3 x (H*W)`` tensor whose column ``v * W + u`` is ``(u, v, 1)``; the order matches
        ``depth.view(B, 1, H*W)``.
    """
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], dim=0)


def backproject(depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
    """Lift every pixel to a 3-D point in its camera frame.

    Args:
        depth: ``B x 1 x H x W`` depth (z along the optical axis).
        inv_K: ``B x 4 x 4`` inverse intrinsics of this scale; only the 3x3 block is used.

    Returns:
        ``B x 4 x (H*W)`` homogeneous points ``(depth * inv_K (u, v, 1), 1)`` in row-major pixel
        order.
    """
    check_shape(depth, "depth", (None, 1, None, None))
    batch, _, height, width = depth.shape
    check_shape(inv_K, "inv_K", (batch, 4, 4))
    pix = pixel_grid(height, width, device=depth.device, dtype=depth.dtype)
    points = (inv_K[:, :3, :3] @ pix) * depth.reshape(batch, 1, height * width)
    ones = torch.ones_like(points[:, :1])
    return torch.cat([points, ones], dim=1)


def project(
    points: torch.Tensor,
    K: torch.Tensor,
    T: torch.Tensor,
    height: int,
    width: int,
    eps: float = 1e-7,
    depth_floor: float | None = None,
) -> torch.Tensor:
    """Project target-frame points into the source camera and return a sampling grid.

    Args:
        points: ``B x 4 x (H*W)`` homogeneous points in the target camera frame (from
            ``backproject``).
        K: ``B x 4 x 4`` source intrinsics, pixels of this scale.
        T: ``B x 4 x 4`` ``T_source_from_target``.
        height: H of the target image (the grid's size). The grid is also normalised by it,
            so the source image sampled with it must have the same size.
        width: W of the target image, likewise.
        eps: added to the projected depth before dividing, so points on the camera plane stay
            finite.
        depth_floor: when given, the projected depth is clamped to at least this instead of
            offset by ``eps`` (PackNet-SfM: 1e-5), so points behind the source camera land far
            off the image rather than mirrored into it.

    Returns:
        ``B x H x W x 2`` ``grid_sample`` coordinates ``(x, y)`` in [-1, 1] for in-view points,
        normalised as ``2u/(W-1) - 1`` (align_corners=True).

    Example of the direction: for a pure translation ``T = [I | (t_x, 0, 0)]`` and a constant
    depth z, target pixel u samples the source at ``u + fx * t_x / z``, so the warped image is
    the source moved ``fx * t_x / z`` columns towards smaller u.
    """
    if height < 2 or width < 2:
        raise ValueError(f"project: the image must be at least 2x2 pixels, got {height}x{width}")
    batch = points.shape[0]
    check_shape(points, "points", (batch, 4, height * width))
    check_shape(K, "K", (batch, 4, 4))
    check_shape(T, "T", (batch, 4, 4))
    proj = (K @ T)[:, :3, :]
    cam = proj @ points
    z = cam[:, 2:3] + eps if depth_floor is None else cam[:, 2:3].clamp(min=depth_floor)
    uv = cam[:, :2] / z
    uv = uv.view(batch, 2, height, width)
    # Dividing by Python numbers rather than a tensor built from a list avoids a host-to-device
    # copy (a synchronisation point) on every call.
    grid = torch.stack([uv[:, 0] / (width - 1), uv[:, 1] / (height - 1)], dim=-1)
    return grid * 2.0 - 1.0


def warp(image: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Bilinearly sample ``image`` at ``grid`` (align_corners=True, matching ``project``).

    Args:
        image: ``B x C x H_s x W_s`` source image.
        grid: ``B x H x W x 2`` normalised coordinates from ``project``.
        padding_mode: ``grid_sample`` padding for points outside the source view.

    Returns:
        ``B x C x H x W`` warped image.
    """
    check_shape(image, "image", (None, None, None, None))
    check_shape(grid, "grid", (image.shape[0], None, None, 2))
    return F.grid_sample(
        image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True
    )


# --------------------------------------------------------------------------------------------
# Photometric terms
# --------------------------------------------------------------------------------------------


class SSIMReference(NamedTuple):
    """The statistics of one side of SSIM that do not depend on the other (`ssim_reference`).

    Attributes:
        padded: ``B x C x (H+2) x (W+2)`` the image, reflection-padded by 1.
        mean: ``B x C x H x W`` 3x3 local mean.
        variance: ``B x C x H x W`` 3x3 local variance (E[y^2] - E[y]^2).
    """

    padded: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor


def ssim_reference(y: torch.Tensor) -> SSIMReference:
    """`SSIMReference` of a ``B x C x H x W`` image: computed once, it serves every SSIM against it.

    A target compared with several warped and unwarped frames (and scales) needs its padding,
    mean and variance once; `ssim_loss_map` computes exactly these numbers when given none.
    """
    check_shape(y, "y", (None, None, None, None))
    padded = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mean = F.avg_pool2d(padded, 3, 1)
    return SSIMReference(padded, mean, F.avg_pool2d(padded * padded, 3, 1) - mean * mean)


def ssim_loss_map(x: torch.Tensor, y: torch.Tensor | SSIMReference) -> torch.Tensor:
    """Per-pixel SSIM dissimilarity ``clamp((1 - SSIM) / 2, 0, 1)`` over 3x3 windows.

    Local statistics use a 3x3 average pool at stride 1 after reflection padding by 1, so the
    output keeps the input size.

    Args:
        x: ``B x C x H x W`` image in [0, 1].
        y: image of the same shape, or its `ssim_reference` (the same result, bit for bit,
            without recomputing y's statistics).

    Returns:
        ``B x C x H x W`` loss in [0, 1]; 0 where the images agree.
    """
    check_shape(x, "x", (None, None, None, None))
    reference = y if isinstance(y, SSIMReference) else ssim_reference(y)
    check_shape(reference.mean, "y", tuple(x.shape))
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y, sigma_y = reference.mean, reference.variance
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    sigma_xy = F.avg_pool2d(x * reference.padded, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def reprojection_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    ssim_weight: float = SSIM_WEIGHT,
    use_ssim: bool = True,
    target_ssim: SSIMReference | None = None,
) -> torch.Tensor:
    """Photometric error ``w * mean_c SSIM + (1 - w) * mean_c |pred - target|``.

    Args:
        pred: ``B x C x H x W`` synthesised image.
        target: ``B x C x H x W`` target image.
        ssim_weight: w; ignored when ``use_ssim`` is False.
        use_ssim: if False the error is pure L1.
        target_ssim: ``ssim_reference(target)`` when the caller already has it (same result).

    Returns:
        ``B x 1 x H x W`` error.
    """
    check_shape(target, "target", tuple(pred.shape))
    l1 = (target - pred).abs().mean(dim=1, keepdim=True)
    if not use_ssim:
        return l1
    ssim = ssim_loss_map(pred, target if target_ssim is None else target_ssim).mean(dim=1, keepdim=True)
    return ssim_weight * ssim + (1.0 - ssim_weight) * l1


def per_pixel_min_loss(
    reprojection: torch.Tensor,
    identity: torch.Tensor | None = None,
    average: bool = False,
    tie_noise: float = IDENTITY_TIE_NOISE,
    interleave: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-pixel minimum reprojection with Monodepth2's auto-masking.

    With ``identity`` (the errors of the *unwarped* source frames against the target), a pixel
    whose best unwarped error beats every warped error is effectively dropped: it moves with
    the camera (or the scene is static), and its loss becomes the identity error, which has no
    gradient with respect to depth or pose.

    Args:
        reprojection: ``B x N x H x W`` errors of the N warped source frames.
        identity: ``B x N x H x W`` errors of the N unwarped source frames, or None to disable
            auto-masking.
        average: average each block over N before the minimum (``--avg_reprojection``).
        tie_noise: standard deviation of the Gaussian noise added to ``identity``; 0 adds none
            (PackNet), and exact ties then go to the block listed first.
        interleave: list the blocks as PackNet concatenates them, warped then unwarped for each
            source in turn (``r_1, i_1, r_2, i_2, ...``), instead of every identity block first.
            Only the winner of an exact tie changes, which decides where the gradient goes:
            without noise a warped frame beats its own unwarped copy on a tie.

    Returns:
        ``(loss_map, auto_mask)``: ``loss_map`` is ``B x 1 x H x W``; ``auto_mask`` is a float
        ``B x 1 x H x W`` map equal to 1 where the minimum came from the reprojection block,
        or None when ``identity`` is None.
    """
    check_shape(reprojection, "reprojection", (None, None, None, None))
    if average:
        reprojection = reprojection.mean(dim=1, keepdim=True)
    if identity is None:
        if reprojection.shape[1] == 1:
            return reprojection, None
        return reprojection.min(dim=1, keepdim=True).values, None

    check_shape(identity, "identity", (reprojection.shape[0], None, *reprojection.shape[2:]))
    if average:
        identity = identity.mean(dim=1, keepdim=True)
    # A static scene or a stationary camera makes identity and reprojection errors exactly
    # equal; without noise the argmin would then always pick the identity block. randn_like
    # draws on the input's device, so no host-to-device copy is needed.
    if tie_noise > 0:
        identity = identity + torch.randn_like(identity) * tie_noise
    if interleave:
        check_shape(identity, "identity", tuple(reprojection.shape))
        combined = torch.stack([reprojection, identity], dim=2).flatten(1, 2)
        loss_map, index = combined.min(dim=1, keepdim=True)
        auto_mask = (index % 2 == 0).to(reprojection.dtype)
        return loss_map, auto_mask
    combined = torch.cat([identity, reprojection], dim=1)
    loss_map, index = combined.min(dim=1, keepdim=True)
    auto_mask = (index >= identity.shape[1]).to(reprojection.dtype)
    return loss_map, auto_mask


# --------------------------------------------------------------------------------------------
# Smoothness
# --------------------------------------------------------------------------------------------


def edge_aware_smoothness(disp: torch.Tensor, image: torch.Tensor, mean_floor: float | None = None
                          ) -> torch.Tensor:
    """Edge-aware first-order smoothness of the mean-normalised disparity.

    The disparity is divided by its per-image spatial mean (+1e-7) *inside* this function, so
    the term does not reward shrinking the disparity (Monodepth2 normalises before the call;
    callers here pass the raw disparity). Then
    ``mean(|dx d| exp(-mean_c |dx I|)) + mean(|dy d| exp(-mean_c |dy I|))``.

    Args:
        disp: ``B x 1 x H x W`` disparity.
        image: ``B x C x H x W`` image at the same resolution.
        mean_floor: when given, the mean is clamped to at least this instead of offset by 1e-7
            (PackNet-SfM: 1e-6).

    Returns:
        Scalar loss.
    """
    check_shape(disp, "disp", (None, 1, None, None))
    check_shape(image, "image", (disp.shape[0], None, *disp.shape[2:]))
    mean = disp.mean(dim=(2, 3), keepdim=True)
    disp = disp / (mean + SMOOTHNESS_EPS if mean_floor is None else mean.clamp(min=mean_floor))
    grad_disp_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_disp_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_img_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(dim=1, keepdim=True)
    grad_img_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(dim=1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (
        grad_disp_y * torch.exp(-grad_img_y)
    ).mean()


# --------------------------------------------------------------------------------------------
# Scale-invariant log loss (BDEdepth consistency term)
# --------------------------------------------------------------------------------------------


def scale_invariant_log_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    lam: float = 0.5,
    eps: float = 1e-8,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014), per sample, then the mean over samples.

    With ``d = ln(pred + eps) - ln(target + eps)`` over the n (masked) pixels of one sample,
    ``L = sum(d^2) / n - lam * sum(d)^2 / n^2`` (n is offset by ``eps`` as in BDEdepth). For
    ``pred = c * target`` this is ``(1 - lam) (ln c)^2``. Neither argument is detached; detach
    ``target`` at the call site to stop its gradient.

    Args:
        pred: ``B x ...`` positive depths.
        target: same shape as ``pred``.
        lam: weight of the scale-invariance term.
        eps: offset inside the logs and on n.
        mask: optional ``B x ...`` weights (1 = use the pixel, 0 = ignore it), same shape as
            ``pred``; n is then the mask's sum per sample. None uses every pixel.

    Returns:
        Scalar loss.
    """
    check_shape(target, "target", tuple(pred.shape))
    d = (torch.log(pred + eps) - torch.log(target + eps)).flatten(start_dim=1)
    if mask is None:
        n = d.shape[1] + eps
    else:
        check_shape(mask, "mask", tuple(pred.shape))
        mask = mask.flatten(start_dim=1).to(d.dtype)
        d = d * mask
        n = mask.sum(dim=1) + eps
    per_sample = (d * d).sum(dim=1) / n - lam * d.sum(dim=1) ** 2 / (n * n)
    return per_sample.mean()


# --------------------------------------------------------------------------------------------
# Depth metrics (one implementation for training-time and offline evaluation)
# --------------------------------------------------------------------------------------------


def compute_depth_metrics(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The seven standard depth metrics over valid pixels, computed in float64.

    Args:
        gt: ``N`` positive ground-truth depths (already masked).
        pred: ``N`` positive predicted depths (already scaled and clamped).

    Returns:
        float64 tensor of shape (7,), in the order of ``DEPTH_METRIC_NAMES``; ``rmse_log``
        uses the natural log.
    """
    check_shape(gt, "gt", (None,))
    check_shape(pred, "pred", (gt.shape[0],))
    if gt.numel() == 0:
        raise ValueError("compute_depth_metrics: no valid pixels (empty gt); check the depth mask")
    gt = gt.to(torch.float64)
    pred = pred.to(torch.float64)
    thresh = torch.maximum(gt / pred, pred / gt)
    a1 = (thresh < DELTA_THRESHOLD).to(torch.float64).mean()
    a2 = (thresh < DELTA_THRESHOLD**2).to(torch.float64).mean()
    a3 = (thresh < DELTA_THRESHOLD**3).to(torch.float64).mean()
    diff = gt - pred
    rmse = torch.sqrt((diff * diff).mean())
    rmse_log = torch.sqrt(((torch.log(gt) - torch.log(pred)) ** 2).mean())
    abs_rel = (diff.abs() / gt).mean()
    sq_rel = (diff * diff / gt).mean()
    return torch.stack([abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3])


def numpy_median(x: torch.Tensor) -> torch.Tensor:
    """Median with NumPy's convention: the mean of the two middle values for an even count.

    ``torch.median`` returns the lower of the two; monodepth2's published numbers were computed
    with ``np.median``, so median scaling uses this one to reproduce them.

    Args:
        x: tensor of any shape (flattened), at least one element.

    Returns:
        0-dim tensor with ``x``'s dtype and device.
    """
    flat = x.reshape(-1)
    count = flat.numel()
    if count == 0:
        raise ValueError("numpy_median: empty input; check the depth mask")
    ordered = torch.sort(flat).values
    return (ordered[(count - 1) // 2] + ordered[count // 2]) / 2


def median_scaling_ratio(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Monocular scale ``numpy_median(gt) / numpy_median(pred)`` over valid pixels (0-dim)."""
    return numpy_median(gt) / numpy_median(pred)


def upsample_disp(disp: torch.Tensor, size: Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``B x 1 x h x w`` disparity to ``size = (H, W)``.

    "bilinear" uses ``align_corners=False`` (half-pixel centres): it matches ``cv2.resize``,
    which monodepth2's evaluation used, and the training-time upsampling of each scale's
    disparity. "nearest" repeats pixels, as PackNet upsamples its inverse depths for the loss.
    """
    check_shape(disp, "disp", (None, None, None, None))
    if mode == "nearest":
        return F.interpolate(disp, size=tuple(size), mode="nearest")
    if mode != "bilinear":
        raise ValueError(f"upsample_disp: mode must be bilinear or nearest, got {mode!r}")
    return F.interpolate(disp, size=tuple(size), mode="bilinear", align_corners=False)


__all__ = [
    "AXISANGLE_EPS",
    "DEPTH_METRIC_NAMES",
    "IDENTITY_TIE_NOISE",
    "SSIM_C1",
    "SSIM_C2",
    "SSIM_WEIGHT",
    "SSIMReference",
    "backproject",
    "check_shape",
    "compute_depth_metrics",
    "disp_to_depth",
    "edge_aware_smoothness",
    "get_translation_matrix",
    "median_scaling_ratio",
    "numpy_median",
    "per_pixel_min_loss",
    "pixel_grid",
    "project",
    "reprojection_loss",
    "rot_from_axisangle",
    "scale_invariant_log_loss",
    "ssim_loss_map",
    "ssim_reference",
    "transformation_from_parameters",
    "upsample_disp",
    "warp",
]
