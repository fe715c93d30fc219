"""Released Monodepth2 folders and BDEdepth files, written here in their own layouts, load onto our modules."""

from __future__ import annotations

import pytest
import torch

import convert_weights
import released_weights
from checkpoints import load_checkpoint
from model import load_model
from networks import build_depth_network

ENC = [64, 64, 128, 256, 512]  # ResNet-18 channels (reference spec 4.1)
DEC = [16, 32, 64, 128, 256]  # Monodepth2 decoder channels (spec 4.2)


def md2_depth_shapes() -> dict[str, tuple]:
    """Monodepth2's depth.pth: ``decoder.N`` in OrderedDict order, shapes from spec 4.2."""
    shapes, n = {}, 0
    for i in range(4, -1, -1):
        in0 = ENC[-1] if i == 4 else DEC[i + 1]
        in1 = DEC[i] + (ENC[i - 1] if i > 0 else 0)
        for cin in (in0, in1):
            shapes[f"decoder.{n}.conv.conv.weight"] = (DEC[i], cin, 3, 3)
            shapes[f"decoder.{n}.conv.conv.bias"] = (DEC[i],)
            n += 1
    for s in range(4):
        shapes[f"decoder.{n}.conv.weight"] = (1, DEC[s], 3, 3)
        shapes[f"decoder.{n}.conv.bias"] = (1,)
        n += 1
    return shapes


def random_state(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) * 0.05 for k, shape in shapes.items()}


def md2_encoder(num_input_images: int, seed: int) -> dict:
    """A torchvision ResNet-18 state dict under ``encoder.``, fc head included, as Monodepth2 saves it."""
    from networks import ResnetEncoder

    state = ResnetEncoder(18, False, num_input_images=num_input_images).state_dict()
    gen = torch.Generator().manual_seed(seed)
    state = {k: (torch.randn(v.shape, generator=gen) * 0.05 if v.is_floating_point() and "running_var" not in k
                 else v) for k, v in state.items()}
    assert state["encoder.conv1.weight"].shape == (64, 3 * num_input_images, 7, 7)
    state["encoder.fc.weight"] = torch.zeros(1000, 512)
    state["encoder.fc.bias"] = torch.zeros(1000)
    return state


def write_md2_folder(folder, use_stereo: bool = True):
    """A Monodepth2 model folder (encoder, depth, pose_encoder, pose .pth) with random weights."""
    folder.mkdir()
    torch.save({**md2_encoder(1, 0), "height": 192, "width": 640, "use_stereo": use_stereo}, folder / "encoder.pth")
    torch.save(random_state(md2_depth_shapes(), 1), folder / "depth.pth")
    torch.save(md2_encoder(2, 2), folder / "pose_encoder.pth")
    pose_shapes = {"net.0.weight": (256, 512, 1, 1), "net.0.bias": (256,), "net.1.weight": (256, 256, 3, 3),
                   "net.1.bias": (256,), "net.2.weight": (256, 256, 3, 3), "net.2.bias": (256,),
                   "net.3.weight": (12, 256, 1, 1), "net.3.bias": (12,)}
    torch.save(random_state(pose_shapes, 3), folder / "pose.pth")
    return folder


def load_depth_model(path):
    """(depth network, spec) through the one loading path of every script."""
    model = load_model(path)
    return model.networks["depth"], model.spec


@pytest.fixture()
def md2_folder(tmp_path):
    return write_md2_folder(tmp_path / "mono_640x192")


def test_monodepth2_folder_maps_every_tensor_by_position(md2_folder):
    net, spec = load_depth_model(md2_folder)
    assert (spec.height, spec.width, spec.use_stereo) == (192, 640, True)
    assert (spec.backbone, spec.num_layers, spec.decoder, spec.scales) == ("resnet", 18, "monodepth2", [0, 1, 2, 3])
    depth = torch.load(md2_folder / "depth.pth", weights_only=True)
    ours = net.decoder.state_dict()
    # decoder.0 is upconv (4, 0): 512 -> 256; decoder.9 is upconv (0, 1): 16 -> 16; decoder.10..13
    # are the dispconvs of scales 0..3.
    assert torch.equal(ours["convs.upconv_4_0.conv.conv.weight"], depth["decoder.0.conv.conv.weight"])
    assert ours["convs.upconv_4_0.conv.conv.weight"].shape == (256, 512, 3, 3)
    assert torch.equal(ours["convs.upconv_3_1.conv.conv.bias"], depth["decoder.3.conv.conv.bias"])
    assert torch.equal(ours["convs.upconv_0_1.conv.conv.weight"], depth["decoder.9.conv.conv.weight"])
    assert torch.equal(ours["convs.dispconv_0.conv.weight"], depth["decoder.10.conv.weight"])
    assert torch.equal(ours["convs.dispconv_3.conv.weight"], depth["decoder.13.conv.weight"])
    encoder = torch.load(md2_folder / "encoder.pth", weights_only=True)
    assert torch.equal(net.encoder.state_dict()["encoder.layer4.1.conv2.weight"], encoder["encoder.layer4.1.conv2.weight"])
    out = net(torch.rand(1, 3, 64, 96))
    assert out[("disp", 0)].shape == (1, 1, 64, 96)


def test_monodepth2_pose_is_converted(md2_folder):
    payload = released_weights.to_checkpoint_payload(md2_folder)
    pose = torch.load(md2_folder / "pose.pth", weights_only=True)
    assert torch.equal(payload["pose"]["squeeze.weight"], pose["net.0.weight"])
    assert torch.equal(payload["pose"]["pose2.bias"], pose["net.3.bias"])
    assert payload["num_frames_to_predict_for"] == 2
    assert "encoder.fc.weight" not in payload["pose_encoder"]
    from networks import build_pose_network

    pose_net = build_pose_network(num_input_frames=2)
    pose_net.encoder.load_state_dict(payload["pose_encoder"])
    pose_net.decoder.load_state_dict(payload["pose"])


@pytest.mark.slow
def test_converted_checkpoint_round_trips(md2_folder, tmp_path):
    out = convert_weights.main(["--input", str(md2_folder), "--output", str(tmp_path / "md2.pth")])
    assert load_checkpoint(out)["model_spec"]["width"] == 640
    net, spec = load_depth_model(out)
    reference, _ = load_depth_model(md2_folder)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(image)[("disp", 0)], reference(image)[("disp", 0)])


def test_monodepth2_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="depth.pth is missing"):
        (tmp_path / "encoder.pth").write_bytes(b"")
        load_depth_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="--pretrained_path .* does not exist"):
        load_depth_model(tmp_path / "nope.pth")


@pytest.mark.parametrize("backbone", ["resnet", "hrnet"])
def test_bdedepth_file_loads_without_flags(tmp_path, backbone):
    torch.manual_seed(0)
    reference = build_depth_network(backbone, 18, "bdedepth", scales=(0,)).eval()
    encoder = dict(reference.encoder.state_dict())
    if backbone == "resnet":  # BDEdepth keeps the unused ImageNet head
        encoder["encoder.fc.weight"], encoder["encoder.fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / f"kitti_{backbone}18_640x192.pth"
    torch.save({"encoder": encoder, "depth": reference.decoder.state_dict(), "height": 192, "width": 640,
                "use_stereo": False}, path)
    net, spec = load_depth_model(path)
    assert (spec.backbone, spec.decoder, spec.scales, spec.height, spec.width) == (backbone, "bdedepth", [0], 192, 640)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(image)[("disp", 0)], reference(image)[("disp", 0)])


def test_foreign_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match=r"other.pth has no 'encoder' weights"):
        load_depth_model(path)
