"""BDEdepth depth networks: HRNet-W18, context branches, grid decoder, weights, registry choices."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from torchvision import models

import networks
from checkpoints import ModelSpec, save_checkpoint
from model import load_model
from networks import (
    BDEResnetEncoder,
    GridDecoder,
    HRNetEncoder,
    build_depth_network,
    check_depth_network_choice,
)
from networks.hrnet import HRNetW18, FuseUp, IMAGENET_HEAD_PREFIXES
from options import parse_train_options

H, W = 64, 96  # multiples of 32, small enough for CPU

COMBINATIONS = [("resnet", "monodepth2"), ("resnet", "bdedepth"), ("hrnet", "bdedepth")]


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def grid_decoder_params_by_hand(num_ch_enc: list[int], scales: tuple[int, ...]) -> int:
    """Reference spec 4.5 counted from its description: conv (in*out*9 + out), PReLU 1."""
    E = [num_ch_enc[0]] + num_ch_enc
    G = [c // 2 for c in E]
    G[0] = 16
    total = 0
    for i in range(6):
        for j in range(3):
            c_in = E[i] if j == 0 else G[i]
            total += 1 + (c_in * G[i] * 9 + G[i]) + 1 + (G[i] * G[i] * 9 + G[i])  # lateral
            if i < 5:
                total += 1 + (G[i + 1] * G[i] * 9 + G[i])  # upconv
        if i in scales:
            total += G[i] * 9 + 1  # dispconv
    return total


# ---------------------------------------------------------------------------------------------
# parameter counts (reference spec 4.4, 4.5 and checklist item 6)


def test_hrnet_bdedepth_parameter_count_matches_the_reference():
    net = build_depth_network("hrnet", 18, "bdedepth", scales=(0,))
    assert num_params(net.encoder.encoder) == 9_562_260  # HRNet-W18 backbone, no head
    context = num_params(net.encoder.context_conv) + num_params(net.encoder.context_bn)
    assert context == 64 * 3 * 3 * 3 + 2 * 64 == 1_856
    assert num_params(net.decoder) == grid_decoder_params_by_hand([64, 18, 36, 72, 144], (0,))
    assert num_params(net.decoder) == 634_084
    assert num_params(net) == 10_198_200


def test_resnet_bdedepth_parameter_count_matches_the_reference():
    net = build_depth_network("resnet", 18, "bdedepth", scales=(0,))
    context = num_params(net.encoder.conv1) + num_params(net.encoder.bn1)
    assert context == 64 * 3 * 7 * 7 + 2 * 64 == 9_536
    assert num_params(net.encoder) == 11_176_512 + 9_536  # ResNet-18 without fc + context
    assert num_params(net.decoder) == grid_decoder_params_by_hand([64, 64, 128, 256, 512], (0,))
    assert num_params(net.decoder) == 6_775_636
    assert num_params(net) == 17_961_684
    # BDEdepth keeps the unused 1000-way fc (512 * 1000 + 1000): 18.47 M in its files.
    assert num_params(net) + 513_000 == 18_474_684


def test_more_scales_add_only_their_disparity_convs():
    one = num_params(GridDecoder([64, 64, 128, 256, 512], scales=(0,)))
    four = num_params(GridDecoder([64, 64, 128, 256, 512], scales=(0, 1, 2, 3)))
    assert four - one == (32 * 9 + 1) + (32 * 9 + 1) + (64 * 9 + 1)


# ---------------------------------------------------------------------------------------------
# shapes at the KITTI training size and a smaller one


@pytest.mark.parametrize("size", [(192, 640), (128, 416)])
@pytest.mark.parametrize("backbone, decoder", COMBINATIONS)
def test_output_shapes_at_training_sizes(backbone, decoder, size):
    torch.manual_seed(0)
    height, width = size
    scales = (0,) if decoder == "bdedepth" else (0, 1, 2, 3)  # each reference's training setting
    net = build_depth_network(backbone, 18, decoder, scales=scales).eval()
    with torch.no_grad():
        outputs = net(torch.rand(1, 3, height, width))
    assert set(outputs) == {("disp", s) for s in scales}
    for s in scales:
        disp = outputs[("disp", s)]
        assert disp.shape == (1, 1, height // 2**s, width // 2**s)
        assert disp.min() > 0 and disp.max() < 1


@pytest.mark.parametrize("backbone", ["resnet", "hrnet"])
def test_encoder_features_are_context_then_backbone(backbone):
    net = build_depth_network(backbone, 18, "bdedepth")
    with torch.no_grad():
        features = net.encoder(torch.rand(2, 3, H, W))
    channels = [64] + list(net.encoder.num_ch_enc)
    assert net.encoder.num_ch_enc == ([64, 64, 128, 256, 512] if backbone == "resnet"
                                      else [64, 18, 36, 72, 144])
    assert [tuple(f.shape) for f in features] == [
        (2, c, H // 2**i, W // 2**i) for i, c in enumerate(channels)
    ]


@pytest.mark.parametrize("scales", [(0, 1, 2, 3), (0, 5), (4,)])
def test_grid_decoder_emits_one_sigmoid_map_per_requested_scale(scales):
    torch.manual_seed(0)
    decoder = GridDecoder([64, 18, 36, 72, 144], scales=scales)
    features = [torch.randn(2, c, H // 2**i, W // 2**i)
                for i, c in enumerate([64, 64, 18, 36, 72, 144])]
    with torch.no_grad():
        outputs = decoder(features)
    assert set(outputs) == {("disp", s) for s in scales}
    for s in scales:
        assert outputs[("disp", s)].shape == (2, 1, H // 2**s, W // 2**s)
        assert 0 < outputs[("disp", s)].min() and outputs[("disp", s)].max() < 1


def reference_grid_forward(decoder: GridDecoder, features) -> dict:
    """Reference spec 4.5, "Forward", spelled out step by step as an independent oracle."""
    outputs, carry = {}, [None, None, None]
    for i in range(5, -1, -1):
        x = features[i]
        for j in range(3):
            x = decoder.layer(f"lateral_{i}_{j}")(x)
            if i < 5:
                x = x + carry[j]
            if i > 0:
                carry[j] = decoder.layer(f"upconv_{i - 1}_{j}")(x)
        if i in decoder.scales:
            outputs[("disp", i)] = torch.sigmoid(decoder.layer(f"dispconv_{i}")(x))
    return outputs


def test_grid_decoder_forward_follows_the_spec():
    torch.manual_seed(0)
    decoder = GridDecoder([64, 18, 36, 72, 144], scales=(0, 2))
    # Larger random weights than the 0.02 init, so every path visibly contributes.
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_(0, 0.2)
    features = [torch.randn(1, c, H // 2**i, W // 2**i)
                for i, c in enumerate([64, 64, 18, 36, 72, 144])]
    with torch.no_grad():
        ours, expected = decoder(features), reference_grid_forward(decoder, features)
    assert set(ours) == set(expected)
    for key in ours:
        assert torch.allclose(ours[key], expected[key], atol=1e-6)


def test_grid_decoder_skips_levels_finer_than_the_finest_scale():
    torch.manual_seed(0)
    full = GridDecoder([64, 18, 36, 72, 144], scales=(0, 2))
    coarse = GridDecoder([64, 18, 36, 72, 144], scales=(2,))
    for name in coarse.index:  # same weights, module by module (indices differ)
        coarse.layer(name).load_state_dict(full.layer(name).state_dict())
    called = []
    for name in ("lateral_0_0", "lateral_1_2", "upconv_1_0", "upconv_0_0"):
        coarse.layer(name).register_forward_hook(lambda *args, name=name: called.append(name))
    features = [torch.randn(1, c, H // 2**i, W // 2**i)
                for i, c in enumerate([64, 64, 18, 36, 72, 144])]
    with torch.no_grad():
        expected = full(features)[("disp", 2)]
        got = coarse(features)
    assert called == []
    assert set(got) == {("disp", 2)}
    assert torch.equal(got[("disp", 2)], expected)


def test_grid_decoder_init_is_truncated_normal_and_prelu_quarter():
    torch.manual_seed(0)
    decoder = GridDecoder([64, 64, 128, 256, 512], scales=(0,))
    convs = [m for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    # The cut is at +-2 in absolute units (timm's trunc_normal_, which BDEdepth calls), i.e. 100
    # standard deviations: it never binds, unlike a cut at 2 sigma (+-0.04).
    assert 0.04 < weights.abs().max() < 2
    assert all(torch.all(c.bias == 0) for c in convs)
    prelus = [m for m in decoder.modules() if isinstance(m, torch.nn.PReLU)]
    assert len(prelus) == 18 * 2 + 15 and all(p.weight.item() == 0.25 for p in prelus)


# ---------------------------------------------------------------------------------------------
# HRNet details


def test_hrnet_fusion_upsamples_bilinearly_with_aligned_corners():
    fuse = FuseUp(1, 1).eval()
    with torch.no_grad():
        fuse._modules["0"].weight.fill_(1.0)
    x = torch.tensor([[[[0.0, 3.0], [6.0, 9.0]]]])
    with torch.no_grad():
        y = fuse(x, (3, 3)) * (1 + fuse._modules["1"].eps) ** 0.5  # undo eval BN's 1/sqrt(1+eps)
    expected = torch.tensor([[[[0.0, 1.5, 3.0], [3.0, 4.5, 6.0], [6.0, 7.5, 9.0]]]])
    assert torch.allclose(y, expected, atol=1e-5)


def test_hrnet_sizes_not_divisible_by_64_keep_exact_strides():
    encoder = HRNetEncoder(18, pretrained=False).eval()
    with torch.no_grad():
        features = encoder(torch.rand(1, 3, 96, 160))  # H/32 = 3, W/32 = 5 (odd)
    assert [tuple(f.shape[-2:]) for f in features] == [
        (96 // 2**i, 160 // 2**i) for i in range(6)
    ]


@pytest.mark.parametrize("backbone, kernel", [("resnet", 7), ("hrnet", 3)])
def test_context_branch_is_a_stride_1_clone_of_the_stem_with_fresh_statistics(backbone, kernel):
    encoder = build_depth_network(backbone, 18, "bdedepth").encoder
    if backbone == "resnet":
        conv, bn = encoder.conv1, encoder.bn1
        stem_conv, stem_bn = encoder.encoder.conv1, encoder.encoder.bn1
    else:
        conv, bn = encoder.context_conv, encoder.context_bn
        stem_conv, stem_bn = encoder.encoder.conv1, encoder.encoder.bn1
    assert conv.weight.shape == (64, 3, kernel, kernel)
    assert conv.stride == (1, 1) and conv.padding == (kernel // 2, kernel // 2)
    assert conv.bias is None
    assert torch.equal(conv.weight, stem_conv.weight)
    assert torch.equal(bn.weight, stem_bn.weight) and torch.equal(bn.bias, stem_bn.bias)
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
    # A clone, not a shared tensor: training one leaves the other alone.
    assert conv.weight.data_ptr() != stem_conv.weight.data_ptr()
    with torch.no_grad():
        conv.weight.add_(1.0)
    assert not torch.equal(conv.weight, stem_conv.weight)


# ---------------------------------------------------------------------------------------------
# gradients (DDP without find_unused_parameters needs every parameter to take part)


@pytest.mark.parametrize("backbone, scales", [("resnet", (0, 1, 2, 3)), ("hrnet", (0,))])
def test_every_bde_parameter_receives_a_gradient(backbone, scales, device):
    torch.manual_seed(0)
    net = build_depth_network(backbone, 18, "bdedepth", scales=scales).to(device)
    image = torch.rand(2, 3, 32, 64, device=device)
    outputs = net(image)
    loss = sum(torch.rand_like(o).mul(o).sum() for o in outputs.values())
    loss.backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None]  # all take part (DDP)
    zero = [n for n, p in net.named_parameters() if not torch.any(p.grad != 0)]
    # The first PReLU of lateral(i, 0) sees an encoder feature, which ends in a ReLU: on
    # non-negative input PReLU is the identity and its slope's gradient is exactly 0. This is
    # BDEdepth's architecture (kept for its weights); nothing else may be without gradient.
    expected = sorted(f"decoder.decoder.{net.decoder.index[f'lateral_{i}_0']}.0.weight"
                      for i in range(6))
    assert sorted(zero) == expected
    with torch.no_grad():
        assert all(f.min() >= 0 for f in net.encoder(image))


# ---------------------------------------------------------------------------------------------
# state-dict layout of BDEdepth's released files (encoder / depth)


def test_hrnet_encoder_keys_match_bdedepth_and_imagenet_names():
    keys = list(build_depth_network("hrnet", 18, "bdedepth").encoder.state_dict())
    assert len(keys) == 1830 + 6  # HRNet-W18 as timm/ImageNet name it, + context conv and BN
    assert {k.split(".")[0] for k in keys} == {"encoder", "context_conv", "context_bn"}
    assert {k.split(".")[1] for k in keys if k.startswith("encoder.")} == {
        "conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "transition2", "transition3",
        "stage2", "stage3", "stage4",
    }
    for key in [
        "context_conv.weight", "context_bn.running_var",
        "encoder.layer1.0.downsample.0.weight", "encoder.layer1.3.conv3.weight",
        "encoder.transition1.0.0.weight", "encoder.transition1.1.0.0.weight",
        "encoder.transition2.2.0.0.weight", "encoder.transition3.3.0.1.running_mean",
        "encoder.stage2.0.branches.1.3.bn2.weight", "encoder.stage2.0.fuse_layers.0.1.0.weight",
        "encoder.stage3.3.fuse_layers.2.0.1.0.weight", "encoder.stage4.2.fuse_layers.3.0.2.1.bias",
    ]:
        assert key in keys, key


def test_resnet_encoder_keys_match_bdedepth_without_fc():
    keys = list(build_depth_network("resnet", 18, "bdedepth").encoder.state_dict())
    assert {"conv1.weight", "bn1.weight", "bn1.running_mean", "encoder.conv1.weight",
            "encoder.layer4.1.bn2.running_var"} <= set(keys)
    assert not [k for k in keys if k.startswith("encoder.fc.")]
    assert {k.split(".")[0] for k in keys} == {"encoder", "conv1", "bn1"}


def test_grid_decoder_keys_follow_bdedepth_insertion_order():
    state = build_depth_network("hrnet", 18, "bdedepth", scales=(0,)).decoder.state_dict()
    # Level 0: lateral(0,0), upconv(0,0), lateral(0,1), upconv(0,1), lateral(0,2), upconv(0,2),
    # dispconv(0) -> indices 0..6; then 6 modules per level for levels 1-4 and 3 laterals at 5.
    assert state["decoder.0.0.weight"].shape == (1,)  # PReLU
    assert state["decoder.0.1.weight"].shape == (16, 64, 3, 3)  # context E0=64 -> G0=16
    assert state["decoder.1.2.weight"].shape == (16, 32, 3, 3)  # upconv(0,0): G1 -> G0
    assert state["decoder.2.1.weight"].shape == (16, 16, 3, 3)  # lateral(0,1)
    assert state["decoder.6.conv.weight"].shape == (1, 16, 3, 3)  # dispconv(0)
    assert state["decoder.7.1.weight"].shape == (32, 64, 3, 3)  # lateral(1,0): f0 64 -> 32
    assert state["decoder.31.3.weight"].shape == (72, 72, 3, 3)  # lateral(5,0)
    assert state["decoder.33.3.weight"].shape == (72, 72, 3, 3)  # lateral(5,2), the last
    assert not [k for k in state if k.startswith("decoder.34.")]
    assert {k.split(".")[0] for k in state} == {"decoder"}


# ---------------------------------------------------------------------------------------------
# ImageNet weights through the real torch.hub path, from a local file:// URL


def write_fake_hrnet_imagenet_file(folder, missing: str | None = None):
    torch.manual_seed(1)
    state = {k: torch.rand_like(v) + 0.5 if v.is_floating_point() else v
             for k, v in HRNetW18().state_dict().items()}
    # The classification head the ImageNet file carries (HRNet-W18-C) and the backbone lacks.
    state["classifier.weight"] = torch.rand(1000, 2048)
    state["incre_modules.0.0.conv1.weight"] = torch.rand(32, 18, 1, 1)
    state["downsamp_modules.0.0.weight"] = torch.rand(256, 128, 3, 3)
    state["final_layer.0.weight"] = torch.rand(2048, 1024, 1, 1)
    if missing:
        del state[missing]
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    # torch.hub checks the SHA-256 prefix written into the name, as in the real file's name.
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = folder / f"hrnetv2_w18-{digest}.pth"
    os.replace(tmp, path)
    return state, path


@pytest.mark.slow
def test_hrnet_imagenet_weights_load_through_torch_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    source, path = write_fake_hrnet_imagenet_file(tmp_path)
    monkeypatch.setattr(networks.hrnet, "HRNET_W18_IMAGENET_URL", path.as_uri())
    encoder = build_depth_network("hrnet", 18, "bdedepth", pretrained=True).encoder
    loaded = encoder.encoder.state_dict()
    assert set(loaded) == {k for k in source if not k.startswith(IMAGENET_HEAD_PREFIXES)}
    assert all(torch.equal(loaded[k], source[k]) for k in loaded)  # incl. stem BN statistics
    # Cloned after loading: the context branch starts from the ImageNet stem.
    assert torch.equal(encoder.context_conv.weight, source["conv1.weight"])
    assert torch.equal(encoder.context_bn.bias, source["bn1.bias"])
    assert torch.all(encoder.context_bn.running_var == 1)
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / path.name
    assert cached.is_file()  # the torch hub cache, where an offline user puts the file


@pytest.mark.slow
def test_hrnet_weights_with_a_wrong_hash_or_missing_keys_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _, path = write_fake_hrnet_imagenet_file(tmp_path, missing="stage4.2.fuse_layers.3.0.2.1.bias")
    with pytest.raises(RuntimeError, match="missing \\['stage4.2.fuse_layers.3.0.2.1.bias'\\]"):
        HRNetEncoder(18, pretrained=True, weights_url=path.as_uri())
    corrupt = path.with_name("hrnetv2_w18-00000000.pth")
    os.replace(path, corrupt)
    with pytest.raises(RuntimeError, match="--weights_init scratch") as info:
        HRNetEncoder(18, pretrained=True, weights_url=corrupt.as_uri())
    assert "hub/checkpoints/hrnetv2_w18-00000000.pth" in str(info.value)


def test_hrnet_default_url_is_the_public_imagenet_file():
    assert networks.hrnet.HRNET_W18_IMAGENET_URL == (
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-hrnet/"
        "hrnetv2_w18-8cb57bb9.pth")


def test_resnet_context_branch_clones_the_imagenet_stem(monkeypatch):
    torch.manual_seed(2)
    source = {k: torch.rand_like(v) + 0.5 if v.is_floating_point() else v
              for k, v in models.resnet18(weights=None).state_dict().items()}
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: dict(source))
    encoder = BDEResnetEncoder(18, pretrained=True)
    assert torch.equal(encoder.encoder.conv1.weight, source["conv1.weight"])
    assert torch.equal(encoder.conv1.weight, source["conv1.weight"])
    assert torch.equal(encoder.bn1.weight, source["bn1.weight"])
    assert torch.all(encoder.bn1.running_mean == 0)


# ---------------------------------------------------------------------------------------------
# choices: validation, registries, checkpoints


@pytest.mark.parametrize("argv, message", [
    (["--backbone", "hrnet", "--decoder", "monodepth2"], "--backbone hrnet does not go with --decoder monodepth2: "
                                                         "use --decoder bdedepth"),
    (["--backbone", "hrnet", "--decoder", "bdedepth", "--num_layers", "34"],
     "--backbone hrnet is HRNet-W18: use --num_layers 18 (got 34"),
])
def test_invalid_combinations_fail_at_option_validation(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_train_options(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("backbone, decoder", COMBINATIONS)
def test_supported_combinations_parse(backbone, decoder):
    opts = parse_train_options(["--backbone", backbone, "--decoder", decoder, "--num_scales", "1"])
    assert (opts.backbone, opts.decoder, opts.num_layers) == (backbone, decoder, 18)


def test_build_refuses_what_validation_refuses():
    with pytest.raises(ValueError, match="use --decoder bdedepth"):
        build_depth_network("hrnet", 18, "monodepth2")
    with pytest.raises(ValueError, match="use --num_layers 18"):
        check_depth_network_choice("hrnet", 50, "bdedepth")
    with pytest.raises(ValueError, match="use --num_layers 18"):
        HRNetEncoder(34, pretrained=False)
    message = r"--scales must be a non-empty subset of \[0, 1, 2, 3, 4, 5\]"
    with pytest.raises(ValueError, match=message):
        GridDecoder([64, 18, 36, 72, 144], scales=(6,))


def test_grid_decoder_without_context_feature_says_so():
    decoder = GridDecoder([64, 64, 128, 256, 512])
    with pytest.raises(ValueError, match="build the encoder with its context branch"):
        decoder([torch.rand(1, c, 4, 4) for c in [64, 64, 128, 256, 512]])


@pytest.mark.parametrize("backbone", ["resnet", "hrnet"])
@pytest.mark.slow
def test_model_spec_rebuilds_bde_networks_from_a_checkpoint(backbone, tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec(backbone=backbone, num_layers=18, decoder="bdedepth", scales=[0])
    net = build_depth_network(backbone, 18, "bdedepth", scales=(0,))
    path = tmp_path / "model0.pth"
    save_checkpoint(path, {"model_spec": spec.to_dict(), "encoder": net.encoder.state_dict(),
                           "depth": net.decoder.state_dict()})
    loaded = load_model(path)
    rebuilt = loaded.networks["depth"]
    assert loaded.spec == spec
    image = torch.rand(1, 3, H, W)
    with torch.no_grad():
        assert torch.equal(rebuilt(image)[("disp", 0)], net.eval()(image)[("disp", 0)])
