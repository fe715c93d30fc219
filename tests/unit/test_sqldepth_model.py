"""SQLdepth wired into the method: --decoder sql predicts depth, and every reader treats it as depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from checkpoints import save_checkpoint
from evaluation import evaluate_predictions, predict_inverse_depths
from layers import edge_aware_smoothness, upsample_disp
from model import SelfSupervisedDepth, load_model
from networks import build_depth_network
from tests.unit.test_model import BATCH, HEIGHT, WIDTH, make_batch, options

# 64 x 96 gives S at 32 x 48: patches of 4 give 8 x 12 = 96 tokens, enough for 16 queries.
SMALL_SQL = ("--backbone", "resnet", "--num_layers", "50", "--decoder", "sql", "--num_scales", "1",
             "--sql_patch_size", "4", "--sql_num_queries", "16", "--sql_num_bins", "16",
             "--min_depth", "0.001", "--max_depth", "80", "--pose_model_type", "posecnn")


@pytest.fixture(scope="module")
def sql_model():
    torch.manual_seed(0)
    return SelfSupervisedDepth.from_options(options(*SMALL_SQL, "--pose_translation_scaling", "mean_inverse_depth"))


def test_the_published_resnet50_model_through_the_registry_has_the_published_size():
    with torch.device("meta"):
        network = build_depth_network("resnet", 50, "sql", scales=(0,), height=192, width=640,
                                      min_depth=0.001, max_depth=80.0)
    assert sum(p.numel() for p in network.parameters()) == 31_051_944
    assert network.output_kind == "depth"


def test_sql_depth_is_metric_at_half_resolution_and_warps_at_full(sql_model):
    inputs = sql_model.prepare_inputs(make_batch(num_scales=1), torch.device("cpu"))
    outputs = sql_model(inputs)
    depth_map = outputs[("depth", 0)]
    assert depth_map.shape == (BATCH, 1, HEIGHT // 2, WIDTH // 2)
    assert ((depth_map > 0.001) & (depth_map < 80.0)).all()
    # The depth that warps is the network's depth, upsampled bilinearly: no disparity mapping.
    assert_close(outputs[("depth", 0, 0)], upsample_disp(depth_map, (HEIGHT, WIDTH)))
    assert outputs[("warped", -1, 0)].shape == (BATCH, 3, HEIGHT, WIDTH)
    losses = sql_model.losses(inputs, outputs)
    assert torch.isfinite(losses["loss"])
    # Smoothness: depth over its mean at full resolution, guided by the full-size frame.
    expected = edge_aware_smoothness(upsample_disp(depth_map, (HEIGHT, WIDTH)), inputs[("color", 0, 0)])
    assert_close(losses["loss/smoothness"], expected)
    assert_close(losses["loss"], losses["loss/photometric"] + 1e-3 * losses["loss/smoothness"])
    # Predictions are the network's depth at its own resolution (inverse depth = 1 / depth).
    sql_model.eval()  # dropout and batch statistics off
    inverse_depth, depth = sql_model.predict(inputs[("color", 0, 0)])
    assert_close(depth, sql_model.networks["depth"](inputs[("color", 0, 0)])[("depth", 0)])
    assert_close(inverse_depth, 1.0 / depth)
    sql_model.train()


def test_monocular_translations_are_scaled_by_the_mean_inverse_depth(sql_model):
    inputs = sql_model.prepare_inputs(make_batch(num_scales=1), torch.device("cpu"))
    outputs = sql_model(inputs)
    mean_inverse = (1.0 / outputs[("depth", 0)]).mean(dim=(2, 3))  # B x 1
    raw = outputs[("translation", 0, 1)][:, 0]  # B x 1 x 3, frame 1 is not inverted
    assert_close(outputs[("cam_T_cam", 0, 1)][:, :3, 3], raw[:, 0] * mean_inverse)
    plain = SelfSupervisedDepth.from_options(options(*SMALL_SQL))
    plain.load_state_dict(sql_model.state_dict())
    plain_outputs = plain(inputs)
    assert_close(plain_outputs[("cam_T_cam", 0, 1)][:, :3, 3], plain_outputs[("translation", 0, 1)][:, 0, 0])


@pytest.mark.parametrize("changes, message", [
    ({"--num_scales": "4"}, "--num_scales 1"),
    ({"--num_layers": "18"}, "--num_layers 50"),
    ({"--sql_patch_size": "16"}, "--sql_patch_size"),
    ({"--sql_num_bins": "0"}, "--sql_num_bins"),
    ({"--use_stereo": None, "--pose_translation_scaling": "mean_inverse_depth"}, "--pose_translation_scaling"),
    ({"--use_local_crop": None}, "--use_local_crop"),
])
def test_bad_sql_options_are_refused_naming_the_flag(changes, message, capsys):
    args = list(SMALL_SQL)
    for flag, value in changes.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag] if value is None else [flag, value]
    with pytest.raises(SystemExit):
        options(*args)
    assert message in capsys.readouterr().err


def test_depth_networks_are_resized_and_flip_blended_as_depth():
    gt = np.full((1, 4), 2.0, np.float32)
    depth = np.array([[1.0, 3.0]], np.float32)
    # Bilinear (half-pixel centres) from 2 to 4 columns: 1, 1.5, 2.5, 3 in depth ...
    as_depth = evaluate_predictions([1.0 / depth], [gt], "eigen_benchmark", median_scaling=False,
                                    domain="depth").metrics
    expected = np.mean(np.abs(np.array([1.0, 1.5, 2.5, 3.0]) - 2.0) / 2.0)
    assert as_depth["abs_rel"] == pytest.approx(expected)
    # ... and 1, 1/(0.75 + 0.25/3), ... when the inverse depth is resized.
    inverse = np.array([1.0, 0.75 + 0.25 / 3, 0.25 + 0.75 / 3, 1.0 / 3])
    as_inverse = evaluate_predictions([1.0 / depth], [gt], "eigen_benchmark", median_scaling=False).metrics
    assert as_inverse["abs_rel"] == pytest.approx(np.mean(np.abs(1.0 / inverse - 2.0) / 2.0))

    class Constant(torch.nn.Module):
        """Depth 1 on the left half, 4 on the right, for the mirrored image too (so the mirrored
        prediction, mirrored back, is 4 on the left): the flip blend differs by domain."""

        def __init__(self, domain):
            super().__init__()
            self.prediction_domain = domain

        def predict_depth(self, images, inverse=False):
            depth = torch.ones(images.shape[0], 1, 2, 100)
            depth[..., 50:] = 4.0
            return 1.0 / depth

    loader = [{("color_uint8", 0, 0): torch.zeros(1, 3, 2, 100, dtype=torch.uint8)}]
    centre = [predict_inverse_depths(Constant(d), loader, torch.device("cpu"), post_process=True)[0, 0, 49]
              for d in ("depth", "inverse_depth")]
    # At the centre both predictions are blended half and half: (1 + 4) / 2 in depth, 2 / (1 + 1/4) in inverse.
    assert 1.0 / centre[0] == pytest.approx(2.5)
    assert 1.0 / centre[1] == pytest.approx(1.6)


@pytest.mark.slow
def test_an_sql_checkpoint_loads_and_predicts_the_same_depth(sql_model, tmp_path):
    from checkpoints import CHECKPOINT_FORMAT

    payload = {"format": CHECKPOINT_FORMAT, "model_spec": sql_model.spec.to_dict(), **sql_model.state_dicts()}
    save_checkpoint(tmp_path / "sql.pth", payload)
    loaded = load_model(str(tmp_path / "sql.pth"))
    images = torch.rand(1, 3, HEIGHT, WIDTH)
    sql_model.eval()
    assert_close(loaded.predict_depth(images), sql_model.predict_depth(images))
    assert loaded.spec.sql_patch_size == 4 and loaded.spec.sql_num_bins == 16
    sql_model.train()


def write_released_sqldepth_folder(model: SelfSupervisedDepth, folder, use_stereo: bool = False) -> None:
    """The layout SQLdepth's trainer saves: encoder.pth with the input size, depth.pth, pose.pth (``net.N``)."""
    import re

    folder.mkdir(parents=True)
    depth_net = model.networks["depth"]
    encoder = {f"module.{k}" if k.startswith("decoder.") else k: v for k, v in depth_net.encoder.state_dict().items()}
    torch.save({**encoder, "height": HEIGHT, "width": WIDTH, "use_stereo": use_stereo}, folder / "encoder.pth")
    torch.save(depth_net.decoder.state_dict(), folder / "depth.pth")
    pose = {re.sub(r"^convs\.conv(\d+)\.", r"net.\1.", k): v for k, v in model.networks["pose"].decoder.state_dict().items()}
    torch.save(pose, folder / "pose.pth")


@pytest.mark.slow
def test_a_released_sqldepth_folder_loads_and_predicts_the_same_depth(sql_model, tmp_path, caplog):
    from released_weights import load_released_folder

    folder = tmp_path / "weights_19"
    write_released_sqldepth_folder(sql_model, folder)
    assert "pose_conv.weight" in torch.load(folder / "pose.pth") and "net.0.weight" in torch.load(folder / "pose.pth")
    loaded = load_model(str(folder))
    spec = loaded.spec
    assert (spec.backbone, spec.num_layers, spec.decoder, spec.scales) == ("resnet", 50, "sql", [0])
    assert (spec.sql_patch_size, spec.sql_num_queries, spec.sql_num_bins, spec.sql_model_dim) == (4, 16, 16, 32)
    assert spec.sql_dim_feedforward == 512 and (spec.height, spec.width) == (HEIGHT, WIDTH)
    # No published model has this size: SQLdepth's default range, said so.
    assert (spec.min_depth, spec.max_depth) == (0.001, 80.0) and "no published SQLdepth model" in caplog.text
    assert spec.pose_translation_scaling == "mean_inverse_depth"  # a monocular run's
    images = torch.rand(1, 3, HEIGHT, WIDTH)
    sql_model.eval()
    assert_close(loaded.predict_depth(images), sql_model.predict_depth(images))
    sql_model.train()
    # The pose network loads under our names too, through the training model's loader.
    payload = load_released_folder(folder)
    trainable = SelfSupervisedDepth.from_options(options(*SMALL_SQL))
    trainable.load_state_dicts(payload, str(folder))
    assert_close(trainable.networks["pose"].decoder.pose_conv.weight, sql_model.networks["pose"].decoder.pose_conv.weight)
    # Flags give the range; a named variant must match the tensors, naming what differs.
    assert load_released_folder(folder, depth_range=(0.1, 100.0))["model_spec"]["max_depth"] == 100.0
    with pytest.raises(ValueError, match=r"sql_patch_size 16 \(the weights have 4\)"):
        load_released_folder(folder, sql_variant="resnet50_640x192")


@pytest.mark.slow
def test_convert_weights_writes_an_sqldepth_checkpoint_with_its_range(sql_model, tmp_path):
    import convert_weights

    folder = tmp_path / "weights_0"
    write_released_sqldepth_folder(sql_model, folder, use_stereo=True)
    out = convert_weights.main(["--input", str(folder), "--output", str(tmp_path / "sql.pth"),
                                "--min_depth", "0.01", "--max_depth", "80"])
    loaded = load_model(str(out))
    assert (loaded.spec.min_depth, loaded.spec.use_stereo, loaded.spec.pose_translation_scaling) == (0.01, True, "none")
    with pytest.raises(SystemExit):
        convert_weights.main(["--input", str(folder), "--output", str(tmp_path / "x.pth"), "--min_depth", "0.1"])
    assert not (tmp_path / "x.pth").exists()
