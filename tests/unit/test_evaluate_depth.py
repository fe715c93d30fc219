"""evaluation and evaluate_depth: protocol conventions in closed form, and main() on a tiny KITTI-layout folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import evaluate_depth
import evaluation
from checkpoints import CHECKPOINT_FORMAT, ModelSpec, load_checkpoint, save_checkpoint
from datasets.benchmarks import EvalProtocol, EvalSet
from datasets.kitti_dataset import load_kitti_gt
from evaluation import EVAL_PROTOCOLS, evaluate_predictions
from ground_truth import save_gt_depths
from kitti_utils import read_kitti_depth_png
from networks import build_depth_network

RNG = np.random.default_rng(0)


def test_perfect_prediction_gives_zero_error_and_full_accuracy():
    gt = RNG.uniform(1.0, 70.0, size=(20, 30)).astype(np.float32)
    result = evaluate_predictions([1.0 / gt], [gt], "eigen_benchmark", median_scaling=False)
    assert result.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert result.metrics["rmse"] == pytest.approx(0.0, abs=1e-4)
    assert (result.metrics["a1"], result.metrics["a2"], result.metrics["a3"]) == (1.0, 1.0, 1.0)


def test_garg_crop_fractions_on_the_kitti_size():
    mask = EVAL_PROTOCOLS["eigen"].valid_mask(np.full((375, 1242), 10.0, dtype=np.float32))
    rows, cols = np.nonzero(mask)
    # int(0.40810811 * 375) = 153, int(0.99189189 * 375) = 371, int(0.03594771 * 1242) = 44,
    # int(0.96405229 * 1242) = 1197; ends exclusive.
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_depth_bounds_of_the_two_kitti_protocols():
    gt = np.array([[0.0, 1e-3, 0.5, 80.0, 90.0]], dtype=np.float32)
    assert EVAL_PROTOCOLS["eigen_benchmark"].valid_mask(gt).tolist() == [[False, True, True, True, True]]
    no_crop = EvalProtocol("eigen_no_crop")
    assert no_crop.valid_mask(gt).tolist() == [[False, False, True, False, False]]


def test_median_scaling_recovers_a_global_scale_and_stereo_uses_5_4():
    gt = RNG.uniform(2.0, 60.0, size=(10, 12)).astype(np.float32)
    mono = evaluate_predictions([3.0 / gt], [gt], "eigen_benchmark")  # depth = gt / 3
    assert mono.ratios.tolist() == pytest.approx([3.0], rel=1e-6)
    assert mono.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    stereo = evaluate_predictions([5.4 / gt], [gt], "eigen_benchmark", median_scaling=False,
                                  pred_depth_scale_factor=5.4)
    assert stereo.ratios.size == 0 and stereo.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)


def test_median_is_numpy_s_mean_of_the_middle_values():
    gt = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)  # median 2.5 (torch.median: 2)
    result = evaluate_predictions([np.ones((1, 4), np.float32)], [gt], "eigen_benchmark")
    assert result.ratios.tolist() == [2.5]


def test_post_processing_ramps():
    width = 100
    plain, flipped = torch.full((1, 1, 2, width), 2.0), torch.full((1, 1, 2, width), 4.0)
    out = evaluation.post_process_disparity(plain, flipped)[0, 0, 0]
    x = np.linspace(0, 1, width)
    left = 1 - np.clip(20 * (x - 0.05), 0, 1)  # 1 up to x = 0.05, 0 from x = 0.1
    want = left[::-1] * 2.0 + left * 4.0 + (1 - left - left[::-1]) * 3.0
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
    assert out[0] == 4.0 and out[-1] == 2.0 and out[width // 2] == 3.0


def test_benchmark_pngs_encode_depth_times_256(tmp_path):
    disps = np.full((2, 6, 20), 0.27, dtype=np.float32)  # depth 5.4 / 0.27 = 20 m
    disps[1] = 0.01  # 540 m, clipped to 80
    paths = evaluation.write_benchmark_predictions(disps, tmp_path, 5.4)
    assert [p.name for p in paths] == ["0000000000.png", "0000000001.png"]
    raw = cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (352, 1216)
    assert np.all(raw == 5120) and np.all(read_kitti_depth_png(paths[1]) == 80.0)


# ---- main() on a tiny KITTI-layout folder --------------------------------------------------------

DRIVE = "2011_09_26/2011_09_26_drive_0002_sync"
HEIGHT, WIDTH = 64, 96


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    """Three frames, an eigen-named split folder with ground truth, and a tiny checkpoint."""
    root = tmp_path_factory.mktemp("kitti")
    images = root / DRIVE / "image_02" / "data"
    images.mkdir(parents=True)
    gen = np.random.default_rng(1)
    for frame in range(3):
        cv2.imwrite(str(images / f"{frame:010d}.png"), gen.integers(0, 255, (50, 160, 3), dtype=np.uint8))
    gt = [gen.uniform(1.0, 70.0, (50, 160)).astype(np.float32) for _ in range(3)]
    for name in ("eigen", "eigen_benchmark"):
        split = root / "splits" / name
        split.mkdir(parents=True)
        (split / "test_files.txt").write_text("".join(f"{DRIVE} {f:010d} l\n" for f in range(3)))
        save_gt_depths(split / "gt_depths.npz", gt)
    torch.manual_seed(0)
    net = build_depth_network(scales=(0,))
    spec = ModelSpec(height=HEIGHT, width=WIDTH, scales=[0])
    save_checkpoint(root / "model0.pth", {"format": CHECKPOINT_FORMAT, "model_spec": spec.to_dict(),
                                          "encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict()})
    return root


def base_args(kitti: Path, *extra: str) -> list[str]:
    return ["--pretrained_path", str(kitti / "model0.pth"), "--kitti_path", str(kitti), "--num_workers", "0",
            "--device", "cpu", "--batch_size", "2", *extra]


def test_main_evaluates_saves_and_reevaluates_its_own_predictions(kitti, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    splits = [str(kitti / "splits" / "eigen"), str(kitti / "splits" / "eigen_benchmark")]
    report = evaluate_depth.main(base_args(kitti, "--eval_split", *splits, "--save_pred_disps",
                                           "--eval_out_dir", str(tmp_path)))
    assert [r["title"] for r in report["results"]] == ["KITTI with eigen split", "KITTI with eigen_benchmark split"]
    assert [r["protocol"] for r in report["results"]] == ["eigen", "eigen_benchmark"]
    assert json.loads((tmp_path / "metrics_model0.json").read_text()) == report
    out = caplog.text
    assert " Mono evaluation - using median scaling" in out and " Evaluate on KITTI with eigen split (3 images):" in out
    assert "abs_rel |   sq_rel |" in out
    disps = np.load(tmp_path / "disps_eigen_split.npy")
    assert disps.shape == (3, HEIGHT, WIDTH) and np.all((disps >= 0.01) & (disps <= 10.0))
    # The saved predictions, fed back, give the same numbers without the network.
    again = evaluate_depth.main(["--ext_disp_to_eval", str(tmp_path / "disps_eigen_split.npy"), "--kitti_path",
                                 str(kitti), "--eval_split", splits[0], "--output_json", str(tmp_path / "x.json")])
    assert again["results"][0]["metrics"] == report["results"][0]["metrics"]


def test_post_process_and_stereo_flags_change_the_numbers(kitti, tmp_path):
    split = str(kitti / "splits" / "eigen")
    plain = evaluate_depth.main(base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path)))
    post = evaluate_depth.main(base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path),
                                         "--post_process"))
    stereo = evaluate_depth.main(base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path),
                                           "--eval_stereo"))
    assert post["results"][0]["metrics"] != plain["results"][0]["metrics"]
    assert stereo["median_scaling"] is False and stereo["pred_depth_scale_factor"] == 5.4
    assert "scaling_ratio_median" not in stereo["results"][0]


def test_a_velocity_supervised_model_is_scored_in_metres_and_median_scaled(kitti, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    payload = load_checkpoint(kitti / "model0.pth")
    payload["model_spec"] = {**payload["model_spec"], "velocity_supervised": True}
    save_checkpoint(tmp_path / "velocity.pth", payload)
    split = str(kitti / "splits" / "eigen")
    args = base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path))
    args[1] = str(tmp_path / "velocity.pth")
    metric = evaluate_depth.main(args)
    plain = evaluate_depth.main(base_args(kitti, "--eval_split", split, "--eval_out_dir", str(tmp_path)))
    entry = metric["results"][0]
    assert metric["median_scaling"] is False and metric["pred_depth_scale_factor"] == 1.0
    # the same network: its median-scaled row is the plain model's result, the metric row differs
    assert entry["metrics_median_scaled"] == plain["results"][0]["metrics"] != entry["metrics"]
    assert "The same predictions with per-image median scaling" in caplog.text
    assert "metrics_median_scaled" not in plain["results"][0]


def test_eigen_to_benchmark_selects_the_listed_frames(kitti, tmp_path, monkeypatch):
    import split_lists

    ids = tmp_path / "eigen_to_benchmark_ids.npy"
    np.save(ids, np.array([2, 1, 0]))
    monkeypatch.setattr(split_lists, "ensure_split_file", lambda split, name: ids)
    gt = load_kitti_gt(str(kitti / "splits" / "eigen_benchmark"))
    disps = np.stack([1.0 / g for g in gt[::-1]])  # stored in reverse: only the ids put them right
    np.save(tmp_path / "eigen.npy", disps)
    report = evaluate_depth.main(["--ext_disp_to_eval", str(tmp_path / "eigen.npy"), "--kitti_path", str(kitti),
                                  "--eval_split", str(kitti / "splits" / "eigen_benchmark"),
                                  "--eval_eigen_to_benchmark", "--eval_out_dir", str(tmp_path)])
    assert report["results"][0]["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)


def test_benchmark_split_writes_server_pngs(kitti, tmp_path, monkeypatch):
    images = tmp_path / "bench" / "image"
    images.mkdir(parents=True)
    for index in range(2):
        cv2.imwrite(str(images / f"{index:010d}.png"), np.full((352, 1216, 3), 90 * index, np.uint8))
    test_list = tmp_path / "test_files.txt"
    test_list.write_text("image 0\nimage 1\n")
    monkeypatch.setattr(evaluate_depth, "split_file", lambda split, name: test_list)
    report = evaluate_depth.main(base_args(kitti, "--eval_split", "benchmark", "--benchmark_path",
                                           str(tmp_path / "bench"), "--eval_out_dir", str(tmp_path / "out")))
    pngs = sorted((tmp_path / "out" / "benchmark_predictions").glob("*.png"))
    assert [p.name for p in pngs] == ["0000000000.png", "0000000001.png"] and report["results"] == []
    assert cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED).shape == (352, 1216)


def test_datasets_run_in_reference_order_through_the_registry(kitti, tmp_path, monkeypatch):
    def fake(name):
        def build(path, options):
            gt = np.full((4, 4), 2.0, np.float32)
            protocol = EvalProtocol(name, gt_min=0.0, gt_max=None)
            return [EvalSet(title=f"{name} at {Path(path).name}", loader=None, gt_depths=[gt], protocol=protocol,
                            pred_disps=np.full((1, 4, 4), 0.5, np.float32))]
        return build

    monkeypatch.setitem(evaluation.EVAL_DATASETS, "nyuv2", fake("nyuv2"))
    monkeypatch.setitem(evaluation.EVAL_DATASETS, "make3d", fake("make3d"))
    report = evaluate_depth.main(base_args(kitti, "--nyuv2_path", "/n", "--make3d_path", "/m", "--eval_split",
                                           str(kitti / "splits" / "eigen"), "--eval_out_dir", str(tmp_path)))
    assert [r["name"] for r in report["results"]] == ["eigen", "make3d", "nyuv2"]
    assert report["results"][2]["title"] == "nyuv2 at n"


def test_flag_errors_name_the_fix(kitti, capsys, monkeypatch):
    monkeypatch.delitem(evaluation.EVAL_DATASETS, "cityscapes", raising=False)
    with pytest.raises(SystemExit):
        evaluate_depth.main(["--pretrained_path", "x.pth"])
    assert "give at least one of --kitti_path, --make3d_path, --nyuv2_path, --cityscapes_path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_depth.main(["--pretrained_path", "x.pth", "--cityscapes_path", "/c"])
    assert "--cityscapes_path needs the 'cityscapes' entry of evaluation.EVAL_DATASETS" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="ground truth .*gt_depths.npz not found: run `python export_gt_depth.py"):
        empty = kitti / "splits" / "no_gt"
        empty.mkdir(exist_ok=True)
        (empty / "test_files.txt").write_text(f"{DRIVE} 0 l\n")
        evaluate_depth.main(base_args(kitti, "--eval_split", str(empty)))


def test_a_non_finite_metric_is_refused_with_the_image_that_produced_it():
    gt = [np.full((4, 6), 10.0, np.float32), np.full((4, 6), 10.0, np.float32)]
    gt[1][1, 2] = np.inf
    disps = np.full((2, 4, 6), 0.1, np.float32)
    with pytest.raises(ValueError, match=r"image 1 of the test list: non-finite .*ground truth holds inf or nan"):
        evaluate_predictions(disps, gt, EvalProtocol("open", gt_min=0.0, gt_max=None), median_scaling=False)
    disps[0, 0, 0] = 0.0  # an infinite predicted depth: clamped, so still finite and scored
    evaluate_predictions(disps[:1], gt[:1], "eigen_benchmark", median_scaling=False)
    with pytest.raises(ValueError, match=r"frame_b: non-finite .*prediction holds"):
        nan = np.full((1, 4, 6), np.nan, np.float32)
        evaluate_predictions(nan, gt[:1], "eigen_benchmark", median_scaling=False, names=["frame_b"])


def test_an_unwritable_output_folder_fails_before_any_prediction(kitti, tmp_path, monkeypatch):
    blocked = tmp_path / "file_not_folder"
    blocked.write_text("")
    monkeypatch.setattr(evaluation, "predict_inverse_depths", lambda *a, **k: pytest.fail("predicted first"))
    with pytest.raises(OSError, match=r"file_not_folder.*--eval_out_dir"):
        evaluate_depth.main(base_args(kitti, "--eval_split", str(kitti / "splits" / "eigen"),
                                      "--eval_out_dir", str(blocked / "out")))
