"""utils.atomic_output (all or nothing, ordinary permissions) and read_rgb (truncated images refused)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from utils import UnreadableImageError, atomic_output, read_rgb


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


# ------------------------------------------------------------------------------ truncated images
def encoded(ext: str, seed: int = 0, size: tuple[int, int] = (48, 64)) -> bytes:
    import cv2

    rgb = np.random.default_rng(seed).integers(0, 256, size=size + (3,), dtype=np.uint8)
    ok, data = cv2.imencode(ext, rgb)
    assert ok
    return data.tobytes()


def with_exif_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """``jpeg`` with an APP1 segment holding a whole JPEG (its own start-of-scan and end markers)."""
    body = b"Exif\0\0" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_read_rgb_refuses_a_truncated_image_by_name(tmp_path, ext):
    data = encoded(ext)
    path = tmp_path / f"frame{ext}"
    path.write_bytes(data)
    assert read_rgb(path).shape == (48, 64, 3)
    path.write_bytes(data[: len(data) * 6 // 10])
    # OpenCV 4 decodes a truncated JPEG with grey where data is missing (only a warning); newer
    # versions may refuse it. Either way the error must say which file and why.
    kind = "JPEG" if ext == ".jpg" else "PNG"
    with pytest.raises(UnreadableImageError, match=f"image {path} is a truncated {kind}"):
        read_rgb(path)


def test_an_exif_thumbnail_does_not_hide_a_truncated_jpeg(tmp_path):
    whole = with_exif_thumbnail(encoded(".jpg", seed=1), encoded(".jpg", seed=2, size=(8, 8)))
    path = tmp_path / "photo.jpg"
    path.write_bytes(whole)
    assert read_rgb(path).shape == (48, 64, 3)
    path.write_bytes(whole[:-200])
    with pytest.raises(UnreadableImageError, match="truncated JPEG"):
        read_rgb(path)


def test_trailing_bytes_after_a_complete_image_are_accepted(tmp_path):
    for ext in (".jpg", ".png"):
        path = tmp_path / f"padded{ext}"
        path.write_bytes(encoded(ext) + b"\0" * 64)
        assert read_rgb(path).shape == (48, 64, 3)


def test_missing_and_non_images_are_named(tmp_path):
    with pytest.raises(UnreadableImageError, match=f"could not read image {tmp_path / 'absent.png'}"):
        read_rgb(tmp_path / "absent.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(OSError, match=f"could not read image {tmp_path / 'text.png'} \\(corrupt or not an image\\)"):
        read_rgb(tmp_path / "text.png")


def test_write_json_refuses_non_finite_values_naming_them(tmp_path):
    from utils import write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"abs_rel": 0.1, "per_image": [1.0, 2.0]})
    assert path.read_text().startswith("{")
    with pytest.raises(ValueError) as refused:
        write_json(path, {"abs_rel": float("nan"), "per_image": [1.0, float("inf")], "name": "eigen"})
    assert str(refused.value) == (f"refusing to write {path}: non-finite values at abs_rel, per_image[1] "
                                  "(JSON has no NaN or infinity)")
    assert "abs_rel\": 0.1" in path.read_text()  # the previous file is untouched


def test_an_unwritable_output_folder_names_the_flag_that_chose_it(tmp_path, unwritable_probes):
    from utils import check_output_folders

    with pytest.raises(PermissionError, match=f"the folder {tmp_path / 'out'} is not writable .*--output_dir"):
        check_output_folders([tmp_path / "out"])
    assert (tmp_path / "out").is_dir()  # created, then found read-only


def test_script_logging_follows_the_current_stdout_after_a_capture_is_closed(monkeypatch):
    """A handler built while stdout was a (later closed) capture keeps writing to the live stdout."""
    import io
    import logging

    from utils import configure_logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    first = io.StringIO()
    monkeypatch.setattr("sys.stdout", first)
    configure_logging()
    logging.getLogger("a.script").info("into the first capture")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr("sys.stdout", second)
    configure_logging()  # already configured: no second handler
    logging.getLogger("a.script").info("into the second")
    assert len(root.handlers) == 1
    assert second.getvalue() == "into the second\n"
