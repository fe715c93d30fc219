"""A synthetic KITTI-layout dataset shared by the end-to-end tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

# Small but real: 1242x375 scaled by 1/3 keeps KITTI's aspect ratio; the loader resizes anyway.
SYNTH_WIDTH, SYNTH_HEIGHT = 414, 125


@pytest.fixture(scope="session")
def synthetic_kitti(tmp_path_factory) -> Path:
    """Three drives of 60 frames; train/val from drives 1-2, the test list and ground truth from drive 3."""
    import export_gt_depth
    from make_synthetic_kitti import generate_dataset

    root = tmp_path_factory.mktemp("synthetic_kitti")
    generate_dataset(root, num_drives=3, frames_per_drive=60, width=SYNTH_WIDTH, height=SYNTH_HEIGHT, seed=7)
    export_gt_depth.main(["--data_path", str(root), "--split", str(root / "splits" / "synthetic_test")])
    return root
