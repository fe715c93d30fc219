"""Networks: feature strides, decoder scales, exact parameter counts, gradients, weight loading."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torchvision import models

import networks
from networks import (
    Conv3x3,
    DepthDecoder,
    PoseCNN,
    PoseDecoder,
    ResnetEncoder,
    build_depth_network,
    build_pose_network,
    upsample,
)

H, W = 64, 96  # multiples of 32, small enough for CPU


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def assert_every_parameter_has_gradient(module: torch.nn.Module) -> None:
    missing = [
        name
        for name, p in module.named_parameters()
        if p.grad is None or not torch.any(p.grad != 0)
    ]
    assert not missing, f"missing gradients: {missing}"


def weighted_sum(tensors) -> torch.Tensor:
    # Random weights so that no output's gradient cancels by symmetry.
    return sum((t * torch.randn_like(t)).sum() for t in tensors)


# ---------------------------------------------------------------------------------------------
# blocks


def test_upsample_repeats_each_pixel_in_a_2x2_block():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    expected = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.equal(upsample(x), expected)


@pytest.mark.parametrize("use_refl, corner", [(True, 9.0), (False, 4.0)])
def test_conv3x3_padding_mode_shows_at_the_corner(use_refl, corner):
    conv = Conv3x3(1, 1, use_refl=use_refl)
    with torch.no_grad():
        conv.conv.weight.fill_(1.0)
        conv.conv.bias.zero_()
    out = conv(torch.ones(1, 1, 4, 5))
    assert out.shape == (1, 1, 4, 5)
    # Reflection sees the constant image everywhere; zero padding sees 4 of 9 taps at a corner.
    assert out[0, 0, 0, 0].item() == corner
    assert out[0, 0, 2, 2].item() == 9.0


# ---------------------------------------------------------------------------------------------
# encoder


@pytest.mark.parametrize(
    "num_layers, num_ch_enc",
    [(18, [64, 64, 128, 256, 512]), (50, [64, 256, 512, 1024, 2048])],
)
def test_encoder_features_match_num_ch_enc_and_strides(num_layers, num_ch_enc, device):
    encoder = ResnetEncoder(num_layers, pretrained=False).to(device)
    assert encoder.num_ch_enc == num_ch_enc
    with torch.no_grad():
        features = encoder(torch.rand(2, 3, H, W, device=device))
    shapes = [tuple(f.shape) for f in features]
    expected = [(2, c, H // 2 ** (i + 1), W // 2 ** (i + 1)) for i, c in enumerate(num_ch_enc)]
    assert shapes == expected


def test_encoder_state_dict_uses_torchvision_names_without_fc():
    keys = list(ResnetEncoder(18, pretrained=False).state_dict())
    assert keys[0] == "encoder.conv1.weight"
    assert "encoder.layer4.1.bn2.running_var" in keys
    assert not [k for k in keys if k.startswith("encoder.fc")]


def test_encoder_normalises_input_with_mean_045_std_0225():
    encoder = ResnetEncoder(18, pretrained=False).eval()
    net = encoder.encoder
    with torch.no_grad():
        net.bn1.bias.copy_(torch.randn(64))
        # x = mean -> normalised 0 -> conv1 (no bias) gives 0 -> eval BN (stats 0/1) gives bias.
        f0 = encoder(torch.full((1, 3, H, W), 0.45))[0]
        assert torch.allclose(f0, net.bn1.bias.clamp(min=0).view(1, 64, 1, 1).expand_as(f0))
        # x = mean + std -> normalised 1 -> away from the zero-padded border, conv1 gives the sum
        # of each filter's weights.
        f0 = encoder(torch.full((1, 3, H, W), 0.45 + 0.225))[0]
    filter_sums = net.conv1.weight.sum(dim=(1, 2, 3))
    bn_scale = net.bn1.weight / torch.sqrt(torch.tensor(1.0 + net.bn1.eps))
    expected = (filter_sums * bn_scale + net.bn1.bias).clamp(min=0).view(1, 64, 1, 1)
    interior = f0[:, :, 2:30, 2:46]
    assert torch.allclose(interior, expected.expand_as(interior), atol=1e-5)


def test_bad_num_layers_names_the_flag_and_choices():
    with pytest.raises(ValueError, match=r"--num_layers must be one of \[18, 34, 50, 101, 152\]"):
        ResnetEncoder(20, pretrained=False)


def test_encoder_rejects_wrong_channel_count():
    encoder = ResnetEncoder(18, pretrained=False, num_input_images=2)
    with pytest.raises(ValueError, match=r"expects B x 6 x H x W input, got \(1, 3, 64, 96\)"):
        encoder(torch.rand(1, 3, H, W))


def test_multi_image_conv1_init_is_kaiming_normal_fan_out():
    torch.manual_seed(0)
    encoder = ResnetEncoder(18, pretrained=False, num_input_images=2)
    conv1 = encoder.encoder.conv1
    assert conv1.weight.shape == (64, 6, 7, 7)
    # Kaiming-normal, fan_out, relu: std = sqrt(2 / (out_channels * k * k)) = sqrt(2 / 3136).
    assert conv1.weight.std().item() == pytest.approx((2 / 3136) ** 0.5, rel=0.05)
    assert abs(conv1.weight.mean().item()) < 0.002


# ---------------------------------------------------------------------------------------------
# ImageNet weights (download replaced by a local state dict; never touches the network)


def fake_imagenet_state_dict(num_layers: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(num_layers)
    builder = {18: models.resnet18, 50: models.resnet50}[num_layers]
    source = builder(weights=None).state_dict()  # includes fc.* like the real file
    # Positive random values everywhere, so running variances stay valid and no weight equals
    # its default initialisation by accident.
    return {k: torch.rand_like(v) + 0.5 if v.is_floating_point() else v for k, v in source.items()}


@pytest.mark.parametrize("num_layers, num_frames", [(18, 2), (50, 3)])
@pytest.mark.slow
def test_pretrained_weights_load_and_conv1_is_tiled_over_frames(
    monkeypatch, num_layers, num_frames
):
    source = fake_imagenet_state_dict(num_layers)
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return {k: v.clone() for k, v in source.items()}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    depth_encoder = build_depth_network(num_layers=num_layers, pretrained=True).encoder
    pose_encoder = build_pose_network(
        num_layers=num_layers, num_input_frames=num_frames, pretrained=True
    ).encoder

    weights = getattr(models, f"ResNet{num_layers}_Weights").IMAGENET1K_V1
    assert urls == [weights.url, weights.url]
    w = source["conv1.weight"]
    for name, encoder in [("depth", depth_encoder), ("pose", pose_encoder)]:
        loaded = encoder.encoder.state_dict()
        assert set(loaded) == {k for k in source if not k.startswith("fc.")}, name
        different = [
            k for k in loaded if k != "conv1.weight" and not torch.equal(loaded[k], source[k])
        ]
        assert not different, f"{name} encoder weights differ from the source: {different}"
    assert torch.equal(depth_encoder.encoder.conv1.weight, w)
    tiled = pose_encoder.encoder.conv1.weight
    assert tiled.shape == (64, 3 * num_frames, 7, 7)
    for k in range(num_frames):
        assert torch.equal(tiled[:, 3 * k : 3 * k + 3], w / num_frames)
    # Consequence of dividing by n: n identical frames give exactly the single-frame response.
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        single = depth_encoder.encoder.conv1(x)
        stacked = pose_encoder.encoder.conv1(torch.cat([x] * num_frames, dim=1))
    assert torch.allclose(stacked, single, atol=1e-5)


def test_offline_download_error_says_how_to_proceed(monkeypatch, tmp_path):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError) as info:
        ResnetEncoder(18, pretrained=True)
    message = str(info.value)
    assert "--weights_init scratch" in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


# ---------------------------------------------------------------------------------------------
# depth decoder


@pytest.mark.parametrize(
    "scales, num_output_channels, use_skips",
    [((0, 1, 2, 3), 1, True), ((0,), 2, True), ((1, 3), 1, False)],
)
def test_decoder_outputs_one_sigmoid_map_per_scale(scales, num_output_channels, use_skips):
    num_ch_enc = [64, 64, 128, 256, 512]
    decoder = DepthDecoder(num_ch_enc, scales, num_output_channels, use_skips)
    features = [
        torch.randn(2, c, H // 2 ** (i + 1), W // 2 ** (i + 1)) for i, c in enumerate(num_ch_enc)
    ]
    with torch.no_grad():
        outputs = decoder(features)
    assert set(outputs) == {("disp", s) for s in scales}
    for s in scales:
        disp = outputs[("disp", s)]
        assert disp.shape == (2, num_output_channels, H // 2**s, W // 2**s)
        assert disp.min() > 0 and disp.max() < 1


def test_decoder_forward_returns_a_fresh_dict_and_stores_nothing():
    encoder = ResnetEncoder(18, pretrained=False).eval()
    decoder = DepthDecoder(encoder.num_ch_enc).eval()
    attributes_before = dict(vars(decoder))
    with torch.no_grad():
        features = encoder(torch.rand(1, 3, H, W))
        first = decoder(features)
        second = decoder(features)
    assert first is not second
    first.clear()
    assert len(second) == 4
    assert vars(decoder) == attributes_before  # forward neither adds nor rebinds attributes


def test_decoder_layers_have_descriptive_names():
    decoder = DepthDecoder([64, 64, 128, 256, 512], scales=(0, 1, 2, 3))
    expected = {f"upconv_{i}_{j}" for i in range(5) for j in range(2)}
    expected |= {f"dispconv_{s}" for s in range(4)}
    assert set(decoder.convs) == expected
    assert "convs.upconv_0_1.conv.conv.weight" in decoder.state_dict()


def test_decoder_rejects_bad_scales():
    message = r"--scales must be a non-empty subset of \[0, 1, 2, 3, 4\]"
    with pytest.raises(ValueError, match=message):
        DepthDecoder([64, 64, 128, 256, 512], scales=(0, 5))


# ---------------------------------------------------------------------------------------------
# parameter counts (reference spec 4.2 and 4.6)


def test_parameter_counts_match_the_reference():
    encoder = ResnetEncoder(18, pretrained=False)
    assert num_params(encoder) == 11_176_512  # ResNet-18 without fc
    assert num_params(DepthDecoder(encoder.num_ch_enc, scales=(0, 1, 2, 3))) == 3_152_724
    pose_encoder = ResnetEncoder(18, pretrained=False, num_input_images=2)
    assert num_params(pose_encoder) == 11_185_920  # + 64 * 3 * 7 * 7 for the 6-channel conv1
    decoder = PoseDecoder(encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
    assert num_params(decoder) == 1_314_572


def test_posecnn_parameter_count_by_hand():
    # (in * out * k * k + out) per conv, 6 -> 16 (7x7), 16 -> 32 (5x5), then 3x3 convs, then 1x1.
    expected = (
        (6 * 16 * 49 + 16)
        + (16 * 32 * 25 + 32)
        + (32 * 64 * 9 + 64)
        + (64 * 128 * 9 + 128)
        + (128 * 256 * 9 + 256)
        + 2 * (256 * 256 * 9 + 256)
        + (256 * 6 + 6)
    )
    assert expected == 1_586_774
    assert num_params(PoseCNN(2)) == expected


# ---------------------------------------------------------------------------------------------
# gradients (DDP without find_unused_parameters needs every parameter to take part)


def test_every_depth_parameter_receives_a_gradient(device):
    torch.manual_seed(0)
    net = build_depth_network(num_layers=18, scales=(0, 1, 2, 3)).to(device)
    weighted_sum(net(torch.rand(2, 3, H, W, device=device)).values()).backward()
    assert_every_parameter_has_gradient(net)


@pytest.mark.parametrize("pose_model_type", ["separate_resnet", "posecnn"])
def test_every_pose_parameter_receives_a_gradient(pose_model_type, device):
    torch.manual_seed(0)
    net = build_pose_network(pose_model_type, num_layers=18, num_input_frames=2).to(device)
    weighted_sum(net(torch.rand(2, 6, H, W, device=device))).backward()
    assert_every_parameter_has_gradient(net)


# ---------------------------------------------------------------------------------------------
# pose outputs


@pytest.mark.parametrize(
    "pose_model_type, num_input_frames, num_predicted",
    [
        ("separate_resnet", 2, 2),  # reference: 2 predicted in pairs mode, index 0 used
        ("separate_resnet", 3, 2),
        ("separate_resnet", 4, 3),
        ("posecnn", 2, 1),
        ("posecnn", 3, 2),
    ],
)
def test_pose_output_is_scaled_mean_of_head_split_axisangle_then_translation(
    pose_model_type, num_input_frames, num_predicted
):
    torch.manual_seed(0)
    net = build_pose_network(pose_model_type, num_input_frames=num_input_frames).eval()
    head = net.decoder.pose_conv if pose_model_type == "posecnn" else net.decoder.pose2
    captured = []
    head.register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.no_grad():
        axisangle, translation = net(torch.rand(2, 3 * num_input_frames, H, W))
    assert axisangle.shape == translation.shape == (2, num_predicted, 1, 3)
    raw = captured[0].mean(dim=(2, 3)).view(2, num_predicted, 1, 6)
    assert torch.allclose(axisangle, 0.01 * raw[..., :3])
    assert torch.allclose(translation, 0.01 * raw[..., 3:])
    # Near-identity motion at initialisation.
    assert axisangle.abs().max() < 0.1 and translation.abs().max() < 0.1


def test_pose_num_frames_to_predict_for_is_passed_through():
    net = build_pose_network(num_input_frames=3, num_frames_to_predict_for=4)
    with torch.no_grad():
        axisangle, _ = net(torch.rand(1, 9, H, W))
    assert axisangle.shape == (1, 4, 1, 3)
    with pytest.raises(ValueError, match="posecnn always predicts num_input_frames - 1 = 1"):
        build_pose_network("posecnn", num_input_frames=2, num_frames_to_predict_for=2)


def test_pose_decoder_checks_the_number_of_feature_lists():
    decoder = PoseDecoder([64, 64, 128, 256, 512], num_input_features=2)
    features = [torch.rand(1, 512, 2, 3)]
    with pytest.raises(ValueError, match=r"built for 2 feature list\(s\), got 1"):
        decoder([features])
    axisangle, _ = decoder([features, features])
    assert axisangle.shape == (1, 1, 1, 3)  # default N = num_input_features - 1


# ---------------------------------------------------------------------------------------------
# registries and evaluation mode


def test_unknown_registry_names_list_the_choices():
    assert sorted(networks.DEPTH_ENCODERS) == ["hrnet", "resnet"]
    assert sorted(networks.DEPTH_DECODERS) == ["bdedepth", "featdepth", "monodepth2"]
    assert sorted(networks.DEPTH_NETWORKS) == ["packnet", "packnet_slim"]
    with pytest.raises(
        ValueError, match=r"--backbone must be one of \['convnext_large', 'efficientnet_b5', 'hrnet', 'packnet', "
                          r"'packnet_slim', 'resnet'\] \(got 'vgg'\)"
    ):
        build_depth_network(backbone="vgg")
    with pytest.raises(ValueError, match=r"--decoder must be one of \['bdedepth', 'featdepth', 'monodepth2', 'packnet', 'sql'\]"):
        build_depth_network(decoder="bde")
    with pytest.raises(
        ValueError, match=r"--pose_model_type must be one of \['packnet', 'posecnn', 'separate_resnet'\]"
    ):
        build_pose_network("shared")


def test_eval_mode_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    depth_net = build_depth_network().eval()
    pose_net = build_pose_network().eval()
    images = torch.rand(2, 3, H, W)
    pairs = torch.rand(2, 6, H, W)
    with torch.no_grad():
        disp_a, disp_b = depth_net(images), depth_net(images)
        disp_single = depth_net(images[1:])
        pose_a, pose_b = pose_net(pairs), pose_net(pairs)
        pose_single = pose_net(pairs[1:])
    for key in disp_a:
        assert torch.equal(disp_a[key], disp_b[key])
        # BatchNorm uses running statistics in eval mode: no sample sees the others.
        assert torch.allclose(disp_a[key][1:], disp_single[key], atol=1e-5)
    for a, b, single in zip(pose_a, pose_b, pose_single):
        assert torch.equal(a, b)
        assert torch.allclose(a[1:], single, atol=1e-6)


# ---- the encoder contract and four-level backbones -----------------------------------------------


@pytest.mark.parametrize("backbone, context", [("resnet", False), ("resnet", True), ("hrnet", False), ("hrnet", True)])
def test_every_registered_encoder_meets_its_declared_contract(backbone, context):
    from networks import DEPTH_ENCODERS, check_encoder_contract, encoder_feature_info

    encoder = DEPTH_ENCODERS[backbone](18, False, context=context)
    check_encoder_contract(encoder, 64, 96)
    info = encoder_feature_info(encoder)
    assert [i["reduction"] for i in info] == ([1] if context else []) + [2, 4, 8, 16, 32]


class FourLevelEncoder(torch.nn.Module):
    """A ConvNeXt-shaped stand-in: four features at strides 4, 8, 16 and 32."""

    num_ch_enc = [8, 16, 24, 32]
    reductions = [4, 8, 16, 32]

    def __init__(self) -> None:
        super().__init__()
        self.stages = torch.nn.ModuleList(
            torch.nn.Conv2d(3 if i == 0 else self.num_ch_enc[i - 1], c, 4 if i == 0 else 2, stride=4 if i == 0 else 2)
            for i, c in enumerate(self.num_ch_enc))

    def forward(self, x):
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def test_a_four_level_backbone_plugs_into_the_monodepth2_decoder():
    from networks import DepthDecoder, DepthNetwork, check_encoder_contract

    encoder = FourLevelEncoder()
    check_encoder_contract(encoder, 64, 96)
    decoder = DepthDecoder(encoder.num_ch_enc, scales=(0, 1, 2, 3), reductions=encoder.reductions)
    # Level 1 (stride 2) has no encoder feature to concatenate; level 2 takes the stride-4 one.
    assert decoder.convs["upconv_1_1"].conv.conv.in_channels == decoder.num_ch_dec[1]
    assert decoder.convs["upconv_2_1"].conv.conv.in_channels == decoder.num_ch_dec[2] + 8
    outputs = DepthNetwork(encoder, decoder)(torch.rand(2, 3, 64, 96))
    assert [outputs[("disp", s)].shape[-2:] for s in range(4)] == [(64 >> s, 96 >> s) for s in range(4)]
    outputs[("disp", 0)].mean().backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_the_contract_check_names_a_lying_encoder():
    from networks import check_encoder_contract

    encoder = FourLevelEncoder()
    encoder.reductions = [2, 4, 8, 16]
    with pytest.raises(ValueError, match=r"feature 0: shape \(1, 8, 16, 24\), declared \(1, 8, 32, 48\)"):
        check_encoder_contract(encoder, 64, 96)
    with pytest.raises(ValueError, match="strides must be powers of two ending at 32"):
        __import__("networks").DepthDecoder([8, 16, 24, 32], reductions=[2, 4, 8, 16])
