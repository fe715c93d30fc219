"""Split-list fetching against a local HTTP server serving files the test writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import split_lists
import utils
from split_lists import SplitFetchError, SplitFile, ensure_split, ensure_split_file

EIGEN_TEXT = "2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\r\n2011_09_26/2011_09_26_drive_0002_sync 0000000054 l\r\n"
EIGEN_CLEAN = EIGEN_TEXT.replace("\r", "").encode()


@pytest.fixture()
def server(http_server):
    """(base URL of the served splits/ folder, that folder)."""
    base, www = http_server
    (www / "splits").mkdir()
    return base + "splits/", www / "splits"


def publish(root: Path, key: str, data: bytes) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_registry_holds_the_issue_values():
    assert len(split_lists.SPLIT_FILES) == 18
    entry = split_lists.SPLIT_FILES["eigen/test_files.txt"]
    assert (entry.lines, entry.sha256) == (697, "e226d4ca16e0e6e9695435014347dcf973588531330536fd8a68d298ef091a6b")
    assert split_lists.SPLIT_FILES["benchmark/eigen_to_benchmark_ids.npy"].binary
    assert split_lists.split_url("eigen_zhou", "train_files.txt") == \
        "https://raw.githubusercontent.com/nianticlabs/monodepth2/master/splits/eigen_zhou/train_files.txt"
    assert split_lists.split_url("nyuv2", "test_files.txt") == \
        "https://raw.githubusercontent.com/LiuJF1226/BDEdepth/master/splits/nyuv2/test_files.txt"
    assert split_lists.known_splits() == {"eigen", "eigen_benchmark", "eigen_zhou", "eigen_full", "odom",
                                          "benchmark", "cityscapes", "make3d", "nyuv2"}


def test_fetch_removes_carriage_returns_and_verifies(server, tmp_path):
    base, root = server
    publish(root, "eigen/test_files.txt", EIGEN_TEXT.encode())
    registry = {"eigen/test_files.txt": SplitFile(base, hashlib.sha256(EIGEN_CLEAN).hexdigest(), 2)}
    got = ensure_split_file("eigen", "test_files.txt", tmp_path / "splits", registry)
    assert got == tmp_path / "splits" / "eigen" / "test_files.txt"
    assert got.read_bytes() == EIGEN_CLEAN
    # In place now: a second call does not download (the server's copy is gone).
    (root / "eigen" / "test_files.txt").unlink()
    assert ensure_split_file("eigen", "test_files.txt", tmp_path / "splits", registry) == got


def test_binary_files_are_kept_byte_for_byte(server, tmp_path):
    base, root = server
    ids = np.arange(5, dtype=np.int64)
    publish(root, "benchmark/ids.npy", b"")
    np.save(root / "benchmark" / "ids.npy", ids)
    data = (root / "benchmark" / "ids.npy").read_bytes()
    registry = {"benchmark/ids.npy": SplitFile(base, hashlib.sha256(data).hexdigest(), binary=True)}
    got = ensure_split_file("benchmark", "ids.npy", tmp_path / "splits", registry)
    assert np.array_equal(np.load(got), ids)


def test_checksum_mismatch_writes_nothing_and_says_where_to_put_the_file(server, tmp_path):
    base, root = server
    publish(root, "eigen/test_files.txt", b"tampered 1 l\n")
    registry = {"eigen/test_files.txt": SplitFile(base, hashlib.sha256(EIGEN_CLEAN).hexdigest(), 2)}
    destination = tmp_path / "splits" / "eigen" / "test_files.txt"
    with pytest.raises(SplitFetchError, match="failed verification: SHA-256 .*1 lines \\(expected 2\\)") as err:
        ensure_split_file("eigen", "test_files.txt", tmp_path / "splits", registry)
    assert f"save it as {destination}" in str(err.value)
    assert not destination.exists() and not list((tmp_path / "splits").rglob("*.tmp*"))


def test_unreachable_source_names_the_url_and_destination(server, tmp_path):
    base, _ = server
    registry = {"odom/test_files_09.txt": SplitFile(base, "0" * 64, 1590)}  # not published: HTTP 404
    with pytest.raises(SplitFetchError, match=rf"download {base}odom/test_files_09.txt by hand and save it as "
                                              rf".*splits/odom/test_files_09.txt"):
        ensure_split_file("odom", "test_files_09.txt", tmp_path / "splits", registry)
    closed = {"odom/test_files_09.txt": SplitFile("http://127.0.0.1:9/splits/", "0" * 64, 1590)}
    with pytest.raises(SplitFetchError, match="could not download the split list odom/test_files_09.txt"):
        ensure_split_file("odom", "test_files_09.txt", tmp_path / "splits", closed, timeout=5)


def test_unknown_missing_list_is_an_error(tmp_path):
    with pytest.raises(SplitFetchError, match="not a standard list"):
        ensure_split_file("my_split", "train_files.txt", tmp_path)


def test_ensure_split_fetches_every_file_of_the_split(server, tmp_path):
    base, root = server
    registry = {}
    for name in ("train_files.txt", "val_files.txt"):
        data = f"2011_09_26/2011_09_26_drive_0022_sync 473 r\n# {name}\n".encode()
        publish(root, f"eigen_zhou/{name}", data)
        registry[f"eigen_zhou/{name}"] = SplitFile(base, hashlib.sha256(data).hexdigest(), 2)
    paths = ensure_split("eigen_zhou", tmp_path / "splits", registry)
    assert sorted(p.name for p in paths) == ["train_files.txt", "val_files.txt"]
    assert all(p.is_file() for p in paths)


def test_resolve_split_dir_fetches_standard_splits_on_first_use(server, tmp_path, monkeypatch):
    base, root = server
    publish(root, "eigen/test_files.txt", EIGEN_TEXT.encode())
    registry = {"eigen/test_files.txt": SplitFile(base, hashlib.sha256(EIGEN_CLEAN).hexdigest(), 2)}
    monkeypatch.setattr(split_lists, "SPLIT_FILES", registry)
    monkeypatch.setattr(split_lists, "SPLITS_DIR", tmp_path / "splits")
    monkeypatch.chdir(tmp_path)
    assert split_lists.resolve_split_dir("eigen") == tmp_path / "splits" / "eigen"
    assert (tmp_path / "splits" / "eigen" / "test_files.txt").read_bytes() == EIGEN_CLEAN
    # A name that is not standard is left alone.
    assert split_lists.resolve_split_dir("my_split") == tmp_path / "splits" / "my_split"


def test_gitignore_keeps_fetched_lists_out_of_the_repository():
    ignored = (utils.REPO_ROOT / ".gitignore").read_text().splitlines()
    for split in split_lists.known_splits():
        assert f"/splits/{split}/" in ignored, split
