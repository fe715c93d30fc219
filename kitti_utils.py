"""KITTI constants and readers: calibration files, velodyne scans, projected and annotated depth.

Conventions follow KITTI raw: velodyne frame x forward, y left, z up; rectified camera frames
x right, y down, z forward. ``generate_depth_map`` reproduces the reference ground-truth export
(monodepth2's ``kitti_utils``) step by step, including its quirks, so the maps it writes match the
published ``gt_depths.npz`` files; see the docstring for what is kept on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

KITTI_FULL_RES = (1242, 375)
"""(W, H) of the 2011_09_26 raw images, the size KITTI depth maps are compared at."""

KITTI_NORMALIZED_K = np.array(
    [[0.58, 0.0, 0.5, 0.0], [0.0, 1.92, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
    dtype=np.float32,
)
"""Intrinsics shared by every KITTI raw drive, row 0 divided by the image width and row 1 by the
height; the loader multiplies them back by the network input size. fx = 0.58 W ~ 721 px at 1242."""

STEREO_SCALE_FACTOR = 5.4
"""Metres per training unit for stereo-trained models: training uses a stereo baseline of 0.1, the
real KITTI baseline is 0.54 m, so predicted depth times 0.54 / 0.1 = 5.4 is metric."""

GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
"""Eigen evaluation crop (Garg et al.) as fractions of (H, H, W, W): rows [int(f0 H), int(f1 H)),
columns [int(f2 W), int(f3 W)). On 375 x 1242 this is rows 153:371, columns 44:1197."""

MIN_EVAL_DEPTH = 1e-3
"""Ground-truth and prediction floor in metres for KITTI evaluation (the reference's value)."""

MAX_EVAL_DEPTH = 80.0
"""Cap in metres: LiDAR returns beyond 80 m are sparse and noisy, so the Eigen protocol drops them."""

KITTI_DEPTH_PNG_SCALE = 256.0
"""The annotated KITTI depth PNGs store uint16 metres x 256 (0 marks a pixel without depth)."""

DUPLICATE_MODES = ("reference", "correct")

# Characters that may make up a numeric calibration value; anything else keeps the value a string
# (e.g. ``calib_time: 09-Jan-2012 13:57:47``). The same set the reference uses.
_FLOAT_CHARS = frozenset("0123456789.e+- ")


def read_calib_file(path: str | os.PathLike) -> dict[str, np.ndarray | str]:
    """Read a KITTI calibration text file of ``key: values`` lines.

    A value made only of the characters ``0-9 . e + -`` and spaces is parsed as a float64 array
    split on single spaces; any other value (or one that fails to parse, e.g. double spaces) is
    kept as the stripped string. Blank lines are skipped.

    Args:
        path: e.g. ``{data_path}/2011_09_26/calib_cam_to_cam.txt``.

    Returns:
        Mapping from key to a 1-D float64 array or a string.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a non-blank line has no ``:``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path} (check --data_path and the date "
                                "folder)")
    data: dict[str, np.ndarray | str] = {}
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if ":" not in line:
                raise ValueError(f"{path}:{line_number}: expected 'key: values', got {line.rstrip()!r}")
            key, value = line.split(":", 1)
            value = value.strip()
            data[key] = value
            if _FLOAT_CHARS.issuperset(value):
                try:
                    data[key] = np.array([float(x) for x in value.split(" ")])
                except ValueError:
                    pass
    return data


def load_velodyne_points(path: str | os.PathLike) -> np.ndarray:
    """Load a KITTI velodyne scan as homogeneous points.

    Args:
        path: ``.bin`` file of float32 records (x, y, z, reflectance) in the velodyne frame, metres.

    Returns:
        N x 4 float32 array (x, y, z, 1): the reflectance column is replaced by 1.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file size is not a multiple of 16 bytes (4 float32 per point).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velodyne scan not found: {path}")
    size = path.stat().st_size
    if size % 16:
        raise ValueError(f"{path}: {size} bytes is not a multiple of 16; a KITTI scan holds float32 "
                         "(x, y, z, reflectance) records")
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    points[:, 3] = 1.0
    return points


def calib_values(calib: dict[str, np.ndarray | str], key: str, count: int, path: str | os.PathLike) -> np.ndarray:
    """The ``count`` numbers stored under ``key`` in a parsed calibration file, as float64.

    Raises:
        ValueError: naming ``path``, ``key`` and what was expected: the key is missing, its value
            is not numeric, or it holds another number of values (a truncated or foreign file).
    """
    if key not in calib:
        raise ValueError(f"calibration file {path} has no '{key}' entry (expected {count} numbers); the file "
                         "is incomplete or not a KITTI calibration file: re-extract it from the KITTI archive")
    value = calib[key]
    if isinstance(value, str):
        raise ValueError(f"calibration file {path}: '{key}' should hold {count} numbers, got the text "
                         f"{value[:60]!r}; re-extract the file from the KITTI archive")
    if value.size != count:
        raise ValueError(f"calibration file {path}: '{key}' should hold {count} numbers, found {value.size}; "
                         "re-extract the file from the KITTI archive")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"calibration file {path}: '{key}' holds non-finite values ({value.tolist()}); "
                         "re-extract the file from the KITTI archive")
    return value


def _velo_to_image_projection(calib_dir: Path, cam: int) -> tuple[np.ndarray, tuple[int, int]]:
    """P_rect_0{cam} @ R_rect_00 @ [R|T]_velo_to_cam (3 x 4, float64) and the (h, w) of S_rect_02.

    Raises:
        ValueError: naming the file and key when an entry is missing or has the wrong length.
    """
    cam2cam_path = calib_dir / "calib_cam_to_cam.txt"
    velo2cam_path = calib_dir / "calib_velo_to_cam.txt"
    cam2cam = read_calib_file(cam2cam_path)
    velo2cam_calib = read_calib_file(velo2cam_path)
    velo2cam = np.eye(4)
    velo2cam[:3, :3] = calib_values(velo2cam_calib, "R", 9, velo2cam_path).reshape(3, 3)
    velo2cam[:3, 3] = calib_values(velo2cam_calib, "T", 3, velo2cam_path)
    r_rect = np.eye(4)
    r_rect[:3, :3] = calib_values(cam2cam, "R_rect_00", 9, cam2cam_path).reshape(3, 3)
    p_rect = calib_values(cam2cam, f"P_rect_0{cam}", 12, cam2cam_path).reshape(3, 4)
    # The reference reads the size of camera 2 whatever `cam` is; the colour cameras share it.
    width, height = calib_values(cam2cam, "S_rect_02", 2, cam2cam_path).astype(np.int32)
    if width <= 0 or height <= 0:
        raise ValueError(f"calibration file {cam2cam_path}: 'S_rect_02' should hold a positive image size "
                         f"(width height), got {width} {height}")
    return p_rect @ r_rect @ velo2cam, (int(height), int(width))


def generate_depth_map(
    calib_dir: str | os.PathLike,
    velo_path: str | os.PathLike,
    cam: int = 2,
    vel_depth: bool = False,
    duplicates: str = "reference",
) -> np.ndarray:
    """Project a velodyne scan into a rectified camera as a sparse depth map (reference GT export).

    Steps, as in the reference: keep points with forward x >= 0; project with
    ``P_rect_0{cam} R_rect_00 [R|T]``; depth is the camera z (or the velodyne x when
    ``vel_depth``); pixel = ``round(u) - 1, round(v) - 1`` (numpy's round half to even, the MATLAB
    devkit's 1-based offset), so a point whose projection is ``(u, v)`` lands one pixel up-left of
    the pixel it projects onto; points outside the image are dropped; the map is filled in scan
    order so later points overwrite earlier ones; then duplicates are resolved; negative depths
    become 0. The image size comes from ``S_rect_02`` even for camera 3.

    Duplicate handling:
        ``"reference"``: pixels are keyed by the reference's linear index ``v (w - 1) + u - 1``,
        which is wrong (it should be ``v w + u``) and makes pixel ``(v, w - 1)`` share a key with
        ``(v + 1, 0)``. For each key seen more than once, the pixel of the key's first point gets
        the minimum depth over all points with that key. Kept because the published KITTI
        ``gt_depths.npz`` was made this way.
        ``"correct"``: keyed by ``v w + u``; every pixel hit more than once gets its nearest depth.

    Args:
        calib_dir: folder holding ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt``.
        velo_path: the scan's ``.bin`` file.
        cam: rectified camera index (2 = left colour, 3 = right colour).
        vel_depth: store the velodyne forward distance instead of the camera z (the Eigen GT does).
        duplicates: ``"reference"`` or ``"correct"``, see above.

    Returns:
        H x W float32 depth map in metres, 0 where no point landed.
    """
    if duplicates not in DUPLICATE_MODES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_MODES}, got {duplicates!r}")
    p_velo2im, (height, width) = _velo_to_image_projection(Path(calib_dir), cam)

    velo = load_velodyne_points(velo_path)
    velo = velo[velo[:, 0] >= 0, :]

    # float64, like the reference (float32 points times float64 calibration), so rounding agrees.
    projected = velo @ p_velo2im.T
    z = projected[:, 2]
    u = np.round(projected[:, 0] / z) - 1
    v = np.round(projected[:, 1] / z) - 1
    depth = velo[:, 0].astype(np.float64) if vel_depth else z

    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height)
    u = u[inside].astype(np.int64)
    v = v[inside].astype(np.int64)
    depth = depth[inside]

    depth_map = np.zeros((height, width), dtype=np.float64)
    # numpy fancy assignment keeps the last write for repeated indices: later points win.
    depth_map[v, u] = depth

    keys = v * (width - 1) + u - 1 if duplicates == "reference" else v * width + u
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True,
                                          return_counts=True)
    inverse = inverse.reshape(-1)
    group_min = np.full(len(counts), np.inf)
    np.minimum.at(group_min, inverse, depth)
    repeated = counts > 1
    # Distinct keys have distinct first pixels (a pixel has one key), so these writes never clash.
    depth_map[v[first[repeated]], u[first[repeated]]] = group_min[repeated]

    depth_map[depth_map < 0] = 0
    return depth_map.astype(np.float32)


def read_kitti_depth_png(path: str | os.PathLike) -> np.ndarray:
    """Read an annotated KITTI depth PNG (``proj_depth/groundtruth/...``).

    Args:
        path: 16-bit PNG holding metres x 256.

    Returns:
        H x W float32 depth in metres; 0 marks pixels without ground truth.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the PNG is not single-channel 16-bit.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotated depth PNG not found: {path}")
    with Image.open(path) as image:
        mode = image.mode
        array = np.array(image)
    if array.ndim != 2 or mode not in ("I;16", "I;16B", "I"):
        raise ValueError(f"{path}: expected a single-channel 16-bit depth PNG (metres x 256), got mode "
                         f"{mode} with shape {array.shape}")
    return array.astype(np.float32) / KITTI_DEPTH_PNG_SCALE


# --------------------------------------------------------------------------------------------
# OXTS (GPS/IMU) packets: the camera's travel between frames, for velocity supervision
# --------------------------------------------------------------------------------------------

EARTH_RADIUS_M = 6378137.0
"""Equatorial radius of the WGS84 ellipsoid, the one KITTI's devkit projects GPS with."""

OXTS_PACKET_VALUES = 30
"""Numbers on one line of ``oxts/data/NNNNNNNNNN.txt``: lat, lon, alt, roll, pitch, yaw, then
velocities, accelerations, angular rates, accuracies and status (KITTI's dataformat.txt)."""


def oxts_packet_path(drive_folder: str | os.PathLike, frame_index: int) -> Path:
    """``<drive>/oxts/data/<frame:010d>.txt``: the GPS/IMU packet recorded with ``frame_index``."""
    return Path(drive_folder) / "oxts" / "data" / f"{frame_index:010d}.txt"


def read_oxts_packet(path: str | os.PathLike) -> np.ndarray:
    """The ``OXTS_PACKET_VALUES`` float64 numbers of one packet file (lat and lon in degrees,
    alt in metres, roll, pitch, yaw in radians first).

    Raises:
        FileNotFoundError, ValueError: naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OXTS packet not found: {path}. Velocity supervision reads the drive's "
                                "oxts/data folder: unpack the drive's *_sync.zip with its oxts folder, or set "
                                "--velocity_weight 0")
    try:
        values = np.array(path.read_text(encoding="utf-8").split(), dtype=np.float64)
    except ValueError:
        raise ValueError(f"OXTS packet {path} holds non-numeric values; re-extract it from the KITTI archive") from None
    if values.size != OXTS_PACKET_VALUES:
        raise ValueError(f"OXTS packet {path} holds {values.size} numbers, expected {OXTS_PACKET_VALUES}; "
                         "re-extract it from the KITTI archive")
    return values


def mercator_scale(latitude_deg: float) -> float:
    """cos(latitude): the devkit's Mercator scale, taken at a drive's first frame."""
    return float(np.cos(np.deg2rad(latitude_deg)))


def oxts_position(packet: np.ndarray, scale: float) -> np.ndarray:
    """The packet's position in metres (east, north, up) on the Mercator map of ``scale``.

    KITTI devkit's ``latlonToMercator``: x = s r lon pi/180, y = s r ln(tan((90 + lat) pi/360)),
    z = alt, with r the earth radius and s = `mercator_scale` of the drive's first frame.
    """
    latitude, longitude, altitude = packet[0], packet[1], packet[2]
    x = scale * EARTH_RADIUS_M * np.deg2rad(longitude)
    y = scale * EARTH_RADIUS_M * np.log(np.tan(np.deg2rad(90.0 + latitude) / 2.0))
    return np.array([x, y, altitude], dtype=np.float64)


def oxts_travel(packet_a: np.ndarray, packet_b: np.ndarray, scale: float) -> float:
    """Distance in metres between the IMU positions of two packets (`oxts_position`).

    This is the norm of the translation between the two IMU poses. The camera's travel differs
    only by the IMU-to-camera lever arm (about a metre) swept by the rotation between the frames:
    millimetres on straight roads, at most about 2 cm for consecutive frames in a sharp turn.
    A norm needs no frame change, so the calibration chain IMU -> velodyne -> camera is not
    applied.
    """
    return float(np.linalg.norm(oxts_position(packet_b, scale) - oxts_position(packet_a, scale)))
