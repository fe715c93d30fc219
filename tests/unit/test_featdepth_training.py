"""FeatDepth wired into the toolkit: the feature-metric term and its auto-encoder, the presets, stage 1's
model, the warm-up, the stereo baseline, the pose input size and FeatDepth's released checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convert_weights
import featdepth_losses as fl
import losses
from checkpoints import CHECKPOINT_FORMAT, ModelSpec, save_checkpoint
from featdepth_weights import load_feature_net_weights
from model import AutoencoderTraining, SelfSupervisedDepth, build_training_model, load_model
from networks import build_pose_network
from networks.featdepth import FeatDepthDecoder, FeatureEncoder, FeatureNet
from networks.resnet_encoder import ResnetEncoder
from released_weights import to_checkpoint_payload
from tests.unit.test_model import BATCH, HEIGHT, WIDTH, make_batch
from tests.unit.test_model import options as model_options
from trainer import optimizer_step, warmup_factor



def options(*extra: str, height: int = HEIGHT, width: int = WIDTH):
    return model_options("--height", str(height), "--width", str(width), *extra)


@pytest.fixture(scope="module")
def stage1_checkpoint(tmp_path_factory):
    """A stage-1 checkpoint as the Trainer writes it (random FeatureNet weights)."""
    torch.manual_seed(3)
    model = AutoencoderTraining(ModelSpec(method="autoencoder", height=96, width=128, frame_ids=[0]))
    path = tmp_path_factory.mktemp("stage1") / "model0.pth"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": model.spec.to_dict(), **model.state_dicts()})
    return path, model.networks["feature_net"]


def gradient_norm(module: nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------------
# the feature-metric term and its auto-encoder


@pytest.mark.slow
def test_the_frozen_extractor_gets_no_gradient_while_depth_and_pose_learn_from_the_feature_metric_loss(
        stage1_checkpoint):
    path, feature_net = stage1_checkpoint
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options("--feature_metric_weight", "1e-3", "--feature_net_path",
                                                     str(path))).train()
    extractor = model.networks["feature_extractor"]
    assert isinstance(extractor, FeatureEncoder) and not extractor.training
    assert all(torch.equal(p, q) for p, q in zip(extractor.parameters(), feature_net.encoder.parameters()))
    trainable = {id(p) for p in model.trainable_parameters()}
    assert not any(id(p) in trainable for p in extractor.parameters())
    assert [name for name, _, weight in model.loss_terms if name == "feature_metric"] == ["feature_metric"]
    assert dict((name, weight) for name, _, weight in model.loss_terms)["feature_metric"] == 1e-3
    inputs = model.prepare_inputs(make_batch(), torch.device("cpu"))
    outputs = model(inputs)
    values = model.losses(inputs, outputs)
    assert values["loss/feature_metric"] > fl.CHARBONNIER_EPS  # the Charbonnier floor is 1e-3
    values["loss/feature_metric"].backward()  # this term alone
    assert all(p.grad is None for p in extractor.parameters())
    assert gradient_norm(model.networks["depth"]) > 0 and gradient_norm(model.networks["pose"]) > 0
    assert ("feature_extractor" in model.state_dicts()) and "feature_net" not in model.networks


@pytest.mark.slow
def test_the_joint_auto_encoder_learns_from_the_feature_metric_loss_and_its_own_losses():
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options("--feature_metric_weight", "1e-3", "--feature_net_joint",
                                                     height=96, width=128)).train()
    assert {name: weight for name, _, weight in model.loss_terms} == {
        "photometric": 1.0, "smoothness": 1e-3, "feature_metric": 1e-3, "autoencoder": 1.0}
    feature_net = model.networks["feature_net"]
    assert isinstance(feature_net, FeatureNet) and feature_net.training
    trainable = {id(p) for p in model.trainable_parameters()}
    assert all(id(p) in trainable for p in feature_net.parameters())
    # The two terms on their own (the model's forward pass is the depth model's, tested elsewhere).
    batch = make_batch(height=96, width=128)
    inputs = {("color", f, 0): batch[("color_uint8", f, 0)].float() / 255 for f in (0, -1, 1)}
    inputs[("K", 0)] = batch[("K", 0)]
    disp = torch.rand(BATCH, 1, 48, 64, requires_grad=True)
    outputs = {("disp", 0): disp, **{("cam_T_cam", 0, f): torch.eye(4).repeat(BATCH, 1, 1) for f in (-1, 1)}}
    value, maps = losses.feature_metric_term(inputs, outputs, model.loss_settings, model.networks)
    value.backward()
    assert gradient_norm(feature_net.encoder) > 0  # the live encoder is trained by the warp error
    assert gradient_norm(feature_net.decoder) == 0  # which never reads the decoder
    assert float(disp.grad.abs().sum()) > 0
    feature_net.zero_grad()
    features = [level.detach().requires_grad_() for level in maps[losses.AUTOENCODER_FEATURES]]
    value, _ = losses.autoencoder_term(inputs, {losses.AUTOENCODER_FEATURES: features}, model.loss_settings,
                                       model.networks)
    image = inputs[("color", 0, 0)]
    expected = (fl.reconstruction_loss(list(feature_net.decoder(features).values()), image, chained_resize=False)
                + fl.feature_regularisation_loss(features, image))
    assert torch.allclose(value, expected)
    value.backward()
    assert gradient_norm(feature_net.decoder) > 0 and all(float(f.grad.abs().sum()) > 0 for f in features)


def test_the_feature_metric_term_is_the_charbonnier_floor_for_a_static_scene(stage1_checkpoint):
    # Every frame the same and identity poses: each warped feature map is the target's own, so the term is
    # exactly the Charbonnier floor eps (the identity warp returns the features).
    path, feature_net = stage1_checkpoint
    encoder = feature_net.encoder.eval()
    frame = torch.rand(BATCH, 3, HEIGHT, WIDTH)
    inputs = {("color", f, 0): frame for f in (0, -1, 1)}
    K = torch.tensor([[0.58 * WIDTH, 0, 0.5 * (WIDTH - 1), 0], [0, 1.92 * HEIGHT, 0.5 * (HEIGHT - 1), 0],
                      [0, 0, 1, 0], [0, 0, 0, 1]])
    inputs[("K", 0)] = K.repeat(BATCH, 1, 1)
    outputs = {("disp", 0): torch.rand(BATCH, 1, HEIGHT // 2, WIDTH // 2),
               **{("cam_T_cam", 0, f): torch.eye(4).repeat(BATCH, 1, 1) for f in (-1, 1)}}
    settings = losses.LossSettings(scales=(0,), source_frame_ids=(-1, 1))
    with torch.no_grad():
        value, maps = losses.feature_metric_term(inputs, outputs, settings, {"feature_extractor": encoder})
    assert value.item() == pytest.approx(fl.CHARBONNIER_EPS, rel=1e-3)
    assert len(maps[losses.AUTOENCODER_FEATURES]) == 5


def test_feature_net_weights_come_from_a_stage1_checkpoint_and_a_bad_path_is_named(stage1_checkpoint, tmp_path):
    path, feature_net = stage1_checkpoint
    encoder, decoder = load_feature_net_weights(path)
    assert encoder.keys() == feature_net.encoder.state_dict().keys()
    assert all(torch.equal(encoder[k], v) for k, v in feature_net.encoder.state_dict().items())
    assert decoder.keys() == feature_net.decoder.state_dict().keys()
    depth_only = tmp_path / "depth.pth"
    save_checkpoint(depth_only, {"format": CHECKPOINT_FORMAT, "model_spec": ModelSpec().to_dict(),
                                 "encoder": {}, "depth": {}})
    with pytest.raises(ValueError, match="holds no FeatureNet weights"):
        load_feature_net_weights(depth_only)
    with pytest.raises(FileNotFoundError, match="train the auto-encoder first"):
        SelfSupervisedDepth.from_options(options("--feature_metric_weight", "1e-3", "--feature_net_path",
                                                 str(tmp_path / "missing.pth")))
    with pytest.raises(ValueError, match="predicts no depth"):
        load_model(str(path))


@pytest.mark.parametrize("argv, message", [
    (["--feature_net_joint"], "give --feature_metric_weight"),
    (["--feature_metric_weight", "1e-3"], "give --feature_net_path"),
    (["--feature_net_path", "x.pth"], "read by the feature-metric loss only"),
    (["--feature_metric_weight", "1e-3", "--feature_net_path", "x", "--backbone", "packnet", "--decoder",
      "packnet"], "predicts depth or inverse depth"),
    (["--feature_metric_weight", "1e-3", "--feature_net_joint"], "at least 96"),
    (["--method", "autoencoder", "--no-eval"], "--frame_ids 0"),
    (["--method", "autoencoder", "--frame_ids", "0"], "add --no-eval"),
    (["--loss_preset", "featdepth", "--use_stereo"], "add --no-automask"),
    (["--decoder", "featdepth"], "--num_layers 50"),
    (["--pose_input_size", "100", "640"], "--pose_input_size must be two positive multiples of 32"),
    (["--warmup_ratio", "0"], "--warmup_ratio"),
])
def test_featdepth_flags_that_do_not_fit_are_refused_naming_the_fix(capsys, argv, message):
    with pytest.raises(SystemExit):
        options(*argv)
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the featdepth loss preset, the decoder entry, stereo baseline and pose size


def test_the_featdepth_preset_uses_charbonnier_and_featdepths_smoothness():
    a = torch.rand(1, 3, 8, 8)
    featdepth = losses.LossSettings.from_options(options("--loss_preset", "featdepth"), (-1, 1))
    monodepth2 = losses.LossSettings.from_options(options(), (-1, 1))
    # Identical images: SSIM 0 and |d| 0, but the Charbonnier floor 1e-3 stays (x 0.15).
    assert torch.allclose(featdepth.photometric_error(a, a), torch.full((1, 1, 8, 8), 0.15e-3))
    assert torch.equal(monodepth2.photometric_error(a, a), torch.zeros(1, 1, 8, 8))
    disps = {s: torch.rand(BATCH, 1, HEIGHT >> (s + 1), WIDTH >> (s + 1)) for s in range(4)}
    image = torch.rand(BATCH, 3, HEIGHT, WIDTH)
    outputs = {("disp", s): d for s, d in disps.items()}
    inputs = {("color", 0, 0): image}
    value, _ = losses.smoothness_term(inputs, outputs, featdepth)
    assert torch.allclose(value, fl.multiscale_smoothness_loss(disps, image, normalise_disp=True, weight=1.0))
    stereo = losses.LossSettings.from_options(options("--loss_preset", "featdepth", "--use_stereo",
                                                      "--no-automask"), (-1, 1, "s"))
    value, _ = losses.smoothness_term(inputs, outputs, stereo)  # FeatDepth's disp_norm is off with 's'
    assert torch.allclose(value, fl.multiscale_smoothness_loss(disps, image, normalise_disp=False, weight=1.0))


def test_featdepth_decoder_registry_entry_gives_half_resolution_disparities():
    model = SelfSupervisedDepth.for_inference(ModelSpec(num_layers=50, decoder="featdepth", height=HEIGHT,
                                                        width=WIDTH)).eval()
    assert isinstance(model.networks["depth"].decoder, FeatDepthDecoder)
    inverse_depth, depth = model.predict(torch.rand(1, 3, HEIGHT, WIDTH))
    assert depth.shape == (1, 1, HEIGHT // 2, WIDTH // 2)


def test_stereo_baseline_scales_stereo_T_and_the_evaluation_factor_to_36():
    model = SelfSupervisedDepth.from_options(options("--use_stereo", "--frame_ids", "0", "--stereo_baseline",
                                                     "0.015"))
    inputs = model.prepare_inputs(make_batch(frame_ids=(0, "s")), torch.device("cpu"))
    assert torch.allclose(inputs["stereo_T"][:, 0, 3], torch.full((BATCH,), -0.015))
    assert model.spec.metric_depth_scale == pytest.approx(36.0)
    assert ModelSpec(use_stereo=True).metric_depth_scale == 5.4  # Monodepth2's, unchanged


def test_pose_inputs_are_resized_to_pose_input_size():
    model = SelfSupervisedDepth.from_options(options("--pose_input_size", "32", "64"))
    seen = []
    model.networks["pose"].register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    model(model.prepare_inputs(make_batch(), torch.device("cpu")))
    assert seen == [(BATCH, 6, 32, 64)] * 2


# ---------------------------------------------------------------------------------------------
# stage 1 and the warm-up


def test_stage1_model_has_the_depth_models_interface_and_its_losses_are_featdepths():
    torch.manual_seed(0)
    model = build_training_model(options("--method", "autoencoder", "--frame_ids", "0", "--no-eval",
                                         height=96, width=128))
    assert isinstance(model, AutoencoderTraining) and model.spec.method == "autoencoder"
    assert list(model.state_dicts()) == ["feature_net"]
    inputs = model.prepare_inputs(make_batch(frame_ids=(0,), height=96, width=128), torch.device("cpu"))
    outputs = model(inputs)
    values = model.losses(inputs, outputs)
    image = inputs[("color", 0, 0)]
    reconstructions = [outputs[("reconstruction", s)] for s in range(4)]
    assert torch.allclose(values["loss/reconstruction"], fl.reconstruction_loss(reconstructions, image))
    assert torch.allclose(values["loss/feature_regularisation"],
                          fl.feature_regularisation_loss(outputs[("autoencoder_features", 0)], image))
    names, flags = model.finite_flags(outputs, values)
    assert names == ["loss/reconstruction", "loss/feature_regularisation", "loss"] and bool(flags.all())
    assert set(model.logged_images(inputs, outputs, 0)) == {"color_0_0", "reconstruction_0"}


def test_warmup_rises_linearly_from_a_third_as_mmcv_and_leaves_the_schedule_alone():
    assert warmup_factor(1, 500, 1 / 3) == pytest.approx(1 / 3)
    assert warmup_factor(251, 500, 1 / 3) == pytest.approx(2 / 3)
    assert warmup_factor(500, 500, 1 / 3) == pytest.approx(1 - (1 / 500) * (2 / 3))
    assert warmup_factor(501, 500, 1 / 3) == 1.0 and warmup_factor(1, 0, 1 / 3) == 1.0
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.3)
    optimizer_step((weight - 1.0).sum() * -1.0, optimizer, [weight], 0.0, lr_factor=0.5)
    assert weight.item() == pytest.approx(0.15) and optimizer.param_groups[0]["lr"] == 0.3


# ---------------------------------------------------------------------------------------------
# FeatDepth's released checkpoints (methods spec 2.9)


def featdepth_state(prefix: str, module: nn.Module, classifier: int = 0) -> dict:
    """``module``'s state dict under a FeatDepth prefix, plus a torchvision fc head of that width."""
    state = {f"{prefix}{k}": v.clone() for k, v in module.state_dict().items()}
    if classifier:  # FeatDepth's encoders are torchvision ResNets under .encoder, head included
        state[f"{prefix}encoder.fc.weight"] = torch.rand(1000, classifier)
        state[f"{prefix}encoder.fc.bias"] = torch.rand(1000)
    return state


@pytest.fixture(scope="module")
def featdepth_file(tmp_path_factory):
    """A mono_fm file as FeatDepth's mmcv runner writes it, from our own networks, and those networks."""
    torch.manual_seed(5)
    encoder, pose_encoder = ResnetEncoder(50, False), ResnetEncoder(18, False, num_input_images=2)
    decoder = FeatDepthDecoder(encoder.num_ch_enc)
    pose = build_pose_network("separate_resnet", 18, 2, num_frames_to_predict_for=1)
    extractor = FeatureEncoder()
    pose_decoder = {f"PoseDecoder.net.{i}.{k.split('.', 1)[1]}": v for i, layer in
                    enumerate(("squeeze", "pose0", "pose1", "pose2"))
                    for k, v in pose.decoder.state_dict().items() if k.startswith(layer + ".")}
    state = {**featdepth_state("DepthEncoder.", encoder, 2048), **featdepth_state("DepthDecoder.", decoder),
             **featdepth_state("PoseEncoder.", pose_encoder, 512), **pose_decoder,
             **featdepth_state("extractor.", extractor, 2048)}
    path = tmp_path_factory.mktemp("featdepth") / "epoch_40.pth"
    torch.save({"meta": {"epoch": 40, "mmcv_version": "0.4.4"}, "state_dict": state, "optimizer": {}}, path)
    return path, state, (encoder, decoder, pose_encoder, pose.decoder, extractor)


@pytest.mark.slow
def test_a_featdepth_mono_fm_file_loads_tensor_by_tensor_and_predicts_as_its_networks(featdepth_file, caplog):
    path, state, (encoder, decoder, pose_encoder, pose_decoder, extractor) = featdepth_file
    with caplog.at_level("INFO"):
        payload = to_checkpoint_payload(path, image_shape=(HEIGHT, WIDTH))
    fc_keys = sorted(k for k in state if ".fc." in k)
    assert len(fc_keys) == 6 and all(key in caplog.text for key in fc_keys)  # named, not silently dropped
    spec = ModelSpec.from_dict(payload["model_spec"])
    assert (spec.decoder, spec.num_layers, spec.use_stereo, spec.pose_num_layers) == ("featdepth", 50, True, 18)
    assert spec.metric_depth_scale == pytest.approx(36.0) and spec.pose_input_size == [192, 640]
    assert len(payload["encoder"]) + len(payload["depth"]) + len(payload["pose_encoder"]) + len(payload["pose"]) \
        + len(payload["feature_extractor"]) + len(fc_keys) == len(state)
    model = load_model(str(path))  # the path every script takes (at FeatDepth's default 320 x 1024)
    image = torch.rand(1, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        expected = decoder.eval()(encoder.eval()(image))[("disp", 0)]
    assert torch.equal(model.networks["depth"](image)[("disp", 0)], expected)
    full = SelfSupervisedDepth(spec)  # with its pose network: FeatDepth's one-transform decoder loads
    full.load_state_dicts(payload, str(path))
    assert torch.equal(full.networks["pose"].decoder.pose2.weight, pose_decoder.pose2.weight)
    assert all(torch.equal(payload["feature_extractor"][k], v) for k, v in extractor.state_dict().items())


@pytest.mark.slow
def test_a_featdepth_file_with_a_stray_or_misshapen_tensor_is_refused_naming_it(featdepth_file, tmp_path):
    _, state, _ = featdepth_file
    stray = tmp_path / "stray.pth"
    torch.save({"state_dict": {**state, "Refiner.conv.weight": torch.zeros(1)}}, stray)
    with pytest.raises(ValueError, match=r"Refiner\.conv\.weight"):
        to_checkpoint_payload(stray)
    misshapen = tmp_path / "misshapen.pth"
    torch.save({"state_dict": {**state, "DepthDecoder.disp1.0.conv.weight": torch.zeros(1, 256, 1, 1)}}, misshapen)
    with pytest.raises(ValueError, match=r"DepthDecoder tensors do not fit ours.*disp1\.0\.conv\.weight"):
        to_checkpoint_payload(misshapen)


@pytest.mark.slow
def test_a_featdepth_autoencoder_file_feeds_the_feature_metric_loss(tmp_path):
    torch.manual_seed(6)
    network = FeatureNet()
    state = {**featdepth_state("Encoder.", network.encoder, 2048), **featdepth_state("Decoder.", network.decoder)}
    path = tmp_path / "autoencoder.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    encoder, decoder = load_feature_net_weights(path)
    assert all(torch.equal(encoder[k], v) for k, v in network.encoder.state_dict().items())
    assert all(torch.equal(decoder[k], v) for k, v in network.decoder.state_dict().items())
    payload = to_checkpoint_payload(path)
    assert payload["model_spec"]["method"] == "autoencoder" and len(payload["feature_net"]) == len(state) - 2
    converted = convert_weights.main(["--input", str(path), "--output", str(tmp_path / "stage1.pth")])
    encoder, _ = load_feature_net_weights(converted)  # now one of our stage-1 checkpoints
    assert all(torch.equal(encoder[k], v) for k, v in network.encoder.state_dict().items())
