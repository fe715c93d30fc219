"""Closed-form tests for the depth metrics, NumPy-convention median and disparity upsampling."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch.testing import assert_close

import layers

F64 = torch.float64


def metrics_dict(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    values = layers.compute_depth_metrics(gt, pred)
    assert values.dtype == F64 and values.shape == (7,)
    return dict(zip(layers.DEPTH_METRIC_NAMES, values.tolist()))


def test_metric_names_order():
    assert layers.DEPTH_METRIC_NAMES == ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def test_perfect_prediction(device):
    gt = torch.tensor([0.5, 3.0, 12.0, 79.0], device=device)
    got = layers.compute_depth_metrics(gt, gt.clone())
    assert got.device == gt.device
    assert torch.equal(got, torch.tensor([0.0, 0, 0, 0, 1, 1, 1], dtype=F64, device=device))


def test_prediction_twice_the_truth(device):
    # pred = 2 gt with gt = (1, 2, 3, 4): |gt - pred| / gt = 1; (gt - pred)^2 / gt = gt, mean
    # 2.5; rmse = sqrt(mean(gt^2)) = sqrt(7.5); log ratio ln 2 everywhere; ratio 2 exceeds
    # 1.25^3 = 1.953125, so every accuracy is 0.
    gt = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device)
    got = metrics_dict(gt, 2 * gt)
    want = {
        "abs_rel": 1.0,
        "sq_rel": 2.5,
        "rmse": math.sqrt(7.5),
        "rmse_log": math.log(2),
        "a1": 0.0,
        "a2": 0.0,
        "a3": 0.0,
    }
    for name in layers.DEPTH_METRIC_NAMES:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name


def test_accuracy_thresholds_and_mixed_errors(device):
    # Ratios pred/gt = 1.2, 1/1.5, 1.9, 2.5 at gt = 2: max(gt/pred, pred/gt) = 1.2, 1.5, 1.9,
    # 2.5 against 1.25, 1.5625, 1.953125, so a1, a2, a3 = 1/4, 2/4, 3/4.
    ratios = [1.2, 1 / 1.5, 1.9, 2.5]
    gt = torch.full((4,), 2.0, dtype=F64, device=device)
    pred = 2.0 * torch.tensor(ratios, dtype=F64, device=device)
    got = metrics_dict(gt, pred)
    errors = [2.0 * (r - 1) for r in ratios]
    want = {
        "abs_rel": sum(abs(e) / 2 for e in errors) / 4,
        "sq_rel": sum(e * e / 2 for e in errors) / 4,
        "rmse": math.sqrt(sum(e * e for e in errors) / 4),
        "rmse_log": math.sqrt(sum(math.log(r) ** 2 for r in ratios) / 4),
        "a1": 0.25,
        "a2": 0.5,
        "a3": 0.75,
    }
    for name in layers.DEPTH_METRIC_NAMES:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name


def test_float32_inputs_are_evaluated_in_float64():
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(1000, generator=gen) * 79 + 1
    pred = gt * (torch.rand(1000, generator=gen) + 0.5)
    got = layers.compute_depth_metrics(gt, pred)
    assert torch.equal(got, layers.compute_depth_metrics(gt.double(), pred.double()))


def test_metric_input_errors():
    with pytest.raises(ValueError, match="no valid pixels"):
        layers.compute_depth_metrics(torch.ones(0), torch.ones(0))
    with pytest.raises(ValueError, match=r"pred: expected shape 3, got 1x3"):
        layers.compute_depth_metrics(torch.ones(3), torch.ones(1, 3))


@pytest.mark.parametrize("count", [1, 2, 7, 10, 1001])
def test_numpy_median_matches_np_median(device, count):
    values = np.random.default_rng(count).uniform(0.1, 80.0, size=count)
    got = layers.numpy_median(torch.from_numpy(values).to(device))
    assert got.dim() == 0
    assert got.item() == np.median(values)


def test_numpy_median_differs_from_torch_median_for_even_counts():
    x = torch.tensor([[10.0, 1.0], [3.0, 2.0]])
    assert layers.numpy_median(x).item() == 2.5
    assert torch.median(x).item() == 2.0  # the lower middle value: why we do not use it


def test_median_scaling_ratio(device):
    gt = torch.tensor([4.0, 1.0, 3.0, 2.0], device=device)  # median 2.5
    pred = torch.tensor([0.5, 0.25, 1.0, 0.1, 9.0], device=device)  # median 0.5
    assert layers.median_scaling_ratio(gt, pred).item() == 5.0
    with pytest.raises(ValueError, match="empty"):
        layers.numpy_median(torch.ones(0))


def test_upsample_disp_uses_half_pixel_centres(device):
    # Doubling (0, 1) with align_corners=False puts samples at -0.25, 0.25, 0.75, 1.25 source
    # pixels: (0, 0.25, 0.75, 1) after edge clamping (align_corners=True would give thirds).
    disp = torch.tensor([0.0, 1.0], device=device).view(1, 1, 1, 2)
    got = layers.upsample_disp(disp, (1, 4))
    assert_close(got.view(-1), torch.tensor([0.0, 0.25, 0.75, 1.0], device=device))


def test_upsample_disp_matches_cv2_resize(device):
    disp = np.random.default_rng(0).uniform(0.01, 10.0, size=(6, 20)).astype(np.float32)
    want = cv2.resize(disp, (47, 15), interpolation=cv2.INTER_LINEAR)
    got = layers.upsample_disp(torch.from_numpy(disp).to(device)[None, None], (15, 47))
    assert_close(got[0, 0].cpu(), torch.from_numpy(want), atol=1e-5, rtol=1e-5)
