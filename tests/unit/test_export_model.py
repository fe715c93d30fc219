"""export_model.py: ONNX and TorchScript files that compute what PyTorch computes (a ResNet-18
Monodepth2 network from scratch at 64 x 96; the real KITTI frame when ../shared/realdata exists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import export_model
from checkpoints import CHECKPOINT_FORMAT, ModelSpec, save_checkpoint
from model import load_model
from networks import build_depth_network
from utils import read_rgb, resize_area

HEIGHT, WIDTH = 64, 96
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A monocular ResNet-18 Monodepth2 checkpoint (random weights, all four decoder scales)."""
    torch.manual_seed(0)
    net = build_depth_network()
    spec = ModelSpec(height=HEIGHT, width=WIDTH)
    path = tmp_path_factory.mktemp("weights") / "mono_tiny.pth"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": spec.to_dict(),
                           "encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict()})
    return path


def pytorch_prediction(checkpoint: Path, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(inverse depth, depth) of `SelfSupervisedDepth.predict`, computed here without the script."""
    inverse_depth, depth = load_model(str(checkpoint)).predict(images)
    return inverse_depth.numpy(), depth.numpy()


def random_images(batch: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.slow
def test_onnx_with_a_dynamic_batch_matches_pytorch(checkpoint, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    written = export_model.main(["--pretrained_path", str(checkpoint), "--output_dir", str(tmp_path), "--format",
                                 "onnx", "--dynamic_batch", "--no_verify"])
    assert written == [tmp_path / f"mono_tiny_depth_{HEIGHT}x{WIDTH}.onnx"]
    # Only the file itself: the atomic write's temporary and the writability probe are gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == [written[0].name]
    images = random_images(3)  # traced with batch 1: the batch axis is free
    output = export_model.run_onnx(written[0], images.numpy())
    _, depth = pytorch_prediction(checkpoint, images)
    assert output.shape == (3, 1, HEIGHT, WIDTH) and output.dtype == np.float32
    np.testing.assert_allclose(output, depth, rtol=RELATIVE_TOLERANCE)


@pytest.mark.slow
def test_onnx_with_a_fixed_batch_declares_it(checkpoint, tmp_path):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    [path] = export_model.main(["--pretrained_path", str(checkpoint), "--output_dir", str(tmp_path),
                                "--batch_size", "2", "--inverse_depth", "--no_verify"])
    assert path.name == f"mono_tiny_inverse_depth_{HEIGHT}x{WIDTH}.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [inputs], [outputs] = session.get_inputs(), session.get_outputs()
    assert (inputs.name, inputs.shape) == ("image", [2, 3, HEIGHT, WIDTH])
    assert (outputs.name, outputs.shape) == ("inverse_depth", [2, 1, HEIGHT, WIDTH])
    images = random_images(2, seed=2)
    inverse_depth, _ = pytorch_prediction(checkpoint, images)
    np.testing.assert_allclose(export_model.run_onnx(path, images.numpy()), inverse_depth, rtol=RELATIVE_TOLERANCE)


@pytest.mark.slow
def test_torchscript_loads_back_and_matches_pytorch(checkpoint, tmp_path):
    [path] = export_model.main(["--pretrained_path", str(checkpoint), "--output_dir", str(tmp_path), "--format",
                                "torchscript", "--no_verify"])
    assert path.name == f"mono_tiny_depth_{HEIGHT}x{WIDTH}.torchscript.pt"
    images = random_images(2, seed=3)  # traced with batch 1
    output = export_model.run_torchscript(path, images)
    _, depth = pytorch_prediction(checkpoint, images)
    assert output.shape == (2, 1, HEIGHT, WIDTH)
    np.testing.assert_allclose(output.numpy(), depth, rtol=RELATIVE_TOLERANCE)


@pytest.mark.slow
def test_verification_logs_the_difference_of_both_formats(checkpoint, tmp_path, caplog):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    with caplog.at_level("INFO"):
        written = export_model.main(["--pretrained_path", str(checkpoint), "--output_dir", str(tmp_path),
                                     "--format", "onnx", "torchscript", "--dynamic_batch"])
    assert [p.suffix for p in written] == [".onnx", ".pt"]
    for path in written:
        assert f"{path.name} vs PyTorch on a random batch of 2: largest relative difference" in caplog.text
    assert "trained monocularly: its depth is up to scale" in caplog.text


def test_relative_difference_is_elementwise():
    expected = np.array([1.0, 10.0, 100.0])
    assert export_model.max_relative_difference(np.array([1.0, 10.5, 100.0]), expected) == pytest.approx(0.05)
    assert export_model.max_relative_difference(np.array([1.5, 10.0, 100.0]), expected) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        export_model.max_relative_difference(np.zeros(2), expected)


def test_the_wrapper_returns_one_tensor_of_predict(checkpoint):
    model = load_model(str(checkpoint))
    images = random_images(1, seed=4)
    inverse_depth, depth = model.predict(images)
    assert torch.equal(export_model.DepthExportModule(model)(images), depth)
    assert torch.equal(export_model.DepthExportModule(model, inverse=True)(images), inverse_depth)


def test_sizes_and_folders_are_checked_before_exporting(checkpoint, tmp_path, monkeypatch):
    argv = ["--pretrained_path", str(checkpoint), "--output_dir", str(tmp_path / "out"), "--format", "torchscript"]
    with pytest.raises(ValueError, match=r"--height 64 --width 100: .* nearest valid size is --height 64 --width 96"):
        export_model.main(argv + ["--width", "100"])
    with pytest.raises(FileNotFoundError, match=r"--pretrained_path .*missing.pth does not exist"):
        export_model.main(["--pretrained_path", str(tmp_path / "missing.pth")])
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot create the output folder .*a_file/out.*--output_dir"):
        export_model.main(argv[:2] + ["--output_dir", str(blocker / "out")])
    # Without the onnx package, --format onnx is refused before any work, naming the fix.
    real_find_spec = export_model.importlib.util.find_spec
    monkeypatch.setattr(export_model.importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnx" else real_find_spec(name, *args))
    with pytest.raises(export_model.ExportError, match=r"--format onnx needs the 'onnx' package.*--format torchscript"):
        export_model.main(argv[:2] + ["--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_exported_onnx_model_matches_pytorch_on_the_real_kitti_frame(checkpoint, realdata, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    frame = read_rgb(realdata / "kitti_rgb_1242x375.png")
    assert frame.shape == (375, 1242, 3)
    height, width = 192, 640  # the KITTI size the lineage trains at
    [path] = export_model.main(["--pretrained_path", str(checkpoint), "--output_dir", str(tmp_path), "--height",
                                str(height), "--width", str(width), "--no_verify"])
    images = torch.from_numpy(resize_area(frame, height, width)).permute(2, 0, 1)[None].float() / 255.0
    _, depth = pytorch_prediction(checkpoint, images)
    output = export_model.run_onnx(path, images.numpy())
    assert output.shape == (1, 1, height, width)
    np.testing.assert_allclose(output, depth, rtol=RELATIVE_TOLERANCE)


def test_exporting_leaves_the_model_in_eval_mode(checkpoint, tmp_path):
    pytest.importorskip("onnx")
    model = load_model(str(checkpoint))
    images = random_images(2, seed=5)
    before = model.predict_depth(images)
    module = export_model.DepthExportModule(model)
    export_model.export_onnx(module, images[:1], tmp_path / "m.onnx", dynamic_batch=True)
    # The exporter restores the wrapper's own mode: a training-mode wrapper would have switched
    # BatchNorm to batch statistics and updated its running averages.
    assert not any(m.training for m in module.modules())
    assert torch.equal(model.predict_depth(images), before)


@pytest.mark.slow
def test_a_sqldepth_shaped_network_exports_to_both_formats(tmp_path):
    """The depth-predicting network (output kind "depth": adaptive bins, a transformer encoder),
    with a small Self Query Layer so that it runs at 64 x 96."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from model import SelfSupervisedDepth

    torch.manual_seed(0)
    spec = ModelSpec(backbone="resnet", num_layers=50, decoder="sql", height=HEIGHT, width=WIDTH, scales=[0],
                     sql_patch_size=8, sql_num_queries=16, sql_num_bins=16, sql_num_features=32)
    model = SelfSupervisedDepth.for_inference(spec)
    assert model.output_kind == "depth"
    module = export_model.DepthExportModule(model)
    onnx_path = export_model.export_onnx(module, random_images(1), tmp_path / "sql.onnx", dynamic_batch=True)
    script_path = export_model.export_torchscript(module, random_images(1), tmp_path / "sql.torchscript.pt")
    images = random_images(2, seed=6)
    expected = model.predict_depth(images).numpy()
    np.testing.assert_allclose(export_model.run_onnx(onnx_path, images.numpy()), expected, rtol=RELATIVE_TOLERANCE)
    np.testing.assert_allclose(export_model.run_torchscript(script_path, images).numpy(), expected,
                               rtol=RELATIVE_TOLERANCE)
