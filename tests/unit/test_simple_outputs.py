"""test_simple.py's --image_shape and --save_depth (npy, npz, 16-bit PNG), exact to the value."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import test_simple
from kitti_utils import STEREO_SCALE_FACTOR, read_kitti_depth_png
from layers import disp_to_depth
from tests.unit.test_inference_scripts import checkpoint, write_image  # noqa: F401 (a fixture)


def network_depth(checkpoint_path, rgb: np.ndarray, height: int, width: int) -> np.ndarray:  # noqa: F811
    """Depth (model units) at height x width, computed here without the script."""
    from model import load_model

    net = load_model(checkpoint_path).networks["depth"]
    resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        disp = net(torch.from_numpy(resized).permute(2, 0, 1)[None].float() / 255.0)[("disp", 0)]
    return disp_to_depth(disp, 0.1, 100.0)[1][0, 0].numpy()


def test_png16_is_depth_times_256_truncated_and_clipped():
    depth = np.array([[0.25, 10.5, 255.99609375, 1.0 / 512], [300.0, 0.0, -2.0, np.nan]], np.float32)
    assert test_simple.encode_depth_png16(depth).tolist() == [[64, 2688, 65535, 0], [65535, 0, 0, 0]]
    assert test_simple.encode_depth_png16(np.array([[np.inf, 3.999]])).tolist() == [[65535, 1023]]


def test_png16_round_trips_through_kitti_s_reader(tmp_path):
    depth = np.array([[[[0.25, 10.5, 255.99609375], [300.0, 0.0, 1.5]]]], np.float32)
    path = test_simple.write_depth(tmp_path / "frame", depth, "png16")
    assert path.name == "frame_depth.png"
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert read_kitti_depth_png(path).tolist() == [[0.25, 10.5, 255.99609375], [255.99609375, 0.0, 1.5]]


@pytest.mark.parametrize("depth_format", ["npy", "npz", "png16"])
def test_save_depth_writes_the_stereo_scaled_depth_at_network_resolution(checkpoint, tmp_path,  # noqa: F811
                                                                         depth_format):
    image = tmp_path / "frame.png"
    rgb = write_image(image, 80, 200, seed=5)
    written = test_simple.main(["--image_path", str(image), "--pretrained_path", str(checkpoint),
                                "--save_depth", depth_format, "--device", "cpu"])
    suffix = test_simple.DEPTH_FORMATS[depth_format]
    assert [p.name for p in written] == ["frame_disp.jpeg", f"frame_depth{suffix}"]
    expected = STEREO_SCALE_FACTOR * network_depth(checkpoint, rgb, 64, 192)  # the checkpoint is stereo
    if depth_format == "npy":
        saved = np.load(written[1])
        assert saved.shape == (1, 1, 64, 192) and saved.dtype == np.float32
        np.testing.assert_allclose(saved[0, 0], expected, rtol=1e-5)
    elif depth_format == "npz":
        with np.load(written[1]) as archive:
            assert list(archive.keys()) == ["depth"]
            saved = archive["depth"]
        assert saved.shape == (64, 192) and saved.dtype == np.float32
        np.testing.assert_allclose(saved, expected, rtol=1e-5)
    else:
        stored = cv2.imread(str(written[1]), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint16 and stored.shape == (64, 192)
        # Truncation of depth x 256: within one step of 1/256 m below the float depth.
        assert np.all(stored <= expected * 256 + 1e-2) and np.all(stored > expected * 256 - 1 - 1e-2)


def test_image_shape_runs_the_network_at_that_size(checkpoint, tmp_path):  # noqa: F811
    image = tmp_path / "frame.png"
    rgb = write_image(image, 80, 200, seed=6)
    written = test_simple.main(["--image_path", str(image), "--pretrained_path", str(checkpoint), "--save_depth",
                                "npy", "--image_shape", "96", "128", "--device", "cpu"])
    saved = np.load(written[1])
    assert saved.shape == (1, 1, 96, 128)
    np.testing.assert_allclose(saved[0, 0], STEREO_SCALE_FACTOR * network_depth(checkpoint, rgb, 96, 128),
                               rtol=1e-5)
    # The colour map is still at the input's size.
    assert cv2.imread(str(written[0])).shape[:2] == (80, 200)


def test_image_shape_the_network_cannot_take_names_the_nearest_one(checkpoint, tmp_path):  # noqa: F811
    image = tmp_path / "frame.png"
    write_image(image, 80, 200, seed=7)
    with pytest.raises(ValueError, match=r"--image_shape 50 100: .* nearest valid size is --image_shape 64 96"):
        test_simple.main(["--image_path", str(image), "--pretrained_path", str(checkpoint), "--image_shape", "50",
                          "100", "--device", "cpu"])
    with pytest.raises(ValueError, match=r"at least 64; the nearest valid size is --image_shape 64 128"):
        test_simple.check_image_shape(None, 32, 128)
    assert not (tmp_path / "frame_disp.jpeg").exists()


def test_sqldepth_sizes_outside_its_token_range_are_refused():
    from checkpoints import ModelSpec

    spec = ModelSpec(backbone="resnet", num_layers=50, decoder="sql", height=192, width=640, sql_patch_size=16,
                     sql_num_queries=64)
    test_simple.check_image_shape(spec, 192, 640)  # 96 x 320 map, 6 x 20 = 120 tokens
    with pytest.raises(ValueError, match=r"--image_shape 64 128: .*trained at --image_shape 192 640"):
        test_simple.check_image_shape(spec, 64, 128)  # 2 x 4 = 8 tokens < 64 queries
