"""FeatDepth networks and loss functions: parameter counts, key layout, shapes, closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision import models

import featdepth_losses as fl
from networks import build_pose_network
from networks.featdepth import ChainedResidualPooling, FeatDepthDecoder, FeatureNet
from networks.resnet_encoder import ResnetEncoder

H, W = 64, 96  # multiples of 32, small enough for CPU


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# torchvision's classification heads, which FeatDepth's counts include and our encoders omit.
RESNET50_FC = 2048 * 1000 + 1000
RESNET18_FC = 512 * 1000 + 1000


@pytest.fixture(scope="module")
def feature_net() -> FeatureNet:
    torch.manual_seed(0)
    return FeatureNet(pretrained=False).eval()


@pytest.fixture(scope="module")
def depth_net() -> tuple[ResnetEncoder, FeatDepthDecoder]:
    torch.manual_seed(0)
    encoder = ResnetEncoder(50, pretrained=False).eval()
    return encoder, FeatDepthDecoder(encoder.num_ch_enc).eval()


# ---------------------------------------------------------------------------------------------
# parameter counts (methods spec 2.1-2.3)


def test_feature_net_parameter_count_matches_the_spec(feature_net):
    assert num_params(nn.Linear(2048, 1000)) == RESNET50_FC == 2_049_000
    assert num_params(feature_net.decoder) == 5_903_420
    assert num_params(feature_net.encoder) == 25_557_032 - RESNET50_FC
    assert num_params(feature_net) + RESNET50_FC == 31_460_452


def test_depth_network_parameter_count_matches_the_spec(depth_net):
    encoder, decoder = depth_net
    assert num_params(decoder) == 9_651_972
    assert num_params(encoder) + num_params(decoder) == 33_160_004
    assert num_params(encoder) + num_params(decoder) + RESNET50_FC == 35_209_004


def test_featdepth_pose_network_is_monodepth2s_with_one_transform():
    pose = build_pose_network("separate_resnet", 18, 2, num_frames_to_predict_for=1)
    assert num_params(pose) + RESNET18_FC == 13_011_950
    images = torch.rand(1, 6, H, W)
    axisangle, translation = pose(images)
    assert axisangle.shape == translation.shape == (1, 1, 1, 3)


# ---------------------------------------------------------------------------------------------
# checkpoint key layout (methods spec 2.9): FeatDepth's keys minus the module prefix


def test_feature_encoder_keys_are_featdepths_without_fc(feature_net):
    torchvision_keys = {k for k in models.resnet50(weights=None).state_dict() if
                        not k.startswith("fc.")}
    assert set(feature_net.encoder.state_dict()) == {f"encoder.{k}" for k in torchvision_keys}


def test_feature_decoder_keys_are_featdepths(feature_net):
    expected = set()
    for stage in range(1, 6):
        for name in ("upconv", "iconv"):
            expected |= {f"{name}{stage}.conv.conv.weight", f"{name}{stage}.conv.conv.bias"}
    for stage in range(1, 5):
        expected |= {f"disp{stage}.conv.weight", f"disp{stage}.conv.bias"}
    assert set(feature_net.decoder.state_dict()) == expected
    assert feature_net.decoder.state_dict()["upconv5.conv.conv.weight"].shape == (256, 2048, 3, 3)
    assert feature_net.decoder.state_dict()["disp1.conv.weight"].shape == (3, 16, 3, 3)


def test_depth_decoder_keys_are_featdepths(depth_net):
    _, decoder = depth_net
    expected = set()
    for k in range(1, 5):
        expected.add(f"reduce{k}.conv.weight")
        expected |= {f"crp{k}.0.{i}_pointwise.conv.weight" for i in range(1, 5)}
        for name in (f"iconv{k}.conv", f"merge{k}.conv", f"disp{k}.0.conv"):
            expected |= {f"{name}.weight", f"{name}.bias"}
    state = decoder.state_dict()
    assert set(state) == expected
    assert state["reduce4.conv.weight"].shape == (512, 2048, 1, 1)
    assert state["iconv4.conv.weight"].shape == (256, 512, 3, 3)
    assert state["iconv1.conv.weight"].shape == (256, 513, 3, 3)
    assert state["disp1.0.conv.weight"].shape == (1, 256, 3, 3)


# ---------------------------------------------------------------------------------------------
# shapes, ranges, behaviour


def test_feature_net_shapes_and_ranges(feature_net):
    torch.manual_seed(1)
    with torch.no_grad():
        features, recons = feature_net(torch.rand(1, 3, H, W))
    channels = [64, 256, 512, 1024, 2048]
    assert [tuple(f.shape) for f in features] == [
        (1, c, H // 2 ** (i + 1), W // 2 ** (i + 1)) for i, c in enumerate(channels)
    ]
    assert sorted(recons) == [("reconstruction", s) for s in range(4)]
    for (_, s), image in recons.items():
        assert image.shape == (1, 3, H // 2**s, W // 2**s)
        assert 0 < image.min() and image.max() < 1


def test_feature_encoder_sees_raw_pixels(feature_net):
    # ResnetEncoder normalises by (x - 0.45) / 0.225; FeatureEncoder must not. With the same
    # weights, feeding ResnetEncoder the de-normalised image gives FeatureEncoder's features.
    resnet = ResnetEncoder(50, pretrained=False).eval()
    resnet.encoder.load_state_dict(feature_net.encoder.encoder.state_dict())
    torch.manual_seed(2)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        raw = feature_net.encoder(image)
        via_normalised = resnet(image * 0.225 + 0.45)
    for a, b in zip(raw, via_normalised):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_depth_decoder_outputs_half_resolution_disparities(depth_net):
    encoder, decoder = depth_net
    assert decoder.output_kind == "disp"
    torch.manual_seed(3)
    with torch.no_grad():
        outputs = decoder(encoder(torch.rand(1, 3, H, W)))
    assert sorted(outputs) == [("disp", s) for s in range(4)]
    for (_, s), disp in outputs.items():
        assert disp.shape == (1, 1, H // 2 ** (s + 1), W // 2 ** (s + 1))
        assert 0 < disp.min() and disp.max() < 1


def test_depth_decoder_drops_out_f3_and_f4_and_ignores_f0():
    torch.manual_seed(7)
    channels = [64, 256, 512, 1024, 2048]
    features = [torch.rand(1, c, 32 // 2**i, 48 // 2**i) for i, c in enumerate(channels)]
    decoder = FeatDepthDecoder(channels, scales=(0,)).train()
    # Dropout of an all-zero map is the same zero map, so zeroing a level removes its noise.
    no_f4 = features[:4] + [torch.zeros_like(features[4])]
    no_f3_f4 = features[:3] + [torch.zeros_like(features[3]), torch.zeros_like(features[4])]
    with torch.no_grad():
        assert not torch.equal(decoder(no_f4)[("disp", 0)], decoder(no_f4)[("disp", 0)])
        deterministic = decoder(no_f3_f4)[("disp", 0)]
        assert torch.equal(decoder(no_f3_f4)[("disp", 0)], deterministic)
        other_f0 = [torch.rand_like(features[0])] + no_f3_f4[1:]
        assert torch.equal(decoder(other_f0)[("disp", 0)], deterministic)


def test_depth_decoder_scales_subset_and_dropout_only_in_training():
    torch.manual_seed(4)
    channels = [64, 256, 512, 1024, 2048]
    features = [torch.rand(1, c, 32 // 2**i, 48 // 2**i) for i, c in enumerate(channels)]
    decoder = FeatDepthDecoder(channels, scales=(0,))
    decoder.eval()
    with torch.no_grad():
        first = decoder(features)
        assert list(first) == [("disp", 0)]
        torch.testing.assert_close(decoder(features)[("disp", 0)], first[("disp", 0)])
        decoder.train()
        dropped = decoder(features)[("disp", 0)]
    assert not torch.allclose(dropped, first[("disp", 0)])
    with pytest.raises(ValueError, match="subset"):
        FeatDepthDecoder(channels, scales=(4,))


def test_chained_residual_pooling_pools_the_previous_stage():
    # With identity 1x1 convs, stage i is max-pool^i of a unit impulse: a (4i+1)-wide square.
    # The output at Chebyshev distance d from the impulse is [d == 0] + #{i : 2i >= d}.
    crp = ChainedResidualPooling(1)
    for i in range(1, 5):
        nn.init.ones_(getattr(crp, f"{i}_pointwise").conv.weight)
    size = 21
    impulse = torch.zeros(1, 1, size, size)
    impulse[..., 10, 10] = 1.0
    with torch.no_grad():
        out = crp(impulse)[0, 0]
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    dist = torch.maximum((rows - 10).abs(), (cols - 10).abs())
    expected = (dist == 0).float() + sum((2 * i >= dist).float() for i in range(1, 5))
    torch.testing.assert_close(out, expected)
    assert out[10, 10] == 5 and out[10, 18] == 1 and out[10, 19] == 0


# ---------------------------------------------------------------------------------------------
# Charbonnier and reconstruction


def test_charbonnier_closed_form(device):
    x = torch.rand(2, 3, 4, 5, device=device)
    torch.testing.assert_close(fl.charbonnier(x, x), torch.full_like(x, 1e-3))
    diff = fl.charbonnier(x + 0.3, x)
    torch.testing.assert_close(diff, torch.full_like(x, math.sqrt(0.09 + 1e-6)))
    pred = x.clone().requires_grad_(True)
    fl.charbonnier(pred, x).sum().backward()
    assert torch.equal(pred.grad, torch.zeros_like(x))  # smooth at zero, unlike L1


def test_reconstruction_loss_of_perfect_reconstructions_is_the_charbonnier_floor(device):
    image = torch.rand(2, 3, 32, 48, device=device)
    recons = [
        torch.nn.functional.interpolate(image, size=(32 // 2**s, 48 // 2**s), mode="bilinear",
                                        align_corners=False)
        for s in range(4)
    ]
    floor = torch.tensor(0.15 * 1e-3, device=device)
    torch.testing.assert_close(fl.reconstruction_loss(recons, image, chained_resize=False), floor)
    assert fl.reconstruction_loss(recons, image, chained_resize=True) > 2 * floor


def test_chained_resize_targets_are_block_means(device):
    # FeatDepth's stage 1 halves its target scale by scale: scale s sees 2^s x 2^s block means.
    image = torch.rand(2, 3, 32, 48, device=device)
    recons = [torch.nn.functional.avg_pool2d(image, 2**s) for s in (3, 0, 2, 1)]
    floor = torch.tensor(0.15 * 1e-3, device=device)
    torch.testing.assert_close(fl.reconstruction_loss(recons, image, chained_resize=True), floor)
    assert fl.reconstruction_loss(recons, image, chained_resize=False) > 2 * floor


def test_reconstruction_loss_on_constant_images(device):
    # Constant maps: sigma = 0, so SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    image = torch.full((1, 3, 16, 16), 0.5, device=device)
    recons = [torch.full((1, 3, 16 // 2**s, 16 // 2**s), 0.25, device=device) for s in range(4)]
    c1 = 0.01**2
    ssim = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    expected = 0.85 * (1 - ssim) / 2 + 0.15 * math.sqrt(0.25**2 + 1e-6)
    loss = fl.reconstruction_loss(recons, image)
    torch.testing.assert_close(loss, torch.tensor(expected, device=device))


# ---------------------------------------------------------------------------------------------
# discriminative and convergent regularisers


def column_ramp(h: int, w: int, slope: float, channels: int = 4, device=None) -> torch.Tensor:
    cols = torch.arange(w, dtype=torch.float32, device=device) * slope
    return cols.expand(1, channels, h, w).clone()


def test_regularisers_vanish_on_constant_features(device):
    feature = torch.full((1, 8, 6, 7), 3.0, device=device)
    image = torch.rand(1, 3, 12, 14, device=device)
    assert fl.discriminative_loss(feature, image) == 0
    assert fl.convergent_loss(feature, image) == 0


def test_regularisers_on_a_linear_ramp(device):
    a = 0.25
    feature = column_ramp(8, 8, a, device=device)
    image = torch.full((1, 3, 16, 16), 0.5, device=device)
    # |dx f| = a everywhere, dy f = 0, image flat: weight 1.
    torch.testing.assert_close(fl.discriminative_loss(feature, image),
                               torch.tensor(-1e-3 * a, device=device))
    assert fl.convergent_loss(feature, image) == 0


def test_regularisers_on_a_quadratic(device):
    c = 0.125
    w = 8
    cols = torch.arange(w, dtype=torch.float32, device=device)
    feature = (c * cols**2).expand(1, 2, 6, w).clone()
    image = torch.zeros(1, 3, 6, w, device=device)
    # dx f = c (2j + 1) for j < w - 1, whose mean is c (w - 1); dxx = 2c; mixed and dyy are 0.
    torch.testing.assert_close(fl.discriminative_loss(feature, image),
                               torch.tensor(-1e-3 * c * (w - 1), device=device))
    torch.testing.assert_close(fl.convergent_loss(feature, image),
                               torch.tensor(1e-3 * 2 * c, device=device))


def test_discriminative_weight_uses_the_area_downsampled_rgb_mean(device):
    # Full-resolution channel slopes g, 2g, 3g per pixel become 2g, 4g, 6g after 2x2 area
    # averaging; their mean 4g gives the edge weight e^{-4g}.
    a, g = 0.5, 0.02
    feature = column_ramp(8, 8, a, device=device)
    image = torch.cat([column_ramp(16, 16, k * g, channels=1, device=device) for k in (1, 2, 3)],
                      dim=1)
    expected = -1e-3 * a * math.exp(-4 * g)
    torch.testing.assert_close(fl.discriminative_loss(feature, image),
                               torch.tensor(expected, device=device))


def test_regulariser_image_is_area_downsampled_not_sampled(device):
    # A step at column 5 of 16, averaged over 4-column blocks, gives block values 0, 0.75, 1, 1
    # (image steps 0.75, 0.25, 0); bilinear sampling would give 0, 1, 1, 1 instead.
    a = 0.5
    feature = column_ramp(4, 4, a, device=device)
    image = torch.zeros(1, 3, 16, 16, device=device)
    image[..., 5:] = 1.0
    expected = -1e-3 * a * (math.exp(-0.75) + math.exp(-0.25) + 1.0) / 3
    torch.testing.assert_close(fl.discriminative_loss(feature, image),
                               torch.tensor(expected, device=device))


def test_feature_regularisation_sums_levels_with_halving_weights(device):
    slopes = [0.5, 0.25, 1.0, 2.0, 0.125]
    sizes = [(16, 16), (8, 8), (4, 4), (4, 4), (3, 3)]
    features = [column_ramp(h, w, s, device=device) for s, (h, w) in zip(slopes, sizes)]
    image = torch.full((1, 3, 32, 32), 0.3, device=device)
    expected = sum(-1e-3 * s / 2**i for i, s in enumerate(slopes)) / 5
    torch.testing.assert_close(fl.feature_regularisation_loss(features, image),
                               torch.tensor(expected, device=device))


def test_second_order_terms_refuse_maps_too_small_for_them(device):
    feature = torch.rand(1, 4, 2, 3, device=device)  # f4 of a 64 x 96 input
    with pytest.raises(ValueError, match="at least 96 x 96"):
        fl.convergent_loss(feature, torch.rand(1, 3, 64, 96, device=device))


# ---------------------------------------------------------------------------------------------
# feature-metric loss


def feature_K(batch: int, fx: float, fy: float, cx: float, cy: float, device=None) -> torch.Tensor:
    K = torch.eye(4, device=device).repeat(batch, 1, 1)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = fx, fy, cx, cy
    return K


def test_halve_intrinsics(device):
    K = feature_K(2, 100.0, 80.0, 50.0, 30.0, device=device)
    half = fl.halve_intrinsics(K)
    torch.testing.assert_close(half, feature_K(2, 50.0, 40.0, 25.0, 15.0, device=device))
    assert K[0, 0, 0] == 100.0  # the input is untouched


def test_identity_pose_warp_returns_the_features(device):
    torch.manual_seed(5)
    features = torch.rand(2, 4, 6, 8, device=device)
    depth = torch.rand(2, 1, 6, 8, device=device) * 10 + 0.5
    K = fl.halve_intrinsics(feature_K(2, 9.6, 7.2, 8.0, 6.0, device=device))
    T = torch.eye(4, device=device).repeat(2, 1, 1)
    grid = fl.feature_sampling_grid(depth, K, T)
    torch.testing.assert_close(fl.warp_features(features, grid), features, atol=1e-5, rtol=0)
    loss = fl.feature_metric_loss(features, [features], [grid])
    torch.testing.assert_close(loss, torch.tensor(1e-3 * 1e-3, device=device), atol=1e-9,
                               rtol=1e-4)


def test_one_column_translation_shifts_features_with_border_padding(device):
    # fx * t_x / z = 4 * 0.5 / 2 = 1: target column j samples source column j + 1; the last
    # column samples beyond the edge and gets the border value.
    torch.manual_seed(6)
    features = torch.rand(1, 3, 5, 7, device=device)
    depth = torch.full((1, 1, 5, 7), 2.0, device=device)
    K = feature_K(1, 4.0, 4.0, 3.0, 2.0, device=device)
    T = torch.eye(4, device=device)[None].clone()
    T[0, 0, 3] = 0.5
    warped = fl.warp_features(features, fl.feature_sampling_grid(depth, K, T))
    torch.testing.assert_close(warped[..., :-1], features[..., 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(warped[..., -1], features[..., -1], atol=1e-5, rtol=0)


def test_feature_metric_error_takes_the_per_pixel_minimum_over_sources(device):
    target = torch.zeros(1, 2, 4, 6, device=device)
    left_good = target.clone()
    left_good[..., 3:] = 1.0
    right_good = target.clone()
    right_good[..., :3] = 1.0
    error = fl.feature_metric_error(target, [left_good, right_good])
    torch.testing.assert_close(error, torch.full((1, 1, 4, 6), 1e-3, device=device))
    only_left = fl.feature_metric_error(target, [left_good])
    assert only_left[..., 3:].min() > 1.0


def test_feature_metric_loss_trains_depth_and_pose_through_the_grid(device):
    torch.manual_seed(8)
    target = torch.rand(1, 4, 6, 8, device=device)
    source = torch.rand(1, 4, 6, 8, device=device)
    depth = torch.full((1, 1, 6, 8), 3.0, device=device, requires_grad=True)
    translation = torch.tensor([0.2, 0.1, 0.0], device=device, requires_grad=True)
    T = torch.eye(4, device=device)[None].clone()
    T[0, :3, 3] = translation
    K = feature_K(1, 5.0, 5.0, 3.5, 2.5, device=device)
    loss = fl.feature_metric_loss(target, [source], [fl.feature_sampling_grid(depth, K, T)])
    loss.backward()
    assert depth.grad.abs().sum() > 0 and translation.grad.abs().sum() > 0


def test_feature_metric_loss_needs_one_grid_per_source(device):
    f = torch.rand(1, 2, 4, 6, device=device)
    with pytest.raises(ValueError, match="one grid per source"):
        fl.feature_metric_loss(f, [f, f], [torch.zeros(1, 4, 6, 2, device=device)])


# ---------------------------------------------------------------------------------------------
# second-order edge-aware smoothness


def ramp_disp(h: int, w: int, a: float, b: float, device=None) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                                torch.arange(w, dtype=torch.float32, device=device),
                                indexing="ij")
    return (a * cols + b * rows)[None, None]


def test_linear_disparity_has_no_second_order_penalty(device):
    disp = ramp_disp(8, 10, 0.25, 0.125, device=device)
    image = torch.full((1, 3, 16, 20), 0.7, device=device)
    first, second = fl.smoothness_terms(disp, image, normalise_disp=False)
    torch.testing.assert_close(first, torch.tensor(0.375, device=device))
    assert second == 0


def test_quadratic_disparity_has_its_curvature_as_second_order_penalty(device):
    c = 0.01
    cols = torch.arange(10, dtype=torch.float32, device=device)
    disp = (c * cols**2).expand(1, 1, 8, 10).clone()
    image = torch.full((1, 3, 8, 10), 0.7, device=device)
    _, second = fl.smoothness_terms(disp, image, normalise_disp=False)
    assert second > 0
    torch.testing.assert_close(second, torch.tensor(2 * c, device=device))


def test_smoothness_edge_weight_is_exp_minus_half_gradient(device):
    a, g = 0.25, 0.1
    disp = ramp_disp(6, 8, a, 0.0, device=device)
    image = column_ramp(6, 8, g, channels=3, device=device)
    first, second = fl.smoothness_terms(disp, image, normalise_disp=False)
    torch.testing.assert_close(first, torch.tensor(a * math.exp(-0.5 * g), device=device))
    assert second == 0


def test_smoothness_normalises_by_the_mean_disparity_on_request(device):
    a = 0.25
    disp = 1.0 + ramp_disp(6, 8, a, 0.0, device=device)
    mean = 1.0 + a * 7 / 2
    image = torch.zeros(1, 3, 6, 8, device=device)
    first, _ = fl.smoothness_terms(disp, image, normalise_disp=True)
    torch.testing.assert_close(first, torch.tensor(a / mean, device=device))


def test_multiscale_smoothness_weights_and_averages_scales(device):
    c = 0.01
    image = torch.full((1, 3, 48, 48), 0.4, device=device)
    disps = {}
    for s in range(4):
        size = 48 // 2 ** (s + 1)
        cols = torch.arange(size, dtype=torch.float32, device=device)
        disps[s] = (c * cols**2).expand(1, 1, size, size).clone()
    expected = 0.0
    for s, disp in disps.items():
        w = disp.shape[-1]
        expected += 1e-3 * (c * (w - 1) + 2 * c) / 2**s  # first (mean of c(2j+1)) + second
    expected /= 4
    loss = fl.multiscale_smoothness_loss(disps, image, normalise_disp=False)
    torch.testing.assert_close(loss, torch.tensor(expected, device=device))
