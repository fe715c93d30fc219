"""utils.atomic_output: all or nothing, and ordinary file permissions."""

from __future__ import annotations

import os

import pytest

from utils import atomic_output


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "file.txt"
    with atomic_output(target) as tmp:
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_atomic_output_files_get_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "shared.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o644
