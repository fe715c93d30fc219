"""export_gt_depth.main on the real drive-0005 frame: stored depths agree with a hand projection."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import export_gt_depth


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
    (depth,) = export_gt_depth.load_gt_depths(output)
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
