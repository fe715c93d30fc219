"""Writers of miniature datasets in each benchmark's exact on-disk format, for the tests.

Images come from the synthetic scene generator (`make_synthetic_kitti`), so poses, depth maps and
intrinsics agree with the pixels where a test relies on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from make_synthetic_kitti import build_drive_scene, render_camera


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), path


def _write_grey(path: Path, rgb: np.ndarray) -> None:
    """One-channel PNG, as KITTI's grey cameras and EuRoC's are stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)), path


def write_odometry(root: Path, sequence: int, num_frames: int, width: int = 192, height: int = 64,
                   seed: int = 5, cameras=(2, 3)) -> np.ndarray:
    """``sequences/<SS>/image_{c}/<frame:06d>.png`` for each camera c (0 and 1 grey, 2 and 3 colour) and
    ``poses/<SS>.txt``; returns N x 4 x 4 poses."""
    scene = build_drive_scene(seed, sequence, num_frames)
    for frame in range(num_frames):
        for cam in cameras:
            rgb, _ = render_camera(scene, frame, cam, width, height)
            write = _write_grey if cam in (0, 1) else _write_rgb
            write(root / "sequences" / f"{sequence:02d}" / f"image_{cam}" / f"{frame:06d}.png", rgb)
    poses = np.stack([scene.rig_to_world(frame) for frame in range(num_frames)])
    (root / "poses").mkdir(parents=True, exist_ok=True)
    (root / "poses" / f"{sequence:02d}.txt").write_text(
        "\n".join(" ".join(f"{v:e}" for v in pose[:3].ravel()) for pose in poses) + "\n")
    return poses


KITTI_DEPTH_DRIVE = "2011_09_26/2011_09_26_drive_0002_sync"
# Annotated maps hold no depth beyond this in the tests, so clamping at 80 m never bites.
KITTI_DEPTH_TEST_MAX = 75.0


def write_kitti_depth(root: Path, num_frames: int, width: int = 192, height: int = 64, seed: int = 6) -> list:
    """Raw images plus ``proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png`` (uint16, m x 256).

    Returns the written depth maps (float32 metres after the uint16 round trip) of camera 2.
    """
    scene = build_drive_scene(seed, 2, num_frames)
    maps = []
    for frame in range(num_frames):
        for cam in (2, 3):
            rgb, depth = render_camera(scene, frame, cam, width, height)
            _write_rgb(root / KITTI_DEPTH_DRIVE / f"image_0{cam}" / "data" / f"{frame:010d}.png", rgb)
            depth = np.where(depth < KITTI_DEPTH_TEST_MAX, depth, 0.0)
            encoded = np.round(depth * 256).astype(np.uint16)
            path = root / KITTI_DEPTH_DRIVE / "proj_depth" / "groundtruth" / f"image_0{cam}" / f"{frame:010d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), encoded)
            if cam == 2:
                maps.append(encoded.astype(np.float32) / 256)
    return maps


def write_custom(root: Path, sequences: dict, width: int = 96, height: int = 64, seed: int = 8,
                 intrinsics: str | None = "0.58 1.92 0.5 0.5") -> None:
    """``<root>/<sequence>/<frame:06d>.jpg`` for {name: frame count} and ``<root>/intrinsics.txt``."""
    for number, (name, count) in enumerate(sequences.items(), start=1):
        scene = build_drive_scene(seed, number, count)
        for frame in range(count):
            rgb, _ = render_camera(scene, frame, 2, width, height)
            _write_rgb(root / name / f"{frame:06d}.jpg", rgb)
    if intrinsics is not None:
        (root / "intrinsics.txt").write_text(intrinsics + "\n")


def write_nyu_raw(root: Path, scene_name: str, num_frames: int, seed: int = 9) -> list[str]:
    """640 x 480 ``.ppm`` frames of one raw sequence; returns training lines (target, -4..+4 order)."""
    scene = build_drive_scene(seed, 1, num_frames)
    names = []
    for frame in range(num_frames):
        rgb, _ = render_camera(scene, frame, 2, 640, 480)
        name = f"{scene_name}/r-{1000 + frame}.000000-{frame}.ppm"
        _write_rgb(root / name, rgb)
        names.append(name)
    order = (0, -4, -3, -2, -1, 1, 2, 3, 4)
    return [" ".join(names[t + o] for o in order) for t in range(4, num_frames - 4)]


def write_nyu_h5(path: Path, rgb: np.ndarray, depth: np.ndarray) -> None:
    """A labelled test file: ``rgb`` 3 x 480 x 640 uint8 and ``depth`` 480 x 640 metres."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("rgb", data=rgb.transpose(2, 0, 1))
        f.create_dataset("depth", data=depth.astype(np.float32))


def write_make3d(root: Path, name: str, rgb: np.ndarray, grid_depth: np.ndarray) -> None:
    """``Test134/img-<name>.jpg`` and ``Gridlaserdata/depth_sph_corr-<name>.mat`` (v5, 55 x 305 x 4)."""
    from scipy.io import savemat

    _write_rgb(root / "Test134" / f"img-{name}.jpg", rgb)
    grid = np.zeros((55, 305, 4))
    grid[..., 3] = grid_depth
    grid[..., 0] = np.arange(305)[None]  # x, y, z channels: anything but depth
    (root / "Gridlaserdata").mkdir(parents=True, exist_ok=True)
    savemat(str(root / "Gridlaserdata" / f"depth_sph_corr-{name}.mat"), {"Position3DGrid": grid})


CITYSCAPES_RAW_SIZE = (256, 128)  # (W, H): Cityscapes' 2048 x 1024 divided by 8
CITYSCAPES_INTRINSIC = {"fx": 2262.52 / 8, "fy": 2265.30 / 8, "u0": 1096.98 / 8, "v0": 513.137 / 8}


def write_cityscapes_raw(root: Path, split: str, city: str, seq: int, frames, seed: int = 10) -> None:
    """``leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and one camera json."""
    width, height = CITYSCAPES_RAW_SIZE
    scene = build_drive_scene(seed, seq + 1, max(frames) + 1)
    for frame in frames:
        rgb, _ = render_camera(scene, frame, 2, width, height)
        _write_rgb(root / "leftImg8bit_sequence" / split / city / f"{city}_{seq:06d}_{frame:06d}_leftImg8bit.png", rgb)
    camera = root / "camera" / split / city / f"{city}_{seq:06d}_{frames[len(frames) // 2]:06d}_camera.json"
    camera.parent.mkdir(parents=True, exist_ok=True)
    camera.write_text(json.dumps({"extrinsic": {"baseline": 0.209313}, "intrinsic": CITYSCAPES_INTRINSIC}))



def write_image_folder(root: Path, numbers, width: int = 96, height: int = 64, seed: int = 11,
                       name: str = "frame_{}.png", drive: int = 1) -> list[Path]:
    """Frames ``<root>/frame_<n>.png`` (no zero padding) for each frame number in ``numbers``, in the
    order of a drive (the smallest number is the drive's first frame); returns the paths in that order."""
    ordered = sorted(numbers)
    scene = build_drive_scene(seed, drive, len(ordered))
    paths = []
    for frame, number in enumerate(ordered):
        rgb, _ = render_camera(scene, frame, 2, width, height)
        path = root / name.format(number)
        _write_rgb(path, rgb)
        paths.append(path)
    return paths


# Miniature DDAD. Cameras look along the world's +x axis (the vehicle frame of DGP: x forward,
# y left, z up): camera x (right) = world -y, camera y (down) = world -z, camera z = world +x.
DDAD_WORLD_FROM_CAMERA_ROTATION = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
DDAD_CAMERA_QUATERNION = {"qw": 0.5, "qx": -0.5, "qy": 0.5, "qz": -0.5}  # the rotation above
DDAD_CAMERA_HEIGHT = 1.5   # camera at (sample index, 0, 1.5) m in the world
DDAD_LIDAR_HEIGHT = 2.0    # LiDAR at (sample index, 0, 2.0) m, axes aligned with the world
DDAD_K = {"fx": 50.0, "fy": 50.0, "cx": 48.0, "cy": 32.0, "skew": 0.0}  # pixels of a 96 x 64 image
DDAD_SIZE = (96, 64)
# The LiDAR's columns in a non-default order, to check they are found by name.
DDAD_POINT_FORMAT = ["INTENSITY", "X", "Y", "Z"]


def _pose(translation, rotation: dict) -> dict:
    return {"translation": dict(zip("xyz", map(float, translation))), "rotation": dict(rotation)}


def write_ddad_scene(root: Path, folder: str, num_samples: int, cameras=("CAMERA_01", "CAMERA_05"),
                     points=None, seed: int = 12, drive: int = 1) -> str:
    """One DGP scene ``<root>/<folder>/scene_<folder>.json`` with its calibration, frames and LiDAR.

    Sample i is taken at timestamp 1e6 + 1e5 i (10 Hz, microseconds); the camera sits at
    (i, 0, 1.5) and the LiDAR at (i, 0, 2.0) in the world. ``points(i)`` gives sample i's N x 3
    LiDAR-frame points (default: a few points ahead). Returns the scene JSON's path relative to root.
    """
    scene_dir = root / folder
    width, height = DDAD_SIZE
    drive_scene = build_drive_scene(seed, drive, num_samples)
    samples, data = [], []
    calibration_key = f"calib{folder}"
    for i in range(num_samples):
        timestamp = str(1_000_000 + 100_000 * i)
        keys = []
        for camera in cameras:
            rgb, _ = render_camera(drive_scene, i, 2, width, height)
            filename = f"rgb/{camera}/{timestamp}.png"
            _write_rgb(scene_dir / filename, rgb)
            key = f"{camera}-{i}"
            data.append({"id": {"name": camera, "timestamp": timestamp, "index": str(i)}, "key": key,
                         "datum": {"image": {"filename": filename, "width": width, "height": height, "channels": 3,
                                             "pose": _pose((i, 0, DDAD_CAMERA_HEIGHT), DDAD_CAMERA_QUATERNION)}}})
            keys.append(key)
        cloud = np.asarray(points(i) if points else [[10.0, -1.0, -0.9], [20.0, 3.0, 1.0]], dtype=np.float32)
        array = np.zeros((len(cloud), 4), dtype=np.float32)
        array[:, 1:] = cloud
        array[:, 0] = 0.5  # intensity
        filename = f"point_cloud/LIDAR/{timestamp}.npz"
        (scene_dir / filename).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(scene_dir / filename, data=array)
        data.append({"id": {"name": "LIDAR", "timestamp": timestamp, "index": str(i)}, "key": f"LIDAR-{i}",
                     "datum": {"point_cloud": {"filename": filename, "point_format": DDAD_POINT_FORMAT,
                                               "pose": _pose((i, 0, DDAD_LIDAR_HEIGHT), {"qw": 1.0})}}})
        keys.append(f"LIDAR-{i}")
        samples.append({"id": {"timestamp": timestamp, "index": str(i)}, "datum_keys": keys,
                        "calibration_key": calibration_key})
    names = list(cameras) + ["LIDAR"]
    calibration = {"names": names,
                   "intrinsics": [dict(DDAD_K) for _ in cameras] + [{}],
                   "extrinsics": [_pose((1.5, 0, DDAD_CAMERA_HEIGHT), DDAD_CAMERA_QUATERNION) for _ in cameras]
                   + [_pose((0, 0, DDAD_LIDAR_HEIGHT), {"qw": 1.0})]}
    (scene_dir / "calibration").mkdir(parents=True, exist_ok=True)
    (scene_dir / "calibration" / f"{calibration_key}.json").write_text(json.dumps(calibration))
    scene_file = f"{folder}/scene_{folder}.json"
    (root / scene_file).write_text(json.dumps({"name": folder, "samples": samples, "data": data}))
    return scene_file


def write_ddad(root: Path, num_samples: int = 5, cameras=("CAMERA_01", "CAMERA_05"), points=None) -> dict:
    """``ddad.json`` with one train scene (000000) and one val scene (000001); returns {split: scene file}."""
    train = write_ddad_scene(root, "000000", num_samples, cameras, points, drive=1)
    val = write_ddad_scene(root, "000001", num_samples, cameras, points, drive=2)
    index = {"metadata": {"name": "DDAD-mini"},
             "scene_splits": {"0": {"filenames": [train]}, "1": {"filenames": [val]}}}
    (root / "ddad.json").write_text(json.dumps(index))
    return {"train": train, "val": val}


EUROC_FIRST_TIMESTAMP_NS = 1403636579763555584  # MH_01_easy's first frame; cameras run at 20 Hz
EUROC_PERIOD_NS = 50_000_000


def write_euroc(root: Path, num_frames: int, asl_layout: bool = True, size=(752, 480), cameras=("cam0", "cam1"),
                seed: int = 12) -> list[str]:
    """One EuRoC sequence: ``[mav0/]cam{0,1}/data/<timestamp ns>.png``, grey, ``size`` (EuRoC's 752 x 480).

    The synthetic rig's colour pair (cameras 2 and 3) is rendered small and resized up (speed), then
    stored grey as EuRoC's cameras are. Returns the file names in time order.
    """
    scene = build_drive_scene(seed, 1, num_frames)
    names = [f"{EUROC_FIRST_TIMESTAMP_NS + i * EUROC_PERIOD_NS}.png" for i in range(num_frames)]
    base = root / "mav0" if asl_layout else root
    for frame, name in enumerate(names):
        for camera, rig_camera in zip(("cam0", "cam1"), (2, 3)):
            if camera in cameras:
                rgb, _ = render_camera(scene, frame, rig_camera, 94, 60)
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
                _write_grey(base / camera / "data" / name, rgb)
    return names
