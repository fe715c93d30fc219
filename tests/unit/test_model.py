"""The method without a Trainer: forward pass, pose order, view synthesis, losses, pluggable terms."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import losses
from layers import transformation_from_parameters
from model import CHECKPOINT_NAMES, SelfSupervisedDepth
from options import parse_train_options

HEIGHT, WIDTH, BATCH = 64, 96, 2


def options(*extra: str):
    return parse_train_options(["--data_path", ".", "--height", str(HEIGHT), "--width", str(WIDTH),
                                "--weights_init", "scratch", "--device", "cpu", *extra])


def make_batch(frame_ids=(0, -1, 1), num_scales: int = 4, seed: int = 0, height: int = HEIGHT,
               width: int = WIDTH) -> dict:
    """A collated batch as the dataset gives it: uint8 frames, intrinsics per scale, no jitter."""
    gen = torch.Generator().manual_seed(seed)
    batch = {("color_uint8", f, 0): torch.randint(0, 256, (BATCH, 3, height, width), generator=gen,
                                                  dtype=torch.uint8) for f in frame_ids}
    for scale in range(num_scales):
        K = torch.eye(4).repeat(BATCH, 1, 1)
        K[:, 0, 0], K[:, 1, 1] = 0.58 * width / 2 ** scale, 1.92 * height / 2 ** scale
        K[:, 0, 2], K[:, 1, 2] = 0.5 * width / 2 ** scale, 0.5 * height / 2 ** scale
        batch[("K", scale)], batch[("inv_K", scale)] = K, torch.linalg.inv(K)
    batch["color_jitter"] = torch.zeros(BATCH, 8)
    batch["do_color_aug"] = torch.zeros(BATCH, dtype=torch.bool)
    if "s" in frame_ids:
        stereo_T = torch.eye(4).repeat(BATCH, 1, 1)
        stereo_T[:, 0, 3] = -0.1
        batch["stereo_T"] = stereo_T
    return batch


@pytest.fixture(scope="module")
def mono_model():
    torch.manual_seed(0)
    return SelfSupervisedDepth.from_options(options())


def test_networks_live_in_one_module_dict_under_checkpoint_names(mono_model):
    assert set(mono_model.networks) == {"depth", "pose"}
    assert list(mono_model.checkpoint_modules()) == list(CHECKPOINT_NAMES)
    every = {id(p) for p in mono_model.parameters()}
    assert {id(p) for p in mono_model.trainable_parameters()} == every
    assert SelfSupervisedDepth.from_options(options("--use_stereo", "--frame_ids", "0")).run_pose is None


def test_forward_returns_the_documented_keys_and_no_uint8_frame_is_overwritten(mono_model):
    batch = make_batch()
    inputs = mono_model.prepare_inputs(batch, torch.device("cpu"))
    assert inputs[("color_uint8", -1, 0)].dtype == torch.uint8
    assert_close(inputs[("color", -1, 0)], batch[("color_uint8", -1, 0)].float() / 255.0)
    outputs = mono_model(inputs)
    for scale in range(4):
        assert outputs[("disp", scale)].shape == (BATCH, 1, HEIGHT // 2 ** scale, WIDTH // 2 ** scale)
        assert outputs[("depth", 0, scale)].shape == (BATCH, 1, HEIGHT, WIDTH)  # upsampled to warp
        for frame_id in (-1, 1):
            assert outputs[("sample_grid", frame_id, scale)].shape == (BATCH, HEIGHT, WIDTH, 2)
            assert outputs[("warped", frame_id, scale)].shape == (BATCH, 3, HEIGHT, WIDTH)
    names, flags = SelfSupervisedDepth.finite_flags(outputs, mono_model.losses(inputs, outputs))
    assert bool(flags.all()) and "sample_grid of frame -1 at scale 3" in names and "pose of frame 1" in names


def test_identity_pose_warps_a_frame_onto_itself(mono_model):
    inputs = mono_model.prepare_inputs(make_batch(), torch.device("cpu"))
    outputs = {"finite_checks": [], **{("disp", s): torch.rand(BATCH, 1, HEIGHT >> s, WIDTH >> s) for s in range(4)}}
    for frame_id in (-1, 1):
        outputs[("cam_T_cam", 0, frame_id)] = torch.eye(4).repeat(BATCH, 1, 1)
    mono_model.synthesize_views(inputs, outputs)
    for frame_id in (-1, 1):
        for scale in range(4):
            assert_close(outputs[("warped", frame_id, scale)], inputs[("color", frame_id, 0)], atol=1e-3, rtol=0)


def test_pairs_are_fed_in_temporal_order_and_past_transforms_inverted(mono_model):
    inputs = mono_model.prepare_inputs(make_batch(), torch.device("cpu"))
    seen = []
    axisangle = torch.tensor([0.05, -0.02, 0.01]).view(1, 1, 1, 3).repeat(BATCH, 2, 1, 1)
    translation = torch.tensor([0.1, 0.0, 0.8]).view(1, 1, 1, 3).repeat(BATCH, 2, 1, 1)

    def recording_pose(pair):
        seen.append(pair)
        return axisangle, translation

    original = mono_model.run_pose
    mono_model.run_pose = recording_pose
    try:
        outputs = mono_model.predict_poses(inputs)
    finally:
        mono_model.run_pose = original
    past, future = seen
    assert torch.equal(past, torch.cat([inputs[("color_aug", -1, 0)], inputs[("color_aug", 0, 0)]], dim=1))
    assert torch.equal(future, torch.cat([inputs[("color_aug", 0, 0)], inputs[("color_aug", 1, 0)]], dim=1))
    forward = transformation_from_parameters(axisangle[:, 0], translation[:, 0])
    assert_close(outputs[("cam_T_cam", 0, 1)], forward)
    assert_close(outputs[("cam_T_cam", 0, -1)] @ forward, torch.eye(4).repeat(BATCH, 1, 1), atol=1e-6, rtol=0)


def test_monodepth2_total_is_the_weighted_sum_of_its_terms(mono_model):
    inputs = mono_model.prepare_inputs(make_batch(), torch.device("cpu"))
    outputs = mono_model(inputs)
    values = mono_model.losses(inputs, outputs)
    assert [name for name, _, _ in mono_model.loss_terms] == ["photometric", "smoothness"]
    assert torch.equal(values["loss"], 1.0 * values["loss/photometric"] + 1e-3 * values["loss/smoothness"])
    # The photometric term is the mean over scales of each scale's per-pixel-minimum mean.
    settings = mono_model.loss_settings
    torch.manual_seed(1)
    # The tie-break noise is drawn per scale in order: the same draws in one pass.
    reseeded = []
    for scale in range(4):
        only = losses.LossSettings(**{**settings.__dict__, "scales": (scale,)})
        reseeded.append(losses.photometric_term(inputs, outputs, only)[0])
    torch.manual_seed(1)
    assert_close(losses.photometric_term(inputs, outputs, settings)[0], sum(reseeded) / 4, rtol=1e-6, atol=0)


def test_automask_off_produces_no_mask_and_on_produces_one_per_scale():
    torch.manual_seed(0)
    batch = make_batch()
    for flag, expected in (("--automask", True), ("--no-automask", False)):
        model = SelfSupervisedDepth.from_options(options(flag))
        inputs = model.prepare_inputs(batch, torch.device("cpu"))
        outputs = model(inputs)
        model.losses(inputs, outputs)
        assert all((("automask", s) in outputs) == expected for s in range(4))


def test_v1_multiscale_warps_each_scale_at_its_own_resolution():
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options("--v1_multiscale"))
    inputs = model.prepare_inputs(make_batch(), torch.device("cpu"))
    assert inputs[("color", -1, 2)].shape == (BATCH, 3, HEIGHT // 4, WIDTH // 4)  # every frame has a pyramid
    outputs = model(inputs)
    for scale in range(4):
        size = (HEIGHT >> scale, WIDTH >> scale)
        assert outputs[("depth", 0, scale)].shape[-2:] == size
        assert outputs[("warped", 1, scale)].shape[-2:] == size


def test_stereo_frame_is_warped_with_the_stereo_transform():
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options("--use_stereo", "--frame_ids", "0"))
    batch = make_batch(frame_ids=(0, "s"))
    inputs = model.prepare_inputs(batch, torch.device("cpu"))
    outputs = model(inputs)
    assert ("warped", "s", 0) in outputs and ("cam_T_cam", 0, "s") not in outputs
    assert model.spec.metric_depth_scale == pytest.approx(5.4)


def test_non_finite_depth_is_flagged_before_anything_reads_it(mono_model):
    inputs = mono_model.prepare_inputs(make_batch(), torch.device("cpu"))
    outputs = {"finite_checks": [], **{("disp", s): torch.rand(BATCH, 1, HEIGHT >> s, WIDTH >> s) for s in range(4)}}
    outputs[("disp", 2)][0, 0, 3, 3] = float("nan")
    for frame_id in (-1, 1):
        outputs[("cam_T_cam", 0, frame_id)] = torch.eye(4).repeat(BATCH, 1, 1)
    mono_model.synthesize_views(inputs, outputs)
    names, flags = SelfSupervisedDepth.finite_flags(outputs, {"loss": torch.tensor(1.0)})
    bad = [name for name, ok in zip(names, flags.tolist()) if not ok]
    assert bad == ["depth at scale 2", "sample_grid of frame -1 at scale 2", "sample_grid of frame 1 at scale 2"]


# ---- a loss term with its own network: one function and one registry entry -----------------------


class ToyHead(nn.Module):
    """A 1x1 convolution predicting a per-pixel weight from the warped frame."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(image))


def toy_term(inputs, outputs, settings, networks):
    weight = networks["toy_head"](outputs[("warped", 1, 0)])
    features = outputs[("depth_features", 0)]
    return (weight * (outputs[("warped", 1, 0)] - inputs[("color", 0, 0)]).abs()).mean() + 0 * features[-1].mean(), {}


@pytest.fixture()
def toy_registered(monkeypatch):
    term = losses.LossTerm(toy_term, weight=lambda opts: 0.5, networks=lambda opts: {"toy_head": ToyHead()},
                           needs=frozenset({"depth_features"}))
    monkeypatch.setitem(losses.LOSS_TERMS, "toy", term)
    return term


@pytest.mark.slow
def test_a_term_with_its_own_network_trains_with_the_model(toy_registered):
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options())
    assert "toy_head" in model.networks and "toy_head" in model.checkpoint_modules()
    head = model.networks["toy_head"]
    assert all(any(p is q for q in model.trainable_parameters()) for p in head.parameters())
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    before = {name: p.detach().clone() for name, p in head.named_parameters()}
    inputs = model.prepare_inputs(make_batch(), torch.device("cpu"))
    outputs = model(inputs)
    assert len(outputs[("depth_features", 0)]) == 5  # asked for by the term's `needs`
    values = model.losses(inputs, outputs)
    assert torch.equal(values["loss"], values["loss/photometric"] + 1e-3 * values["loss/smoothness"]
                       + 0.5 * values["loss/toy"])
    optimizer.zero_grad()
    values["loss"].backward()
    optimizer.step()
    assert all(not torch.equal(before[name], p) for name, p in head.named_parameters())
    state = model.state_dicts()
    assert set(state) == {*CHECKPOINT_NAMES, "toy_head"}
    fresh = SelfSupervisedDepth.from_options(options())
    fresh.load_state_dicts(state, "toy checkpoint")
    assert torch.equal(fresh.networks["toy_head"].conv.weight, head.conv.weight)


def test_a_frozen_auxiliary_network_stays_in_eval_mode_and_out_of_the_optimiser(monkeypatch):
    def frozen_head(opts):
        head = nn.Sequential(nn.Conv2d(3, 1, 1), nn.BatchNorm2d(1))
        head.requires_grad_(False)
        return {"frozen_head": head}

    monkeypatch.setitem(losses.LOSS_TERMS, "frozen", losses.LossTerm(
        lambda i, o, s, n: (n["frozen_head"](o[("warped", 1, 0)]).mean(), {}), lambda opts: 1.0, frozen_head))
    model = SelfSupervisedDepth.from_options(options()).train()
    assert not model.networks["frozen_head"].training and model.networks["depth"].training
    ids = {id(p) for p in model.trainable_parameters()}
    assert not any(id(p) in ids for p in model.networks["frozen_head"].parameters())


def test_a_term_may_not_take_a_network_name_in_use(monkeypatch):
    monkeypatch.setitem(losses.LOSS_TERMS, "clash", losses.LossTerm(
        toy_term, lambda opts: 1.0, lambda opts: {"pose_encoder": ToyHead()}))
    with pytest.raises(ValueError, match="named 'pose_encoder', which is taken"):
        SelfSupervisedDepth.from_options(options())


def test_depth_net_flip_mirrors_only_the_depth_networks_input_and_output(mono_model):
    """PackNet-SfM's flip: the flagged sample's maps are mirror(net(mirror(x))), the rest net(x)."""
    batch = make_batch()
    batch["flip_depth_input"] = torch.tensor([True, False])
    model = mono_model.eval()  # no dropout: two passes give the same maps
    inputs = model.prepare_inputs(batch, torch.device("cpu"))
    with torch.no_grad():
        outputs = model(inputs)
        target = inputs[("color_aug", 0, 0)]
        plain = model.networks["depth"](target)
        mirrored = model.networks["depth"](target.flip(-1))
    for scale in range(4):
        disp = outputs[("disp", scale)]
        assert_close(disp[1], plain[("disp", scale)][1])
        assert_close(disp[0], mirrored[("disp", scale)][0].flip(-1))
        assert not torch.allclose(disp[0], plain[("disp", scale)][0])  # the network is not symmetric
    # the pose network and the losses read the frames as loaded
    assert torch.equal(inputs[("color", 0, 0)], batch[("color_uint8", 0, 0)].float() / 255.0)
    model.train()


def test_predict_depth_is_the_inverse_of_predict_depth_inverse(mono_model):
    images = torch.rand(1, 3, HEIGHT, WIDTH)
    mono_model.eval()
    depth = mono_model.predict_depth(images)
    inverse = mono_model.predict_depth(images, inverse=True)
    assert_close(depth * inverse, torch.ones_like(depth), rtol=1e-6, atol=0)
    assert 0.1 <= depth.min() and depth.max() <= 100.0
    mono_model.train()


def test_pose_num_layers_keeps_a_resnet18_pose_net_beside_a_resnet50_depth_net():
    with torch.device("meta"):
        model = SelfSupervisedDepth.from_options(options("--num_layers", "50", "--pose_num_layers", "18"))
    assert model.networks["depth"].encoder.num_ch_enc[-1] == 2048
    assert model.networks["pose"].encoder.num_ch_enc[-1] == 512
    assert (model.spec.num_layers, model.spec.pose_layers) == (50, 18)
    assert SelfSupervisedDepth.from_options(options()).spec.pose_layers == 18  # default: --num_layers


def test_pose_lr_factor_puts_the_pose_network_in_a_slower_group():
    from trainer import make_optimizer

    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options())
    single = make_optimizer(options("--optimizer", "adam", "--learning_rate", "1e-4"), model)
    assert len(single.param_groups) == 1 and len(single.param_groups[0]["params"]) == len(model.trainable_parameters())
    opts = options("--optimizer", "adam", "--learning_rate", "1e-4", "--pose_lr_factor", "0.1")
    depth_group, pose_group = make_optimizer(opts, model).param_groups
    pose_ids = {id(p) for p in model.networks["pose"].parameters()}
    assert {id(p) for p in pose_group["params"]} == pose_ids
    assert not pose_ids & {id(p) for p in depth_group["params"]}
    assert (depth_group["lr"], pose_group["lr"]) == (1e-4, pytest.approx(1e-5))
    with pytest.raises(SystemExit):
        options("--pose_lr_factor", "0")
