"""PackNet through the method's seams: the registry, inverse-depth outputs, checkpoints, prediction."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from checkpoints import CHECKPOINT_FORMAT, save_checkpoint
from model import SelfSupervisedDepth, load_model, output_to_depth
from tests.unit.test_model import BATCH, HEIGHT, WIDTH, make_batch, options

pytestmark = pytest.mark.slow  # a 77-million-parameter network, even at 64 x 96


@pytest.fixture(scope="module")
def packnet_model():
    torch.manual_seed(0)
    return SelfSupervisedDepth.from_options(options("--backbone", "packnet_slim", "--decoder", "packnet"))


def test_the_one_conversion_reads_each_output_kind():
    x = torch.tensor([0.25, 0.5, 2.0])
    assert_close(output_to_depth(x, "inv_depth", 0.1, 100.0), (x, 1.0 / x))
    assert_close(output_to_depth(x, "depth", 0.1, 100.0), (1.0 / x, x))
    inverse, depth = output_to_depth(torch.tensor([0.0, 1.0]), "disp", 0.1, 100.0)
    assert_close(depth, torch.tensor([100.0, 0.1]))
    with pytest.raises(ValueError, match="unknown depth network output kind 'log_depth'"):
        output_to_depth(x, "log_depth", 0.1, 100.0)


def test_packnet_trains_through_the_model_on_inverse_depth(packnet_model):
    model = packnet_model
    assert model.output_kind == "inv_depth" and model.loss_settings.output_kind == "inv_depth"
    inputs = model.prepare_inputs(make_batch(), torch.device("cpu"))
    outputs = model(inputs)
    assert ("disp", 0) not in outputs
    for scale in range(4):
        inv_depth = outputs[("inv_depth", scale)]
        assert inv_depth.shape == (BATCH, 1, HEIGHT >> scale, WIDTH >> scale)
        assert outputs[("warped", 1, scale)].shape == (BATCH, 3, HEIGHT, WIDTH)
    assert_close(outputs[("depth", 0, 0)] * outputs[("inv_depth", 0)], torch.ones(BATCH, 1, HEIGHT, WIDTH))
    losses = model.losses(inputs, outputs)
    model.zero_grad(set_to_none=True)
    losses["loss"].backward()
    depth_net = model.networks["depth"]
    assert depth_net.pack1.conv3d.weight.grad.abs().sum() > 0
    assert depth_net.disp1_layer.conv1.weight.grad.abs().sum() > 0
    assert model.networks["pose"].decoder.pose2.weight.grad.abs().sum() > 0


def test_packnet_checkpoints_hold_one_depth_state_and_predict_the_same(packnet_model, tmp_path):
    model = packnet_model
    assert list(model.checkpoint_modules()) == ["depth", "pose_encoder", "pose"]
    path = tmp_path / "packnet.pth"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": model.spec.to_dict(), **model.state_dicts()})
    loaded = load_model(str(path))
    images = torch.rand(1, 3, HEIGHT, WIDTH)
    model.eval()
    inverse, depth = model.predict(images)
    model.train()
    assert_close(loaded.predict(images), (inverse, depth))
    assert 0.5 < depth.min()  # PackNet's heads: inverse depth below 2 1/m


def test_packnet_takes_its_own_decoder_and_no_bdedepth_view(capsys):
    with pytest.raises(SystemExit):
        options("--backbone", "packnet", "--decoder", "monodepth2")
    assert "--backbone packnet does not go with --decoder monodepth2: use --decoder packnet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        options("--backbone", "packnet", "--decoder", "packnet", "--use_local_crop")
    assert "predicts depth or inverse depth: drop them" in capsys.readouterr().err


def test_packnet_pose_sees_target_then_contexts_and_warps_with_euler_poses():
    from networks.packnet import euler_pose_to_matrix

    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options("--pose_model_type", "packnet", "--pose_model_input", "all"))
    pose_net = model.networks["pose"]
    assert pose_net.parametrisation == "euler" and pose_net.encoder is None
    assert sum(p.numel() for p in pose_net.parameters()) == 1_592_684  # spec 1.3, two contexts
    assert list(model.checkpoint_modules()) == ["encoder", "depth", "pose"]
    assert list(model.state_dicts()["pose"])[:2] == ["conv1.0.weight", "conv1.0.bias"]  # PackNet's names
    inputs = model.prepare_inputs(make_batch(), torch.device("cpu"))
    outputs = model(inputs)
    raw = super(type(pose_net.decoder), pose_net.decoder).forward(
        inputs[("color_aug", 0, 0)], [inputs[("color_aug", -1, 0)], inputs[("color_aug", 1, 0)]])
    for i, frame_id in enumerate((-1, 1)):
        assert torch.equal(outputs[("euler", 0, frame_id)][:, i, 0], raw[:, i, 3:])  # all contexts at once
        assert_close(outputs[("cam_T_cam", 0, frame_id)], euler_pose_to_matrix(raw[:, i]))
    assert ("axisangle", 0, 1) not in outputs
    model.losses(inputs, outputs)["loss"].backward()
    assert pose_net.decoder.pose_pred.weight.grad.abs().sum() > 0
    with pytest.raises(SystemExit):
        options("--pose_model_type", "packnet")  # pairs: refused, it sees every frame at once
