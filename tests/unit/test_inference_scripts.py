"""test_simple.py and test_video.py in-process with a tiny checkpoint (random weights, 64 x 192)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import test_simple
import test_video
from checkpoints import CHECKPOINT_FORMAT, ModelSpec, save_checkpoint
from kitti_utils import STEREO_SCALE_FACTOR
from layers import disp_to_depth, upsample_disp
from networks import build_depth_network
from utils import colorize_disparity, run_main

HEIGHT, WIDTH = 64, 192


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = build_depth_network(scales=(0,))
    spec = ModelSpec(height=HEIGHT, width=WIDTH, scales=[0], use_stereo=True, min_depth=0.1, max_depth=100.0)
    path = tmp_path_factory.mktemp("ckpt") / "model0.pth"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": spec.to_dict(),
                           "encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict()})
    return path


def reference_disp(checkpoint: Path, rgb: np.ndarray) -> torch.Tensor:
    """The sigmoid disparity 1 x 1 x 64 x 192 computed here without the script."""
    from model import load_model

    net = load_model(checkpoint).networks["depth"]
    resized = cv2.resize(rgb, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        return net(torch.from_numpy(resized).permute(2, 0, 1)[None].float() / 255.0)[("disp", 0)]


def write_image(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def test_folder_outputs_match_the_network_and_survive_a_corrupt_image(checkpoint, tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    first = write_image(images / "a.png", 90, 300, seed=1)
    (images / "b.png").write_bytes(b"not a png")
    write_image(images / "c.png", 40, 50, seed=2)
    (images / "old_disp.png").write_bytes(b"an earlier output, never an input")
    with caplog.at_level(logging.INFO):
        written = test_simple.main(["--image_path", str(images), "--pretrained_path", str(checkpoint),
                                    "--output_dir", str(tmp_path / "out"), "--save_npy", "--batch_size", "2",
                                    "--device", "cpu", "--skip_unreadable"])
    assert sorted(p.name for p in written) == ["a_disp.jpeg", "a_disp.npy", "c_disp.jpeg", "c_disp.npy"]
    assert f"could not read image {images / 'b.png'}" in caplog.text
    # The counter counts inputs, readable or not: c.png is the third of three.
    assert "Processed 1 of 3 images" in caplog.text and "Processed 3 of 3 images" in caplog.text
    # The jpeg has the input's size and the colours of the upsampled disparity (JPEG-lossy).
    jpeg = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "a_disp.jpeg")), cv2.COLOR_BGR2RGB)
    assert jpeg.shape == (90, 300, 3)
    assert cv2.imread(str(tmp_path / "out" / "c_disp.jpeg")).shape == (40, 50, 3)
    disp = reference_disp(checkpoint, first)
    want = colorize_disparity(upsample_disp(disp, (90, 300))[0, 0].numpy())
    _, encoded = cv2.imencode(".jpeg", cv2.cvtColor(want, cv2.COLOR_RGB2BGR))
    want_jpeg = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(jpeg.astype(int) - want_jpeg.astype(int)).mean() < 0.5
    # The npy is the scaled disparity at network resolution.
    scaled, _ = disp_to_depth(disp, 0.1, 100.0)
    saved = np.load(tmp_path / "out" / "a_disp.npy")
    assert saved.shape == (1, 1, HEIGHT, WIDTH) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, scaled.numpy(), rtol=1e-5, atol=1e-6)


def truncate(path: Path) -> None:
    """Cut a file to 60 % of its length, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_unreadable_inputs_fail_unless_skipping_is_allowed(checkpoint, tmp_path, ext):
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / f"a.{ext}", 64, 192, seed=1)
    write_image(images / f"b.{ext}", 64, 192, seed=2)
    truncate(images / f"b.{ext}")  # OpenCV would decode it, grey where the data is missing
    argv = ["--image_path", str(images), "--ext", ext, "--pretrained_path", str(checkpoint), "--device", "cpu",
            "--output_dir", str(tmp_path / "out")]
    with pytest.raises(test_simple.SkippedInputsError) as refused:
        test_simple.main(argv)
    assert str(refused.value).startswith(f"1 of 2 images could not be read: {images / f'b.{ext}'}")
    assert "--skip_unreadable" in str(refused.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_disp.jpeg"]  # the good one is done
    assert [p.name for p in test_simple.main(argv + ["--skip_unreadable"])] == ["a_disp.jpeg"]
    truncate(images / f"a.{ext}")
    with pytest.raises(test_simple.SkippedInputsError, match="none of the 2 images could be read"):
        test_simple.main(argv + ["--skip_unreadable"])


def test_scripts_exit_with_status_1_when_nothing_was_processed(checkpoint, tmp_path, capsys):
    # run_main is what each script's `sys.exit(run_main(main))` returns as the process's status.
    (tmp_path / "broken.png").write_bytes(b"not a png")
    argv = ["--image_path", str(tmp_path), "--pretrained_path", str(checkpoint), "--device", "cpu"]
    for script, unit in ((test_simple, "image"), (test_video, "frame")):
        assert run_main(script.main, argv) == 1, script.__name__
        assert f"error: none of the 1 {unit}s could be read" in capsys.readouterr().err


def test_batch_size_below_one_is_refused(checkpoint, tmp_path, capsys):
    for value in ("0", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            test_simple.main(["--image_path", str(tmp_path), "--pretrained_path", str(checkpoint),
                              "--batch_size", value])
        assert exit_info.value.code == 2
        assert f"--batch_size: must be a positive integer (got {value})" in capsys.readouterr().err


def test_video_refuses_a_truncated_frame_before_writing(checkpoint, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        write_image(frames / f"frame{index}.png", 64, 192, seed=index)
    truncate(frames / "frame1.png")
    argv = ["--image_path", str(frames), "--pretrained_path", str(checkpoint), "--output_dir",
            str(tmp_path / "out"), "--device", "cpu", "--no_mp4"]
    with pytest.raises(test_simple.SkippedInputsError, match=r"1 of 3 frames could not be read: .*frame1\.png"):
        test_video.main(argv)
    assert list((tmp_path / "out").iterdir()) == []
    written = test_video.main(argv + ["--skip_unreadable"])
    from PIL import Image

    with Image.open(written[0]) as gif:
        assert gif.n_frames == 2


def test_an_output_folder_that_cannot_be_made_is_refused_before_predicting(checkpoint, tmp_path, monkeypatch):
    write_image(tmp_path / "a.png", 64, 192, seed=1)
    (tmp_path / "taken").write_text("a file where the output folder should go")
    for script in (test_simple, test_video):
        monkeypatch.setattr(script, "predict", lambda *args: pytest.fail("predicted before checking the folder"))
    for script in (test_simple, test_video):
        with pytest.raises(OSError, match=f"cannot create the output folder {tmp_path / 'taken'}"):
            script.main(["--image_path", str(tmp_path), "--pretrained_path", str(checkpoint), "--device", "cpu",
                         "--output_dir", str(tmp_path / "taken")])


def test_non_finite_predictions_are_refused_naming_the_image(checkpoint, tmp_path):
    from checkpoints import load_checkpoint

    payload = load_checkpoint(checkpoint)
    payload["depth"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                        for k, v in payload["depth"].items()}
    broken = tmp_path / "diverged.pth"
    save_checkpoint(broken, payload)
    write_image(tmp_path / "a.png", 64, 192, seed=1)
    with pytest.raises(ValueError, match=f"non-finite disparities for {tmp_path / 'a.png'}"):
        test_simple.main(["--image_path", str(tmp_path / "a.png"), "--pretrained_path", str(broken),
                          "--device", "cpu"])
    assert not (tmp_path / "a_disp.jpeg").exists()


def test_metric_depth_is_the_stereo_scaled_depth(checkpoint, tmp_path):
    image = tmp_path / "frame.png"
    rgb = write_image(image, 64, 192, seed=3)
    written = test_simple.main(["--image_path", str(image), "--pretrained_path", str(checkpoint),
                                "--pred_metric_depth", "--device", "cpu"])
    assert [p.name for p in written] == ["frame_disp.jpeg", "frame_depth.npy"]
    _, depth = disp_to_depth(reference_disp(checkpoint, rgb), 0.1, 100.0)
    np.testing.assert_allclose(np.load(tmp_path / "frame_depth.npy"), STEREO_SCALE_FACTOR * depth.numpy(),
                               rtol=1e-5)


def test_outputs_are_never_inputs(tmp_path):
    for name in ("x.jpeg", "x_disp.jpeg", "y_depth.jpeg", "Z.JPEG"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in test_simple.list_images(tmp_path, "jpeg")] == ["Z.JPEG", "x.jpeg"]
    with pytest.raises(FileNotFoundError, match=r"no \*.png images in .*: check --ext"):
        test_simple.list_images(tmp_path, "png")


def test_numeric_order():
    names = ["frame10.png", "frame2.png", "frame1.png", "a.png"]
    ordered = sorted((Path(n) for n in names), key=test_video.numeric_order_key)
    assert [p.name for p in ordered] == ["a.png", "frame1.png", "frame2.png", "frame10.png"]


def test_video_gif_and_mp4_in_numeric_order_with_mixed_sizes(checkpoint, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    # Flat colours so the top half of each composite identifies its frame.
    colours = {"frame1.png": (250, 10, 10), "frame2.png": (10, 250, 10), "frame10.png": (10, 10, 250)}
    sizes = {"frame1.png": (375, 1242), "frame2.png": (50, 60), "frame10.png": (64, 192)}
    for name, colour in colours.items():
        cv2.imwrite(str(frames / name), np.full(sizes[name] + (3,), colour[::-1], dtype=np.uint8))
    written = test_video.main(["--image_path", str(frames), "--pretrained_path", str(checkpoint),
                               "--output_dir", str(tmp_path / "out"), "--batch_size", "2", "--device", "cpu"])
    assert [p.name for p in written] == ["frames_depth.gif", "frames_depth.mp4"]
    from PIL import Image, ImageSequence

    with Image.open(written[0]) as gif:
        assert gif.info["loop"] == 0 and gif.info["duration"] == test_video.DEFAULT_FRAME_DURATION_MS
        decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    assert [f.shape for f in decoded] == [(2 * HEIGHT, WIDTH, 3)] * 3
    for frame, colour in zip(decoded, colours.values()):
        assert np.abs(frame[:HEIGHT].reshape(-1, 3).mean(0) - colour).max() < 8
    video = cv2.VideoCapture(str(written[1]))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, first = video.read()
    video.release()
    assert ok and first.shape == (2 * HEIGHT, WIDTH, 3)
    assert np.abs(first[:HEIGHT, :, ::-1].reshape(-1, 3).mean(0) - colours["frame1.png"]).max() < 12


def test_video_needs_a_folder(checkpoint, tmp_path):
    with pytest.raises(NotADirectoryError, match="must be a folder of frames"):
        test_video.main(["--image_path", str(tmp_path / "x.png"), "--pretrained_path", str(checkpoint)])


def test_simple_on_the_real_kitti_frame(checkpoint, realdata, tmp_path):
    written = test_simple.main(["--image_path", str(realdata / "kitti_rgb_1242x375.png"),
                                "--pretrained_path", str(checkpoint), "--output_dir", str(tmp_path),
                                "--device", "cpu"])
    assert cv2.imread(str(written[0])).shape == (375, 1242, 3)


def test_video_on_real_kitti_greyscale_frames(checkpoint, realdata, tmp_path):
    source = realdata / "kitti_raw" / "2011_09_26" / "2011_09_26_drive_0001_sync" / "image_00" / "data"
    frames = tmp_path / "drive_0001"
    frames.mkdir()
    for index in range(8):  # links, not copies: eight consecutive real frames keep the test fast
        name = f"{index:010d}.png"
        (frames / name).symlink_to(source / name)
    written = test_video.main(["--image_path", str(frames), "--pretrained_path", str(checkpoint),
                               "--output_dir", str(tmp_path), "--batch_size", "4", "--device", "cpu"])
    from PIL import Image

    with Image.open(written[0]) as gif:
        assert gif.n_frames == 8 and gif.size == (WIDTH, 2 * HEIGHT)
    video = cv2.VideoCapture(str(written[1]))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    video.release()
