"""SQLdepth networks: adaptive bins, probabilistic depth, parameter counts, shapes, key names.

The timm backbones (EfficientNet-B5, ConvNeXt-L) are skipped when timm is not installed; run
these tests with timm importable to cover them. Large models are built on the meta device,
which allocates no memory and still counts parameters and propagates shapes.
"""

from __future__ import annotations

import sys
import urllib.error

import pytest
import torch
from torch import nn
from torchvision import models

from networks import sqldepth
from networks.sqldepth import (
    RESNET50_WEIGHTS,
    SQLDEPTH_VARIANTS,
    ResnetFusionDecoder,
    SelfQueryDecoder,
    SQLResnetTrunk,
    bin_centres,
    bin_edges_from_scores,
    build_sqldepth_network,
    build_sqldepth_variant,
    check_token_count,
    probabilistic_depth,
    self_cost_volume,
)

MIN_DEPTH, MAX_DEPTH = 0.001, 80.0

# A tiny ResNet-50 model: 64 x 64 input -> S 32 x 32 -> 4 x 4 = 16 patches of 8 px.
TINY = dict(height=64, width=64, patch_size=8, num_queries=4, num_bins=8)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_decoder(**overrides) -> SelfQueryDecoder:
    settings = dict(in_channels=8, embedding_dim=8, patch_size=4, num_queries=3, num_bins=5,
                    dim_feedforward=16, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH)
    settings.update(overrides)
    return SelfQueryDecoder(**settings)


@pytest.fixture(scope="module")
def tiny_resnet_network() -> sqldepth.SQLdepthNetwork:
    torch.manual_seed(0)
    return build_sqldepth_network("resnet50", pretrained=False, **TINY)


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm")


# ---------------------------------------------------------------------------------------------
# adaptive bins and probabilistic depth


def test_bins_are_positive_and_sum_to_the_depth_range():
    torch.manual_seed(0)
    # Large negative scores are zeroed by the ReLU; the 0.1 floor must keep those bins open.
    scores = torch.randn(4, 64) * 10.0
    edges = bin_edges_from_scores(scores, MIN_DEPTH, MAX_DEPTH)
    widths = edges[:, 1:] - edges[:, :-1]

    assert edges.shape == (4, 65)
    assert bool((widths > 0).all())
    torch.testing.assert_close(widths.sum(dim=1), torch.full((4,), MAX_DEPTH - MIN_DEPTH))
    assert bool((edges[:, 0] == MIN_DEPTH).all())
    torch.testing.assert_close(edges[:, -1], torch.full((4,), MAX_DEPTH))


def test_bin_widths_are_relu_plus_a_tenth_normalised():
    # relu(-5) + 0.1 = 0.1 and relu(0.9) + 0.1 = 1.0: the bins split the range 1 : 10.
    edges = bin_edges_from_scores(torch.tensor([[-5.0, 0.9]]), 0.0 + 1.0, 12.0)
    torch.testing.assert_close(edges, torch.tensor([[1.0, 2.0, 12.0]]))
    torch.testing.assert_close(bin_centres(edges), torch.tensor([[1.5, 7.0]]))


def test_equal_scores_give_uniform_bins():
    edges = bin_edges_from_scores(torch.zeros(1, 8), 0.5, 4.5)
    torch.testing.assert_close(edges, torch.linspace(0.5, 4.5, 9).unsqueeze(0))


def test_bins_and_depth_stay_float32_under_bfloat16():
    # bfloat16 steps near 80 are 0.5: the edges must not be quantised to them.
    scores = torch.linspace(-1.0, 2.0, 64).reshape(1, 64).to(torch.bfloat16)
    edges = bin_edges_from_scores(scores, MIN_DEPTH, MAX_DEPTH)
    assert edges.dtype == torch.float32
    reference = bin_edges_from_scores(scores.float(), MIN_DEPTH, MAX_DEPTH)
    torch.testing.assert_close(edges, reference, rtol=0, atol=0)
    probabilities = torch.full((1, 64, 1, 1), 1 / 64, dtype=torch.bfloat16)
    depth = probabilistic_depth(probabilities, bin_centres(edges))
    assert depth.dtype == torch.float32
    assert depth.item() == pytest.approx(bin_centres(edges).mean().item(), rel=1e-5)


def test_probabilistic_depth_of_a_one_hot_probability_is_that_bins_centre():
    torch.manual_seed(0)
    num_bins = 6
    centres = bin_centres(bin_edges_from_scores(torch.randn(1, num_bins), MIN_DEPTH, MAX_DEPTH))
    # Pixel (0, d) is certain of bin d, so its depth must be centre d exactly.
    one_hot = torch.eye(num_bins).T.reshape(1, num_bins, 1, num_bins)
    depth = probabilistic_depth(one_hot, centres)
    assert depth.shape == (1, 1, 1, num_bins)
    torch.testing.assert_close(depth.flatten(), centres.flatten(), rtol=0, atol=0)


def test_probabilistic_depth_averages_centres_by_probability():
    centres = torch.tensor([[2.0, 10.0]])
    probabilities = torch.tensor([0.75, 0.25]).reshape(1, 2, 1, 1)
    assert probabilistic_depth(probabilities, centres).item() == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------
# self-cost volume and the Self Query Layer


def test_self_cost_volume_is_raw_and_the_summary_softmax_runs_over_pixels():
    # One channel, two pixels with values 0 and 1, one query ln 3: dot products 0 and ln 3.
    features = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2)
    log3 = torch.log(torch.tensor(3.0))
    queries = log3.reshape(1, 1, 1)
    cost_volume, summaries = self_cost_volume(features, queries)

    expected_volume = torch.stack([torch.tensor(0.0), log3]).reshape(1, 1, 1, 2)
    torch.testing.assert_close(cost_volume, expected_volume)
    # softmax over the pixels = (1/4, 3/4), so the summary is 0 * 1/4 + 1 * 3/4.
    torch.testing.assert_close(summaries, torch.tensor([[[0.75]]]))


def test_self_cost_volume_rejects_mismatched_embedding_dims():
    with pytest.raises(ValueError, match="embedding dimension"):
        self_cost_volume(torch.zeros(1, 4, 2, 2), torch.zeros(1, 3, 5))


def test_decoder_outputs_are_consistent_bins_probabilities_and_depth():
    torch.manual_seed(0)
    decoder = tiny_decoder().eval()
    s_map = torch.randn(2, 8, 12, 16)  # 3 x 4 = 12 patches of 4 px
    with torch.no_grad():
        out = decoder.forward_with_bins([s_map])

    widths = out.bin_edges[:, 1:] - out.bin_edges[:, :-1]
    assert out.bin_edges.shape == (2, 6)
    assert bool((widths > 0).all())
    torch.testing.assert_close(widths.sum(dim=1), torch.full((2,), MAX_DEPTH - MIN_DEPTH))
    assert out.probabilities.shape == (2, 5, 12, 16)
    torch.testing.assert_close(out.probabilities.sum(dim=1), torch.ones(2, 12, 16))
    assert out.depth.shape == (2, 1, 12, 16)
    torch.testing.assert_close(
        out.depth, probabilistic_depth(out.probabilities, bin_centres(out.bin_edges))
    )
    assert bool((out.depth > MIN_DEPTH).all() and (out.depth < MAX_DEPTH).all())
    with torch.no_grad():
        assert torch.equal(decoder([s_map])[("depth", 0)], out.depth)


def test_queries_are_the_first_tokens_in_raster_order(monkeypatch):
    torch.manual_seed(0)
    decoder = tiny_decoder().eval()
    # With the transformer replaced by the identity, the queries must be the first Q patch
    # embeddings (plus their positional encodings) in raster order.
    decoder.transformer_encoder = nn.Identity()
    seen = {}
    original = sqldepth.self_cost_volume

    def spy(features, queries):
        seen["queries"] = queries
        return original(features, queries)

    monkeypatch.setattr(sqldepth, "self_cost_volume", spy)
    s_map = torch.randn(1, 8, 8, 12)  # 2 x 3 patches
    with torch.no_grad():
        decoder([s_map])
        tokens = decoder.embedding_convPxP(s_map).flatten(2)[0].T  # N x E, raster order
        expected = tokens[:3] + decoder.positional_encodings[:3]
    torch.testing.assert_close(seen["queries"][0], expected)


def test_token_count_must_lie_between_the_query_count_and_500():
    assert check_token_count(96, 320, 16, 64) == 120  # the ResNet-50 640 x 192 model
    assert check_token_count(160, 512, 20, 128) == 200  # the ResNet-50 1024 x 320 model
    with pytest.raises(ValueError, match=r"gives 4 tokens, fewer than the 64 queries"):
        check_token_count(32, 32, 16, 64)
    assert check_token_count(200, 400, 16, 64) == 300  # floor division: 12 x 25
    with pytest.raises(ValueError, match=r"gives 1280 tokens, more than the 500"):
        check_token_count(320, 1024, 16, 64)


def test_decoder_refuses_a_feature_map_with_too_few_tokens():
    decoder = tiny_decoder(num_queries=3)
    with pytest.raises(ValueError, match="--sql_num_queries"):
        decoder([torch.zeros(1, 8, 4, 8)])  # 1 x 2 = 2 tokens < 3 queries


def test_decoder_refuses_wrong_channel_count():
    with pytest.raises(ValueError, match="B x 8 x h x w"):
        tiny_decoder()([torch.zeros(1, 7, 8, 8)])


def test_builder_checks_token_count_and_input_size_before_building():
    # 1024 x 320 with 8 px patches on S at H/2: 20 x 64 = 1280 tokens.
    with pytest.raises(ValueError, match="more than the 500"):
        build_sqldepth_network("resnet50", False, 320, 1024, patch_size=8)
    with pytest.raises(ValueError, match="multiples of 32"):
        build_sqldepth_network("resnet50", False, 200, 640)
    with pytest.raises(ValueError, match="--backbone must be one of"):
        build_sqldepth_network("resnet18", False, 192, 640)


# ---------------------------------------------------------------------------------------------
# parameter counts (spec 3.3, 3.4)


def test_resnet50_640x192_parameter_breakdown():
    with torch.device("meta"):
        network = build_sqldepth_variant("resnet50_640x192", pretrained=False)
    assert num_params(network.encoder.encoder) == 25_557_032  # ResNet-50 with its unused fc
    assert num_params(network.encoder.encoder.encoder.fc) == 2_049_000
    assert num_params(network.encoder.decoder) == 2_675_648
    assert num_params(network.decoder) == 2_819_264
    assert network.decoder.dim_feedforward == 512


@pytest.mark.parametrize("name", sorted(SQLDEPTH_VARIANTS))
def test_published_parameter_counts(name):
    variant = SQLDEPTH_VARIANTS[name]
    if variant.backbone != "resnet50":
        pytest.importorskip("timm")
    with torch.device("meta"):
        network = build_sqldepth_variant(name, pretrained=False)
    assert num_params(network) == variant.parameter_count


def test_published_parameter_counts_are_the_spec_figures():
    counts = {name: v.parameter_count for name, v in SQLDEPTH_VARIANTS.items()}
    assert counts == {
        "resnet50_640x192": 31_051_944,
        "resnet50_1024x320": 37_782_824,
        "efficientnet_b5_1024x320": 45_702_416,
        "convnext_large_1024x320": 242_150_304,
    }


def test_resnet50_1024x320_self_query_layer_count():
    with torch.device("meta"):
        network = build_sqldepth_variant("resnet50_1024x320", pretrained=False)
    assert num_params(network.decoder) == 9_550_144


@pytest.mark.parametrize(
    "backbone, dim_feedforward",
    [("efficientnet_b5", 1024), ("convnext_large", 1024), ("resnet50", 512)],
)
def test_feedforward_width_defaults_to_lite_for_resnet_and_full_for_timm(backbone, dim_feedforward):
    assert sqldepth.default_dim_feedforward(backbone) == dim_feedforward


# ---------------------------------------------------------------------------------------------
# shapes and values on tiny inputs


def test_tiny_resnet_network_gives_positive_depth_at_half_resolution(tiny_resnet_network):
    network = tiny_resnet_network.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        outputs = network(torch.rand(2, 3, TINY["height"], TINY["width"]))
    depth = outputs[("depth", 0)]
    assert list(outputs) == [("depth", 0)]
    assert network.output_kind == "depth" and network.decoder.output_kind == "depth"
    assert network.output_reduction == 2
    assert depth.shape == (2, 1, 32, 32)
    assert bool(torch.isfinite(depth).all())
    assert bool((depth > MIN_DEPTH).all() and (depth < MAX_DEPTH).all())


def test_every_used_parameter_gets_a_gradient(tiny_resnet_network):
    network = tiny_resnet_network.train()
    network.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    depth = network(torch.rand(2, 3, TINY["height"], TINY["width"]))[("depth", 0)]
    (depth * torch.randn_like(depth)).sum().backward()

    frozen = {name for name, p in network.named_parameters() if not p.requires_grad}
    assert frozen == {"encoder.encoder.encoder.fc.weight", "encoder.encoder.encoder.fc.bias"}
    missing = [name for name, p in network.named_parameters()
               if p.requires_grad and (p.grad is None or not bool(p.grad.any()))]
    assert not missing, f"missing gradients: {missing}"
    # Only the first N = 16 positional encodings are used.
    pos_grad = network.decoder.positional_encodings.grad
    assert bool(pos_grad[:16].abs().sum(dim=1).gt(0).all())
    assert not bool(pos_grad[16:].any())


def test_resnet_path_normalises_its_input():
    trunk = SQLResnetTrunk(pretrained=False).eval()
    seen = {}
    trunk.encoder.conv1.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        features = trunk(image)
    torch.testing.assert_close(seen["x"], (image - 0.45) / 0.225)
    assert [f.shape[1] for f in features] == trunk.num_ch_enc == [64, 256, 512, 1024, 2048]
    assert [32 // f.shape[-1] for f in features] == trunk.reductions == [2, 4, 8, 16, 32]


def test_fusion_decoder_keeps_the_padded_1x1_conv():
    # SQLdepth's conv2 is 1 x 1 with padding 1: the map grows by a bias-only 1 px border.
    decoder = ResnetFusionDecoder(num_features=32, model_dim=4)
    with torch.no_grad():
        out = decoder.conv2(torch.zeros(1, 2048, 2, 3))
    assert out.shape == (1, 32, 4, 5)
    bias = decoder.conv2.bias.reshape(1, 32, 1, 1)
    torch.testing.assert_close(out, bias.expand(1, 32, 4, 5))


@pytest.mark.parametrize("name, reduction", [
    ("resnet50_640x192", 2), ("resnet50_1024x320", 2),
    ("efficientnet_b5_1024x320", 1), ("convnext_large_1024x320", 2),
])
def test_published_variants_output_resolution(name, reduction):
    variant = SQLDEPTH_VARIANTS[name]
    assert sqldepth.OUTPUT_REDUCTIONS[variant.backbone] == reduction
    if variant.backbone != "resnet50":
        pytest.importorskip("timm")
    with torch.device("meta"):
        network = build_sqldepth_variant(name, pretrained=False)
        depth = network(torch.zeros(1, 3, variant.height, variant.width))[("depth", 0)]
    assert network.output_reduction == reduction
    assert depth.shape == (1, 1, variant.height // reduction, variant.width // reduction)


def test_efficientnet_b5_tiny_forward_without_input_normalisation(timm):
    torch.manual_seed(0)
    network = build_sqldepth_network(
        "efficientnet_b5", pretrained=False, height=64, width=64, patch_size=16,
        num_queries=4, num_bins=8,
    ).eval()
    seen = {}
    network.encoder.encoder.conv_stem.register_forward_hook(
        lambda m, args, out: seen.update(x=args[0])
    )
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        depth = network(image)[("depth", 0)]
    assert torch.equal(seen["x"], image)  # timm path: RGB in [0, 1] as it is
    assert depth.shape == (1, 1, 64, 64)
    assert bool((depth > MIN_DEPTH).all() and (depth < MAX_DEPTH).all())
    assert network.decoder.dim_feedforward == 1024


# ---------------------------------------------------------------------------------------------
# released-file layout (spec 3.8)


def test_resnet_key_names_match_the_released_files(tiny_resnet_network):
    encoder_keys = set(tiny_resnet_network.encoder.state_dict())
    decoder_keys = set(tiny_resnet_network.decoder.state_dict())
    for key in ["encoder.encoder.conv1.weight", "encoder.encoder.layer4.2.bn3.running_var",
                "encoder.encoder.fc.weight", "decoder.conv2.weight", "decoder.up1._net.0.weight",
                "decoder.up4._net.4.running_mean", "decoder.conv3.bias"]:
        assert key in encoder_keys
    for key in ["embedding_convPxP.weight", "positional_encodings",
                "transformer_encoder.layers.3.linear2.weight", "conv3x3.weight",
                "bins_regressor.0.weight", "bins_regressor.2.weight", "bins_regressor.4.bias",
                "convert_to_prob.0.weight"]:
        assert key in decoder_keys
    assert all(k.startswith(("encoder.encoder.", "decoder.")) for k in encoder_keys)


def test_released_layout_folder_round_trip(tiny_resnet_network, tmp_path):
    source = tiny_resnet_network.eval()
    encoder_file = {**source.encoder.state_dict(), "height": 64, "width": 64, "use_stereo": False}
    torch.save(encoder_file, tmp_path / "encoder.pth")
    torch.save(source.decoder.state_dict(), tmp_path / "depth.pth")

    torch.manual_seed(123)
    target = build_sqldepth_network("resnet50", pretrained=False, **TINY).eval()
    loaded = torch.load(tmp_path / "encoder.pth", map_location="cpu", weights_only=True)
    stored = {k: loaded.pop(k) for k in ("height", "width", "use_stereo")}
    target.encoder.load_state_dict(loaded, strict=True)
    target.decoder.load_state_dict(
        torch.load(tmp_path / "depth.pth", map_location="cpu", weights_only=True), strict=True
    )
    assert stored == {"height": 64, "width": 64, "use_stereo": False}
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target(image)[("depth", 0)], source(image)[("depth", 0)])


@pytest.mark.parametrize("name", ["efficientnet_b5_1024x320", "convnext_large_1024x320"])
def test_timm_key_prefixes_match_the_released_files(timm, name):
    with torch.device("meta"):
        network = build_sqldepth_variant(name, pretrained=False)
    keys = list(network.encoder.state_dict())
    decoder_keys = [k for k in keys if k.startswith("decoder.")]
    assert any(k.startswith("encoder.") for k in keys)
    assert all(k.startswith(("encoder.", "decoder.blocks.", "decoder.final_conv.")) for k in keys)
    assert "decoder.blocks.0.conv1.conv.weight" in decoder_keys
    assert "decoder.blocks.0.conv2.bn.running_var" in decoder_keys
    assert "decoder.final_conv.weight" in decoder_keys


# ---------------------------------------------------------------------------------------------
# pretrained weights and the optional timm dependency


def test_resnet50_imagenet_weights_download_through_torch_hub(monkeypatch):
    torch.manual_seed(0)
    source = models.resnet50(weights=None).state_dict()
    calls = []

    def fake_download(url, *args, **kwargs):
        calls.append((url, kwargs))
        return source

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    trunk = SQLResnetTrunk(pretrained=True)
    assert len(calls) == 1
    url, kwargs = calls[0]
    assert url == RESNET50_WEIGHTS.url
    assert kwargs["weights_only"] is True and kwargs["check_hash"] is True
    for key, value in trunk.encoder.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_resnet50_offline_error_names_the_cache_path(monkeypatch, tmp_path):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError) as info:
        SQLResnetTrunk(pretrained=True)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in str(info.value)
    assert "pretrained=False" in str(info.value)
    assert isinstance(info.value.__cause__, urllib.error.URLError)


@pytest.mark.parametrize("backbone", ["efficientnet_b5", "convnext_large"])
def test_timm_backbones_without_timm_say_how_to_install_it(monkeypatch, backbone):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(ImportError, match="pip install timm"):
        build_sqldepth_network(backbone, pretrained=False, height=320, width=1024, patch_size=32)


def test_timm_pretrained_uses_the_tagged_weights(monkeypatch, timm):
    requested = []

    def fake_create_model(name, **kwargs):
        requested.append((name, kwargs))
        raise OSError("offline")

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        sqldepth.create_timm_features("convnext_large", pretrained=True)
    assert requested == [("convnext_large.fb_in1k", {"features_only": True, "pretrained": True})]
