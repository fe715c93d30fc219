"""PackNet-SfM .ckpt files: written here in the released layout, loaded tensor by tensor, never executed.

The files mimic PackNet-SfM's ``ModelCheckpoint._save_model``: ``{"config": CfgNode, "epoch",
"state_dict" (ModelWrapper keys ``model.depth_net.*`` / ``model.pose_net.*``), "optimizer",
"scheduler"}``, with a dict-subclass stand-in for yacs' CfgNode (yacs is not installed; the
reader must never import it anyway).
"""

from __future__ import annotations

import collections
import logging

import pytest
import torch

import convert_weights
from checkpoints import load_checkpoint
from model import load_model
from networks.packnet import PackNetSlim01, PackNetStackedPose
from packnet_weights import InertObject, convert_packnet_checkpoint, load_packnet_file
from released_weights import to_checkpoint_payload
from tests.unit.test_malicious_files import Payload, assert_payload_is_live

pytestmark = pytest.mark.slow  # a 77-million-parameter network, even at 64 x 96

HEIGHT, WIDTH = 64, 96


class CfgNode(dict):
    """Pickles like yacs' CfgNode: a dict subclass with attribute state set through ``__dict__``."""

    def __init__(self, values: dict | None = None) -> None:
        super().__init__()
        self.__dict__["__immutable__"] = False
        for key, value in (values or {}).items():
            self[key] = CfgNode(value) if isinstance(value, dict) else value


def packnet_config(image_shape=(HEIGHT, WIDTH)) -> CfgNode:
    return CfgNode({"model": {"depth_net": {"name": "PackNetSlim01", "version": "1A"},
                              "params": {"min_depth": 0.0, "max_depth": 80.0}},
                    "datasets": {"augmentation": {"image_shape": image_shape},
                                 "train": {"back_context": 1, "forward_context": 1}}})


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(path of a released-layout .ckpt, its depth state, its pose state, an image, its inverse depth)."""
    torch.manual_seed(0)
    depth_net, pose_net = PackNetSlim01().eval(), PackNetStackedPose(2)
    image = torch.rand(1, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        expected = depth_net(image)[("inv_depth", 0)]
    state = collections.OrderedDict()
    state.update((f"model.depth_net.{k}", v) for k, v in depth_net.state_dict().items())
    state.update((f"model.pose_net.{k}", v) for k, v in pose_net.state_dict().items())
    path = tmp_path_factory.mktemp("packnet") / "PackNetSlim01_selfsup_K.ckpt"
    torch.save({"config": packnet_config(), "epoch": 49, "state_dict": state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
                "scheduler": {"step_size": 30, "gamma": 0.5}}, path)
    return path, depth_net.state_dict(), pose_net.state_dict(), image, expected


def test_the_config_object_is_what_weights_only_loading_refuses(released):
    path = released[0]
    with pytest.raises(ValueError, match="holds Python objects other than tensors"):
        load_checkpoint(path)


def test_a_released_ckpt_loads_tensor_by_tensor_and_predicts_the_same(released):
    path, depth_state, pose_state, image, expected = released
    payload = to_checkpoint_payload(path)
    spec = payload["model_spec"]
    assert (spec["backbone"], spec["decoder"], spec["height"], spec["width"]) == ("packnet_slim", "packnet",
                                                                                   HEIGHT, WIDTH)
    assert (spec["pose_model_type"], spec["pose_model_input"], spec["frame_ids"]) == ("packnet", "all", [0, -1, 1])
    assert payload["depth"].keys() == depth_state.keys() and payload["pose"].keys() == pose_state.keys()
    for ours, theirs in ((payload["depth"], depth_state), (payload["pose"], pose_state)):
        for key, value in theirs.items():
            assert torch.equal(ours[key], value), key
    model = load_model(str(path))
    inverse_depth, depth = model.predict(image)
    assert torch.equal(inverse_depth, expected)


def test_the_config_arrives_as_inert_data_and_every_tensor_is_counted(released, caplog):
    path, depth_state, pose_state = released[:3]
    raw = load_packnet_file(path)
    config = raw["config"]
    assert isinstance(config, InertObject) and config.pickled_global.endswith("test_packnet_checkpoints.CfgNode")
    assert config["datasets"]["augmentation"]["image_shape"] == (HEIGHT, WIDTH)
    assert config.state == {"__immutable__": False}  # BUILD's state recorded, no __setstate__ of theirs ran
    raw["state_dict"]["model.extra_head.weight"] = torch.zeros(3)
    with caplog.at_level(logging.INFO):
        _, report = convert_packnet_checkpoint(raw, str(path))
    assert report.loaded == {"depth": len(depth_state), "pose": len(pose_state)}
    assert report.expected == report.loaded
    assert report.left_out == {"model.extra_head.weight": "not the depth or pose network"}
    assert "1 tensor(s) left out: model.extra_head.weight" in caplog.text


def test_a_missing_or_misshapen_depth_tensor_is_an_error(released):
    raw = load_packnet_file(released[0])
    del raw["state_dict"]["model.depth_net.iconv1.conv_base.bias"]
    with pytest.raises(ValueError, match=r"do not fit PackNetSlim01: 1 missing: iconv1\.conv_base\.bias"):
        convert_packnet_checkpoint(raw, "x.ckpt")
    raw = load_packnet_file(released[0])
    raw["state_dict"]["model.depth_net.disp1_layer.conv1.bias"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"with another shape: disp1_layer\.conv1\.bias \(2,\) \(ours \(1,\)\)"):
        convert_packnet_checkpoint(raw, "x.ckpt")


def test_a_pose_net_that_does_not_fit_is_left_out_by_name(released, caplog):
    raw = load_packnet_file(released[0])
    del raw["state_dict"]["model.pose_net.pose_pred.bias"]
    with caplog.at_level(logging.WARNING):
        payload, report = convert_packnet_checkpoint(raw, "x.ckpt")
    assert "pose" not in payload and report.loaded["pose"] == 0
    assert report.left_out["pose_net.pose_pred.weight"] == "pose net left out"
    assert "missing ['pose_pred.bias']" in caplog.text


def test_legacy_names_and_an_extracted_state_dict_load(released, tmp_path, caplog):
    """A .pth.tar's ``disp_network``/``pose_network`` and dropout ``conv3.0`` names; no config: 192 x 640."""
    _, depth_state, pose_state, image, expected = released
    legacy = collections.OrderedDict()
    for key, value in depth_state.items():
        old_name = key.replace("conv3.weight", "conv3.0.weight").replace("conv3.bias", "conv3.0.bias")
        legacy["disp_network." + old_name] = value
    legacy.update((f"pose_network.{k}", v) for k, v in pose_state.items())
    assert "disp_network.conv2.0.conv3.0.weight" in legacy
    path = tmp_path / "old_model.pth.tar"
    # torch's legacy format, as old .pth.tar files are; no pickled objects, so weights_only=True reads it.
    torch.save({"state_dict": legacy}, path, _use_new_zipfile_serialization=False)
    with caplog.at_level(logging.WARNING):
        payload = to_checkpoint_payload(path)
    assert (payload["model_spec"]["height"], payload["model_spec"]["width"]) == (192, 640)
    assert "assuming 192 x 640" in caplog.text
    assert all(torch.equal(payload["depth"][k], v) for k, v in depth_state.items())
    converted = convert_weights.main(["--input", str(path), "--output", str(tmp_path / "ours.pth"),
                                      "--image_shape", str(HEIGHT), str(WIDTH)])
    model = load_model(str(converted))
    assert (model.spec.height, model.spec.width) == (HEIGHT, WIDTH)
    assert torch.equal(model.predict(image)[0], expected)


def test_a_ckpt_whose_config_is_a_payload_loads_without_running_it(released, tmp_path):
    _, depth_state, _, image, expected = released
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "trap.ckpt"
    state = {f"model.depth_net.{k}": v for k, v in depth_state.items()}
    torch.save({"config": Payload(marker), "state_dict": state}, path)
    assert_payload_is_live(lambda: torch.load(path, weights_only=False), marker)
    raw = load_packnet_file(path)
    assert isinstance(raw["config"], InertObject) and raw["config"].pickled_global == "io.open"
    assert raw["config"].call_args == ((str(marker), "w"), {})  # recorded, never called
    model = load_model(str(path))
    assert (model.spec.height, model.spec.width) == (192, 640)  # the inert config gives no size
    assert torch.equal(model.predict(image)[0], expected)
    assert not marker.exists()


def test_a_ckpt_with_a_payload_in_its_state_dict_is_refused(released, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "trap.ckpt"
    torch.save({"config": packnet_config(), "state_dict": {"model.depth_net.pre_calc.conv_base.weight":
                                                           Payload(marker)}}, path)
    assert_payload_is_live(lambda: torch.load(path, weights_only=False), marker)
    with pytest.raises(ValueError, match=r"model\.depth_net\.pre_calc\.conv_base\.weight holds a io\.open object "
                                         r"where a tensor should be"):
        load_model(str(path))
    with pytest.raises(ValueError, match="where a tensor should be"):
        convert_weights.main(["--input", str(path), "--output", str(tmp_path / "out.pth")])
    assert not marker.exists() and not (tmp_path / "out.pth").exists()


def shaped_like(network_factory, prefix: str = "model.depth_net.") -> dict:
    """Uninitialised tensors with a network's names and shapes (cheap even for 128 M parameters)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in network_factory().state_dict().items()}
    return {prefix + k: torch.empty(shape) for k, shape in shapes.items()}


def test_packnet01_and_its_dropout_names_map_and_version_b_is_refused():
    from networks.packnet import PackNet01

    payload, report = convert_packnet_checkpoint({"state_dict": shaped_like(lambda: PackNet01(dropout=0.5))},
                                                 "dropout.ckpt")
    assert payload["model_spec"]["backbone"] == "packnet" and report.loaded == {"depth": 216}
    assert report.renamed["conv2.0.conv3.0.weight"] == "conv2.0.conv3.weight" and len(report.renamed) == 20
    with pytest.raises(ValueError, match=r"do not fit PackNet01 \(a version '1B' PackNet01, which adds skips, is "
                                         r"not supported: only '1A'\)"):
        convert_packnet_checkpoint({"state_dict": shaped_like(lambda: PackNet01(version="1B"))}, "b.ckpt")


def test_a_released_ckpt_initialises_training_through_pretrained_path(released):
    """Depth and pose both load into the training model PackNet's flags build (the Trainer's path)."""
    from model import SelfSupervisedDepth
    from tests.unit.test_model import options

    path, depth_state, pose_state = released[:3]
    model = SelfSupervisedDepth.from_options(options("--backbone", "packnet_slim", "--decoder", "packnet",
                                                     "--pose_model_type", "packnet", "--pose_model_input", "all"))
    model.load_state_dicts(to_checkpoint_payload(path), str(path))
    loaded = model.state_dicts()
    assert all(torch.equal(loaded["depth"][k], v) for k, v in depth_state.items())
    assert all(torch.equal(loaded["pose"][k], v) for k, v in pose_state.items())
