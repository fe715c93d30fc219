"""DDAD, TRI's long-range driving dataset (``--dataset ddad``), read from its DGP scene JSON files.

Layout (``--data_path`` is the folder holding ``ddad.json``)::

    ddad.json                                   scene_splits: {"0": train, "1": val} -> scene JSON paths
    <scene>/scene_<hash>.json                   samples (in time order) and their data
    <scene>/calibration/<calibration_key>.json  per-sensor intrinsics and extrinsics
    <scene>/rgb/CAMERA_0N/<timestamp>.png       1936 x 1216 frames of six cameras
    <scene>/point_cloud/LIDAR/<timestamp>.npz   the merged LiDAR sweep, in the LiDAR's frame
    <scene>/depth/lidar/CAMERA_0N/<timestamp>.npz   written here: the projected depth (cache)

Read with ``json`` and NumPy only (no ``dgp`` package and its compiled dependencies). The DGP
records used, as DGP's schema documents them (the method spec does not detail them):

- a scene JSON has ``samples``, each with ``datum_keys`` and a ``calibration_key``, and ``data``,
  each with ``key``, ``id.name`` (``CAMERA_01``, ``LIDAR``) and ``datum.image`` or
  ``datum.point_cloud`` holding ``filename`` and ``pose``;
- a ``pose`` is the sensor's pose in the scene's world frame (sensor -> world), given as
  ``translation {x, y, z}`` and ``rotation {qw, qx, qy, qz}``; an empty one (zero quaternion)
  is the identity, as DGP reads it;
- a calibration JSON lists ``names`` (matched without case, as DGP does) with parallel
  ``intrinsics`` (``fx fy cx cy skew``) and ``extrinsics`` (sensor -> vehicle; not needed here:
  the datum poses already place each sensor);
- a point-cloud ``.npz`` holds ``data`` in the LiDAR's frame: N x C with columns named by the
  datum's ``point_format`` (X, Y, Z first when it is absent), or a structured array with fields
  ``X``, ``Y``, ``Z``;
- ``ddad.json``'s ``scene_splits`` maps DGP's split numbers (0 train, 1 val, 2 test) to
  ``{"filenames": [...]}``; a split's name is accepted as the key too.

Split lines are ``<scene JSON, relative to data_path> <sample index> [<camera>]`` (camera default
``CAMERA_01``, the front camera PackNet trains on); ``prepare_ddad.py --ddad_cameras ...`` writes
them from ``ddad.json``. Each (sample, camera) is one training item, so any batch size works
(PackNet stacks the cameras of a sample instead, batch 1 only). Context frames are the scene's
neighbouring samples; lines whose context falls outside the scene are left out and counted.

Ground truth: the LiDAR sweep of the sample projected into the camera (z in the camera frame,
points in front of it and inside the image, nearest point per pixel), at the image's native
size, cached as PackNet does at ``<scene>/depth/lidar/<camera>/<timestamp>.npz`` (key ``depth``).
Cache files are written atomically, read without pickles, and rebuilt when unreadable or when
their ``signature`` (the LiDAR file's size and modification time, both poses, K and the image
size) differs from the current sample's. Evaluation: 0 < gt < 200 m, no crop (PackNet's DDAD
protocol), predictions clamped to 200 m.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.benchmarks import EvalOptions, EvalProtocol, EvalSet
from datasets.mono_dataset import MonoDataset, SplitItem
from kitti_utils import MIN_EVAL_DEPTH
from utils import atomic_output, readlines

logger = logging.getLogger(__name__)

DDAD_CAMERAS = ("CAMERA_01", "CAMERA_05", "CAMERA_06", "CAMERA_07", "CAMERA_08", "CAMERA_09")
DEFAULT_DDAD_CAMERA = "CAMERA_01"
DDAD_LIDAR = "LIDAR"
DDAD_JSON = "ddad.json"
# DGP's DatasetSplit enum, the keys of ddad.json's scene_splits.
DDAD_SPLIT_KEYS = {"train": "0", "val": "1", "test": "2"}
# PackNet's depth_type: the cache folder under <scene>/depth/.
DDAD_DEPTH_TYPE = "lidar"
DDAD_MAX_DEPTH = 200.0
# Bump when the projection changes, so every cache file is rebuilt.
DEPTH_CACHE_VERSION = 1

# DDAD (PackNet): 0 < gt < 200 m at native resolution, no crop, predictions clamped to [1e-3, 200]
# (PackNet clamps to its min_depth 0; the positive floor only keeps the log metrics finite).
DDAD_PROTOCOL = EvalProtocol("ddad", gt_min=0.0, gt_max=DDAD_MAX_DEPTH, crop=None, interpolation="bilinear",
                             clamp_min=MIN_EVAL_DEPTH, clamp_max=DDAD_MAX_DEPTH)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def pose_matrix(pose: dict, source: str) -> np.ndarray:
    """4 x 4 float64 sensor -> world transform of a DGP pose (translation x y z, rotation qw qx qy qz).

    An empty pose (zero quaternion) is the identity, as DGP reads it.

    Raises:
        ValueError: naming ``source`` when a key is missing or a value is not a finite number.
    """
    try:
        t, q = pose["translation"], pose["rotation"]
        translation = [float(t.get(axis, 0.0)) for axis in "xyz"]  # proto3 JSON omits zeros
        w, x, y, z = (float(q.get(key, 0.0)) for key in ("qw", "qx", "qy", "qz"))
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ValueError(f"{source}: a pose needs 'translation' {{x, y, z}} and 'rotation' {{qw, qx, qy, qz}} "
                         f"(got {pose!r}); re-download the scene") from None
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    if not (np.isfinite(norm) and np.isfinite(translation).all()):
        raise ValueError(f"{source}: the pose {pose!r} holds a non-finite number; re-download the scene")
    if norm == 0:
        return np.eye(4)
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    matrix = np.eye(4)
    matrix[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    matrix[:3, 3] = translation
    return matrix


def project_to_depth_map(points_camera: np.ndarray, K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sparse depth map of 3-D points in the camera frame.

    Args:
        points_camera: N x 3 points (x right, y down, z forward), metres.
        K: 3 x 3 intrinsics in pixels (pixel centres at integer coordinates).
        height, width: the map's size in pixels.
    Returns:
        height x width float32: at each pixel the smallest z of the points in front of the camera
        (z > 0) whose projection rounds to it, 0 where none does.
    """
    z = points_camera[:, 2]
    front = z > 0
    x, y, z = points_camera[front, 0], points_camera[front, 1], z[front]
    u = K[0, 0] * x / z + K[0, 1] * y / z + K[0, 2]
    v = K[1, 1] * y / z + K[1, 2]
    # Round half up (floor(u + 0.5)): a pixel covers [c - 0.5, c + 0.5) around its centre c.
    cols, rows = np.floor(u + 0.5), np.floor(v + 0.5)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    depth = np.full((height, width), np.inf)
    # minimum.at: where several points land on one pixel the nearest wins, whatever their order.
    np.minimum.at(depth, (rows[inside].astype(np.int64), cols[inside].astype(np.int64)), z[inside])
    depth[np.isinf(depth)] = 0.0
    return depth.astype(np.float32)


def lidar_depth_map(points_lidar: np.ndarray, world_from_lidar: np.ndarray, world_from_camera: np.ndarray,
                    K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Project N x 3 LiDAR-frame points into a camera: ``project_to_depth_map`` of camera-frame points."""
    camera_from_lidar = np.linalg.inv(world_from_camera) @ world_from_lidar
    points = points_lidar @ camera_from_lidar[:3, :3].T + camera_from_lidar[:3, 3]
    return project_to_depth_map(points, K, height, width)


# --------------------------------------------------------------------------------------------
# Scene files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Datum:
    """One sensor's record in one sample.

    Attributes:
        filename: the file, relative to the scene folder.
        world_from_sensor: 4 x 4 float64 pose.
        width, height: image size in pixels (0 for point clouds).
        point_format: column names of a point cloud's ``data`` (empty for images).
    """

    filename: str
    world_from_sensor: np.ndarray
    width: int = 0
    height: int = 0
    point_format: tuple = ()


@dataclass
class DDADScene:
    """A parsed scene JSON: per sample, datum name -> `Datum`, and its calibration key."""

    path: Path
    samples: list
    calibration_keys: list

    @property
    def folder(self) -> Path:
        return self.path.parent


def _load_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} not found; check --data_path (the folder holding ddad.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-download or re-extract it") from None


def load_scene(path: Path) -> DDADScene:
    """Parse a DGP scene JSON (see the module docstring).

    Raises:
        FileNotFoundError / ValueError: naming the file, the missing key and the fix.
    """
    scene = _load_json(path, "scene JSON")
    try:
        records = {record["key"]: record for record in scene["data"]}
        raw_samples = scene["samples"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: a DGP scene JSON needs 'samples' and 'data' lists whose entries carry 'key'; "
                         "is this a scene_<hash>.json of DDAD?") from None
    samples, keys = [], []
    for number, sample in enumerate(raw_samples):
        data = {}
        for datum_key in sample.get("datum_keys", []):
            record = records.get(datum_key)
            if record is None:
                raise ValueError(f"{path}: sample {number} lists datum key {datum_key!r}, which 'data' lacks; "
                                 "the file is incomplete: re-download the scene")
            source = f"{path}, datum {datum_key}"
            try:
                name, datum = record["id"]["name"], record["datum"]
                if "image" in datum:
                    image = datum["image"]
                    data[name] = Datum(image["filename"], pose_matrix(image.get("pose", {}), source),
                                       int(image.get("width", 0)), int(image.get("height", 0)))
                elif "point_cloud" in datum:
                    cloud = datum["point_cloud"]
                    data[name] = Datum(cloud["filename"], pose_matrix(cloud.get("pose", {}), source),
                                       point_format=tuple(cloud.get("point_format", ())))
            except (KeyError, TypeError) as err:
                raise ValueError(f"{source}: missing {err} (a datum needs id.name and datum.image or "
                                 "datum.point_cloud with a filename); re-download the scene") from None
        samples.append(data)
        keys.append(sample.get("calibration_key"))
    if not samples:
        raise ValueError(f"{path} lists no samples")
    return DDADScene(path=path, samples=samples, calibration_keys=keys)


def load_camera_intrinsics(scene: DDADScene, calibration_key: str, camera: str) -> np.ndarray:
    """3 x 3 float64 K in pixels of ``camera`` from ``<scene>/calibration/<calibration_key>.json``."""
    path = scene.folder / "calibration" / f"{calibration_key}.json"
    calibration = _load_json(path, "calibration file")
    try:
        index = [name.lower() for name in calibration["names"]].index(camera.lower())
        values = calibration["intrinsics"][index]
        fx, fy, cx, cy = (float(values[key]) for key in ("fx", "fy", "cx", "cy"))
        skew = float(values.get("skew", 0.0))
    except (KeyError, TypeError, ValueError, IndexError):
        raise ValueError(f"{path}: no intrinsics (fx, fy, cx, cy) for {camera}; the calibration lists "
                         f"{calibration.get('names')}: re-download the scene or choose one of those cameras"
                         ) from None
    if not (fx > 0 and fy > 0):
        raise ValueError(f"{path}: {camera} has focal lengths fx={fx}, fy={fy}; they must be positive")
    return np.array([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def load_point_cloud(path: Path, point_format: Sequence[str]) -> np.ndarray:
    """N x 3 float64 X, Y, Z (LiDAR frame, metres) of a DGP point-cloud ``.npz`` (key ``data``)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = archive["data"]
        if data.dtype.fields is not None:  # a structured array: DGP reads its X, Y, Z fields
            data = np.stack([data[axis] for axis in ("X", "Y", "Z")], axis=-1).reshape(-1, 3)
            point_format = ("X", "Y", "Z")
        data = np.asarray(data, dtype=np.float64)
    except FileNotFoundError:
        raise FileNotFoundError(f"point cloud {path} not found; the scene is incomplete: re-download it") from None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path} is not a DGP point cloud (an .npz with an N x C array 'data'): {err}; "
                         "re-download the scene") from None
    columns = [list(point_format).index(axis) if axis in point_format else fallback
               for axis, fallback in (("X", 0), ("Y", 1), ("Z", 2))]
    if data.ndim != 2 or data.shape[1] <= max(columns):
        raise ValueError(f"{path}: 'data' has shape {data.shape}; expected N x C with X, Y, Z columns "
                         f"({list(point_format) or 'X Y Z first'})")
    return data[:, columns]


def ddad_split_lines(data_path: str | Path, split: str = "train", cameras: Sequence[str] = (DEFAULT_DDAD_CAMERA,),
                     frame_ids: Sequence[int] = (0, -1, 1), json_name: str = DDAD_JSON) -> tuple[list[str], int]:
    """Split lines of every sample of ``split`` in ``<data_path>/<json_name>`` for each camera.

    Samples whose context frames (``frame_ids``) fall outside their scene are left out.
    Returns (lines ``<scene json> <sample index> <camera>``, number left out).
    """
    root = Path(data_path)
    index_path = root / json_name
    index = _load_json(index_path, "dataset index")
    key = DDAD_SPLIT_KEYS.get(split)
    if key is None:
        raise ValueError(f"unknown DDAD split {split!r}: choose one of {sorted(DDAD_SPLIT_KEYS)}")
    try:
        splits = index["scene_splits"]
        scene_files = (splits[key] if key in splits else splits[split])["filenames"]
    except (KeyError, TypeError):
        raise ValueError(f"{index_path} has no scene_splits[{key!r}].filenames ({split} split)") from None
    offsets = [int(f) for f in frame_ids]
    lines, dropped = [], 0
    for scene_file in scene_files:
        scene = load_scene(root / scene_file)
        for camera in cameras:
            for sample in range(len(scene.samples)):
                if 0 <= sample + min(offsets) and sample + max(offsets) < len(scene.samples):
                    lines.append(f"{scene_file} {sample} {camera}")
                else:
                    dropped += 1
    return lines, dropped


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


class DDADDataset(MonoDataset):
    """DDAD samples of one camera each; see the module docstring for the layout and the cache.

    Split lines: ``<scene JSON> <sample index> [<camera>]`` (relative to ``data_path``). Items
    carry the scene JSON as ``folder``, the sample index as ``frame_index`` and the camera as
    ``side``. Other arguments: as `MonoDataset` (``img_ext`` is ignored; no stereo).

    ``translation_norms=True`` adds ``("translation_norm", f)`` for every context f to each sample:
    float32 scalar, the metres the camera travelled between the two samples
    (`target_from_context`), for PackNet's velocity loss (``--velocity_weight``).

    Attributes:
        num_dropped: lines left out because a context frame falls outside the scene.
    """

    def __init__(self, data_path, filenames: Sequence[str], height: int, width: int, frame_ids, *args,
                 translation_norms: bool = False, **kwargs):
        if "s" in frame_ids:
            raise ValueError("--dataset ddad has no stereo pairs: drop --use_stereo")
        self.translation_norms = translation_norms
        self._scenes: dict[str, DDADScene] = {}
        self._intrinsics: dict[tuple[str, str, str], np.ndarray] = {}
        self.num_dropped = 0
        super().__init__(data_path, filenames, height, width, frame_ids, *args, **kwargs)

    # ----------------------------------------------------------------------------- scenes
    def scene(self, scene_file: str) -> DDADScene:
        if scene_file not in self._scenes:
            self._scenes[scene_file] = load_scene(self.data_path / scene_file)
        return self._scenes[scene_file]

    def camera_matrix(self, item: SplitItem) -> np.ndarray:
        """3 x 3 K in pixels of the item's camera at the image's native size."""
        scene = self.scene(item.folder)
        key = (item.folder, scene.calibration_keys[item.frame_index], item.side)
        if key not in self._intrinsics:
            self._intrinsics[key] = load_camera_intrinsics(scene, key[1], item.side)
        return self._intrinsics[key]

    def datum(self, item: SplitItem, name: str | None = None, offset: int = 0) -> Datum:
        """The record of sensor ``name`` (default: the item's camera) in sample ``frame_index + offset``."""
        return self.scene(item.folder).samples[item.frame_index + offset][name or item.side]

    def target_from_context(self, item: SplitItem, offset: int) -> np.ndarray:
        """4 x 4 float64 transform of points from the camera at context ``offset`` into the item's camera.

        From the scene's poses (metres), e.g. for velocity supervision: its translation's norm is
        the camera's travel between the two samples.
        """
        target, context = self.datum(item), self.datum(item, offset=offset)
        return np.linalg.inv(target.world_from_sensor) @ context.world_from_sensor

    def __getitem__(self, key):
        sample = super().__getitem__(key)
        if self.translation_norms:
            item = self.items[int(sample["index"])]
            for frame_id in self.frame_ids[1:]:
                travel = np.linalg.norm(self.target_from_context(item, frame_id)[:3, 3])
                sample[("translation_norm", frame_id)] = torch.tensor(travel, dtype=torch.float32)
        return sample

    # ----------------------------------------------------------------------------- MonoDataset hooks
    def parse_line(self, line: str, line_number: int) -> SplitItem:
        tokens = line.split()
        where = f"{self.split_name}, line {line_number}"
        if len(tokens) not in (2, 3):
            raise ValueError(f"{where}: expected '<scene json> <sample index> [<camera>]', got {line.strip()!r}")
        scene_file, index_text = tokens[:2]
        camera = tokens[2] if len(tokens) == 3 else DEFAULT_DDAD_CAMERA
        try:
            index = int(index_text)
        except ValueError:
            raise ValueError(f"{where}: sample index {index_text!r} is not an integer") from None
        try:
            scene = self.scene(scene_file)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{where}: {err}") from None
        if not 0 <= index < len(scene.samples):
            raise ValueError(f"{where}: {scene_file} has {len(scene.samples)} samples, no sample {index}")
        sample = scene.samples[index]
        if camera not in sample:
            cameras = sorted(name for name, datum in sample.items() if datum.width)
            raise ValueError(f"{where}: sample {index} of {scene_file} has no {camera} image (it has {cameras}); "
                             "choose cameras with prepare_ddad.py --ddad_cameras")
        if DDAD_LIDAR not in sample:
            raise ValueError(f"{where}: sample {index} of {scene_file} has no {DDAD_LIDAR} point cloud")
        item = SplitItem(folder=scene_file, frame_index=index, side=camera, line_number=line_number)
        self.normalized_intrinsics(item)  # a missing calibration fails now, naming its file
        return item

    def _parse_split(self, filenames: Sequence[str]) -> list[SplitItem]:
        items = super()._parse_split(filenames)
        offsets = [f for f in self.frame_ids if f != "s"]
        kept = [item for item in items
                if 0 <= item.frame_index + min(offsets)
                and item.frame_index + max(offsets) < len(self.scene(item.folder).samples)]
        self.num_dropped = len(items) - len(kept)
        if self.num_dropped:
            logger.warning("%s: %d of %d lines left out: their context samples (%s) fall outside the scene",
                           self.split_name, self.num_dropped, len(items), offsets)
        if not kept:
            raise ValueError(f"{self.split_name}: no line has all its context samples {offsets} in its scene")
        return kept

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        scene = self.scene(folder)
        return scene.folder / scene.samples[frame_index][side].filename

    def normalized_intrinsics(self, item: SplitItem) -> np.ndarray:
        K = self.camera_matrix(item)
        datum = self.datum(item)
        if not (datum.width and datum.height):
            raise ValueError(f"{self.data_path / item.folder}: the {item.side} image of sample {item.frame_index} "
                             "lacks 'width' and 'height'; re-download the scene")
        normalized = np.eye(4, dtype=np.float32)
        normalized[0, :3] = K[0] / datum.width
        normalized[1, :3] = K[1] / datum.height
        return normalized

    # ----------------------------------------------------------------------------- LiDAR depth
    def depth_cache_path(self, item: SplitItem) -> Path:
        """``<scene>/depth/lidar/<camera>/<image stem>.npz`` (the stem is the timestamp)."""
        image = Path(self.datum(item).filename)
        return self.scene(item.folder).folder / "depth" / DDAD_DEPTH_TYPE / item.side / f"{image.stem}.npz"

    def depth_signature(self, item: SplitItem) -> str:
        """SHA-256 of everything the cached map depends on: a change in any of it rebuilds the map."""
        camera, lidar = self.datum(item), self.datum(item, DDAD_LIDAR)
        lidar_path = self.scene(item.folder).folder / lidar.filename
        if not lidar_path.is_file():
            raise FileNotFoundError(f"point cloud {lidar_path} not found (sample {item.frame_index} of "
                                    f"{item.folder}); the scene is incomplete: re-download it")
        stat = lidar_path.stat()
        content = {"version": DEPTH_CACHE_VERSION, "lidar": lidar.filename, "lidar_bytes": stat.st_size,
                   "lidar_mtime_ns": stat.st_mtime_ns, "point_format": list(lidar.point_format),
                   "world_from_lidar": lidar.world_from_sensor.round(9).tolist(),
                   "world_from_camera": camera.world_from_sensor.round(9).tolist(),
                   "K": self.camera_matrix(item).round(9).tolist(), "size": [camera.height, camera.width]}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def _read_cached_depth(self, path: Path, signature: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The cached map, or None (with a warning unless absent) when it is unreadable or stale."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as cached:
                depth, stored = np.asarray(cached["depth"]), str(cached["signature"])
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
            logger.warning("DDAD depth cache %s is unreadable (%s): rebuilding it", path, err)
            return None
        if stored != signature:
            logger.warning("DDAD depth cache %s is stale (its LiDAR file, poses or calibration changed): "
                           "rebuilding it", path)
            return None
        if depth.dtype != np.float32 or depth.shape != shape or not np.isfinite(depth).all() or (depth < 0).any():
            logger.warning("DDAD depth cache %s holds a %s %s map, not float32 %s depths >= 0: rebuilding it",
                           path, depth.dtype, depth.shape, shape)
            return None
        return depth

    def get_depth(self, item: SplitItem) -> np.ndarray:
        """float32 H x W LiDAR depth (metres, 0 = none) of the item at the image's native size, cached."""
        camera, lidar = self.datum(item), self.datum(item, DDAD_LIDAR)
        shape = (camera.height, camera.width)
        path = self.depth_cache_path(item)
        signature = self.depth_signature(item)
        depth = self._read_cached_depth(path, signature, shape)
        if depth is None:
            points = load_point_cloud(self.scene(item.folder).folder / lidar.filename, lidar.point_format)
            depth = lidar_depth_map(points, lidar.world_from_sensor, camera.world_from_sensor,
                                    self.camera_matrix(item), *shape)
            with atomic_output(path, suffix=".npz") as tmp:
                np.savez_compressed(tmp, depth=depth, signature=np.array(signature))
        return depth

    def ground_truth(self) -> "DDADDepthMaps":
        """The items' depth maps, in order: built (and cached) now, read back one at a time."""
        for item in self.items:
            self.get_depth(item)
        return DDADDepthMaps(self)


class DDADDepthMaps(Sequence):
    """A list-like view of a `DDADDataset`'s cached depth maps, read on access.

    Full DDAD validation maps are 1216 x 1936 float32 (9.4 MB each, 37 GB for the 3,950 of one
    camera), so they are not held in memory.
    """

    def __init__(self, dataset: DDADDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.dataset.get_depth(self.dataset.items[index])


def build_ddad_eval_sets(path: str, options: EvalOptions) -> list[EvalSet]:
    """``EVAL_DATASETS["ddad"]``: ``options.split``'s test_files.txt (a folder), or every sample of the
    val split of ``<path>/ddad.json`` seen by CAMERA_01, under the ``ddad`` protocol (0-200 m)."""
    from torch.utils.data import DataLoader

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"--ddad_path {path} does not exist or is not a folder (give the folder holding "
                                "ddad.json)")
    if options.split:
        split_file = Path(options.split).expanduser() / "test_files.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"{split_file} not found: --ddad_split takes a folder holding test_files.txt "
                                    "(write one with prepare_ddad.py)")
        lines, split_name = readlines(split_file), str(split_file)
    else:
        lines, _ = ddad_split_lines(root, "val", frame_ids=[0])
        split_name = f"{root / DDAD_JSON} (val split, {DEFAULT_DDAD_CAMERA})"
    dataset = DDADDataset(root, lines, options.height, options.width, [0], 1, split_name=split_name)
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.num_workers)
    return [EvalSet(title="DDAD", loader=loader, gt_depths=dataset.ground_truth(), protocol=DDAD_PROTOCOL,
                    name="ddad")]
