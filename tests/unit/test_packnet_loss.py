"""PackNet-SfM's loss recipe (--loss_preset packnet) and its velocity supervision (--velocity_weight).

Each difference from Monodepth2's loss is pinned in closed form on tiny tensors: zeros padding,
no tie-break noise with PackNet's candidate order, nearest upsampling of every scale to full
resolution for warping and smoothness, the SSIM/L1 weighting and the averaging over scales.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch
from torch.testing import assert_close

import losses
from checkpoints import ModelSpec
from datasets import KITTIRAWDataset, dataset_options
from kitti_utils import EARTH_RADIUS_M, mercator_scale, oxts_packet_path, oxts_position, oxts_travel
from layers import (IDENTITY_TIE_NOISE, SSIM_C1, disp_to_depth, edge_aware_smoothness, per_pixel_min_loss, project,
                    warp)
from losses import LOSS_PRESETS, LossSettings, view_photometric_loss, view_smoothness_loss, velocity_term
from model import SelfSupervisedDepth, output_to_depth
from tests.unit.test_model import BATCH, HEIGHT, WIDTH, make_batch, options

PACKNET = ("--loss_preset", "packnet")


# ------------------------------------------------------------------------------------------ settings
def test_monodepth2_preset_keeps_every_previous_setting():
    settings = LossSettings.from_options(options(), (-1, 1))
    assert (settings.padding_mode, settings.tie_noise, settings.interleave_min, settings.upsample_mode,
            settings.smooth_full_resolution) == ("border", IDENTITY_TIE_NOISE, False, "bilinear", False)
    assert (settings.projection_depth_floor, settings.smoothness_mean_floor) == (None, None)
    assert settings == LossSettings.from_options(options("--loss_preset", "monodepth2"), (-1, 1))
    assert LOSS_PRESETS["monodepth2"] == {}


def test_packnet_preset_sets_packnets_choices_and_keeps_its_configuration_weights():
    opts = options(*PACKNET)
    settings = LossSettings.from_options(opts, (-1, 1))
    assert (settings.padding_mode, settings.tie_noise, settings.interleave_min, settings.upsample_mode,
            settings.smooth_full_resolution) == ("zeros", 0.0, True, "nearest", True)
    assert (settings.projection_depth_floor, settings.smoothness_mean_floor) == (1e-5, 1e-6)
    # PackNet's configuration values (not its class defaults): smoothness 0.001, auto-mask on, SSIM on.
    assert settings.automask and settings.use_ssim and not settings.avg_reprojection
    weights = {name: weight for name, _, weight in losses.build_loss_terms(opts)}
    assert weights == {"photometric": 1.0, "smoothness": 0.001}


def test_packnet_floors_send_points_behind_the_camera_off_the_image_and_keep_depth_finite():
    # One point 1 m behind the camera at x = 0.5 m, identity pose, f = 10, c = (2, 2) on a 5 x 5 grid.
    K = torch.tensor([[[10.0, 0, 2, 0], [0, 10, 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]]])
    points = torch.tensor([0.5, 0.0, -1.0, 1.0]).view(1, 4, 1).repeat(1, 1, 4)
    offset = project(points, K, torch.eye(4)[None], 2, 2)  # Monodepth2: z + 1e-7, a mirror image
    floored = project(points, K, torch.eye(4)[None], 2, 2, depth_floor=1e-5)
    # u = (10 * 0.5 + 2 * z) / z: -3 pixels (x_n = -7) with the offset, about 5e5 with the floor
    assert_close(offset[0, 0, 0, 0], torch.tensor(2 * -3.0 - 1), rtol=1e-5, atol=1e-5)
    assert floored[0, 0, 0, 0] > 1e5
    _, depth = output_to_depth(torch.tensor([0.0, 0.5]), "inv_depth", 0.1, 100.0)
    assert_close(depth, torch.tensor([1e6, 2.0]))
    flat = torch.zeros(1, 1, 3, 3)
    image = torch.rand(1, 3, 3, 3)
    assert edge_aware_smoothness(flat, image, mean_floor=1e-6) == 0
    ramp = torch.arange(3.0).view(1, 1, 1, 3).expand(1, 1, 3, 3) * 1e-9  # mean 1e-9 < the floor
    assert_close(edge_aware_smoothness(ramp, torch.zeros(1, 3, 3, 3), mean_floor=1e-6),
                 torch.tensor(1e-9 / 1e-6))


@pytest.mark.parametrize("flag, message", [
    ("--v1_multiscale", "--loss_preset packnet warps every scale at full resolution"),
    ("--jitter_per_frame", "--loss_preset packnet jitters target and contexts with one draw"),
])
def test_packnet_preset_refuses_what_packnet_does_not_do(flag, message, capsys):
    with pytest.raises(SystemExit):
        options(*PACKNET, flag)
    assert message in capsys.readouterr().err


def test_packnet_preset_jitters_the_network_inputs_only_and_shares_the_draw(packnet_loss_model):
    batch = make_batch()
    batch["color_jitter"][:, 0] = 1.5  # brightness x1.5, identity contrast, saturation and hue
    batch["color_jitter"][:, 1:3] = 1.0
    batch["color_jitter"][:, 4:] = torch.arange(4.0)
    batch["do_color_aug"][:] = True
    inputs = packnet_loss_model.prepare_inputs(batch, torch.device("cpu"))
    for frame_id in (0, -1, 1):
        frame = batch[("color_uint8", frame_id, 0)].float() / 255.0
        assert torch.equal(inputs[("color", frame_id, 0)], frame)  # what the loss reads: un-jittered
        assert_close(inputs[("color_aug", frame_id, 0)], (frame * 1.5).clamp(0, 1))  # one draw for all


# ------------------------------------------------------------------------------------------ minimum
def test_packnet_minimum_has_no_noise_and_a_warped_frame_wins_its_exact_tie():
    # Candidates per pixel: source 1 warped/unwarped, source 2 warped/unwarped.
    reprojection = torch.tensor([[[[0.3, 0.2, 0.5]], [[0.4, 0.6, 0.1]]]], requires_grad=True)
    identity = torch.tensor([[[[0.3, 0.1, 0.5]], [[0.4, 0.7, 0.2]]]], requires_grad=True)
    loss, mask = per_pixel_min_loss(reprojection, identity, tie_noise=0.0, interleave=True)
    assert_close(loss, torch.tensor([[[[0.3, 0.1, 0.1]]]]))  # exactly, no noise
    assert_close(mask, torch.tensor([[[[1.0, 0.0, 1.0]]]]))  # pixel 0: a tie, the warped frame wins
    loss.sum().backward()
    # The gradient of the tie goes to the warped frame of source 1, PackNet's first candidate.
    assert_close(reprojection.grad, torch.tensor([[[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]]]))
    assert_close(identity.grad, torch.tensor([[[[0.0, 1.0, 0.0]], [[0.0, 0.0, 0.0]]]]))


def test_monodepth2_minimum_lists_unwarped_frames_first_and_breaks_ties_with_noise():
    same = torch.full((1, 2, 1, 4), 0.3)
    loss, mask = per_pixel_min_loss(same, same.clone(), tie_noise=0.0)
    assert_close(mask, torch.zeros(1, 1, 1, 4))  # without noise the unwarped block would always win
    torch.manual_seed(0)
    flat = torch.full((1, 2, 64, 64), 0.3)
    loss, mask = per_pixel_min_loss(flat, flat.clone())
    # Noise decides each tie: a warped frame wins where both noisy unwarped errors exceed it (1/4).
    assert 0.2 < mask.mean() < 0.3
    assert (loss - 0.3).abs().max() < 10 * IDENTITY_TIE_NOISE


# ------------------------------------------------------------------------------------------ warping
def test_zeros_padding_blanks_points_outside_the_source_where_border_repeats_the_edge():
    image = torch.tensor([[[[0.2, 0.8], [0.4, 0.6]]]])
    grid = torch.tensor([[[[3.0, -1.0], [1.0, 1.0]]]])  # far right of the top row; the bottom-right centre
    assert_close(warp(image, grid, padding_mode="zeros"), torch.tensor([[[[0.0, 0.6]]]]))
    assert_close(warp(image, grid), torch.tensor([[[[0.8, 0.6]]]]))


@pytest.fixture(scope="module")
def packnet_loss_model():
    torch.manual_seed(0)
    return SelfSupervisedDepth.from_options(options(*PACKNET))


def test_packnet_preset_warps_with_zeros_and_nearest_upsampled_depth(packnet_loss_model):
    model = packnet_loss_model
    inputs = model.prepare_inputs(make_batch(), torch.device("cpu"))
    disps = {("disp", s): torch.rand(BATCH, 1, HEIGHT >> s, WIDTH >> s) for s in range(4)}
    outputs = {"finite_checks": [], **disps}
    # Frame -1 seen from 1000 units to the right: every point falls off the image.
    shifted = torch.eye(4).repeat(BATCH, 1, 1)
    shifted[:, 0, 3] = 1000.0
    outputs[("cam_T_cam", 0, -1)], outputs[("cam_T_cam", 0, 1)] = shifted, torch.eye(4).repeat(BATCH, 1, 1)
    model.synthesize_views(inputs, outputs)
    for scale in range(4):
        assert torch.equal(outputs[("warped", -1, scale)], torch.zeros(BATCH, 3, HEIGHT, WIDTH))
        factor = 2 ** scale
        nearest = disps[("disp", scale)].repeat_interleave(factor, 2).repeat_interleave(factor, 3)
        assert_close(outputs[("depth", 0, scale)], disp_to_depth(nearest, 0.1, 100.0)[1])


# ------------------------------------------------------------------------------------------ terms
def _settings(preset: str, **changes) -> LossSettings:
    base = LossSettings(scales=(0, 1), source_frame_ids=(-1, 1), **LOSS_PRESETS[preset])
    return dataclasses.replace(base, **changes)


def test_packnet_smoothness_runs_at_full_resolution_on_nearest_upsampled_maps():
    # Scale 1: columns 1 and 3 (mean 2: 0.5 and 1.5); a flat guide weighs every gradient by 1.
    coarse = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]]]])
    outputs = {("disp", 0): torch.ones(1, 1, 4, 4), ("disp", 1): coarse}
    inputs = {("color", 0, 0): torch.full((1, 3, 4, 4), 0.5), ("color", 0, 1): torch.full((1, 3, 2, 2), 0.5)}
    packnet, _ = view_smoothness_loss(inputs, outputs, _settings("packnet"), losses.ORIGINAL_VIEW)
    # Full resolution: columns 0.5 0.5 1.5 1.5 -> one step of 1 among 3 per row: mean 1/3, over 2^1.
    assert_close(packnet, torch.tensor((0.0 + (1 / 3) / 2) / 2))
    monodepth2, _ = view_smoothness_loss(inputs, outputs, _settings("monodepth2"), losses.ORIGINAL_VIEW)
    assert_close(monodepth2, torch.tensor((0.0 + 1.0 / 2) / 2))  # 2 x 2: one step of 1 per row


def test_packnet_photometric_term_is_085_ssim_015_l1_averaged_over_scales():
    # Flat images: SSIM's variances vanish, so its dissimilarity is (1 - (2ab + C1)/(a^2 + b^2 + C1)) / 2.
    a, b, c = 0.5, 0.3, 0.9
    inputs = {("color", 0, 0): torch.full((1, 3, 4, 4), a), ("color", -1, 0): torch.full((1, 3, 4, 4), c),
              ("color", 1, 0): torch.full((1, 3, 4, 4), c)}
    outputs = {("warped", f, s): torch.full((1, 3, 4, 4), b) for f in (-1, 1) for s in (0, 1)}
    value, maps = view_photometric_loss(inputs, outputs, _settings("packnet"), losses.ORIGINAL_VIEW)
    ssim = (1 - (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1)) / 2
    assert_close(value, torch.tensor(0.85 * ssim + 0.15 * abs(a - b)))
    assert torch.equal(maps[("automask", 0)], torch.ones(1, 1, 4, 4))  # the unwarped frames are worse


# ------------------------------------------------------------------------------------------ velocity
def _pose_with_translation(translations) -> torch.Tensor:
    poses = torch.eye(4).repeat(len(translations), 1, 1)
    poses[:, :3, 3] = torch.tensor(translations)
    return poses


def test_velocity_loss_is_zero_at_the_true_speed_and_the_mean_absolute_norm_error_otherwise():
    settings = LossSettings(scales=(0,), source_frame_ids=(-1, 1))
    outputs = {("cam_T_cam", 0, -1): _pose_with_translation([[3.0, 0.0, 4.0], [0.0, 0.0, -1.0]]),
               ("cam_T_cam", 0, 1): _pose_with_translation([[0.0, 0.6, 0.8], [0.0, 0.0, 2.0]])}
    truth = {("translation_norm", -1): torch.tensor([5.0, 1.0]), ("translation_norm", 1): torch.tensor([1.0, 2.0])}
    assert velocity_term(truth, outputs, settings)[0].item() == 0.0
    measured = {("translation_norm", -1): torch.tensor([4.0, 1.5]), ("translation_norm", 1): torch.tensor([1.5, 1.0])}
    # source -1: (|5 - 4| + |1 - 1.5|) / 2 = 0.75; source 1: (|1 - 1.5| + |2 - 1|) / 2 = 0.75
    assert velocity_term(measured, outputs, settings)[0].item() == pytest.approx(0.75)


def test_velocity_weight_registers_the_term_and_reaches_the_dataset_and_the_spec():
    opts = options("--velocity_weight", "0.1")
    assert dict((name, weight) for name, _, weight in losses.build_loss_terms(opts))["velocity"] == 0.1
    assert "velocity" not in {name for name, _, _ in losses.build_loss_terms(options())}
    assert dataset_options(opts) == {"translation_norms": True} and dataset_options(options()) == {}
    spec = ModelSpec.from_options(opts)
    assert spec.velocity_supervised and spec.metric_depth_scale == 1.0
    assert ModelSpec.from_dict(spec.to_dict()).metric_depth_scale == 1.0
    assert ModelSpec.from_options(options()).metric_depth_scale is None
    assert ModelSpec(use_stereo=True).metric_depth_scale == 5.4


def test_velocity_loss_trains_the_pose_network_through_the_model():
    torch.manual_seed(0)
    model = SelfSupervisedDepth.from_options(options("--velocity_weight", "0.1"))
    batch = make_batch()
    batch[("translation_norm", -1)] = batch[("translation_norm", 1)] = torch.ones(BATCH)
    inputs = model.prepare_inputs(batch, torch.device("cpu"))
    outputs = model(inputs)
    result = model.losses(inputs, outputs)
    expected = velocity_term(inputs, outputs, model.loss_settings)[0]
    assert_close(result["loss/velocity"], expected)
    assert_close(result["loss"], result["loss/photometric"] + 1e-3 * result["loss/smoothness"] + 0.1 * expected)


@pytest.mark.parametrize("extra, message", [
    (("--use_stereo",), "--velocity_weight and --use_stereo both fix the scale"),
    (("--dataset", "kitti_odom"), "--dataset kitti_odom does not provide"),
])
def test_velocity_weight_refuses_what_cannot_supervise_it(extra, message, capsys):
    with pytest.raises(SystemExit):
        options("--velocity_weight", "0.1", *extra)
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ OXTS
def _packet(lat: float, lon: float, alt: float) -> np.ndarray:
    packet = np.zeros(30)
    packet[:3] = lat, lon, alt
    return packet


def test_oxts_travel_of_pure_moves_is_the_closed_form():
    lat0, lon0 = 49.0, 8.4
    scale = mercator_scale(lat0)
    radius = scale * EARTH_RADIUS_M
    # 10 m north: invert the Mercator northing y = s r ln(tan((90 + lat) pi / 360)).
    north0 = radius * math.log(math.tan(math.radians(90.0 + lat0) / 2))
    lat1 = math.degrees(2 * math.atan(math.exp((north0 + 10.0) / radius))) - 90.0
    assert oxts_travel(_packet(lat0, lon0, 100.0), _packet(lat1, lon0, 100.0), scale) == pytest.approx(10.0, abs=1e-6)
    # 3 m east (x = s r lon pi / 180) and 4 m up: 5 m.
    lon1 = lon0 + math.degrees(3.0 / radius)
    assert oxts_travel(_packet(lat0, lon0, 100.0), _packet(lat0, lon1, 104.0), scale) == pytest.approx(5.0, abs=1e-6)
    assert_close(oxts_position(_packet(lat0, 0.0, 7.0), scale)[[0, 2]], np.array([0.0, 7.0]))


DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
# Metres north of frame 0 per frame: steps of 1.0, 1.5, 0.5 m.
NORTH_M = [0.0, 1.0, 2.5, 3.0]


def write_drive_with_oxts(root, skip_packet: int | None = None) -> None:
    rng = np.random.default_rng(0)
    radius = mercator_scale(49.0) * EARTH_RADIUS_M
    north0 = radius * math.log(math.tan(math.radians(90.0 + 49.0) / 2))
    for frame, north in enumerate(NORTH_M):
        for camera in (2, 3):
            folder = root / DRIVE / f"image_0{camera}" / "data"
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{frame:010d}.png"), rng.integers(0, 256, (30, 96, 3), dtype=np.uint8))
        if frame == skip_packet:
            continue
        lat = math.degrees(2 * math.atan(math.exp((north0 + north) / radius))) - 90.0
        path = oxts_packet_path(root / DRIVE, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(" ".join(f"{v:.15g}" for v in _packet(lat, 8.4, 110.0)) + "\n")


def test_a_kitti_drive_with_oxts_gives_samples_carrying_the_travel(tmp_path):
    write_drive_with_oxts(tmp_path)
    lines = [f"{DRIVE} 1 l", f"{DRIVE} 2 r"]
    dataset = KITTIRAWDataset(tmp_path, lines, 32, 64, [0, -1, 1], 1, is_train=True, translation_norms=True)
    first, second = dataset[0], dataset[1]
    assert first[("translation_norm", -1)].dtype == torch.float32
    assert first[("translation_norm", -1)].item() == pytest.approx(1.0, abs=1e-5)
    assert first[("translation_norm", 1)].item() == pytest.approx(1.5, abs=1e-5)
    assert second[("translation_norm", -1)].item() == pytest.approx(1.5, abs=1e-5)
    assert second[("translation_norm", 1)].item() == pytest.approx(0.5, abs=1e-5)
    plain = KITTIRAWDataset(tmp_path, lines, 32, 64, [0, -1, 1], 1)
    assert not any(isinstance(key, tuple) and key[0] == "translation_norm" for key in plain[0])


@pytest.mark.parametrize("missing", [0, 3])  # frame 0 sets the map scale; frame 3 is a context
def test_a_missing_oxts_packet_is_an_error_at_construction_naming_file_and_fix(tmp_path, missing):
    write_drive_with_oxts(tmp_path, skip_packet=missing)
    with pytest.raises(FileNotFoundError) as error:
        KITTIRAWDataset(tmp_path, [f"{DRIVE} 2 l"], 32, 64, [0, -1, 1], 1, translation_norms=True)
    message = str(error.value)
    assert str(oxts_packet_path(tmp_path / DRIVE, missing)) in message and "--velocity_weight 0" in message
    KITTIRAWDataset(tmp_path, [f"{DRIVE} 2 l"], 32, 64, [0, -1, 1], 1)  # without velocity: no packet read


def test_ddad_samples_carry_the_camera_travel_from_the_scene_poses(tmp_path):
    from datasets import DDADDataset
    from tests.format_writers import write_ddad_scene

    scene = write_ddad_scene(tmp_path, "000000", num_samples=3, cameras=("CAMERA_01",))
    dataset = DDADDataset(tmp_path, [f"{scene} 1"], 32, 48, [0, -1, 1], 1, translation_norms=True)
    sample = dataset[0]
    # The miniature scene's camera moves 1 m per sample.
    assert sample[("translation_norm", -1)].item() == pytest.approx(1.0)
    assert sample[("translation_norm", 1)].item() == pytest.approx(1.0)
