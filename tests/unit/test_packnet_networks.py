"""PackNet-SfM networks (methods spec 1.1-1.3, 1.8, pitfalls 2-3): packing, counts, keys, poses."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from networks.packnet import (
    InvDepthHead,
    PackLayerConv3d,
    PackNet01,
    PackNetPoseNet,
    PackNetSlim01,
    ResidualConv,
    UnpackLayerConv3d,
    euler_pose_to_matrix,
    packing,
)

H, W = 64, 64  # the smallest multiple of 32 that leaves 2 x 2 pixels after five packings


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def on_meta(factory, *args, **kwargs) -> torch.nn.Module:
    """Build a network without allocating its weights (PackNet01 alone is 513 MB in fp32)."""
    with torch.device("meta"):
        return factory(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# packing and unpacking (spec 1.1, pitfall 2)


def test_packing_puts_pixel_dy_dx_of_channel_c_at_channel_c4_plus_2dy_plus_dx():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 6, 8)
    packed = packing(x)
    assert packed.shape == (2, 12, 3, 4)
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                assert torch.equal(packed[:, c * 4 + dy * 2 + dx], x[:, c, dy::2, dx::2])


def test_packing_is_the_exact_inverse_of_pixel_shuffle():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 8, 6)
    assert torch.equal(F.pixel_shuffle(packing(x), 2), x)
    y = torch.rand(2, 20, 3, 4)
    assert torch.equal(packing(F.pixel_shuffle(y, 2)), y)
    assert torch.equal(packing(x), F.pixel_unshuffle(x, 2))


def test_packing_refuses_odd_sizes():
    with pytest.raises(ValueError, match="divisible by 2"):
        packing(torch.zeros(1, 1, 5, 4))


def test_pack_layer_puts_the_3d_feature_maps_on_the_outer_channel_axis():
    torch.manual_seed(0)
    layer = PackLayerConv3d(16, kernel_size=3, num_3d_features=2)
    x = torch.rand(1, 16, 4, 6)
    seen = {}
    layer.conv.register_forward_pre_hook(lambda module, args: seen.update(stacked=args[0].clone()))
    out = layer(x)
    assert out.shape == (1, 16, 2, 3)
    # Conv3d over the packed channels as depth: B x d x 4C x H/2 x W/2.
    volume = F.conv3d(packing(x).unsqueeze(1), layer.conv3d.weight, layer.conv3d.bias, padding=1)
    assert seen["stacked"].shape == (1, 2 * 64, 2, 3)
    for k in range(2):
        torch.testing.assert_close(seen["stacked"][:, k * 64:(k + 1) * 64], volume[:, k])


def test_unpack_layer_puts_the_3d_feature_maps_on_the_outer_axis_before_pixel_shuffle():
    torch.manual_seed(0)
    layer = UnpackLayerConv3d(16, 16, kernel_size=3, num_3d_features=4)
    x = torch.rand(1, 16, 3, 5)
    seen = {}
    layer.conv.register_forward_hook(lambda module, args, output: seen.update(conv=output.clone()))
    out = layer(x)
    assert out.shape == (1, 16, 6, 10)
    assert seen["conv"].shape == (1, 16 * 4 // 4, 3, 5)
    volume = F.conv3d(seen["conv"].unsqueeze(1), layer.conv3d.weight, layer.conv3d.bias, padding=1)
    before_shuffle = packing(out)  # exact inverse of the pixel shuffle
    for k in range(4):
        torch.testing.assert_close(before_shuffle[:, k * 16:(k + 1) * 16], volume[:, k])


# ---------------------------------------------------------------------------------------------
# parameter counts and checkpoint key names (spec 1.2, 1.3, 1.8)


@pytest.mark.parametrize("factory, kwargs, expected", [
    (PackNet01, {"version": "1A"}, 128_294_020),
    (PackNet01, {"version": "1B"}, 124_164_580),
    (PackNetSlim01, {"version": "1A"}, 76_997_796),
    (PackNetPoseNet, {"num_context_frames": 2}, 1_592_684),
])
def test_parameter_counts_equal_the_spec(factory, kwargs, expected):
    assert num_params(on_meta(factory, **kwargs)) == expected


def test_packnet01_packing_layers_hold_the_specs_share_of_parameters():
    net = on_meta(PackNet01)
    assert sum(num_params(getattr(net, f"pack{i}")) for i in range(1, 6)) == 103_551_072
    assert num_params(net.pack5) == 75_499_232


def test_dropout_leaves_the_parameter_count_unchanged():
    assert num_params(on_meta(PackNet01, dropout=0.3)) == 128_294_020


PACKNET01_KEY_SHAPES = {
    "pre_calc.conv_base.weight": (64, 3, 5, 5),  # the key spec 1.8 quotes
    "pre_calc.normalize.weight": (64,),
    "pack1.conv.conv_base.weight": (64, 64 * 4 * 8, 5, 5),
    "pack1.conv3d.weight": (8, 1, 3, 3, 3),
    "pack5.conv.conv_base.weight": (512, 512 * 4 * 8, 3, 3),
    "conv1.conv_base.weight": (64, 64, 7, 7),
    "conv2.0.conv1.conv_base.weight": (64, 64, 3, 3),
    "conv2.1.conv3.weight": (64, 64, 1, 1),
    "conv3.0.conv3.weight": (128, 64, 1, 1),
    "conv5.2.normalize.weight": (512,),
    "unpack5.conv.conv_base.weight": (512 * 4 // 8, 512, 3, 3),
    "unpack1.conv.conv_base.weight": (64 * 4 // 8, 64, 3, 3),
    "unpack1.conv3d.bias": (8,),
    "iconv5.conv_base.weight": (512, 512 + 256, 3, 3),
    "iconv3.conv_base.weight": (128, 128 + 64 + 1, 3, 3),
    "iconv1.conv_base.weight": (64, 64 + 64 + 1, 3, 3),
    "disp4_layer.conv1.weight": (1, 256, 3, 3),
    "disp1_layer.conv1.bias": (1,),
}


def test_packnet01_state_dict_uses_packnets_module_names():
    state = on_meta(PackNet01).state_dict()
    for key, shape in PACKNET01_KEY_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    expected_top = {"pre_calc"} | {f"{name}{i}" for name in ("pack", "conv", "unpack", "iconv")
                                   for i in range(1, 6)} | {f"disp{i}_layer" for i in range(1, 5)}
    assert {key.split(".")[0] for key in state} == expected_top
    # 4 tensors per GroupNorm conv (pre_calc, conv1, 5 pack, 5 unpack, 5 iconv), +2 per Conv3d
    # (10), 12 per residual conv (two GroupNorm convs, the shortcut, the GroupNorm; 2 + 2 + 3 + 3
    # of them), 2 per inverse-depth head (4).
    assert len(state) == 4 * 17 + 2 * 10 + 12 * 10 + 2 * 4


def test_dropout_renames_the_shortcut_to_conv3_0_as_packnet_does():
    state = on_meta(PackNet01, dropout=0.2).state_dict()
    assert tuple(state["conv2.0.conv3.0.weight"].shape) == (64, 64, 1, 1)
    assert "conv2.0.conv3.weight" not in state


def test_pose_net_state_dict_uses_packnets_module_names():
    state = on_meta(PackNetPoseNet).state_dict()
    assert tuple(state["conv1.0.weight"].shape) == (16, 9, 7, 7)  # the key spec 1.8 quotes
    assert tuple(state["conv2.0.weight"].shape) == (32, 16, 5, 5)
    assert tuple(state["conv7.1.bias"].shape) == (256,)
    assert tuple(state["pose_pred.weight"].shape) == (12, 256, 1, 1)
    assert len(state) == 7 * 4 + 2


@pytest.mark.slow
def test_released_layout_round_trip_loads_strictly_and_predicts_the_same():
    """State dicts under spec 1.8's .ckpt prefixes: saved, reloaded, stripped, loaded strictly."""
    torch.manual_seed(0)
    depth_net, pose_net = PackNet01().eval(), PackNetPoseNet().eval()
    image, context = torch.rand(1, 3, H, W), torch.rand(1, 3, H, W)
    with torch.no_grad():
        inv_depth = depth_net(image)[("inv_depth", 0)]
        pose = pose_net(image, [context, image])
    released = {f"model.depth_net.{k}": v for k, v in depth_net.state_dict().items()}
    released |= {f"model.pose_net.{k}": v for k, v in pose_net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"state_dict": released}, buffer)
    del depth_net, released
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["state_dict"]
    del buffer

    torch.manual_seed(1)
    fresh_depth, fresh_pose = PackNet01().eval(), PackNetPoseNet().eval()
    with torch.no_grad():
        assert not torch.equal(fresh_depth(image)[("inv_depth", 0)], inv_depth)
    for net, prefix in ((fresh_depth, "model.depth_net."), (fresh_pose, "model.pose_net.")):
        net.load_state_dict({k[len(prefix):]: v for k, v in loaded.items() if k.startswith(prefix)},
                            strict=True)
    with torch.no_grad():
        assert torch.equal(fresh_depth(image)[("inv_depth", 0)], inv_depth)
        assert torch.equal(fresh_pose(image, [context, image]), pose)


# ---------------------------------------------------------------------------------------------
# depth outputs (spec 1.1, 1.2)


@pytest.mark.parametrize("factory, version", [(PackNet01, "1A"), (PackNet01, "1B"),
                                              (PackNetSlim01, "1A")])
@pytest.mark.slow
def test_outputs_four_inverse_depth_scales_in_0_to_2_in_train_and_eval(factory, version):
    torch.manual_seed(0)
    net = factory(version=version)
    assert net.output_kind == "inv_depth" and net.min_depth == 0.5
    image = torch.rand(2, 3, H, W)
    with torch.no_grad():
        train_out = net.train()(image)
        eval_out = net.eval()(image)
    assert sorted(train_out) == [("inv_depth", s) for s in range(4)]
    for s in range(4):
        inv_depth = train_out[("inv_depth", s)]
        assert inv_depth.shape == (2, 1, H // 2 ** s, W // 2 ** s)
        assert torch.isfinite(inv_depth).all()
        assert inv_depth.min() > 0 and inv_depth.max() < 2
        # Without dropout nothing differs between modes (GroupNorm keeps no running statistics).
        torch.testing.assert_close(eval_out[("inv_depth", s)], inv_depth)


def record_outputs(net: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """Copies of named submodules' outputs and, under "<name>.input", of their first inputs."""
    seen: dict[str, torch.Tensor] = {}
    for name in names:
        module = net.get_submodule(name)
        module.register_forward_pre_hook(
            lambda m, args, name=name: seen.update({f"{name}.input": args[0].clone()}))
        module.register_forward_hook(
            lambda m, args, out, name=name: seen.update({name: out.clone()}))
    return seen


@pytest.mark.parametrize("version", ["1A", "1B"])
@pytest.mark.slow
def test_decoder_fuses_unpacked_skip_and_upsampled_inverse_depth_in_that_order(version):
    torch.manual_seed(0)
    net = PackNet01(version=version).eval()
    names = (["pre_calc"] + [f"pack{l}" for l in range(1, 5)] + [f"unpack{l}" for l in range(1, 6)]
             + [f"iconv{l}" for l in range(1, 6)] + [f"disp{l}_layer" for l in range(2, 5)])
    seen = record_outputs(net, names)
    with torch.no_grad():
        net(torch.rand(1, 3, H, W))
    skips = {1: seen["pre_calc"], **{l: seen[f"pack{l - 1}"] for l in range(2, 6)}}
    for level in range(1, 6):
        fused = seen[f"iconv{level}.input"]
        unpacked, skip = seen[f"unpack{level}"], skips[level]
        if version == "1A":
            expected = [unpacked, skip]
        else:
            expected = [unpacked + skip]
        if level <= 3:
            expected.append(F.interpolate(seen[f"disp{level + 1}_layer"], scale_factor=2))
        assert torch.equal(fused, torch.cat(expected, dim=1)), f"level {level}"


def test_inverse_depth_head_is_sigmoid_over_min_depth():
    head = InvDepthHead(16)
    torch.nn.init.zeros_(head.conv1.weight)
    x = torch.rand(1, 16, 4, 4)
    torch.nn.init.zeros_(head.conv1.bias)
    assert torch.equal(head(x), torch.ones(1, 1, 4, 4))  # sigmoid(0) / 0.5: depth 1 m
    torch.nn.init.constant_(head.conv1.bias, math.log(3.0))
    torch.testing.assert_close(head(x), torch.full((1, 1, 4, 4), 1.5))  # 0.75 / 0.5


def test_dropout_acts_on_the_shortcut_in_training_only():
    torch.manual_seed(0)
    with_dropout = ResidualConv(16, 16, dropout=0.5)
    plain = ResidualConv(16, 16)
    # PackNet's legacy remap conv3.0.* -> conv3.* loads a dropout checkpoint into a plain net.
    plain.load_state_dict({k.replace("conv3.0.", "conv3."): v
                           for k, v in with_dropout.state_dict().items()}, strict=True)
    x = torch.rand(2, 16, 8, 8)
    torch.testing.assert_close(with_dropout.eval()(x), plain.eval()(x))
    with_dropout.train()
    assert not torch.equal(with_dropout(x), with_dropout(x))


def test_bad_inputs_and_versions_are_refused_with_the_fix():
    net = PackNetSlim01()
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        net(torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match="use version '1A'"):
        on_meta(PackNetSlim01, version="1B")
    with pytest.raises(ValueError, match="'1A'"):
        on_meta(PackNet01, version="A")


# ---------------------------------------------------------------------------------------------
# pose network (spec 1.3)


def test_pose_net_outputs_six_numbers_per_context_scaled_by_0_01():
    torch.manual_seed(0)
    net = PackNetPoseNet(num_context_frames=2)
    torch.nn.init.zeros_(net.pose_pred.weight)
    with torch.no_grad():
        net.pose_pred.bias.copy_(torch.arange(12.0))
    target = torch.rand(3, 3, 64, 96)
    pose = net(target, [torch.rand_like(target), torch.rand_like(target)])
    # A constant 1x1 output survives the spatial mean: context k gets bias[6k:6k+6] / 100.
    expected = 0.01 * torch.arange(12.0).view(1, 2, 6).expand(3, 2, 6)
    torch.testing.assert_close(pose, expected)


def test_pose_net_stacks_the_target_first_then_the_contexts_in_order():
    torch.manual_seed(0)
    net = PackNetPoseNet(num_context_frames=3)
    seen = {}
    net.conv1.register_forward_pre_hook(lambda module, args: seen.update(stack=args[0].clone()))
    frames = [torch.rand(1, 3, 32, 32) for _ in range(4)]
    pose = net(frames[0], frames[1:])
    assert pose.shape == (1, 3, 6)
    assert torch.equal(seen["stack"], torch.cat(frames, dim=1))
    with pytest.raises(ValueError, match="built for 3 context frames, got 2"):
        net(frames[0], frames[1:3])


# ---------------------------------------------------------------------------------------------
# Euler angles (spec 1.3: [tx, ty, tz, rx, ry, rz], R = Rx Ry Rz)

QUARTER = math.pi / 2
ROTATIONS_BY_90_DEGREES = {  # right-handed, about the camera's x, y and z axes
    3: [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
    4: [[0, 0, 1], [0, 1, 0], [-1, 0, 0]],
    5: [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
}


@pytest.mark.parametrize("index", [3, 4, 5])
def test_euler_quarter_turn_about_one_axis(index):
    vec = torch.zeros(1, 6, dtype=torch.float64)
    vec[0, index] = QUARTER
    expected = torch.eye(4, dtype=torch.float64)
    expected[:3, :3] = torch.tensor(ROTATIONS_BY_90_DEGREES[index], dtype=torch.float64)
    torch.testing.assert_close(euler_pose_to_matrix(vec)[0], expected)


def test_euler_yaw_by_90_degrees_turns_the_optical_axis_to_the_right():
    # Yaw about the camera's y axis (pointing down): forward z goes to +x.
    matrix = euler_pose_to_matrix(torch.tensor([[0.0, 0.0, 0.0, 0.0, QUARTER, 0.0]]))
    forward = torch.tensor([0.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(matrix[0] @ forward, torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_euler_composition_is_rx_ry_rz_with_the_translation_unrotated():
    vec = torch.tensor([[1.0, -2.0, 3.0, QUARTER, QUARTER, QUARTER]], dtype=torch.float64)
    matrix = euler_pose_to_matrix(vec)[0]
    # Rx(90) @ Ry(90) @ Rz(90) multiplied out by hand.
    expected_rotation = torch.tensor([[0, 0, 1], [0, -1, 0], [1, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(matrix[:3, :3], expected_rotation)
    torch.testing.assert_close(matrix[:3, 3], torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(matrix[3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64))


def test_euler_general_angles_compose_x_then_y_then_z_factors():
    torch.manual_seed(0)
    vec = torch.zeros(5, 6, dtype=torch.float64)
    vec[:, 3:] = torch.rand(5, 3, dtype=torch.float64) * 2 - 1
    vec.requires_grad_(True)
    matrix = euler_pose_to_matrix(vec)

    def single_axis(index: int) -> torch.Tensor:
        only = torch.zeros_like(vec)
        only[:, index] = vec[:, index]
        return euler_pose_to_matrix(only)[:, :3, :3]

    rx, ry, rz = single_axis(3), single_axis(4), single_axis(5)
    torch.testing.assert_close(matrix[:, :3, :3], rx @ ry @ rz)
    assert not torch.allclose(matrix[:, :3, :3], rz @ ry @ rx)
    identity = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    torch.testing.assert_close(matrix[:, :3, :3] @ matrix[:, :3, :3].transpose(1, 2), identity)
    torch.testing.assert_close(torch.linalg.det(matrix[:, :3, :3]),
                               torch.ones(5, dtype=torch.float64))
    matrix[:, :3, :3].sum().backward()
    assert (vec.grad[:, 3:] != 0).all()


def test_euler_refuses_other_shapes():
    with pytest.raises(ValueError, match="B x 6"):
        euler_pose_to_matrix(torch.zeros(2, 7))
