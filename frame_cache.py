"""A cache of decoded, pre-resized uint8 frames, so the training loader never decodes a PNG.

`build_frame_cache.py` fills it once (one decode and one area resize per frame, exactly as
`MonoDataset.load_image` does); training reads it with ``--frame_cache PATH``. The loader then
copies a memory-mapped H x W x 3 array per frame instead of decoding a full-size image, and the
result is bit-identical to the normal path (pinned by tests/unit/test_speed_paths.py).

Layout of the cache folder:

- ``frames.u8``: raw uint8 rows of shape ``height x width x 3`` (RGB), read with ``np.memmap``.
- ``index.json``: the format version, what the cache was built for (dataset class, data path,
  image extension, height, width, split, frame ids), the rebuild command, and ``frames``: a map
  from each image path relative to the data root to ``[row, flipped_row]``. ``flipped_row`` is
  -1 when mirroring the resized frame equals resizing the mirrored frame (true for most frame
  sizes); otherwise the mirrored frame is stored too, since OpenCV's area resize is not always
  exactly mirror-symmetric (e.g. 1241 x 376 -> 640 x 192 differs by 1 in a few pixels).

A cache is refused, with the command that rebuilds it, when it was built for another size,
dataset class or image extension, or lacks a frame the split needs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
INDEX_FILE = "index.json"
FRAMES_FILE = "frames.u8"
NO_ROW = -1
CHANNELS = 3


def frame_key(data_path: str | os.PathLike, path: str | os.PathLike) -> str:
    """The cache's name of an image: its path relative to the data root, with forward slashes."""
    return Path(os.path.relpath(Path(path), Path(data_path))).as_posix()


def rebuild_command(data_path, split: str, height: int, width: int, output, dataset: str = "kitti",
                    img_ext: str = ".png", frame_ids: Iterable = (0, -1, 1)) -> str:
    """The ``build_frame_cache.py`` command line that builds a cache for these settings."""
    temporal = [str(f) for f in frame_ids if f != "s"]
    command = (f"python build_frame_cache.py --dataset {dataset} --data_path {data_path} --split {split} "
               f"--height {height} --width {width} --frame_ids {' '.join(temporal)}")
    if "s" in list(frame_ids):
        command += " --use_stereo"
    if img_ext == ".jpg":
        command += " --jpg"
    return command + f" --output {output}"


def _dataset_name(dataset) -> str:
    from datasets import DATASETS

    for name, cls in DATASETS.items():
        if type(dataset) is cls:
            return name
    return type(dataset).__name__


def _split_argument(dataset) -> str:
    """The ``--split`` value that names the dataset's split file (its folder), for messages."""
    name = Path(dataset.split_name)
    return str(name.parent) if name.suffix == ".txt" else str(name)


def check_cacheable(dataset) -> None:
    """Refuse datasets whose frames are not plain decoded-and-resized images."""
    from datasets.mono_dataset import MonoDataset

    cls = type(dataset)
    if cls.load_image is not MonoDataset.load_image or cls.load_frames is not MonoDataset.load_frames:
        raise ValueError(f"--frame_cache: {cls.__name__} preprocesses its frames (undistortion, crops or "
                         "stacked files), which the cache does not reproduce; drop --frame_cache")


def dataset_frame_paths(dataset) -> list[Path]:
    """Every image file the dataset's split reads (all frame ids of every line), sorted, unique."""
    paths = set()
    for item in dataset.items:
        for frame_index, side in dataset._frame_sources(item).values():
            paths.add(dataset.image_path(item.folder, frame_index, side))
    return sorted(paths)


# The index entries the reader relies on, with their JSON types.
INDEX_FIELDS = {"format": int, "dataset": str, "img_ext": str, "height": int, "width": int, "rows": int,
                "split": str, "command": str, "frames": dict}


def read_index(index_path: Path, hint: str) -> dict:
    """Parse ``index.json`` as plain JSON data (never code) and check the fields the reader uses.

    Raises:
        ValueError: naming the file: not JSON (e.g. a pickle), not an object, or a field missing or
            of the wrong type; ``hint`` says how to rebuild the cache.
    """
    try:
        index = json.loads(index_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--frame_cache: {index_path} is not a JSON frame-cache index ({err}); {hint}") from err
    if not isinstance(index, dict):
        raise ValueError(f"--frame_cache: {index_path} holds a JSON {type(index).__name__}, not a frame-cache "
                         f"index; {hint}")
    if index.get("format") != CACHE_FORMAT:
        return index  # another version: the caller names it and the rebuild command
    wrong = [name for name, kind in INDEX_FIELDS.items()
             if not isinstance(index.get(name), kind) or isinstance(index.get(name), bool)]
    if wrong:
        raise ValueError(f"--frame_cache: {index_path} lacks or mistypes the fields {wrong}; {hint}")
    return index


class FrameCache:
    """Read side of a frame cache folder (see the module docstring).

    Args:
        root: the cache folder.
        index: its parsed ``index.json``.

    Picklable for DataLoader workers: the memory map is reopened lazily in each process
    (pickling a ``np.memmap`` would copy the whole array).
    """

    def __init__(self, root: Path, index: dict) -> None:
        self.root = Path(root)
        self.index = index
        self.height, self.width = int(index["height"]), int(index["width"])
        self.rows = int(index["rows"])
        self._frames: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "FrameCache":
        """Open and sanity-check the cache in folder ``path``; errors say how to build one."""
        root = Path(path).expanduser()
        index_path = root / INDEX_FILE
        hint = ("build it with `python build_frame_cache.py --data_path <root> --split <split> "
                f"--height <H> --width <W> --output {root}`")
        if not index_path.is_file():
            raise FileNotFoundError(f"--frame_cache {root}: no {INDEX_FILE} there (not a frame cache, or its "
                                    f"build did not finish); {hint}")
        index = read_index(index_path, hint)
        if index.get("format") != CACHE_FORMAT:
            raise ValueError(f"--frame_cache {root}: format {index.get('format')} is not the supported "
                             f"{CACHE_FORMAT}; rebuild it: {index.get('command', hint)}")
        cache = cls(root, index)
        expected = cache.rows * cache.height * cache.width * CHANNELS
        frames_path = root / FRAMES_FILE
        size = frames_path.stat().st_size if frames_path.is_file() else -1
        if size != expected:
            raise ValueError(f"--frame_cache {root}: {FRAMES_FILE} holds {size} bytes but the index "
                             f"describes {expected} (interrupted or mixed builds); rebuild it: "
                             f"{index['command']}")
        return cache

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_frames"] = None
        return state

    @property
    def frames(self) -> np.ndarray:
        """rows x height x width x 3 uint8, memory-mapped read-only."""
        if self._frames is None:
            self._frames = np.memmap(self.root / FRAMES_FILE, dtype=np.uint8, mode="r",
                                     shape=(self.rows, self.height, self.width, CHANNELS))
        return self._frames

    def check_dataset(self, dataset) -> None:
        """Raise ValueError (with the rebuild command) unless this cache serves ``dataset`` exactly."""
        check_cacheable(dataset)
        command = rebuild_command(dataset.data_path, _split_argument(dataset), dataset.height, dataset.width,
                                  self.root, _dataset_name(dataset), dataset.img_ext, dataset.frame_ids)
        built = self.index
        wanted = {"dataset": _dataset_name(dataset), "height": dataset.height, "width": dataset.width,
                  "img_ext": dataset.img_ext}
        for name, value in wanted.items():
            if built[name] != value:
                raise ValueError(f"--frame_cache {self.root} was built for {name} {built[name]!r}, but this "
                                 f"run needs {value!r}; rebuild it: {command}")
        frames = built["frames"]
        missing = [path for path in dataset_frame_paths(dataset)
                   if frame_key(dataset.data_path, path) not in frames]
        if missing:
            raise ValueError(f"--frame_cache {self.root} (built for --split {built['split']}) lacks "
                             f"{len(missing)} frame(s) of {dataset.split_name}, e.g. {missing[0]}; "
                             f"rebuild it for this split: {command}")

    def load(self, data_path: str | os.PathLike, path: str | os.PathLike, do_flip: bool) -> np.ndarray:
        """The cached frame of ``path`` as a fresh contiguous H x W x 3 uint8 RGB array.

        Equal to ``MonoDataset.load_image(path, do_flip)`` on the dataset the cache was built for.
        """
        row, flipped_row = self.index["frames"][frame_key(data_path, path)]
        if do_flip and flipped_row != NO_ROW:
            return np.array(self.frames[flipped_row])
        frame = self.frames[row]
        return np.ascontiguousarray(frame[:, ::-1]) if do_flip else np.array(frame)


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete the hidden temporaries a killed build left in the cache folder (up to a whole frames.u8)."""
    from run_folder import is_atomic_temporary

    if not root.is_dir():
        return []
    stale = sorted(p for p in root.iterdir() if is_atomic_temporary(p) and p.is_file() and not p.is_symlink())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _decode_both(args) -> tuple[np.ndarray, np.ndarray | None]:
    """The frame as the loader makes it, and its flipped version when mirroring is not exact."""
    dataset, path = args
    frame = dataset.load_image(path, False)
    flipped = dataset.load_image(path, True)
    return frame, None if np.array_equal(flipped, frame[:, ::-1]) else flipped


def _decoded(dataset, paths: list[Path], num_workers: int) -> Iterator[tuple]:
    jobs = ((dataset, path) for path in paths)
    if num_workers <= 1:
        yield from map(_decode_both, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context().Pool(num_workers) as pool:
        yield from pool.imap(_decode_both, jobs, chunksize=8)


def build_frame_cache(dataset, output: str | os.PathLike, split: str, num_workers: int = 0,
                      progress: bool = True) -> Path:
    """Decode and resize every frame ``dataset`` reads into the cache folder ``output``.

    Both files are written atomically (frames first, the index last), so a reader never sees an
    index describing frames that are not there.

    Args:
        dataset: a MonoDataset whose frames are decoded by the base ``load_image``.
        output: the cache folder (created if needed; its two files are replaced).
        split: the ``--split`` value, recorded for messages.
        num_workers: decoding processes (0 or 1: this process).
        progress: show a tqdm progress bar.

    Returns:
        The cache folder.
    """
    from utils import atomic_output

    check_cacheable(dataset)
    root = Path(output).expanduser()
    removed = remove_stale_temporaries(root)
    if removed:
        logger.info("removed %d temporary file(s) of an interrupted build: %s", len(removed),
                    ", ".join(map(str, removed)))
    paths = dataset_frame_paths(dataset)
    frames: dict[str, list[int]] = {}
    rows = 0
    with atomic_output(root / FRAMES_FILE) as tmp, open(tmp, "wb") as out:
        decoded = _decoded(dataset, paths, num_workers)
        if progress:
            from tqdm import tqdm

            decoded = tqdm(decoded, total=len(paths), desc="frame cache", unit="frame", dynamic_ncols=True)
        for path, (frame, flipped) in zip(paths, decoded):
            out.write(frame.tobytes())
            entry = [rows, NO_ROW]
            rows += 1
            if flipped is not None:
                out.write(flipped.tobytes())
                entry[1] = rows
                rows += 1
            frames[frame_key(dataset.data_path, path)] = entry
    index = {"format": CACHE_FORMAT, "dataset": _dataset_name(dataset),
             "data_path": str(Path(dataset.data_path).resolve()), "img_ext": dataset.img_ext,
             "height": dataset.height, "width": dataset.width, "split": split,
             "frame_ids": list(dataset.frame_ids), "rows": rows,
             "command": rebuild_command(dataset.data_path, split, dataset.height, dataset.width, root,
                                        _dataset_name(dataset), dataset.img_ext, dataset.frame_ids),
             "frames": frames}
    with atomic_output(root / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(index))
    return root
