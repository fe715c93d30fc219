"""Synthetic street drives written in the exact KITTI raw layout, for tests and the offline demo.

No dataset can be downloaded where this project is tested, so this script renders one that the
very same KITTI loader reads and that a depth network can learn from by self-supervision::

    <root>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt
    <root>/<date>/<date>_drive_NNNN_sync/image_02/data/%010d.png      left colour camera
    <root>/<date>/<date>_drive_NNNN_sync/image_03/data/%010d.png      right camera, 0.54 m right
    <root>/<date>/<date>_drive_NNNN_sync/velodyne_points/data/%010d.bin
    <root>/<date>/<date>_drive_NNNN_sync/{image_02,image_03,velodyne_points}/timestamps.txt
    <root>/<date>/<date>_drive_NNNN_sync/poses_cam02.txt             ground-truth poses
    <root>/<date>/<date>_drive_NNNN_sync/oxts/data/%010d.txt          GPS/IMU packets
    <root>/splits/synthetic/{train,val}_files.txt                     all drives but the last
    <root>/splits/synthetic_test/test_files.txt                       the held-out last drive
    <root>/synthetic_info.json

Frames and conventions:

- World frame: the camera-02 frame of frame 0 (x right, y down, z forward), as in KITTI odometry
  poses; the road is the plane y = CAMERA_HEIGHT_M. ``poses_cam02.txt`` holds, per frame, the 12
  row-major values of the 3 x 4 camera-02-to-world matrix.
- Cameras: every camera looks along the path with zero pitch and roll. Pixel (u, v), integer
  indices, views the ray ((u - cx) / fx, (v - cy) / fy, 1) with fx = 0.58 W, fy = 1.92 H,
  cx = W / 2, cy = H / 2: the KITTI loader's normalised intrinsics and the convention of the
  training code's back-projection. The calibration files carry the same numbers.
- Velodyne: x forward, y left, z up, 0.08 m above and 0.27 m behind camera 0.
- OXTS: the IMU (at ``IMU_TO_VELO_T`` in the velodyne frame, axes the velodyne's) is placed on a
  Mercator map (east = world x, north = world z, up = -world y) around ``OXTS_ORIGIN``, and its
  latitude and longitude are inverted from that map with the Mercator scale of frame 0, so that
  KITTI devkit's conversion (`kitti_utils.oxts_position`) gives back the scene's metres. Yaw is
  the heading (0 = east, counter-clockwise); roll, pitch and the other 24 values are 0.
- ``kitti_utils.generate_depth_map`` puts a point projecting to (u, v) at pixel
  (round(u) - 1, round(v) - 1), so its map at [v, u] samples the render at [v + 1, u + 1].

The scene is a textured road between building facades with cars, poles and small boxes, lit by a
fixed sun: every surface point has the same colour in every frame and both cameras. Cameras and
LiDAR use one ray caster (planes plus yaw-oriented boxes), so their geometry is identical.
"""

from __future__ import annotations

import argparse
import colorsys
import datetime as dt
import json
import logging
import multiprocessing as mp
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from config_files import parse_args_with_config
from kitti_utils import KITTI_FULL_RES, KITTI_NORMALIZED_K
from utils import atomic_output, configure_logging

logger = logging.getLogger(__name__)

SYNTHETIC_VERSION = 1
"""Bumped whenever the rendered content changes for the same flags."""

INFO_FILE = "synthetic_info.json"
TRAIN_SPLIT = "synthetic"
TEST_SPLIT = "synthetic_test"
VAL_FRACTION = 0.1
TEST_LINES_TARGET = 20
"""Default test stride aims at about this many test lines per held-out drive."""

# ----------------------------------------------------------------------------------------- the rig
CAMERA_HEIGHT_M = 1.65
"""All cameras sit 1.65 m above the road, as on the KITTI car."""
CAMERA_X_OFFSETS_M = {0: 0.0, 1: 0.54, 2: -0.06, 3: 0.48}
"""Position of each rectified camera along the rig's x axis (right), relative to camera 0, as on
the KITTI rig: the colour pair 2/3 has the 0.54 m baseline of the grey pair 0/1."""
STEREO_BASELINE_M = CAMERA_X_OFFSETS_M[3] - CAMERA_X_OFFSETS_M[2]
VELO_ABOVE_CAM0_M = 0.08
VELO_BEHIND_CAM0_M = 0.27
VELO_TO_CAM0_R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
"""Velodyne axes (forward, left, up) to camera axes (right, down, forward); the real
calibration is this permutation to within a degree."""
IMU_TO_VELO_T = (-0.81, 0.32, -0.80)
"""The IMU/GPS unit's position in the velodyne frame (metres), rounded from the real calibration."""
FRAME_PERIOD_S = 0.1
"""KITTI raw is recorded at 10 Hz."""
OXTS_ORIGIN = (49.0, 8.4, 110.0)
"""Latitude, longitude (degrees) and altitude (metres) of the world origin, near Karlsruhe."""

# --------------------------------------------------------------------------------------- the LiDAR
LIDAR_BEAMS = 64
LIDAR_ELEVATION_RANGE_DEG = (2.0, -24.8)
"""HDL-64E vertical field of view, top beam first."""
LIDAR_AZIMUTH_STEPS = 2000
LIDAR_MAX_RANGE_M = 120.0
LIDAR_FOOTPRINT_M = 0.1
"""Texture scale seen by one LiDAR return (beam width at a typical range) for its reflectance."""

# ---------------------------------------------------------------------------------- path and scene
PATH_STEP_M = 0.25
PATH_BEHIND_M = 80.0
"""Scene laid out this far behind the first frame: the LiDAR sees all around."""
PATH_AHEAD_M = 160.0
"""... and this far beyond the last frame, past what the cameras resolve."""
SPEED_RANGE_M = (0.5, 1.5)
"""Distance driven per frame (5 to 15 m/s at 10 Hz)."""
MAX_CURVATURE_PER_M = 1.0 / 70.0
"""Tightest turn radius 70 m: at most ~1.2 degrees of yaw per frame, and the road-coordinate
grid's 25 m band stays one-to-one on the inside of bends."""
CLEARANCE_M = 1.3
"""No box comes closer than this to the camera path (the rig is 0.6 m wide)."""

ROAD_RIGHT_M = 3.5
ROAD_LEFT_M = 5.5
"""The road spans lateral offsets [-5.5, 3.5] m from the path (positive = right): the car keeps
to the right lane; the dashed centre line is at -1.0 m."""
SIDEWALK_WIDTH_M = 2.0
CURB_WIDTH_M = 0.15
ROAD_GRID_BAND_M = 25.0
ROAD_GRID_CELL_M = 0.2

NEAR_M = 0.05
SUN_DIRECTION = np.array([0.45, -0.8, 0.35]) / np.linalg.norm([0.45, -0.8, 0.35])
"""Towards the sun, world frame (y down): high, to the right and ahead at frame 0."""
AMBIENT = 0.6

# Materials of the boxes; the ground is shaded separately.
FACADE, CAR_BODY, CAR_CABIN, POLE, SMALL_BOX = range(5)

# Value-noise octaves, wavelengths in metres. Each octave fades out where a pixel's footprint on
# the surface exceeds a quarter of its wavelength, which avoids aliasing at distance.
DETAIL_WAVELENGTHS_M = (0.07, 0.19, 0.53, 1.45)
DETAIL_AMPLITUDES = (0.7, 0.9, 1.0, 0.8)
COLOUR_MIX_WAVELENGTH_M = 3.7
NOISE_TABLE_SIZE = 256


# ================================================================================ rig and calibration
def camera_intrinsics(width: int, height: int) -> np.ndarray:
    """3 x 3 float64 K in pixels: the KITTI loader's normalised K times the image size."""
    k = KITTI_NORMALIZED_K[:3, :3].astype(np.float64).copy()
    k[0] *= width
    k[1] *= height
    return k


def _fmt(values: Sequence[float] | np.ndarray) -> str:
    # KITTI writes every number as %e; adding 0.0 turns -0.0 into 0.0.
    return " ".join(f"{float(x) + 0.0:e}" for x in np.ravel(values))


def _calib_time(date: str) -> str:
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    day = dt.datetime.strptime(date, "%Y_%m_%d")
    return f"{day.day:02d}-{months[day.month - 1]}-{day.year} 09:00:00"


def calibration_texts(width: int, height: int, date: str) -> dict[str, str]:
    """Contents of the three calibration files, in the real files' keys and number format.

    ``P_rect_0i = K [I | t_i]`` with ``t_i = (-x_i, 0, 0)`` (camera 0's origin seen from camera
    i), so ``P[0, 3] = -fx x_i`` as in KITTI; no distortion and ``R_rect_00 = I``.
    """
    k = camera_intrinsics(width, height)
    size = (width, height)
    lines = [f"calib_time: {_calib_time(date)}", f"corner_dist: {_fmt([0.0995])}"]
    for cam, x_offset in CAMERA_X_OFFSETS_M.items():
        p_rect = np.hstack([k, np.array([[-k[0, 0] * x_offset], [0.0], [0.0]])])
        lines += [
            f"S_0{cam}: {_fmt(size)}",
            f"K_0{cam}: {_fmt(k)}",
            f"D_0{cam}: {_fmt(np.zeros(5))}",
            f"R_0{cam}: {_fmt(np.eye(3))}",
            f"T_0{cam}: {_fmt([-x_offset, 0.0, 0.0])}",
            f"S_rect_0{cam}: {_fmt(size)}",
            f"R_rect_0{cam}: {_fmt(np.eye(3))}",
            f"P_rect_0{cam}: {_fmt(p_rect)}",
        ]
    cam_to_cam = "\n".join(lines) + "\n"
    velo_to_cam = "\n".join([
        f"calib_time: {_calib_time(date)}",
        f"R: {_fmt(VELO_TO_CAM0_R)}",
        f"T: {_fmt([0.0, -VELO_ABOVE_CAM0_M, -VELO_BEHIND_CAM0_M])}",
        f"delta_f: {_fmt([0.0, 0.0])}",
        f"delta_c: {_fmt([0.0, 0.0])}",
    ]) + "\n"
    imu_to_velo = "\n".join([
        f"calib_time: {_calib_time(date)}",
        f"R: {_fmt(np.eye(3))}",
        f"T: {_fmt(IMU_TO_VELO_T)}",
    ]) + "\n"
    return {"calib_cam_to_cam.txt": cam_to_cam, "calib_velo_to_cam.txt": velo_to_cam,
            "calib_imu_to_velo.txt": imu_to_velo}


# ============================================================================================ path
class _SmoothSignal:
    """A sum of a few random sinusoids, normalised to [-1, 1]: smooth, seeded, non-periodic."""

    def __init__(self, rng: np.random.Generator, period_range: tuple[float, float], terms: int = 3):
        self.omega = 2 * np.pi / rng.uniform(*period_range, size=terms)
        self.phase = rng.uniform(0, 2 * np.pi, size=terms)
        amplitude = rng.uniform(0.5, 1.0, size=terms)
        self.amplitude = amplitude / amplitude.sum()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)[..., None]
        return (self.amplitude * np.sin(self.omega * x + self.phase)).sum(-1)


@dataclass(frozen=True)
class DrivePath:
    """The road's centre path, sampled by arc length.

    Attributes:
        s: (M,) arc length in metres, uniform steps; s = 0 is frame 0.
        xz: (M, 2) world x and z of the path.
        heading: (M,) yaw in radians about the world y axis; 0 faces +z, positive turns right.
    """

    s: np.ndarray
    xz: np.ndarray
    heading: np.ndarray

    def sample(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Linearly interpolated (..., 2) position and (...) heading at arc lengths ``s``."""
        s = np.asarray(s, dtype=np.float64)
        x = np.interp(s, self.s, self.xz[:, 0])
        z = np.interp(s, self.s, self.xz[:, 1])
        return np.stack([x, z], axis=-1), np.interp(s, self.s, self.heading)


def _integrate_path(curvature: _SmoothSignal, s_min: float, s_max: float) -> DrivePath:
    """Integrate heading (trapezoid) and position (midpoint heading per step) from s = 0."""
    n_back = int(np.ceil(-s_min / PATH_STEP_M))
    s = PATH_STEP_M * np.arange(-n_back, int(np.ceil(s_max / PATH_STEP_M)) + 1)
    kappa = MAX_CURVATURE_PER_M * curvature(s)
    heading = np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * PATH_STEP_M)])
    mid = 0.5 * (heading[1:] + heading[:-1])
    xz = np.concatenate([[[0.0, 0.0]], np.cumsum(PATH_STEP_M * np.stack([np.sin(mid), np.cos(mid)], -1), 0)])
    # Frame 0 sits at s = 0 with the identity pose: shift both so that sample is the origin.
    return DrivePath(s=s, xz=xz - xz[n_back], heading=heading - heading[n_back])


def _yaw_matrix(heading: float) -> np.ndarray:
    """Rotation about the world y axis: columns are the rig's right, down and forward axes."""
    c, s = np.cos(heading), np.sin(heading)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# =========================================================================================== scene
@dataclass(frozen=True)
class Boxes:
    """Boxes resting on the road plane, each rotated about the vertical axis only.

    Attributes (N boxes):
        center: (N, 3) world centre, metres.
        yaw: (N,) rotation about world y; the box's local x axis is (cos yaw, 0, -sin yaw) and its
            local z axis (sin yaw, 0, cos yaw).
        half: (N, 3) half sizes along local x, y, z, metres.
        material: (N,) one of FACADE, CAR_BODY, CAR_CABIN, POLE, SMALL_BOX.
        colour_a, colour_b: (N, 3) RGB albedos in [0, 1], mixed by low-frequency noise.
        contrast: (N,) strength of the detail noise.
        tex_offset: (N, 2) texture-coordinate offset in metres, so no two boxes look alike.
        pattern: (N, 4) facade windows: column period, floor height, window width and height
            fractions (metres, metres, -, -).
        window_colour: (N, 3) RGB of facade windows.
    """

    center: np.ndarray
    yaw: np.ndarray
    half: np.ndarray
    material: np.ndarray
    colour_a: np.ndarray
    colour_b: np.ndarray
    contrast: np.ndarray
    tex_offset: np.ndarray
    pattern: np.ndarray
    window_colour: np.ndarray

    def __len__(self) -> int:
        return len(self.yaw)

    def face_shading(self) -> np.ndarray:
        """(N, 6) constant Lambert factor of faces -x, +x, -y, +y, -z, +z under the fixed sun."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        zeros = np.zeros_like(c)
        axes = [np.stack([c, zeros, -s], -1), np.stack([zeros, zeros + 1.0, zeros], -1),
                np.stack([s, zeros, c], -1)]
        shade = []
        for axis in axes:
            lit = axis @ SUN_DIRECTION
            shade += [AMBIENT + (1 - AMBIENT) * np.maximum(-lit, 0),
                      AMBIENT + (1 - AMBIENT) * np.maximum(lit, 0)]
        return np.stack(shade, -1).astype(np.float32)


@dataclass(frozen=True)
class RoadGrid:
    """Road coordinates (arc length s, lateral offset) of the path on a world x-z grid.

    ``s`` and ``lateral`` are (rows = z, cols = x) float32 arrays, NaN beyond
    ROAD_GRID_BAND_M from the path; cell (i, j) has its centre at origin + (j, i) * cell.
    """

    origin: tuple[float, float]
    cell: float
    s: np.ndarray
    lateral: np.ndarray


@dataclass(frozen=True)
class DriveScene:
    """Everything needed to render one drive: path, frame positions, boxes and surface colours.

    Attributes:
        drive: drive number (1-based, as in the folder name).
        path: the road's centre path.
        frame_s: (F,) arc length of camera 2 at each frame, metres.
        boxes: the scene's boxes.
        face_shading: (N, 6) float32 ``boxes.face_shading()``.
        road_grid: road coordinates for texturing the ground.
        ground_colours: named float32 RGB albedos of the ground materials.
        box_f32: float32 per-box arrays for shading (cos, sin, cx, cy, cz, hx, hy, hz, tex_u, tex_v).
    """

    drive: int
    path: DrivePath
    frame_s: np.ndarray
    boxes: Boxes
    face_shading: np.ndarray
    road_grid: RoadGrid
    ground_colours: dict
    box_f32: dict

    @property
    def num_frames(self) -> int:
        return len(self.frame_s)

    def rig_to_world(self, frame: int) -> np.ndarray:
        """4 x 4 camera-2-to-world pose of ``frame`` (the KITTI odometry pose)."""
        xz, heading = self.path.sample(self.frame_s[frame])
        pose = np.eye(4)
        pose[:3, :3] = _yaw_matrix(float(heading))
        pose[0, 3], pose[2, 3] = xz
        return pose

    def camera_to_world(self, frame: int, cam: int) -> np.ndarray:
        """4 x 4 pose of rectified camera ``cam`` (0-3) at ``frame``; all share one rotation."""
        pose = self.rig_to_world(frame)
        pose[:3, 3] += pose[:3, 0] * (CAMERA_X_OFFSETS_M[cam] - CAMERA_X_OFFSETS_M[2])
        return pose

    def velodyne_to_world(self, frame: int) -> np.ndarray:
        """4 x 4 pose of the velodyne (x forward, y left, z up) at ``frame``."""
        cam0 = self.camera_to_world(frame, 0)
        velo_to_cam0 = np.eye(4)
        velo_to_cam0[:3, :3] = VELO_TO_CAM0_R
        velo_to_cam0[:3, 3] = [0.0, -VELO_ABOVE_CAM0_M, -VELO_BEHIND_CAM0_M]
        return cam0 @ velo_to_cam0


_FACADE_PALETTE = np.array([
    [0.78, 0.70, 0.58], [0.62, 0.33, 0.26], [0.62, 0.62, 0.64], [0.86, 0.85, 0.82],
    [0.80, 0.62, 0.35], [0.60, 0.68, 0.75], [0.55, 0.60, 0.52], [0.70, 0.52, 0.45],
])
_SMALL_BOX_PALETTE = np.array([[0.55, 0.42, 0.28], [0.35, 0.45, 0.30], [0.62, 0.56, 0.40],
                               [0.30, 0.35, 0.55], [0.70, 0.30, 0.20]])


class _BoxList:
    """Accumulates boxes while a scene is laid out."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, rng: np.random.Generator, center_xz, bottom_gap: float, height: float, yaw: float,
            half_x: float, half_z: float, material: int, colour_a, colour_b, contrast: float,
            pattern=(1.0, 1.0, 0.0, 0.0), window_colour=(0.0, 0.0, 0.0)) -> None:
        half_y = height / 2
        center = np.array([center_xz[0], CAMERA_HEIGHT_M - bottom_gap - half_y, center_xz[1]])
        self.rows.append(dict(center=center, yaw=yaw, half=np.array([half_x, half_y, half_z]),
                              material=material, colour_a=np.clip(colour_a, 0, 1),
                              colour_b=np.clip(colour_b, 0, 1), contrast=contrast,
                              tex_offset=rng.uniform(0, 100, size=2), pattern=np.array(pattern, float),
                              window_colour=np.array(window_colour, float)))

    def build(self) -> Boxes:
        def stack(key, dtype):
            return np.array([row[key] for row in self.rows], dtype=dtype)

        f32 = np.float32
        return Boxes(center=stack("center", np.float64), yaw=stack("yaw", np.float64),
                     half=stack("half", np.float64), material=stack("material", np.int8),
                     colour_a=stack("colour_a", f32), colour_b=stack("colour_b", f32),
                     contrast=stack("contrast", f32), tex_offset=stack("tex_offset", f32),
                     pattern=stack("pattern", f32), window_colour=stack("window_colour", f32))


def _place(path: DrivePath, s: float, lateral: float, yaw_jitter: float = 0.0) -> tuple[np.ndarray, float]:
    """World (x, z) ``lateral`` metres right of the path at ``s``, and the path's heading there."""
    xz, heading = path.sample(s)
    right = np.array([np.cos(heading), -np.sin(heading)])
    return xz + lateral * right, float(heading) + yaw_jitter


def _lay_out_boxes(rng: np.random.Generator, path: DrivePath) -> _BoxList:
    boxes = _BoxList()
    s_lo, s_hi = path.s[0], path.s[-1]
    for side in (1, -1):
        road_edge = ROAD_RIGHT_M if side > 0 else ROAD_LEFT_M
        sidewalk_out = road_edge + SIDEWALK_WIDTH_M

        # Facades: buildings of varying length, setback and height, with occasional gaps.
        s = s_lo + rng.uniform(0, 10)
        while s < s_hi:
            length = rng.uniform(8, 26)
            if rng.random() < 0.85:
                front = sidewalk_out + rng.uniform(0, 20 - sidewalk_out)
                depth = rng.uniform(8, 16)
                base = _FACADE_PALETTE[rng.integers(len(_FACADE_PALETTE))] * rng.uniform(0.85, 1.1)
                other = _FACADE_PALETTE[rng.integers(len(_FACADE_PALETTE))]
                center, yaw = _place(path, s + length / 2, side * (front + depth / 2))
                window = np.array([0.16, 0.2, 0.27]) * rng.uniform(0.7, 1.4)
                pattern = (rng.uniform(1.8, 3.2), rng.uniform(2.8, 3.6), rng.uniform(0.35, 0.6),
                           rng.uniform(0.4, 0.6))
                boxes.add(rng, center, 0.0, rng.uniform(5, 22), yaw, depth / 2, length / 2, FACADE,
                          base, 0.7 * base + 0.3 * other, rng.uniform(0.3, 0.5), pattern, window)
            gap = rng.uniform(0, 1.5) if rng.random() < 0.6 else rng.uniform(4, 15)
            s += length + gap

        # Parked cars: a body and a cabin, close to the road edge.
        s = s_lo + rng.uniform(0, 10)
        while s < s_hi:
            if rng.random() < 0.55:
                length, width = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.9)
                lateral = side * (road_edge - 0.95 + rng.uniform(-0.15, 0.15))
                center, yaw = _place(path, s, lateral, rng.uniform(-0.05, 0.05))
                h, sat, val = rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.9)
                body = np.array(colorsys.hsv_to_rgb(h, sat, val))
                body_height = rng.uniform(0.85, 1.1)
                boxes.add(rng, center, 0.0, body_height, yaw, width / 2, length / 2, CAR_BODY, body,
                          0.8 * body, 0.15)
                forward = np.array([np.sin(yaw), np.cos(yaw)])
                cabin_center = center - forward * rng.uniform(-0.1, 0.3)
                boxes.add(rng, cabin_center, body_height, rng.uniform(0.45, 0.65), yaw, 0.45 * width,
                          rng.uniform(0.25, 0.32) * length, CAR_CABIN, [0.12, 0.14, 0.18],
                          [0.22, 0.24, 0.28], 0.3)
            s += rng.uniform(6, 22)

        # Poles on the sidewalk.
        s = s_lo + rng.uniform(0, 10)
        while s < s_hi:
            size = rng.uniform(0.12, 0.22)
            center, yaw = _place(path, s, side * (road_edge + rng.uniform(0.4, 1.7)))
            grey = rng.uniform(0.35, 0.6)
            boxes.add(rng, center, 0.0, rng.uniform(3.5, 8.0), yaw, size / 2, size / 2, POLE,
                      [grey, grey, grey * 1.05], [grey * 0.7] * 3, 0.3)
            s += rng.uniform(12, 30)

        # Small boxes (bins, crates, planters) on the sidewalk.
        s = s_lo + rng.uniform(0, 10)
        while s < s_hi:
            if rng.random() < 0.6:
                sx, sy, sz = rng.uniform(0.3, 1.2, size=3)
                center, yaw = _place(path, s, side * (road_edge + rng.uniform(0.3, 1.8)),
                                     rng.uniform(-0.6, 0.6))
                colour = _SMALL_BOX_PALETTE[rng.integers(len(_SMALL_BOX_PALETTE))]
                colour = colour * rng.uniform(0.8, 1.15)
                boxes.add(rng, center, 0.0, sy, yaw, sx / 2, sz / 2, SMALL_BOX, colour, 0.75 * colour,
                          0.4)
            s += rng.uniform(5, 20)
    return boxes


def _clear_of_path(boxes: Boxes, path: DrivePath) -> np.ndarray:
    """(N,) bool: the box keeps CLEARANCE_M from every path sample (a bend can bring a box close)."""
    keep = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        rel = path.xz - boxes.center[i, [0, 2]]
        c, s = np.cos(boxes.yaw[i]), np.sin(boxes.yaw[i])
        local_x = rel[:, 0] * c - rel[:, 1] * s
        local_z = rel[:, 0] * s + rel[:, 1] * c
        inside = ((np.abs(local_x) < boxes.half[i, 0] + CLEARANCE_M)
                  & (np.abs(local_z) < boxes.half[i, 2] + CLEARANCE_M))
        keep[i] = not inside.any()
    return keep


def _subset(boxes: Boxes, keep: np.ndarray) -> Boxes:
    return Boxes(**{name: getattr(boxes, name)[keep] for name in Boxes.__dataclass_fields__})


def _build_road_grid(path: DrivePath) -> RoadGrid:
    """Rasterise (s, lateral) of the band around the path onto a world grid, for ground texturing."""
    step = 0.5 * ROAD_GRID_CELL_M
    lateral = np.arange(-ROAD_GRID_BAND_M, ROAD_GRID_BAND_M + step / 2, step)
    s_all = np.arange(path.s[0], path.s[-1], step)
    corners_xz, _ = path.sample(s_all)
    reach = ROAD_GRID_BAND_M + 2 * ROAD_GRID_CELL_M
    origin = (float(corners_xz[:, 0].min() - reach), float(corners_xz[:, 1].min() - reach))
    cols = int(np.ceil((corners_xz[:, 0].max() + reach - origin[0]) / ROAD_GRID_CELL_M)) + 1
    rows = int(np.ceil((corners_xz[:, 1].max() + reach - origin[1]) / ROAD_GRID_CELL_M)) + 1
    grid_s = np.full((rows, cols), np.nan, dtype=np.float32)
    grid_lat = np.full((rows, cols), np.nan, dtype=np.float32)
    for chunk in np.array_split(s_all, max(1, len(s_all) // 400)):
        xz, heading = path.sample(chunk)
        tangent = np.stack([np.sin(heading), np.cos(heading)], -1)[:, None, :]
        right = np.stack([np.cos(heading), -np.sin(heading)], -1)[:, None, :]
        points = xz[:, None, :] + lateral[None, :, None] * right
        index = np.rint((points - origin) / ROAD_GRID_CELL_M).astype(np.int64)
        # Store the coordinates of the cell centre, not of the sample, so bilinear lookups are exact
        # to first order.
        offset = origin + index * ROAD_GRID_CELL_M - points
        cell_s = chunk[:, None] + (offset * tangent).sum(-1)
        cell_lat = lateral[None, :] + (offset * right).sum(-1)
        grid_s[index[..., 1], index[..., 0]] = cell_s
        grid_lat[index[..., 1], index[..., 0]] = cell_lat
    return RoadGrid(origin=origin, cell=ROAD_GRID_CELL_M, s=grid_s, lateral=grid_lat)


def build_drive_scene(seed: int, drive: int, num_frames: int) -> DriveScene:
    """Lay out one drive's random path, camera speeds and scene (deterministic in (seed, drive)).

    Args:
        seed: dataset seed (``--seed``).
        drive: drive number, 1-based.
        num_frames: frames in the drive.

    Returns:
        The drive's scene.
    """
    rng = np.random.default_rng([seed, drive])
    speed_signal = _SmoothSignal(rng, (20.0, 70.0))
    curvature = _SmoothSignal(rng, (60.0, 250.0))
    low, high = SPEED_RANGE_M
    speeds = (low + high) / 2 + (high - low) / 2 * speed_signal(np.arange(num_frames - 1))
    frame_s = np.concatenate([[0.0], np.cumsum(speeds)])
    path = _integrate_path(curvature, -PATH_BEHIND_M, frame_s[-1] + PATH_AHEAD_M)
    boxes = _lay_out_boxes(rng, path).build()
    boxes = _subset(boxes, _clear_of_path(boxes, path))
    # Brightness jitter with a faint tint, so greys stay grey.
    jitter = rng.uniform(0.88, 1.12, size=(6, 1)) * rng.uniform(0.97, 1.03, size=(6, 3))
    ground_colours = {
        "asphalt_a": np.array([0.34, 0.34, 0.36]) * jitter[0],
        "asphalt_b": np.array([0.26, 0.27, 0.28]) * jitter[1],
        "marking": np.array([0.88, 0.88, 0.84]),
        "curb": np.array([0.66, 0.65, 0.62]) * jitter[2],
        "sidewalk_a": np.array([0.62, 0.58, 0.52]) * jitter[3],
        "sidewalk_b": np.array([0.52, 0.50, 0.47]) * jitter[4],
        "verge_a": np.array([0.36, 0.42, 0.22]) * jitter[5],
        "verge_b": np.array([0.47, 0.41, 0.30]),
    }
    # float32 copies for shading, which runs on every pixel.
    box_f32 = {"cos": np.cos(boxes.yaw), "sin": np.sin(boxes.yaw), "cx": boxes.center[:, 0],
               "cy": boxes.center[:, 1], "cz": boxes.center[:, 2], "hx": boxes.half[:, 0],
               "hy": boxes.half[:, 1], "hz": boxes.half[:, 2], "tex_u": boxes.tex_offset[:, 0],
               "tex_v": boxes.tex_offset[:, 1]}
    return DriveScene(drive=drive, path=path, frame_s=frame_s, boxes=boxes,
                      face_shading=boxes.face_shading(), road_grid=_build_road_grid(path),
                      ground_colours={k: v.astype(np.float32) for k, v in ground_colours.items()},
                      box_f32={k: np.asarray(v, dtype=np.float32) for k, v in box_f32.items()})


# ====================================================================================== ray casting
@dataclass(frozen=True)
class RayGrid:
    """A grid of rays whose world directions are separable: ray (i, j) = (dx[j], dy[i], dz[j]).

    Level cameras and a level LiDAR both have this form: the horizontal part of a ray depends only
    on its column and the vertical part only on its row. The parameter t along a ray is the camera
    depth for cameras (the ray's camera z is 1) and the horizontal distance for the LiDAR.
    """

    origin: np.ndarray  # (3,) world, float64
    dx: np.ndarray  # (W,) float64
    dy: np.ndarray  # (H,) float64
    dz: np.ndarray  # (W,) float64


def _slab(origin: float, direction: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / direction
        t1 = (-half - origin) * inv
        t2 = (half - origin) * inv
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _runs(indices: np.ndarray) -> Iterator[tuple[int, int]]:
    """Contiguous [start, stop) runs of sorted indices."""
    if len(indices) == 0:
        return
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.concatenate([[indices[0]], indices[breaks + 1]])
    stops = np.concatenate([indices[breaks], [indices[-1]]]) + 1
    yield from zip(starts.tolist(), stops.tolist())


def cast_rays(scene: DriveScene, rays: RayGrid, near: float,
              max_t: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of every ray with the road plane and the scene's boxes.

    Each box is tested only on the rows and columns whose rays can reach it: the horizontal slab
    test on the (W,) column directions and the vertical one on the (H,) rows bound the block.

    Args:
        scene: the drive.
        rays: the ray grid (H rows, W columns).
        near: hits at t <= near are ignored.
        max_t: boxes farther than this (horizontally) are skipped; rays may still hit the road.

    Returns:
        t: (H, W) float32 ray parameter of the hit, inf where nothing is hit (sky).
        hit: (H, W) int32 box index, -1 for the road, -2 for nothing.
    """
    height, width = len(rays.dy), len(rays.dx)
    ox, oy, oz = rays.origin
    with np.errstate(divide="ignore"):
        t_ground = np.where(rays.dy > 0, (CAMERA_HEIGHT_M - oy) / rays.dy, np.inf)
    t = np.broadcast_to(t_ground.astype(np.float32)[:, None], (height, width)).copy()
    hit = np.where(np.isfinite(t), -1, -2).astype(np.int32)

    boxes = scene.boxes
    rel = boxes.center - rays.origin
    horizontal = np.hypot(rel[:, 0], rel[:, 2]) - np.hypot(boxes.half[:, 0], boxes.half[:, 2])
    for i in np.flatnonzero(horizontal < max_t):
        c, s = np.cos(boxes.yaw[i]), np.sin(boxes.yaw[i])
        hx, hy, hz = boxes.half[i]
        # The ray origin and directions in the box's local frame.
        lx = -rel[i, 0] * c + rel[i, 2] * s
        ly = -rel[i, 1]
        lz = -rel[i, 0] * s - rel[i, 2] * c
        tx0, tx1 = _slab(lx, rays.dx * c - rays.dz * s, hx)
        tz0, tz1 = _slab(lz, rays.dx * s + rays.dz * c, hz)
        col_near = np.maximum(tx0, tz0)
        col_far = np.minimum(tx1, tz1)
        col_ok = (col_near <= col_far) & (col_far > near)
        if not col_ok.any():
            continue
        ty0, ty1 = _slab(ly, rays.dy, hy)
        row_ok = (ty0 <= col_far[col_ok].max()) & (ty1 >= col_near[col_ok].min()) & (ty1 > near)
        rows = np.flatnonzero(row_ok)
        if len(rows) == 0:
            continue
        r0, r1 = rows[0], rows[-1] + 1
        row_near = ty0[r0:r1, None].astype(np.float32)
        row_far = ty1[r0:r1, None].astype(np.float32)
        for c0, c1 in _runs(np.flatnonzero(col_ok)):
            t_near = np.maximum(row_near, col_near[None, c0:c1].astype(np.float32))
            t_far = np.minimum(row_far, col_far[None, c0:c1].astype(np.float32))
            t_block = t[r0:r1, c0:c1]
            closer = (t_near <= t_far) & (t_near > near) & (t_near < t_block)
            np.copyto(t_block, t_near, where=closer)
            np.copyto(hit[r0:r1, c0:c1], np.int32(i), where=closer)
    return t, hit


# ========================================================================================= texture
# One fixed table for every dataset (surfaces differ by their texture offsets); the extra row and
# column repeat the first, so lattice neighbours never need a wrap-around.
_NOISE_TABLE = np.random.default_rng(20240601).random((NOISE_TABLE_SIZE + 1,) * 2, dtype=np.float32)
_NOISE_TABLE[-1, :] = _NOISE_TABLE[0, :]
_NOISE_TABLE[:, -1] = _NOISE_TABLE[:, 0]
_NOISE_FLAT = _NOISE_TABLE.ravel()
_NOISE_STRIDE = NOISE_TABLE_SIZE + 1


def _value_noise(a: np.ndarray, b: np.ndarray, wavelength: float, octave: int) -> np.ndarray:
    """Smooth lattice noise in [0, 1] of 2-D coordinates in metres (float32 in, float32 out)."""
    # Each octave's lattice is rotated differently, so no grid direction dominates the texture.
    angle = 0.7 + 1.3 * octave
    c, s = np.float32(np.cos(angle) / wavelength), np.float32(np.sin(angle) / wavelength)
    x = a * c + b * s + np.float32(17.3 * octave)
    y = b * c - a * s + np.float32(41.9 * octave)
    xf = np.floor(x)
    yf = np.floor(y)
    fx = x - xf
    fy = y - yf
    index = (yf.astype(np.int32) & (NOISE_TABLE_SIZE - 1)) * _NOISE_STRIDE
    index += xf.astype(np.int32) & (NOISE_TABLE_SIZE - 1)
    v00 = _NOISE_FLAT.take(index)
    v10 = _NOISE_FLAT.take(index + 1)
    v01 = _NOISE_FLAT.take(index + _NOISE_STRIDE)
    v11 = _NOISE_FLAT.take(index + _NOISE_STRIDE + 1)
    sx = fx * fx * (3 - 2 * fx)
    sy = fy * fy * (3 - 2 * fy)
    top = v00 + (v10 - v00) * sx
    bottom = v01 + (v11 - v01) * sx
    return top + (bottom - top) * sy


def _fade(wavelength: float, footprint: np.ndarray) -> np.ndarray:
    """1 where a wavelength spans >= 4 footprints, 0 at <= 2: the octave's anti-aliasing weight."""
    return np.clip(np.float32(wavelength / 2) / footprint - 1, 0, 1)


def _detail_noise(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Multi-octave value noise with mean 0.5; octaves too fine for the footprint fade to 0.5."""
    total = np.full(a.shape, 0.5, dtype=np.float32)
    # Octave values have a standard deviation of about 0.2; this scales the sum back to that.
    norm = np.float32(1.0 / np.sqrt(np.sum(np.square(DETAIL_AMPLITUDES))))
    for octave, (wavelength, amplitude) in enumerate(zip(DETAIL_WAVELENGTHS_M, DETAIL_AMPLITUDES)):
        weight = _fade(wavelength, footprint) * np.float32(amplitude) * norm
        active = np.flatnonzero(weight > 0)
        if len(active) == 0:
            continue
        if len(active) < len(a) // 2:
            noise = _value_noise(a[active], b[active], wavelength, octave)
            total[active] += (noise - 0.5) * weight[active]
        else:
            total += (_value_noise(a, b, wavelength, octave) - 0.5) * weight
    return np.clip(total, 0, 1, out=total)


def _band(x: np.ndarray, lo: float, hi: float, footprint: np.ndarray) -> np.ndarray:
    """Anti-aliased indicator of lo <= x <= hi: the fraction of a footprint-wide pixel inside."""
    fp = np.maximum(footprint, np.float32(1e-4))
    inside = np.clip((np.minimum(x - lo, hi - x)) / fp + 0.5, 0, 1)
    return inside * np.minimum(np.float32(1), np.asarray(hi - lo, dtype=np.float32) / fp)


def _periodic_band(x: np.ndarray, period: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   footprint: np.ndarray) -> np.ndarray:
    """``_band`` repeated with ``period``; fades to its mean duty cycle once a period spans < 4 px."""
    frac = x / period
    frac = frac - np.floor(frac)
    fp = footprint / period
    value = _band(frac, lo, hi, fp) + _band(frac - 1, lo, hi, fp) + _band(frac + 1, lo, hi, fp)
    blur = np.clip(fp * 4 - 1, 0, 1)
    return value + (np.float32(1) * (hi - lo) - value) * blur


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return a + (b - a) * weight[:, None]


@dataclass(frozen=True)
class _Hits:
    """K surface hits to shade; float32 (K,) arrays.

    ``pixel_size`` is the size one pixel (or LiDAR beam) covers at the hit, perpendicular to the
    ray, in metres. With ray directions given, it is stretched by the incidence angle to give the
    texture footprint; without them (LiDAR) it is the footprint.
    """

    hit: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    pixel_size: np.ndarray
    direction: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def take(self, index: np.ndarray) -> _Hits:
        direction = None if self.direction is None else tuple(d[index] for d in self.direction)
        return _Hits(self.hit[index], self.x[index], self.y[index], self.z[index],
                     self.pixel_size[index], direction)


def _footprint(pixel_size: np.ndarray, normal_dot: np.ndarray, norm: np.ndarray) -> np.ndarray:
    # The footprint is pixel_size / cos(incidence) along the slope and pixel_size across it; the
    # geometric mean, pixel_size / sqrt(cos), keeps grazing road texture without heavy aliasing.
    cosine = np.maximum(np.abs(normal_dot) / norm, np.float32(0.02))
    return pixel_size / np.sqrt(cosine)


def _box_albedo(scene: DriveScene, hits: _Hits) -> tuple[np.ndarray, np.ndarray]:
    """RGB albedo (K, 3) and face index (K,) (0..5 = -x, +x, -y, +y, -z, +z) of box hits."""
    boxes = scene.boxes
    f32 = scene.box_f32
    ids = hits.hit
    c, s = f32["cos"][ids], f32["sin"][ids]
    rx = hits.x - f32["cx"][ids]
    rz = hits.z - f32["cz"][ids]
    lx = rx * c - rz * s
    ly = hits.y - f32["cy"][ids]
    lz = rx * s + rz * c
    hx, hy, hz = f32["hx"][ids], f32["hy"][ids], f32["hz"][ids]
    qx, qy, qz = np.abs(lx) / hx, np.abs(ly) / hy, np.abs(lz) / hz
    # The face the hit lies on is the one whose slab boundary it touches.
    on_x = (qx >= qy) & (qx >= qz)
    on_y = ~on_x & (qy >= qz)
    axis = np.where(on_x, 0, np.where(on_y, 1, 2))
    positive = np.where(on_x, lx > 0, np.where(on_y, ly > 0, lz > 0))
    face = 2 * axis + positive
    along = np.where(on_x, lz + hz, lx + hx)
    up = np.where(on_y, lz + hz, hy - ly)
    if hits.direction is None:
        footprint = hits.pixel_size
    else:
        dx, dy, dz = hits.direction
        normal_dot = np.where(on_x, dx * c - dz * s, np.where(on_y, dy, dx * s + dz * c))
        footprint = _footprint(hits.pixel_size, normal_dot, np.sqrt(dx * dx + dy * dy + dz * dz))
    a = along + f32["tex_u"][ids]
    b = up + f32["tex_v"][ids]

    mix = _value_noise(a, b, COLOUR_MIX_WAVELENGTH_M, 7)
    mix = 0.5 + (mix - 0.5) * _fade(COLOUR_MIX_WAVELENGTH_M, footprint)
    albedo = _mix(boxes.colour_a[ids], boxes.colour_b[ids], mix)
    detail = _detail_noise(a, b, footprint)
    albedo *= (1 + 2 * boxes.contrast[ids] * (detail - 0.5))[:, None]

    facade = np.flatnonzero((boxes.material[ids] == FACADE) & ~on_y)
    if len(facade):
        pattern = boxes.pattern[ids[facade]]
        fp = footprint[facade]
        up_m = up[facade]
        column = _periodic_band(along[facade], pattern[:, 0], 0.5 - pattern[:, 2] / 2,
                                0.5 + pattern[:, 2] / 2, fp)
        floor = _periodic_band(up_m, pattern[:, 1], 0.3, 0.3 + pattern[:, 3], fp)
        # A darker band marks each floor slab: horizontal stripes even between windows.
        slab = _periodic_band(up_m, pattern[:, 1], 0.0, 0.08, fp)
        window = column * floor
        shaded = albedo[facade] * (1 - 0.35 * slab)[:, None]
        glass = boxes.window_colour[ids[facade]] * (0.8 + 0.4 * detail[facade])[:, None]
        albedo[facade] = _mix(shaded, glass, window)
    return albedo, face


def _road_coordinates(grid: RoadGrid, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear (s, lateral) of world points; lateral is 1e3 (off the road) outside the band."""
    gx = (x - np.float32(grid.origin[0])) * np.float32(1 / grid.cell)
    gz = (z - np.float32(grid.origin[1])) * np.float32(1 / grid.cell)
    rows, cols = grid.s.shape
    ix = np.clip(np.floor(gx).astype(np.int64), 0, cols - 2)
    iz = np.clip(np.floor(gz).astype(np.int64), 0, rows - 2)
    wx = np.clip(gx - ix, 0, 1)
    wz = np.clip(gz - iz, 0, 1)
    flat = iz * cols + ix

    def bilinear(values: np.ndarray) -> np.ndarray:
        v = values.ravel()
        top = v.take(flat) * (1 - wx) + v.take(flat + 1) * wx
        bottom = v.take(flat + cols) * (1 - wx) + v.take(flat + cols + 1) * wx
        return top * (1 - wz) + bottom * wz

    s = bilinear(grid.s)
    lat = bilinear(grid.lateral)
    off_band = ~np.isfinite(lat)
    lat[off_band] = 1e3
    s[off_band] = 0
    return s, lat


def _ground_albedo(scene: DriveScene, hits: _Hits) -> np.ndarray:
    """RGB albedo (K, 3) of road-plane hits: asphalt with markings, curbs, tiled sidewalks, verge."""
    if hits.direction is None:
        footprint = hits.pixel_size
    else:
        dx, dy, dz = hits.direction
        footprint = _footprint(hits.pixel_size, dy, np.sqrt(dx * dx + dy * dy + dz * dz))
    x, z = hits.x, hits.z
    s, lat = _road_coordinates(scene.road_grid, x, z)
    colours = scene.ground_colours

    detail = _detail_noise(x, z, footprint)
    mix = _value_noise(x, z, COLOUR_MIX_WAVELENGTH_M, 7)
    mix = 0.5 + (mix - 0.5) * _fade(COLOUR_MIX_WAVELENGTH_M, footprint)
    grain = (1 + 0.6 * (detail - 0.5))[:, None]
    albedo = _mix(colours["verge_a"], colours["verge_b"], mix) * (1 + 0.8 * (detail - 0.5))[:, None]

    # Only pixels near the road pay for its patterns.
    near_road = np.flatnonzero(np.abs(lat + (ROAD_LEFT_M - ROAD_RIGHT_M) / 2)
                               < (ROAD_LEFT_M + ROAD_RIGHT_M) / 2 + SIDEWALK_WIDTH_M + 1)
    s, lat, fp = s[near_road], lat[near_road], footprint[near_road]
    mix, grain = mix[near_road], grain[near_road]
    asphalt = _mix(colours["asphalt_a"], colours["asphalt_b"], mix) * grain
    tiles = (_periodic_band(s, np.float32(0.6), 0.0, 0.06, fp)
             + _periodic_band(lat, np.float32(0.6), 0.0, 0.06, fp)).clip(0, 1)
    sidewalk = _mix(colours["sidewalk_a"], colours["sidewalk_b"], mix) * grain * (1 - 0.3 * tiles)[:, None]
    # A dashed centre line (3 m dashes every 9 m) and solid edge lines.
    marking = (_band(lat, -1.06, -0.94, fp) * _periodic_band(s, np.float32(9.0), 0.0, 1 / 3, fp)
               + _band(lat, ROAD_RIGHT_M - 0.3, ROAD_RIGHT_M - 0.18, fp)
               + _band(lat, -ROAD_LEFT_M + 0.18, -ROAD_LEFT_M + 0.3, fp))
    road = _mix(asphalt, colours["marking"] * grain, np.clip(marking, 0, 1))
    in_road = _band(lat, -ROAD_LEFT_M, ROAD_RIGHT_M, fp)
    curb = (_band(lat, ROAD_RIGHT_M, ROAD_RIGHT_M + CURB_WIDTH_M, fp)
            + _band(lat, -ROAD_LEFT_M - CURB_WIDTH_M, -ROAD_LEFT_M, fp))
    walk = (_band(lat, ROAD_RIGHT_M + CURB_WIDTH_M, ROAD_RIGHT_M + SIDEWALK_WIDTH_M, fp)
            + _band(lat, -ROAD_LEFT_M - SIDEWALK_WIDTH_M, -ROAD_LEFT_M - CURB_WIDTH_M, fp))
    rest = np.clip(1 - in_road - curb - walk, 0, 1)
    albedo[near_road] = (road * in_road[:, None] + (colours["curb"] * grain) * curb[:, None]
                         + sidewalk * walk[:, None] + albedo[near_road] * rest[:, None])
    return albedo


GROUND_SHADE = AMBIENT + (1 - AMBIENT) * max(-SUN_DIRECTION[1], 0.0)


def _shade_hits(scene: DriveScene, hits: _Hits) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (K, 3) float32 and constant Lambert shading (K,) float32 of road and box hits."""
    albedo = np.empty((len(hits.hit), 3), dtype=np.float32)
    shade = np.full(len(hits.hit), GROUND_SHADE, dtype=np.float32)
    on_box = np.flatnonzero(hits.hit >= 0)
    on_ground = np.flatnonzero(hits.hit == -1)
    if len(on_box):
        box_hits = hits.take(on_box)
        albedo[on_box], face = _box_albedo(scene, box_hits)
        shade[on_box] = scene.face_shading[box_hits.hit, face]
    if len(on_ground):
        albedo[on_ground] = _ground_albedo(scene, hits.take(on_ground))
    return albedo, shade


# ======================================================================================== rendering
def _camera_rays(scene: DriveScene, frame: int, cam: int, width: int,
                 height: int) -> tuple[RayGrid, np.ndarray]:
    k = camera_intrinsics(width, height)
    pose = scene.camera_to_world(frame, cam)
    xn = (np.arange(width) - k[0, 2]) / k[0, 0]
    yn = (np.arange(height) - k[1, 2]) / k[1, 1]
    rot = pose[:3, :3]
    # d_world = R (xn, yn, 1): the level rig makes x and z depend on the column only.
    dx = rot[0, 0] * xn + rot[0, 2]
    dz = rot[2, 0] * xn + rot[2, 2]
    return RayGrid(origin=pose[:3, 3].copy(), dx=dx, dy=yn.copy(), dz=dz), k


def _sky(dy: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Smooth blue gradient by elevation (no texture: nothing in the sky should look like depth)."""
    horizon = np.array([0.86, 0.88, 0.90], dtype=np.float32)
    zenith = np.array([0.36, 0.54, 0.84], dtype=np.float32)
    elevation = np.clip(-dy / norm * 2.5, 0, 1) ** 0.8
    return horizon + (zenith - horizon) * elevation[:, None]


def render_camera(scene: DriveScene, frame: int, cam: int, width: int,
                  height: int) -> tuple[np.ndarray, np.ndarray]:
    """Render rectified camera ``cam`` (2 or 3) of ``frame``.

    Args:
        scene: the drive.
        frame: frame index, 0-based.
        cam: 2 (left) or 3 (right, 0.54 m to the right).
        width, height: image size in pixels.

    Returns:
        rgb: H x W x 3 uint8.
        depth: H x W float32 camera z in metres (the ray parameter: rays have camera z = 1),
        0 where the pixel sees sky.
    """
    rays, k = _camera_rays(scene, frame, cam, width, height)
    t, hit = cast_rays(scene, rays, near=NEAR_M)
    flat_hit = hit.ravel()
    image = np.empty((height * width, 3), dtype=np.float32)
    dx_all, dy_all, dz_all = (d.astype(np.float32) for d in (rays.dx, rays.dy, rays.dz))
    ox, oy, oz = rays.origin.astype(np.float32)

    seen = np.flatnonzero(flat_hit >= -1)
    rows, cols = np.divmod(seen, width)
    dx, dy, dz = dx_all[cols], dy_all[rows], dz_all[cols]
    t_seen = t.ravel()[seen]
    norm = np.sqrt(dx * dx + dy * dy + dz * dz)
    focal = np.float32(0.5 * (k[0, 0] + k[1, 1]))
    hits = _Hits(hit=flat_hit[seen], x=ox + t_seen * dx, y=oy + t_seen * dy, z=oz + t_seen * dz,
                 pixel_size=t_seen * norm / focal, direction=(dx, dy, dz))
    albedo, shade = _shade_hits(scene, hits)
    image[seen] = albedo * shade[:, None]

    sky = np.flatnonzero(flat_hit == -2)
    if len(sky):
        rows, cols = np.divmod(sky, width)
        dx, dy, dz = dx_all[cols], dy_all[rows], dz_all[cols]
        image[sky] = _sky(dy, np.sqrt(dx * dx + dy * dy + dz * dz))
    rgb = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(height, width, 3)
    depth = np.where(hit >= -1, t, 0).astype(np.float32)
    return rgb, depth


def render_lidar(scene: DriveScene, frame: int) -> np.ndarray:
    """Simulate the 64-beam LiDAR scan of ``frame`` on the same geometry as the cameras.

    Returns:
        N x 4 float32 (x, y, z, reflectance) in the velodyne frame (metres; reflectance in
        [0, 1]), beam by beam from the top beam, each beam in azimuth order; no return from
        the sky or beyond LIDAR_MAX_RANGE_M.
    """
    pose = scene.velodyne_to_world(frame)
    elevation = np.deg2rad(np.linspace(*LIDAR_ELEVATION_RANGE_DEG, LIDAR_BEAMS))
    azimuth = -np.pi + 2 * np.pi * (np.arange(LIDAR_AZIMUTH_STEPS) + 0.5) / LIDAR_AZIMUTH_STEPS
    # Unit horizontal direction plus tan(elevation) vertically, so t is the horizontal distance.
    velo_dirs = np.stack([np.cos(azimuth), np.sin(azimuth), np.zeros_like(azimuth)])
    world_dirs = pose[:3, :3] @ velo_dirs
    tan_e = np.tan(elevation)
    up_world = pose[:3, 2]  # the velodyne z axis, (0, -1, 0) for the level rig
    rays = RayGrid(origin=pose[:3, 3].copy(), dx=world_dirs[0], dy=tan_e * up_world[1],
                   dz=world_dirs[2])
    t, hit = cast_rays(scene, rays, near=0.0, max_t=LIDAR_MAX_RANGE_M)

    distance = t * np.sqrt(1 + tan_e[:, None] ** 2).astype(np.float32)
    valid = (hit >= -1) & (distance <= LIDAR_MAX_RANGE_M)
    rows, cols = np.nonzero(valid)
    th = t[rows, cols]
    ox, oy, oz = rays.origin.astype(np.float32)
    dx, dy, dz = (d.astype(np.float32) for d in (rays.dx, rays.dy, rays.dz))
    hits = _Hits(hit=hit[rows, cols], x=ox + th * dx[cols], y=oy + th * dy[rows],
                 z=oz + th * dz[cols], pixel_size=np.full(len(rows), LIDAR_FOOTPRINT_M, dtype=np.float32))
    points = np.empty((len(rows), 4), dtype=np.float32)
    points[:, 0] = th * np.cos(azimuth).astype(np.float32)[cols]
    points[:, 1] = th * np.sin(azimuth).astype(np.float32)[cols]
    points[:, 2] = th * tan_e.astype(np.float32)[rows]
    albedo, _ = _shade_hits(scene, hits)
    luminance = albedo @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    points[:, 3] = np.clip(0.05 + 0.9 * luminance, 0, 1)
    return points


# ========================================================================================== writing
@dataclass(frozen=True)
class _RenderJob:
    scenes: dict
    width: int
    height: int
    jpg: bool
    velodyne: bool


_WORKER_JOB: _RenderJob | None = None


def _keep_freed_memory() -> None:
    """Let glibc's malloc keep large freed blocks instead of unmapping them.

    A render makes hundreds of multi-megabyte numpy temporaries; by default each is a fresh mmap
    whose pages fault in again, which costs ~40% of the render time in system time. Only called in
    worker processes (it changes the whole process's allocator); a no-op without glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 256 * 2**20)
    libc.mallopt(m_trim_threshold, 1024 * 2**20)


def _init_worker(job: _RenderJob, own_process: bool = True) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    if own_process:
        _keep_freed_memory()
        # One render per process: OpenCV's own thread pool would only oversubscribe the cores.
        cv2.setNumThreads(1)


def _encode(rgb: np.ndarray, jpg: bool) -> bytes:
    # PNG level 1: the images are noise-textured and barely compress more at higher levels.
    if jpg:
        ext, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]
    else:
        ext, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buffer = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {ext} image")
    return buffer.tobytes()


def _render_frame(task: tuple[int, int]) -> tuple[int, int, dict[str, bytes]]:
    """Worker: render one frame's files; returns (drive, frame, {relative path: bytes})."""
    job = _WORKER_JOB
    drive, frame = task
    scene = job.scenes[drive]
    ext = ".jpg" if job.jpg else ".png"
    files = {}
    for cam in (2, 3):
        rgb, _ = render_camera(scene, frame, cam, job.width, job.height)
        files[f"image_0{cam}/data/{frame:010d}{ext}"] = _encode(rgb, job.jpg)
    if job.velodyne:
        files[f"velodyne_points/data/{frame:010d}.bin"] = render_lidar(scene, frame).tobytes()
    return drive, frame, files


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def drive_folder(date: str, drive: int) -> str:
    """``<date>/<date>_drive_NNNN_sync``, the folder token of split lines."""
    return f"{date}/{date}_drive_{drive:04d}_sync"


def _timestamps(date: str, drive: int, num_frames: int, offset_s: float) -> str:
    day = dt.datetime.strptime(date, "%Y_%m_%d")
    # Drives are a quarter of an hour apart from noon; integer nanoseconds keep the text exact.
    start_ns = int(((12 * 60 + 15 * (drive - 1)) * 60 + offset_s) * 1e9)
    lines = []
    for frame in range(num_frames):
        ns = start_ns + frame * int(FRAME_PERIOD_S * 1e9)
        seconds, nanos = divmod(ns, 10**9)
        stamp = day + dt.timedelta(seconds=seconds)
        lines.append(f"{stamp:%Y-%m-%d %H:%M:%S}.{nanos:09d}")
    return "\n".join(lines) + "\n"


def _pose_text(scene: DriveScene) -> str:
    rows = [_fmt(scene.rig_to_world(frame)[:3, :]) for frame in range(scene.num_frames)]
    return "\n".join(rows) + "\n"


def oxts_packets(scene: DriveScene) -> list[np.ndarray]:
    """One 30-value OXTS packet per frame for the IMU's simulated pose (module docstring)."""
    from kitti_utils import EARTH_RADIUS_M, OXTS_PACKET_VALUES, mercator_scale

    lat0, lon0, alt0 = OXTS_ORIGIN
    scale = mercator_scale(lat0)
    radius = scale * EARTH_RADIUS_M
    east0 = radius * np.deg2rad(lon0)
    north0 = radius * np.log(np.tan(np.deg2rad(90.0 + lat0) / 2.0))
    imu_in_velodyne = np.array([*IMU_TO_VELO_T, 1.0])
    packets = []
    for frame in range(scene.num_frames):
        pose = scene.velodyne_to_world(frame)
        x, y, z = (pose @ imu_in_velodyne)[:3]
        forward = pose[:3, 0]  # the velodyne's (and IMU's) x axis, in world coordinates
        packet = np.zeros(OXTS_PACKET_VALUES)
        packet[0] = np.rad2deg(2.0 * np.arctan(np.exp((north0 + z) / radius))) - 90.0
        packet[1] = np.rad2deg((east0 + x) / radius)
        packet[2] = alt0 - y
        packet[5] = np.arctan2(forward[2], forward[0])
        packets.append(packet)
    return packets


def _oxts_text(packet: np.ndarray) -> str:
    # Latitude and longitude need 15 significant digits for millimetres; KITTI writes more.
    return " ".join(f"{float(x) + 0.0:.15g}" for x in packet) + "\n"


def _write_drive_metadata(root: Path, date: str, scene: DriveScene, velodyne: bool) -> None:
    folder = root / drive_folder(date, scene.drive)
    frames = scene.num_frames
    _write_text(folder / "image_02" / "timestamps.txt", _timestamps(date, scene.drive, frames, 0.0))
    _write_text(folder / "image_03" / "timestamps.txt", _timestamps(date, scene.drive, frames, -0.0005))
    if velodyne:
        velo = folder / "velodyne_points"
        _write_text(velo / "timestamps.txt", _timestamps(date, scene.drive, frames, -0.01))
        _write_text(velo / "timestamps_start.txt", _timestamps(date, scene.drive, frames, -0.06))
        _write_text(velo / "timestamps_end.txt", _timestamps(date, scene.drive, frames, 0.04))
    _write_text(folder / "poses_cam02.txt", _pose_text(scene))
    for frame, packet in enumerate(oxts_packets(scene)):
        _write_text(folder / "oxts" / "data" / f"{frame:010d}.txt", _oxts_text(packet))


def _write_splits(root: Path, date: str, num_drives: int, num_frames: int, seed: int,
                  test_stride: int) -> None:
    train_lines = [f"{drive_folder(date, drive)} {frame} {side}"
                   for drive in range(1, num_drives) for frame in range(1, num_frames - 1) for side in "lr"]
    order = np.random.default_rng([seed, 0]).permutation(len(train_lines))
    train_lines = [train_lines[i] for i in order]
    num_val = max(1, int(round(VAL_FRACTION * len(train_lines))))
    val_lines, train_lines = train_lines[:num_val], train_lines[num_val:]
    test_lines = [f"{drive_folder(date, num_drives)} {frame:010d} l"
                  for frame in range(1, num_frames - 1, test_stride)]
    _write_text(root / "splits" / TRAIN_SPLIT / "train_files.txt", "\n".join(train_lines) + "\n")
    _write_text(root / "splits" / TRAIN_SPLIT / "val_files.txt", "\n".join(val_lines) + "\n")
    _write_text(root / "splits" / TEST_SPLIT / "test_files.txt", "\n".join(test_lines) + "\n")


def _prepare_output_dir(root: Path, overwrite: bool) -> None:
    """Refuse foreign non-empty folders; clear what a previous synthetic run wrote."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"--output_dir {root} exists and is not a folder")
    if not root.is_dir() or not any(root.iterdir()):
        return
    info_path = root / INFO_FILE
    if not info_path.is_file():
        if overwrite:
            logger.warning("writing into the non-empty folder %s (--overwrite)", root)
            return
        raise ValueError(f"--output_dir {root} is not empty and holds no {INFO_FILE}, so it is not a "
                         "previous synthetic dataset; choose an empty or new folder, or pass --overwrite")
    try:
        previous = json.loads(info_path.read_text(encoding="utf-8"))
        old_date = str(previous["flags"]["date"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{info_path} is unreadable ({error}); delete the folder or choose another "
                         "--output_dir") from None
    # Only what the generator writes goes: stale drives or a stale gt_depths.npz would otherwise
    # survive a regeneration with fewer drives or different content.
    if re.fullmatch(r"\d{4}_\d{2}_\d{2}", old_date):
        for drive in sorted((root / old_date).glob(f"{old_date}_drive_*_sync")):
            shutil.rmtree(drive)
        for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
            (root / old_date / name).unlink(missing_ok=True)
    for split in (TRAIN_SPLIT, TEST_SPLIT):
        if (root / "splits" / split).is_dir():
            shutil.rmtree(root / "splits" / split)


def default_test_stride(frames_per_drive: int) -> int:
    """The stride that gives about TEST_LINES_TARGET test lines from frames 1 .. F - 2."""
    return max(1, -(-(frames_per_drive - 2) // TEST_LINES_TARGET))


def _validate(num_drives: int, frames_per_drive: int, width: int, height: int, num_workers: int,
              test_stride: int | None, date: str) -> None:
    if num_drives < 2:
        raise ValueError(f"--num_drives must be at least 2 (got {num_drives}): the last drive is held "
                         "out for testing")
    if frames_per_drive < 3:
        raise ValueError(f"--frames_per_drive must be at least 3 (got {frames_per_drive}): training frames "
                         "need both neighbours")
    if width < 16 or height < 16:
        raise ValueError(f"--width and --height must be at least 16 (got {width} x {height})")
    if num_workers < 0:
        raise ValueError(f"--num_workers must be >= 0 (got {num_workers})")
    if test_stride is not None and test_stride < 1:
        raise ValueError(f"--test_stride must be >= 1 (got {test_stride})")
    try:
        if not re.fullmatch(r"\d{4}_\d{2}_\d{2}", date):
            raise ValueError
        dt.datetime.strptime(date, "%Y_%m_%d")
    except ValueError:
        raise ValueError(f"--date must be a date written YYYY_MM_DD, e.g. 2000_01_01 "
                         f"(got {date!r})") from None


def _render_all(scenes: dict, tasks: list, job: _RenderJob, num_workers: int, progress: bool) -> Iterator:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="rendering frames", unit="frame", disable=not progress)
    if num_workers <= 1:
        _init_worker(job, own_process=False)
        try:
            for task in tasks:
                yield _render_frame(task)
                bar.update()
        finally:
            bar.close()
        return
    # spawn, never fork: a forked child inherits OpenCV's and OpenMP's thread pools from a parent
    # that already used them (any test process, any training script) and can deadlock in them.
    with mp.get_context("spawn").Pool(num_workers, initializer=_init_worker, initargs=(job,)) as pool:
        try:
            for result in pool.imap(_render_frame, tasks, chunksize=2):
                yield result
                bar.update()
        finally:
            bar.close()


def generate_dataset(output_dir: str | Path, *, num_drives: int = 3, frames_per_drive: int = 100,
                     width: int = KITTI_FULL_RES[0], height: int = KITTI_FULL_RES[1], seed: int = 0,
                     num_workers: int = 2, test_stride: int | None = None, date: str = "2000_01_01",
                     jpg: bool = False, velodyne: bool = True, overwrite: bool = False,
                     progress: bool = False) -> Path:
    """Render a synthetic KITTI-raw dataset (see the module docstring for the layout).

    The output depends only on the flags (not on ``num_workers``): the same flags give
    byte-identical files.

    Args:
        output_dir: dataset root; created if missing. A non-empty folder must be a previous
            synthetic dataset (its generated files are replaced) unless ``overwrite``.
        num_drives: drives to render (>= 2); the last one is the test drive.
        frames_per_drive: frames per drive (>= 3).
        width, height: image size in pixels.
        seed: seeds every drive's scene, path and the split shuffle.
        num_workers: processes rendering frames; 0 or 1 renders in this process.
        test_stride: take every k-th frame of the test drive; default aims at ~20 lines.
        date: the date folder, ``YYYY_MM_DD``.
        jpg: write .jpg images instead of .png.
        velodyne: also simulate and write the LiDAR scans.
        overwrite: allow writing into a non-empty folder that is not a synthetic dataset.
        progress: show a tqdm progress bar.

    Returns:
        The dataset root.
    """
    _validate(num_drives, frames_per_drive, width, height, num_workers, test_stride, date)
    stride = test_stride or default_test_stride(frames_per_drive)
    root = Path(output_dir).expanduser().resolve()
    _prepare_output_dir(root, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    flags = dict(num_drives=num_drives, frames_per_drive=frames_per_drive, width=width, height=height,
                 seed=seed, test_stride=stride, date=date, jpg=jpg, velodyne=velodyne)
    info = dict(generator="make_synthetic_kitti.py", version=SYNTHETIC_VERSION, complete=False, flags=flags,
                intrinsics_px=camera_intrinsics(width, height).tolist(), stereo_baseline_m=STEREO_BASELINE_M)
    # Written first, so an interrupted run is still recognised (and replaced) as a synthetic dataset.
    _write_text(root / INFO_FILE, json.dumps(info, indent=2) + "\n")

    started = time.perf_counter()
    for name, text in calibration_texts(width, height, date).items():
        _write_text(root / date / name, text)
    scenes = {drive: build_drive_scene(seed, drive, frames_per_drive) for drive in range(1, num_drives + 1)}
    for scene in scenes.values():
        _write_drive_metadata(root, date, scene, velodyne)
    tasks = [(drive, frame) for drive in scenes for frame in range(frames_per_drive)]
    job = _RenderJob(scenes=scenes, width=width, height=height, jpg=jpg, velodyne=velodyne)
    for drive, _, files in _render_all(scenes, tasks, job, num_workers, progress):
        folder = root / drive_folder(date, drive)
        for relative, data in files.items():
            _write_bytes(folder / relative, data)
    _write_splits(root, date, num_drives, frames_per_drive, seed, stride)

    info["complete"] = True
    _write_text(root / INFO_FILE, json.dumps(info, indent=2) + "\n")
    logger.info("wrote %d drives x %d frames (%dx%d) to %s in %.1f s", num_drives, frames_per_drive, width,
                height, root, time.perf_counter() - started)
    return root


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="dataset root to write (the KITTI --data_path)")
    parser.add_argument("--num_drives", type=int, default=3,
                        help="drives to render; the last one is the test drive")
    parser.add_argument("--frames_per_drive", type=int, default=100, help="frames per drive")
    parser.add_argument("--width", type=int, default=KITTI_FULL_RES[0], help="image width in pixels")
    parser.add_argument("--height", type=int, default=KITTI_FULL_RES[1], help="image height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seeds scenes, paths and the split shuffle")
    parser.add_argument("--num_workers", type=int, default=2,
                        help="rendering processes (0 or 1: render in this process); the output does "
                             "not depend on it")
    parser.add_argument("--test_stride", type=int, default=None,
                        help="every k-th frame of the last drive goes to the test list (default: ~20 lines)")
    parser.add_argument("--date", default="2000_01_01", help="date folder name, YYYY_MM_DD")
    parser.add_argument("--jpg", action="store_true",
                        help="write .jpg images instead of .png (then train with --jpg)")
    parser.add_argument("--no_velodyne", action="store_true", help="skip the LiDAR scans (faster)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow a non-empty --output_dir that is not a previous synthetic dataset")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args_with_config(build_parser(), argv)
    configure_logging("stderr")
    return generate_dataset(args.output_dir, num_drives=args.num_drives,
                            frames_per_drive=args.frames_per_drive, width=args.width, height=args.height,
                            seed=args.seed, num_workers=args.num_workers, test_stride=args.test_stride,
                            date=args.date, jpg=args.jpg, velodyne=not args.no_velodyne,
                            overwrite=args.overwrite, progress=True)


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
