"""The standard split lists, fetched on first use from their public homes and verified.

We do not ship copies of the lists. The first time a split is used (``--split eigen_zhou``,
``--eval_split eigen``...), each of its files is downloaded into ``splits/<split>/`` and checked
against the SHA-256 recorded here, computed on the content with carriage returns removed (the
file is stored that way). Offline, or on a mismatch, the error names the URL and the path where a
copy can be put by hand; a file already in place is used as it is.

KITTI lists come from Monodepth2 (which keeps them directly under ``splits/``), the NYUv2, Make3D
and Cityscapes lists from BDEdepth.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from utils import REPO_ROOT, atomic_output

logger = logging.getLogger(__name__)

# Split folders by name (``--split eigen_zhou`` is ``splits/eigen_zhou``); fetched lists land here.
SPLITS_DIR = REPO_ROOT / "splits"

MONODEPTH2_SPLITS_URL = "https://raw.githubusercontent.com/nianticlabs/monodepth2/master/splits/"
BDEDEPTH_SPLITS_URL = "https://raw.githubusercontent.com/LiuJF1226/BDEdepth/master/splits/"

# Generous for a 5 MB list on a slow link, short enough that an unreachable host fails fast.
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SplitFile:
    """Where one list lives and what it must hash to.

    Attributes:
        base_url: the folder URL; the file is ``base_url + "<split>/<name>"``.
        sha256: hex digest of the content with carriage returns removed (raw bytes if binary).
        lines: number of lines (None for binary files), reported in errors.
        binary: stored byte for byte (``.npy``), no carriage-return removal.
    """

    base_url: str
    sha256: str
    lines: int | None = None
    binary: bool = False


def _md2(lines: int, sha256: str) -> SplitFile:
    return SplitFile(MONODEPTH2_SPLITS_URL, sha256, lines)


def _bde(lines: int, sha256: str) -> SplitFile:
    return SplitFile(BDEDEPTH_SPLITS_URL, sha256, lines)


# "<split>/<file>" -> source. The values are those of issue 3 (upstream master, verified).
SPLIT_FILES: dict[str, SplitFile] = {
    "eigen/test_files.txt": _md2(697, "e226d4ca16e0e6e9695435014347dcf973588531330536fd8a68d298ef091a6b"),
    "eigen_benchmark/test_files.txt":
        _md2(652, "d56e5e509e6960a01fb93795f85028ac6e4a82ad40e64b6e968988e4db95b9be"),
    "eigen_zhou/train_files.txt": _md2(39810, "00173a231642151c4693274e701ddd4cae7916520a757c7a94eae8e1173f7b0c"),
    "eigen_zhou/val_files.txt": _md2(4424, "64a868b8d2c66c3979a2d74c22ea2e9146850d5b9f5786ed8e5f92201ba1ad04"),
    "eigen_full/train_files.txt": _md2(45200, "1b491141d87b7af9e6706609b7ce858c198c3a4ca61d180c7dc90815d5f2a986"),
    "eigen_full/val_files.txt": _md2(1776, "9c4446772ec58aaa60acbeef0fa6d1e8ef1b346ad4f78272d056d10cf1993af9"),
    "odom/train_files.txt": _md2(36671, "ced6c5fd1b0b76e2a28d68e046421c1f0df08de8fb713ca305684d263af6d0e2"),
    "odom/val_files.txt": _md2(4075, "9cf46e1b873d6f9883015b1f77fcace51db424a1f0a765324957f46399b6db99"),
    "odom/test_files_09.txt": _md2(1590, "8b999b6f974041663ba2f8aa6456ea338089a272119b7edd702f352278f43d26"),
    "odom/test_files_10.txt": _md2(1200, "f39c47e0c21f65d4503476375f2a786def34f54bd5d1cabf28c7e68f002986a1"),
    "benchmark/train_files.txt": _md2(72084, "060fdce26c5cd0681b6cc7620a856c697caa78fd23ab7a9ba41fb39c70ae3860"),
    "benchmark/val_files.txt": _md2(6060, "5c65577de234037bec0c792d7bf44c60b7fb367449266054eb4612a5e92bfa08"),
    "benchmark/test_files.txt": _md2(500, "b9b0746d2e5263d975fd082d6e82d592971adc9e6a2fdf370a8cf78519161d28"),
    "benchmark/eigen_to_benchmark_ids.npy": SplitFile(
        MONODEPTH2_SPLITS_URL, "1c1ac4ea84c938622f228a4438661fdb66ec07a2380a54bd21cd28b6eeb1a4e8", binary=True),
    "cityscapes/test_files.txt": _bde(1525, "e70c04ba9d091d11b4dc25de78ec8d33212081c72e641ce3c42aab1a07331daa"),
    "cityscapes/train_files.txt": _bde(69731, "03f66cd9ba79964a5295008e5b2fc73e8451f902785d8386a580c512ab5ae4d3"),
    "make3d/test_files.txt": _bde(133, "8c409d1a5d052b6fc02f53f3f039914155808818bb9a3d31505617e70cd9499f"),
    "nyuv2/test_files.txt": _bde(654, "049c0e3bb5355d86b068f055fb0599e77f4c1cc711d6c82b4e0e4d4ea85340c6"),
}


class SplitFetchError(FileNotFoundError):
    """A standard list is missing and could not be downloaded or verified."""


def known_splits(registry: dict[str, SplitFile] | None = None) -> set[str]:
    """Split names with at least one registered file, e.g. {"eigen", "eigen_zhou", ...}."""
    return {key.split("/")[0] for key in (SPLIT_FILES if registry is None else registry)}


def split_url(split: str, name: str, registry: dict[str, SplitFile] | None = None) -> str:
    registry = SPLIT_FILES if registry is None else registry
    return registry[f"{split}/{name}"].base_url + f"{split}/{name}"


def normalized_content(data: bytes, binary: bool) -> bytes:
    """What is hashed and stored: the bytes, with carriage returns removed for text lists."""
    return data if binary else data.replace(b"\r", b"")


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def ensure_split_file(split: str, name: str, splits_dir: str | Path | None = None,
                      registry: dict[str, SplitFile] | None = None,
                      timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Path of ``<splits_dir>/<split>/<name>``, downloading and verifying it if absent.

    Args:
        split, name: e.g. ``"eigen_zhou"``, ``"train_files.txt"``; must be in the registry
            unless the file is already in place.
        splits_dir: the ``splits/`` folder (default: the repository's).
        registry: the ``SPLIT_FILES`` table (tests pass their own).
        timeout: seconds per download.

    Raises:
        SplitFetchError: not in place and unknown, unreachable, or failing the checksum; the
            message names the URL and where to put the file by hand.
    """
    registry = SPLIT_FILES if registry is None else registry
    destination = Path(SPLITS_DIR if splits_dir is None else splits_dir) / split / name
    if destination.is_file():
        return destination
    key = f"{split}/{name}"
    if key not in registry:
        raise SplitFetchError(f"{destination} not found, and {key} is not a standard list this toolkit "
                              "can fetch: create it, or pass a folder holding it")
    entry = registry[key]
    url = split_url(split, name, registry)
    by_hand = f"download {url} by hand and save it as {destination}"
    logger.info("fetching %s -> %s", url, destination)
    try:
        content = normalized_content(_download(url, timeout), entry.binary)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise SplitFetchError(f"could not download the split list {key} ({err}); {by_hand}") from err
    digest = hashlib.sha256(content).hexdigest()
    if digest != entry.sha256:
        lines = "" if entry.binary else f", {len(content.splitlines())} lines (expected {entry.lines})"
        raise SplitFetchError(f"{url} failed verification: SHA-256 {digest}{lines}, expected "
                              f"{entry.sha256} (carriage returns removed); the upstream file changed or "
                              f"the download was altered. Nothing was written; {by_hand} after checking it")
    with atomic_output(destination, suffix=Path(name).suffix) as tmp:
        tmp.write_bytes(content)
    return destination


def ensure_split(split: str, splits_dir: str | Path | None = None,
                 registry: dict[str, SplitFile] | None = None) -> list[Path]:
    """Fetch every registered file of ``split`` that is not in place yet; return their paths."""
    registry = SPLIT_FILES if registry is None else registry
    names = [key.split("/", 1)[1] for key in registry if key.split("/")[0] == split]
    return [ensure_split_file(split, name, splits_dir, registry) for name in names]


def resolve_split_dir(split: str, fetch: bool = True) -> Path:
    """Map a ``--split``/``--eval_split`` value to its folder.

    A value naming an existing folder is used as it is (the synthetic generator writes its
    splits next to the data); anything else is a name under the repository's ``splits/``
    folder, e.g. ``eigen_zhou`` -> ``splits/eigen_zhou``. For a standard split (``eigen``,
    ``eigen_zhou``, ``odom``, ...) the lists not yet there are downloaded and verified first
    (`ensure_split`; ``fetch=False`` skips that).
    """
    as_path = Path(split).expanduser()
    if as_path.is_dir():
        return as_path.resolve()
    if fetch and split in known_splits():
        ensure_split(split)
    return SPLITS_DIR / split


def split_file(split: str, name: str) -> Path:
    """``<split folder>/<name>``, fetched and verified first when it is a standard list."""
    folder = resolve_split_dir(split, fetch=False)
    if folder.parent == SPLITS_DIR and not (folder / name).is_file():
        if f"{split}/{name}" in SPLIT_FILES:
            ensure_split_file(split, name)
    return folder / name
