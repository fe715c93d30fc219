"""Ground-truth depth files (``gt_depths.npz``): written without pickles, read without running code.

File format: a compressed npz holding one plain float32 H x W array per test line, in metres
(0 = no ground truth), under the keys ``depth_00000``, ``depth_00001``, ... in list order. It
holds no pickles, so it is read with ``np.load(allow_pickle=False)``. The reference's files
(Monodepth2's ``gt_depths.npz``: one key ``data``, an object array of the maps, which NumPy can
only store pickled) are read too, through `RestrictedArrayUnpickler`, which rebuilds NumPy arrays
and nothing else: a pickled object of any other kind is refused, never run.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from utils import atomic_output

GT_KEY_PREFIX = "depth_"
_GT_KEY = re.compile(rf"^{GT_KEY_PREFIX}(\d+)$")
REFERENCE_GT_KEY = "data"
# Element kinds accepted as depth values: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"


def gt_key(index: int) -> str:
    """The npz key of the ``index``-th ground-truth map (``depth_00042``)."""
    return f"{GT_KEY_PREFIX}{index:05d}"


def _numpy_global(module: str, name: str):
    """``module.name`` for the NumPy 1 (``numpy.core``) and NumPy 2 (``numpy._core``) spellings."""
    for candidate in (module, module.replace("numpy.core", "numpy._core"),
                      module.replace("numpy._core", "numpy.core")):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"{module}.{name} is not available in this NumPy")


class RestrictedArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays (of numbers or of arrays) and refuses every other global.

    A pickle can call any importable function while it is read; this one resolves only the
    names NumPy's own array pickles use (array reconstruction, ndarray, dtype, and the byte
    helpers of old protocols), so a file can rebuild arrays but never run code.
    """

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles spell bytes as codecs.encode(str, "latin1")
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused the pickled global {module}.{name}: only NumPy arrays "
                                         "of numbers are accepted")
        if module == "_codecs":
            import codecs

            return codecs.encode
        return _numpy_global(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent reference: only NumPy arrays are accepted")


def _read_array_header(f, version: tuple[int, int]):
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f".npy format version {version} is not supported")
    return readers[version](f)


def read_reference_gt_depths(path: str | os.PathLike, member: str = REFERENCE_GT_KEY) -> list[np.ndarray]:
    """The maps of a reference (Monodepth2) ``gt_depths.npz``, whose ``data`` is an object array.

    The pickled array is read with `RestrictedArrayUnpickler`; every element must be a 2-D
    array of numbers.

    Raises:
        ValueError: naming ``path``: the member holds anything but arrays of numbers (such a file
            is refused, its pickle never executed), or is not a valid .npy.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{member}.npy") as f:
            version = np.lib.format.read_magic(f)
            shape, fortran_order, dtype = _read_array_header(f, version)
            if dtype.hasobject:
                array = RestrictedArrayUnpickler(f).load()
            else:  # a plain stack of equally sized maps
                array = np.frombuffer(f.read(), dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    except (pickle.UnpicklingError, zipfile.BadZipFile, ValueError, EOFError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: its '{member}' entry is not an array of depth maps; refused without "
                         f"running anything it holds ({err}). Re-create it with export_gt_depth.py") from err
    maps = list(array) if isinstance(array, np.ndarray) else [array]
    for index, depth in enumerate(maps):
        if not (isinstance(depth, np.ndarray) and depth.dtype.kind in NUMERIC_KINDS and depth.ndim == 2):
            kind = f"{depth.dtype} array of shape {depth.shape}" if isinstance(depth, np.ndarray) else \
                type(depth).__name__
            raise ValueError(f"{path}: map {index} of '{member}' is a {kind}, not a 2-D array of numbers; "
                             "re-create the file with export_gt_depth.py")
    return [np.asarray(depth, dtype=np.float32) for depth in maps]


def check_gt_values(depths: Sequence[np.ndarray], path: str | os.PathLike) -> list[np.ndarray]:
    """Refuse maps with non-finite or negative depths (0 marks "no ground truth", never inf/NaN).

    Such values would turn every metric into nan/inf; the error names the file and the map
    (map i is line i + 1 of the split's test_files.txt).
    """
    for index, depth in enumerate(depths):
        bad = ~np.isfinite(depth) | (depth < 0)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"{path}: map {index} (line {index + 1} of the split's test_files.txt) holds "
                             f"{int(bad.sum())} non-finite or negative depth(s), first {depth[row, col]} at row "
                             f"{row}, column {col}; ground truth must be finite metres >= 0 (0 = unknown). "
                             "Re-create it with export_gt_depth.py")
    return list(depths)


def load_gt_depths(path: str | os.PathLike) -> list[np.ndarray]:
    """Load ``gt_depths.npz`` as a list of H x W float32 depth maps (metres, 0 = invalid).

    Reads this toolkit's format (``depth_NNNNN`` keys) and the reference's (``data``, an object
    array); neither can run code (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming ``path``: not an npz of depth maps, keys missing or mixed, pickled
            objects other than arrays of numbers, or depths that are non-finite or negative.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}; run export_gt_depth.py for its "
                                "split")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a gt_depths npz ({err}); re-create it with export_gt_depth.py") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not a gt_depths npz; re-create it with "
                         "export_gt_depth.py")
    with archive:
        names = list(archive.files)
        if names == [REFERENCE_GT_KEY]:
            return check_gt_values(read_reference_gt_depths(path), path)
        indices = sorted(int(m.group(1)) for name in names if (m := _GT_KEY.match(name)))
        if not names or len(indices) != len(names) or indices != list(range(len(indices))):
            raise ValueError(f"{path}: expected the keys {gt_key(0)} .. {gt_key(max(len(names) - 1, 0))} "
                             f"(or the reference's single key '{REFERENCE_GT_KEY}'), found {names[:5]}"
                             f"{' ...' if len(names) > 5 else ''}; re-create it with export_gt_depth.py")
        depths = []
        for index in indices:
            try:
                depth = archive[gt_key(index)]
            except ValueError as err:  # an object array under our key: refused, never unpickled
                raise ValueError(f"{path}: {gt_key(index)} is not an array of numbers ({err})") from err
            if depth.dtype.kind not in NUMERIC_KINDS or depth.ndim != 2:
                raise ValueError(f"{path}: {gt_key(index)} is a {depth.dtype} array of shape {depth.shape}, "
                                 "not a 2-D depth map")
            depths.append(depth.astype(np.float32, copy=False))
        return check_gt_values(depths, path)


def save_gt_depths(path: str | os.PathLike, depths: Sequence[np.ndarray]) -> None:
    """Write maps to ``path`` as a compressed npz of plain float32 arrays (``depth_NNNNN``), atomically."""
    if not len(depths):
        raise ValueError(f"no ground-truth maps to write to {path}")
    arrays = {gt_key(i): np.asarray(depth, dtype=np.float32) for i, depth in enumerate(depths)}
    with atomic_output(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
