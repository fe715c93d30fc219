"""export_gt_depth.main on the real drive-0005 frame: stored depths agree with a hand projection."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import export_gt_depth
import ground_truth


def hand_projection(calib_dir, scan):
    """(u, v, forward x) of every velodyne point with x >= 0, by P_rect_02 R_rect_00 [R|T]."""
    def read(path):
        values = {}
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            try:
                values[key] = np.array([float(t) for t in rest.split()])
            except ValueError:
                pass
        return values

    cam, velo = read(calib_dir / "calib_cam_to_cam.txt"), read(calib_dir / "calib_velo_to_cam.txt")
    rect, tr = np.eye(4), np.eye(4)
    rect[:3, :3] = cam["R_rect_00"].reshape(3, 3)
    tr[:3, :3], tr[:3, 3] = velo["R"].reshape(3, 3), velo["T"]
    points = np.fromfile(scan, dtype=np.float32).reshape(-1, 4).astype(np.float64)
    points[:, 3] = 1.0
    points = points[points[:, 0] >= 0]
    image = (cam["P_rect_02"].reshape(3, 4) @ rect @ tr @ points.T).T
    # KITTI's MATLAB convention: 1-based pixel coordinates, rounded.
    u = np.round(image[:, 0] / image[:, 2]).astype(int) - 1
    v = np.round(image[:, 1] / image[:, 2]).astype(int) - 1
    return u, v, points[:, 0]


def test_export_of_the_real_frame_matches_a_hand_computation(realdata, tmp_path):
    root = realdata / "kitti_raw"
    split = tmp_path / "real_split"
    split.mkdir()
    (split / "test_files.txt").write_text("2011_09_26/2011_09_26_drive_0005_sync 0000000000 l\n")
    output = export_gt_depth.main(["--data_path", str(root), "--split", str(split),
                                   "--output", str(tmp_path / "gt.npz")])
    (depth,) = ground_truth.load_gt_depths(output)
    assert depth.shape == (375, 1242) and depth.dtype == np.float32
    u, v, forward = hand_projection(root / "2011_09_26",
                                    root / "2011_09_26" / "2011_09_26_drive_0005_sync" / "velodyne_points" / "data"
                                    / "0000000000.bin")
    inside = (u >= 0) & (u < 1242) & (v >= 0) & (v < 375)
    # Every stored depth lies on a projected point's pixel: nothing outside the image, no invention.
    assert set(zip(*np.nonzero(depth))) <= set(zip(v[inside].tolist(), u[inside].tolist()))
    # Points alone on their pixel (away from the duplicate-index seam at the image's side columns)
    # keep their own forward distance (vel_depth=True, the eigen ground truth).
    owners = Counter(zip(v[inside].tolist(), u[inside].tolist()))
    alone = [i for i in np.flatnonzero(inside) if owners[(v[i], u[i])] == 1 and 0 < u[i] < 1241]
    assert len(alone) > 5000
    for i in alone[:: len(alone) // 6]:
        assert depth[v[i], u[i]] == pytest.approx(forward[i], rel=1e-6)
        assert 1.0 < depth[v[i], u[i]] < 90.0


# ------------------------------------------------------------------------------ file format
def sample_maps() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 80, size=(5, 7)).astype(np.float32), np.zeros((3, 4), np.float32),
            rng.uniform(0, 80, size=(6, 2)).astype(np.float32)]


def test_our_format_holds_plain_arrays_and_round_trips(tmp_path):
    path = tmp_path / "gt_depths.npz"
    ground_truth.save_gt_depths(path, sample_maps())
    with np.load(path, allow_pickle=False) as archive:  # no pickles anywhere
        assert archive.files == ["depth_00000", "depth_00001", "depth_00002"]
    loaded = ground_truth.load_gt_depths(path)
    assert [d.dtype for d in loaded] == [np.float32] * 3
    for got, want in zip(loaded, sample_maps()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_the_reference_object_array_format_is_read(tmp_path, dtype):
    """Monodepth2's gt_depths.npz: np.savez_compressed(data=object array of 2-D maps)."""
    data = np.empty(3, dtype=object)
    for i, depth in enumerate(sample_maps()):
        data[i] = depth.astype(dtype)
    path = tmp_path / "gt_depths.npz"
    np.savez_compressed(path, data=data)
    loaded = ground_truth.load_gt_depths(path)
    for got, want in zip(loaded, sample_maps()):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want.astype(dtype).astype(np.float32))


def test_a_reference_file_of_equally_sized_maps_is_read(tmp_path):
    """An object array of equal shapes may have been stacked into one numeric array."""
    path = tmp_path / "gt_depths.npz"
    np.savez_compressed(path, data=np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    loaded = ground_truth.load_gt_depths(path)
    assert len(loaded) == 2 and loaded[1][2, 3] == 23


@pytest.mark.parametrize("content, message", [
    ({"depth_00000": np.zeros((2, 2)), "depth_00002": np.zeros((2, 2))}, "expected the keys depth_00000"),
    ({"depth_00000": np.zeros((2, 2)), "extra": np.zeros(1)}, "expected the keys depth_00000"),
    ({"depth_00000": np.array(["a", "b"])}, "depth_00000 is a <U1 array of shape (2,), not a 2-D depth map"),
    ({"data": np.array([np.zeros((2, 2)), "text"], dtype=object)}, "map 1 of 'data' is a str"),
    ({"data": np.array([np.zeros(3), np.zeros(2)], dtype=object)}, "map 0 of 'data' is a float64 array of shape (3,)"),
])
def test_malformed_files_are_refused_with_their_name(tmp_path, content, message):
    path = tmp_path / "gt_depths.npz"
    np.savez_compressed(path, **content)
    with pytest.raises(ValueError) as refused:
        ground_truth.load_gt_depths(path)
    assert str(path) in str(refused.value) and message in str(refused.value)


def test_not_an_npz_is_refused(tmp_path):
    path = tmp_path / "gt_depths.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="is not a gt_depths npz"):
        ground_truth.load_gt_depths(path)
    with pytest.raises(FileNotFoundError, match="run export_gt_depth.py"):
        ground_truth.load_gt_depths(tmp_path / "absent.npz")


@pytest.mark.parametrize("value", [np.inf, np.nan, -1.0])
@pytest.mark.parametrize("reference_format", [False, True])
def test_non_finite_or_negative_ground_truth_is_refused_naming_the_map(tmp_path, value, reference_format):
    maps = sample_maps()
    maps[2][4, 1] = value
    path = tmp_path / "gt_depths.npz"
    if reference_format:
        data = np.empty(len(maps), dtype=object)
        data[:] = [None] * len(maps)
        for i, depth in enumerate(maps):
            data[i] = depth
        np.savez_compressed(path, data=data)
    else:
        ground_truth.save_gt_depths(path, maps)
    with pytest.raises(ValueError) as refused:
        ground_truth.load_gt_depths(path)
    message = str(refused.value)
    assert f"{path}: map 2 (line 3 of the split's test_files.txt) holds 1 non-finite or negative" in message
    assert "at row 4, column 1" in message
