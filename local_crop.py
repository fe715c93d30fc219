"""BDEdepth's resizing-cropping view ("local crop"): its layout, cameras, footprint and pose correction.

The one home of the crop geometry, imported by the dataset (which draws a crop per sample and
cuts the frames), the model (which warps the local view with the crop's cameras) and the loss
(which compares the local depth with the original inside the crop's footprint).

Crop vector layout (``LOCAL_CROP_DIM`` floats, batch key ``"local_crop"``): ``[ratio,
resized_width, resized_height, x0, y0]``: the frames were resized to ``resized_width x
resized_height`` (``int(W ratio)``, ``int(H ratio)``) and cropped to the ``W x H`` box whose
top-left pixel is ``(x0, y0)``. Parameters are drawn on the host per sample; everything else is
batched arithmetic on the device.
"""

from __future__ import annotations

import random

import torch

from layers import check_shape

CROP_RATIO = 0
CROP_RESIZED_WIDTH = 1
CROP_RESIZED_HEIGHT = 2
CROP_X0 = 3
CROP_Y0 = 4
LOCAL_CROP_DIM = 5

# BDEdepth's range of the local crop's resize ratio.
DEFAULT_RESIZE_RATIO = (1.2, 2.0)


def draw_local_crop(
    rng: random.Random,
    height: int,
    width: int,
    ratio_range: tuple[float, float] = DEFAULT_RESIZE_RATIO,
) -> torch.Tensor:
    """Draw one sample's local crop: a resize ratio and a box, shared by all its frames.

    ``r ~ U(ratio_range)``; the frames are resized to ``int(W r) x int(H r)`` and cropped at
    ``x0 = int((W_r - W) U(0, 1))``, ``y0 = int((H_r - H) U(0, 1))`` (BDEdepth's draws).

    Args:
        rng: the caller's Python random generator.
        height: H of the network input (and of the crop), pixels.
        width: W, likewise.
        ratio_range: ``(low, high)`` with ``1 <= low <= high``.

    Returns:
        float32 tensor of shape ``(LOCAL_CROP_DIM,)`` (layout above; sizes and corner are
        integers, exact in float32).
    """
    low, high = ratio_range
    if not 1.0 <= low <= high:
        raise ValueError(f"local-crop resize ratios must satisfy 1 <= low <= high, got {ratio_range}")
    ratio = rng.uniform(low, high)
    resized_width, resized_height = int(width * ratio), int(height * ratio)
    x0 = int((resized_width - width) * rng.random())
    y0 = int((resized_height - height) * rng.random())
    return torch.tensor([ratio, resized_width, resized_height, x0, y0], dtype=torch.float32)


def local_crop_parts(crop: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    """Unpack ``B x LOCAL_CROP_DIM`` crop vectors into named float tensors.

    Returns:
        ``ratio`` (B), ``resized`` (B x 2: W_r, H_r), ``offset`` (B x 2: x0, y0), ``full``
        (B x 2: W, H) and ``zoom`` (B x 2: W_r / W, H_r / H, the actual magnification of the
        frames). Built with arithmetic on ``crop``, so nothing is copied from the host.
    """
    if crop.dim() != 2 or crop.shape[1] != LOCAL_CROP_DIM:
        raise ValueError(f"local crop parameters must be B x {LOCAL_CROP_DIM}, got {tuple(crop.shape)}")
    resized = crop[:, CROP_RESIZED_WIDTH:CROP_RESIZED_HEIGHT + 1]
    ones = torch.ones_like(crop[:, CROP_RATIO])
    full = torch.stack([ones * width, ones * height], dim=1)
    return {"ratio": crop[:, CROP_RATIO], "resized": resized, "offset": crop[:, CROP_X0:CROP_Y0 + 1],
            "full": full, "zoom": resized / full}


def local_crop_footprint(
    crop: torch.Tensor, height: int, width: int, reference: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the crop lies in the original ``H x W`` image, and its depth scale.

    Args:
        crop: ``B x LOCAL_CROP_DIM``.
        height, width: the network input size.
        reference: reproduce BDEdepth's window (corner ``round(W x0 / (W_r - 1))``, size
            ``round(W / r)``, and the continuous ratio r as depth scale) instead of the exact
            footprint of the resize-and-crop (corner ``x0 W / W_r``, size ``W^2 / W_r``, depth
            scale ``W_r / W``).

    Returns:
        ``(offset_xy, size_xy, depth_scale)``: ``B x 2``, ``B x 2`` (original pixels) and
        ``B``: the local view's depth times depth_scale is comparable with the original's.
    """
    parts = local_crop_parts(crop, height, width)
    zoom, offset, full = parts["zoom"], parts["offset"], parts["full"]
    if not reference:
        return offset / zoom, full / zoom, zoom[:, 0]
    corner = torch.round(full * offset / (parts["resized"] - 1))
    size = torch.round(full / parts["ratio"][:, None])
    return corner, size, parts["ratio"]


def local_crop_camera(
    crop: torch.Tensor, K: torch.Tensor, inv_K: torch.Tensor, height: int, width: int,
    reference: bool = False,
) -> dict[str, torch.Tensor]:
    """How to warp the local view: its intrinsics, a pose correction and a depth scale.

    Per sample (default): the view's own intrinsics ``K_crop = A K`` (any principal point, each
    sample's focal length; ``layers.crop_intrinsics``) and real depth = predicted depth times
    ``W_r / W``: the network sees the crop as if taken with the original camera, so it is
    expected to predict the depth divided by the magnification, as in BDEdepth.

    Reference (``reference=True``): BDEdepth's model: the original K, every pose replaced by
    ``Rc T Rc^-1`` (``layers.crop_pose_correction``) with the crop centre and half-extent in
    align-corners coordinates, ``phi = (W - 1) / (W_r - 1)``, and the focal length of batch
    element 0; exact only for a centred principal point and equal focal lengths.

    Args:
        crop: ``B x LOCAL_CROP_DIM``.
        K, inv_K: ``B x 4 x 4`` intrinsics of the original frames at scale 0 (pixels).
        height, width: the network input size.
        reference: choose the reference's model.

    Returns:
        ``K`` and ``inv_K`` (``B x 4 x 4``, scale 0 of the view), ``depth_scale`` (B), and
        ``Rc`` (``B x 3 x 3``, or None when poses need no correction).
    """
    parts = local_crop_parts(crop, height, width)
    if not reference:
        K_crop, inv_K_crop = crop_intrinsics(K, inv_K, parts["zoom"], parts["offset"])
        return {"K": K_crop, "inv_K": inv_K_crop, "depth_scale": parts["zoom"][:, 0], "Rc": None}
    resized, offset, full = parts["resized"], parts["offset"], parts["full"]
    # Centre of the crop and half its width in the align-corners grid linspace(-1, 1, W_r).
    center = (2.0 * offset + full - 1.0) / (resized - 1.0) - 1.0
    phi = (full[:, 0] - 1.0) / (resized[:, 0] - 1.0)
    focal = torch.stack([K[:1, 0, 0] / width, K[:1, 1, 1] / height], dim=1)  # batch element 0
    Rc = crop_camera_matrix(center.to(K.dtype), phi.to(K.dtype), focal)
    return {"K": K, "inv_K": inv_K, "depth_scale": torch.ones_like(phi).to(K.dtype), "Rc": Rc}

# --------------------------------------------------------------------------------------------


def crop_intrinsics(
    K: torch.Tensor, inv_K: torch.Tensor, scale_xy: torch.Tensor, offset_xy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Intrinsics of a view made by resizing an image by ``scale_xy`` and cropping at ``offset_xy``.

    Resizing maps pixel centres as ``u' + 0.5 = s (u + 0.5)`` (OpenCV's and PyTorch's
    align_corners=False convention) and the crop subtracts its integer corner, so the centre
    of original pixel u lands on ``s u + (s - 1) / 2 - o`` in the view, and
    ``K_crop = A K`` with ``A = [[s_x, 0, (s_x - 1)/2 - o_x], [0, s_y, (s_y - 1)/2 - o_y],
    [0, 0, 1]]``. Any principal point and per-sample focal lengths are handled exactly.

    Args:
        K: ``B x 4 x 4`` intrinsics of the original image, pixels.
        inv_K: ``B x 4 x 4`` their inverse.
        scale_xy: ``B x 2`` resize factors (resized size / original size) along x and y.
        offset_xy: ``B x 2`` crop corner in pixels of the resized image.

    Returns:
        ``(K_crop, inv_K_crop)``, each ``B x 4 x 4``, dtype and device of ``K``.
    """
    batch = K.shape[0]
    check_shape(K, "K", (batch, 4, 4))
    check_shape(inv_K, "inv_K", (batch, 4, 4))
    check_shape(scale_xy, "scale_xy", (batch, 2))
    check_shape(offset_xy, "offset_xy", (batch, 2))
    scale = scale_xy.to(K.dtype)
    offset = offset_xy.to(K.dtype)
    eye = torch.eye(4, device=K.device, dtype=K.dtype).repeat(batch, 1, 1)
    A = eye.clone()
    A[:, 0, 0] = scale[:, 0]
    A[:, 1, 1] = scale[:, 1]
    shift = 0.5 * (scale - 1.0) - offset
    A[:, :2, 2] = shift
    inv_A = eye
    inv_A[:, 0, 0] = 1.0 / scale[:, 0]
    inv_A[:, 1, 1] = 1.0 / scale[:, 1]
    inv_A[:, :2, 2] = -shift / scale
    return A @ K, inv_K @ inv_A


def crop_camera_matrix(
    center_xy: torch.Tensor, phi: torch.Tensor, focal_xy: torch.Tensor
) -> torch.Tensor:
    """BDEdepth's virtual-camera matrix ``Rc`` for a resized-and-cropped view.

    ``Rc = [[1, 0, -c_x / (2 f_x)], [0, 1, -c_y / (2 f_y)], [0, 0, phi]]`` maps a camera-frame
    point ``(X, Y, Z)`` to ``(X - c_x Z / (2 f_x), Y - c_y Z / (2 f_y), phi Z)``. Projected with
    the *original* K, that point lands on its pixel in the crop when the principal point is
    centred, so a network that sees the crop is expected to predict depth ``phi Z``.

    Args:
        center_xy: ``B x 2`` crop centre in the original image's normalised [-1, 1] coordinates.
        phi: ``B`` crop half-extent in those coordinates (about 1 / resize ratio).
        focal_xy: ``B x 2`` (or ``1 x 2``, broadcast) focal lengths divided by the image
            width and height.

    Returns:
        ``B x 3 x 3`` matrices, dtype and device of ``center_xy``.
    """
    batch = center_xy.shape[0]
    check_shape(center_xy, "center_xy", (batch, 2))
    check_shape(phi, "phi", (batch,))
    check_shape(focal_xy, "focal_xy", (None, 2))
    Rc = torch.eye(3, device=center_xy.device, dtype=center_xy.dtype).repeat(batch, 1, 1)
    Rc[:, :2, 2] = -center_xy / (2.0 * focal_xy.to(center_xy.dtype))
    Rc[:, 2, 2] = phi.to(center_xy.dtype)
    return Rc


def crop_pose_correction(T: torch.Tensor, Rc: torch.Tensor) -> torch.Tensor:
    """Express ``T_source_from_target`` between virtual crop cameras: ``[Rc R Rc^-1 | Rc t]``.

    The point a virtual camera sees is ``Rc X``, so the motion between two virtual cameras is
    ``Rc T Rc^-1``; warping the crop with the original K, this transform and a depth of
    ``phi Z`` reproduces the real warp (BDEdepth's pose correction). ``Rc``'s inverse is
    written in closed form (no linear solve on the device).

    Args:
        T: ``B x 4 x 4`` rigid transforms.
        Rc: ``B x 3 x 3`` from ``crop_camera_matrix``.

    Returns:
        ``B x 4 x 4`` transforms with bottom row ``(0, 0, 0, 1)``.
    """
    batch = T.shape[0]
    check_shape(T, "T", (batch, 4, 4))
    check_shape(Rc, "Rc", (batch, 3, 3))
    Rc = Rc.to(T.dtype)
    inv_Rc = torch.eye(3, device=T.device, dtype=T.dtype).repeat(batch, 1, 1)
    inv_phi = 1.0 / Rc[:, 2, 2]
    inv_Rc[:, :2, 2] = -Rc[:, :2, 2] * inv_phi[:, None]
    inv_Rc[:, 2, 2] = inv_phi
    out = torch.zeros_like(T)
    out[:, :3, :3] = Rc @ T[:, :3, :3] @ inv_Rc
    out[:, :3, 3:] = Rc @ T[:, :3, 3:]
    out[:, 3, 3] = 1.0
    return out


def crop_footprint_grid(
    offset_xy: torch.Tensor, size_xy: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel of an ``H x W`` original image falls inside a crop view, and whether it does.

    The crop covers the rectangle ``[o_x, o_x + w] x [o_y, o_y + h]`` of the original image
    (continuous pixel coordinates, pixel ``u`` spanning ``[u, u + 1]``). The grid gives, for
    every original pixel centre, the crop's normalised coordinate ``2 (u + 0.5 - o_x) / w - 1``
    in the ``align_corners=False`` convention, so it samples a crop map of *any* resolution
    (every decoder scale) as ``F.interpolate(..., align_corners=False)`` would resize it.

    Args:
        offset_xy: ``B x 2`` crop corner in original pixels.
        size_xy: ``B x 2`` crop extent in original pixels.
        height: H of the original image.
        width: W of the original image.

    Returns:
        ``(grid, mask)``: ``B x H x W x 2`` sampling grid and ``B x 1 x H x W`` float mask, 1 for
        pixels whose centre lies inside the crop.
    """
    batch = offset_xy.shape[0]
    check_shape(offset_xy, "offset_xy", (batch, 2))
    check_shape(size_xy, "size_xy", (batch, 2))
    dtype = offset_xy.dtype if offset_xy.is_floating_point() else torch.float32
    offset = offset_xy.to(dtype)
    size = size_xy.to(dtype)
    u = torch.arange(width, device=offset.device, dtype=dtype) + 0.5
    v = torch.arange(height, device=offset.device, dtype=dtype) + 0.5
    gx = 2.0 * (u[None, :] - offset[:, 0:1]) / size[:, 0:1] - 1.0  # B x W
    gy = 2.0 * (v[None, :] - offset[:, 1:2]) / size[:, 1:2] - 1.0  # B x H
    grid = torch.stack([gx[:, None, :].expand(batch, height, width),
                        gy[:, :, None].expand(batch, height, width)], dim=-1)
    inside = (grid.abs() <= 1.0).all(dim=-1)
    return grid, inside[:, None].to(dtype)
