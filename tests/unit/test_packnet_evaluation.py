"""PackNet-SfM's evaluation convention and its four modes, on maps small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import evaluate_depth
import evaluation
from datasets.benchmarks import EvalProtocol, EvalSet
from evaluation import EVAL_CONVENTIONS, EVAL_PROTOCOLS, Scaling, evaluate_packnet_modes, evaluate_predictions
from ground_truth import load_gt_depths
from tests.unit.test_evaluate_depth import base_args, kitti  # noqa: F401 (a fixture)


def test_packnet_resizes_depth_with_align_corners_true():
    """Inverse depth [1, 1/2] to width 3: PackNet's depth [1, 1.5, 2]; Monodepth2's 1 / [1, 3/4, 1/2]."""
    inverse_depth = [np.array([[1.0, 0.5]], np.float32)]
    gt = [np.array([[1.0, 1.5, 2.0]], np.float32)]
    packnet = evaluate_predictions(inverse_depth, gt, "eigen_benchmark", median_scaling=False, convention="packnet")
    assert packnet.metrics["abs_rel"] == 0.0 and packnet.metrics["a1"] == 1.0
    monodepth2 = evaluate_predictions(inverse_depth, gt, "eigen_benchmark", median_scaling=False)
    # Half-pixel centres put column 1 at 3/4 inverse depth: depth 4/3 against 1.5, in one of three pixels.
    assert monodepth2.metrics["abs_rel"] == pytest.approx((1.5 - 4.0 / 3.0) / 1.5 / 3.0, rel=1e-6)


def test_packnet_counts_0_to_the_protocol_cap_and_clamps_to_it():
    """PackNet scores 0 < gt < cap and clamps predictions to [0, cap], the cap being the protocol's."""
    wide = EvalProtocol("ddad_like", gt_min=1e-3, gt_max=200.0, clamp_max=200.0)
    assert EVAL_CONVENTIONS["packnet"].adapt(wide) == EvalProtocol("ddad_like", gt_min=0.0, gt_max=200.0,
                                                                   clamp_min=0.0, clamp_max=200.0)
    assert EVAL_CONVENTIONS["monodepth2"].adapt(wide) is wide
    capped = EVAL_CONVENTIONS["packnet"].adapt(EVAL_PROTOCOLS["eigen_benchmark"])  # no gt cap: its clamp's
    assert (capped.gt_min, capped.gt_max, capped.clamp_min, capped.clamp_max) == (0.0, 80.0, 0.0, 80.0)

    # gt 0.0005 m counts for PackNet (gt > 0), not for this protocol's gt > 0.001; the prediction is off
    # by 100 % there and exact elsewhere.
    gt = [np.array([[0.0005, 2.0]], np.float32)]
    inverse_depth = [1.0 / np.array([[0.001, 2.0]], np.float32)]
    kwargs = {"median_scaling": False}
    assert evaluate_predictions(inverse_depth, gt, wide, **kwargs).metrics["abs_rel"] == 0.0
    packnet = evaluate_predictions(inverse_depth, gt, wide, convention="packnet", **kwargs)
    assert packnet.metrics["abs_rel"] == pytest.approx(0.5, rel=1e-5)

    # 150 m against gt 2 m: clamped to the 80 m cap of an uncapped KITTI-style protocol, kept under 200 m.
    far = [1.0 / np.array([[150.0, 2.0]], np.float32)]
    gt = [np.array([[2.0, 2.0]], np.float32)]
    open_protocol = EvalProtocol("open", gt_min=0.0, gt_max=None)
    at_80 = evaluate_predictions(far, gt, open_protocol, convention="packnet", **kwargs)
    at_200 = evaluate_predictions(far, gt, wide, convention="packnet", **kwargs)
    assert at_80.metrics["abs_rel"] == pytest.approx((80.0 - 2.0) / 2.0 / 2.0, rel=1e-6)
    assert at_200.metrics["abs_rel"] == pytest.approx((150.0 - 2.0) / 2.0 / 2.0, rel=1e-5)


class Ramp(torch.nn.Module):
    """Inverse depth [1, 1/2, 1/4, 1/8] across a 4-pixel row, for the mirrored image too."""

    prediction_domain = "inverse_depth"

    def predict_depth(self, images, inverse=False):
        ramp = torch.tensor([1.0, 0.5, 0.25, 0.125])
        return ramp.expand(images.shape[0], 1, 1, 4).clone()


def ramp_eval_set() -> EvalSet:
    loader = [{("color_uint8", 0, 0): torch.zeros(1, 3, 1, 4, dtype=torch.uint8)}]
    return EvalSet("ramp", loader, [np.array([[2.0, 4.0, 4.0, 8.0]], np.float32)],
                   EvalProtocol("open", gt_min=0.0, gt_max=None))


def test_the_four_modes_on_a_constructed_prediction():
    """Plain depth [1, 2, 4, 8]. Post-processed (W = 4: ramp weights [1,0,0,0] / [0,1,1,0] / [0,0,0,1]):
    inverse [1/8, 3/8, 3/8, 1/8], depth [8, 8/3, 8/3, 8]. Ground truth [2, 4, 4, 8]; torch.median is the
    lower middle value: gt 4, plain 2 (ratio 2), post-processed 8/3 (ratio 3/2)."""
    plain, results = evaluate_packnet_modes(Ramp(), ramp_eval_set(), torch.device("cpu"), Scaling(False, 1.0))
    assert np.array_equal(plain, np.array([[[1.0, 0.5, 0.25, 0.125]]], np.float32))
    abs_rel = {mode: result.metrics["abs_rel"] for mode, result in results.items()}
    assert list(abs_rel) == ["plain", "pp", "gt", "pp_gt"]
    expected = {"plain": (0.5 + 0.5 + 0 + 0) / 4,          # [1, 2, 4, 8] vs [2, 4, 4, 8]
                "pp": (3.0 + 1 / 3 + 1 / 3 + 0) / 4,        # [8, 8/3, 8/3, 8]
                "gt": (0 + 0 + 1 + 1) / 4,                  # x2: [2, 4, 8, 16]
                "pp_gt": (5.0 + 0 + 0 + 0.5) / 4}           # x3/2: [12, 4, 4, 12]
    for mode, value in expected.items():
        assert abs_rel[mode] == pytest.approx(value, rel=1e-6), mode
    assert results["gt"].ratios.tolist() == [2.0] and results["pp_gt"].ratios.tolist() == pytest.approx([1.5])
    # NumPy's median (Monodepth2's convention) would give the ratio 4 / 3 and abs_rel 1/3 instead.
    numpy_median = evaluate_predictions(plain, ramp_eval_set().gt_depths, ramp_eval_set().protocol)
    assert numpy_median.metrics["abs_rel"] == pytest.approx(1 / 3, rel=1e-6)


def test_post_processed_modes_need_a_model():
    eval_set = ramp_eval_set()
    eval_set.pred_disps = np.ones((1, 1, 4), np.float32)
    with pytest.raises(ValueError, match="use --packnet_modes plain gt"):
        evaluate_packnet_modes(None, eval_set, torch.device("cpu"), Scaling(True, 1.0))
    _, results = evaluate_packnet_modes(None, eval_set, torch.device("cpu"), Scaling(True, 1.0), ["gt"])
    assert list(results) == ["gt"]


def test_evaluate_depth_prints_packnet_s_rows_and_keeps_the_default(kitti, tmp_path, caplog):  # noqa: F811
    split = str(kitti / "splits" / "eigen")
    default = evaluate_depth.main(base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path),
                                            "--save_pred_disps"))
    assert default["eval_convention"] == "monodepth2" and len(default["results"]) == 1
    caplog.set_level("INFO")
    report = evaluate_depth.main(base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path),
                                           "--eval_convention", "packnet"))
    assert [(r["name"], r["mode"]) for r in report["results"]] == [("eigen", m) for m in ("plain", "pp", "gt", "pp_gt")]
    assert "PackNet-SfM convention" in caplog.text and "pp_gt |" in caplog.text
    disps = np.load(tmp_path / "disps_eigen_split.npy")
    gt = load_gt_depths(kitti / "splits" / "eigen" / "gt_depths.npz")
    by_mode = {r["mode"]: r["metrics"] for r in report["results"]}
    again = evaluate_predictions(disps, gt, "eigen", median_scaling=True, convention="packnet").metrics
    assert again == by_mode["gt"]  # the plain maps are exactly the default run's saved ones
    assert by_mode["gt"] != default["results"][0]["metrics"]  # another convention, other numbers
    chosen = evaluate_depth.main(base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path),
                                           "--eval_convention", "packnet", "--packnet_modes", "gt", "plain"))
    assert [r["mode"] for r in chosen["results"]] == ["gt", "plain"]
    assert chosen["results"][0]["metrics"] == by_mode["gt"]


def test_packnet_convention_refuses_flags_its_modes_decide(kitti, capsys):  # noqa: F811
    with pytest.raises(SystemExit):
        evaluate_depth.main(base_args(kitti, "--eval_convention", "packnet", "--post_process"))
    assert "--post_process: with --eval_convention packnet the modes decide" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_depth.main(["--ext_disp_to_eval", "x.npy", "--kitti_path", str(kitti), "--eval_convention",
                             "packnet"])
    assert "use --packnet_modes plain gt" in capsys.readouterr().err


def test_packnet_post_processing_is_our_ramp():
    """PackNet's post_process_inv_depth, written out from the spec, equals post_process_disparity."""
    torch.manual_seed(0)
    plain, flipped = torch.rand(2, 1, 3, 50), torch.rand(2, 1, 3, 50)
    hat = torch.flip(flipped, dims=[3])
    xs = torch.linspace(0.0, 1.0, 50).repeat(2, 1, 3, 1)
    mask = 1.0 - torch.clamp(20.0 * (xs - 0.05), 0.0, 1.0)
    mask_hat = torch.flip(mask, dims=[3])
    theirs = mask_hat * plain + mask * hat + (1.0 - mask - mask_hat) * 0.5 * (plain + hat)
    assert torch.equal(evaluation.post_process_disparity(plain, hat), theirs)
