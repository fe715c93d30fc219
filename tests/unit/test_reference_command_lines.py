"""Monodepth2's and BDEdepth's own command lines, run as their READMEs write them (issue 15's journeys).

Released models come from a local HTTP server (`model_zoo` pointed at it); the weights are random
but in the released layouts, so every path the commands take is the one real files take.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import evaluate_depth
import evaluate_pose
import export_model
import model_zoo
import test_simple
import test_video
from ground_truth import save_gt_depths
from networks import build_depth_network
from options import build_train_parser, parse_train_options
from tests.format_writers import write_odometry
from tests.unit.test_model_zoo import write_md2_depth_folder, zip_folder
from tests.unit.test_released_weights import write_md2_folder

DRIVE = "2011_09_26/2011_09_26_drive_0002_sync"


@pytest.fixture()
def released_mono_640x192(http_server, tmp_path, monkeypatch):
    """``mono_640x192`` served locally, its cache in tmp_path/cache (``$MONODEPTHKIT_CACHE_DIR``)."""
    base, www = http_server
    folder = write_md2_depth_folder(tmp_path / "release" / "mono_640x192")
    data = zip_folder(folder, www / "mono_640x192.zip")
    monkeypatch.setitem(model_zoo.ZOO, "mono_640x192", dataclasses.replace(
        model_zoo.ZOO["mono_640x192"], url=f"{base}mono_640x192.zip", md5=hashlib.md5(data).hexdigest()))
    monkeypatch.setenv(model_zoo.CACHE_ENV, str(tmp_path / "cache"))
    return folder


def write_image(path: Path, height: int = 96, width: int = 320) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def bdedepth_hrnet_file(tmp_path_factory) -> Path:
    """A BDEdepth HRNet-18 file as released (encoder, depth, height, width, use_stereo)."""
    torch.manual_seed(0)
    net = build_depth_network("hrnet", 18, "bdedepth", scales=(0,))
    path = tmp_path_factory.mktemp("bdedepth") / "final_hrnet18_640x192.pth"
    torch.save({"encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict(), "height": 192,
                "width": 640, "use_stereo": False}, path)
    return path


# ---- Monodepth2 ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_monodepth2s_first_command_downloads_the_released_model(released_mono_640x192, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    image = write_image(tmp_path / "img.png")
    written = test_simple.main(["--image_path", str(image), "--model_name", "mono_640x192"])
    assert written == [tmp_path / "img_disp.jpeg"]
    cached = tmp_path / "cache" / "mono_640x192.pth"
    assert f"Loaded the checkpoint {cached} (released model mono_640x192): resnet18 + monodepth2 decoder, 640x192, " \
           "monocular, depth 0.1-100" in caplog.text
    # Same prediction as the folder the archive was made of.
    assert np.array_equal(cv2.imread(str(written[0])), cv2.imread(str(test_simple.main(
        ["--image_path", str(image), "--pretrained_path", str(released_mono_640x192), "--output_dir",
         str(tmp_path / "direct")])[0])))


@pytest.mark.slow
def test_the_forks_spelling_takes_a_folder_or_a_released_name(released_mono_640x192, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = write_image(tmp_path / "IMG.png")
    # A released name in a folder that does not exist: the zoo's model.
    assert test_simple.main(["--image", "IMG.png", "--model", "pretrained/mono_640x192"]) == [
        Path("IMG_disp.jpeg")]
    assert (tmp_path / "cache" / "mono_640x192.pth").is_file()
    # The folder itself.
    write_md2_depth_folder(tmp_path / "pretrained" / "mono_640x192")
    assert test_simple.main(["--image", str(image), "--model", "pretrained/mono_640x192", "--output_dir", "out"]) == [
        Path("out/IMG_disp.jpeg")]


def test_without_weights_the_error_names_the_released_models(tmp_path, capsys):
    with pytest.raises(SystemExit):
        test_simple.main(["--image_path", str(write_image(tmp_path / "img.png"))])
    error = capsys.readouterr().err
    assert "give the weights: --pretrained_path PATH (alias --load_weights_folder) or --model_name NAME" in error
    assert "monodepth2: mono_640x192, stereo_640x192, mono+stereo_640x192" in error
    assert "bdedepth: kitti_hrnet18_640x192" in error


def test_a_missing_file_that_is_no_released_name_suggests_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--pretrained_path kitti_hrnet18_512x192.pth does not exist and "
                                                r"is not a released model's name \(did you mean "
                                                r"kitti_hrnet18_640x192\?\)"):
        test_simple.main(["--image_path", str(write_image(tmp_path / "img.png")), "--pretrained_path",
                          "kitti_hrnet18_512x192.pth"])


def test_load_weights_folder_works_in_every_script():
    argv = ["--load_weights_folder", "models/weights_19"]
    parsers = {"test_simple": test_simple.build_parser(), "test_video": test_video.build_parser(),
               "evaluate_depth": evaluate_depth.build_parser(), "evaluate_pose": evaluate_pose.build_parser(),
               "export_model": export_model.build_parser(), "train": build_train_parser()}
    required = {"test_simple": ["--image_path", "x"], "test_video": ["--image_path", "x"],
                "evaluate_pose": ["--data_path", "x"]}
    for script, parser in parsers.items():
        opts = parser.parse_args(argv + required.get(script, []))
        assert opts.pretrained_path == "models/weights_19", script


@pytest.mark.slow
def test_evaluate_pose_reads_a_monodepth2_folder(tmp_path):
    (tmp_path / "models").mkdir()
    folder = write_md2_folder(tmp_path / "models" / "weights_19", use_stereo=False)
    write_odometry(tmp_path / "odom", 9, num_frames=6)
    split = tmp_path / "odom_split"
    split.mkdir()
    (split / "test_files_09.txt").write_text("".join(f"9 {frame} l\n" for frame in range(5)))
    report = evaluate_pose.main(["--load_weights_folder", str(folder), "--data_path", str(tmp_path / "odom"),
                                 "--eval_split", "odom_9", "--odom_split", str(split), "--num_workers", "0",
                                 "--device", "cpu"])
    assert report["checkpoint"] == str(folder)
    # five pairs, five snippets: the last, shorter one is kept, as in Monodepth2
    assert report["sequences"]["09"]["num_snippets"] == 5 and np.isfinite(report["sequences"]["09"]["ate_mean"])
    assert (folder / "pose_metrics.json").is_file() and (folder / "trajectory_09.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--predictive_mask"], "--predictive_mask (Monodepth2's explainability mask, after Zhou et al.) is not "
                            "implemented: Monodepth2 found auto-masking better"),
    (["--pose_model_type", "shared"], "--pose_model_type shared (Monodepth2's pose decoder on the depth encoder's "
                                      "features) is not implemented"),
    (["--data_path_pre", "prepared"], "--data_path_pre is BDEdepth's prepared Cityscapes root, and --dataset is kitti"),
])
def test_monodepth2_flags_without_a_counterpart_are_refused_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_train_options(argv)
    assert message in capsys.readouterr().err


# ---- BDEdepth -----------------------------------------------------------------------------------

@pytest.mark.slow  # HRNet-W18 at 640x192 on the CPU
def test_bdedepths_prediction_command(bdedepth_hrnet_file, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.chdir(bdedepth_hrnet_file.parent)
    write_image(Path("folder/test_image.jpg"))
    written = test_simple.main("--image_path folder/test_image.jpg --pretrained_path ./final_hrnet18_640x192.pth "
                               "--backbone hrnet --height 192 --width 640 --save_npy".split())
    assert written == [Path("folder/test_image_disp.jpeg"), Path("folder/test_image_disp.npy")]
    assert np.load(written[1]).shape == (1, 1, 192, 640)
    assert "Loaded the BDEdepth file final_hrnet18_640x192.pth: hrnet18 + bdedepth decoder, 640x192" in caplog.text
    with pytest.raises(ValueError, match=r"--num_layers 34 --width 1024 disagrees with final_hrnet18_640x192.pth, "
                                         r"which records --num_layers 18 --width 640: drop these flags"):
        test_simple.main("--image_path folder/test_image.jpg --pretrained_path ./final_hrnet18_640x192.pth "
                         "--backbone hrnet --width 1024 --num_layers 34".split())
    video = test_video.main("--image_path folder --pretrained_path ./final_hrnet18_640x192.pth --backbone hrnet "
                            "--height 192 --width 640 --ext jpg --no_mp4".split())
    assert video == [Path("folder/folder_depth.gif")]


@pytest.mark.slow  # HRNet-W18 at 640x192 on the CPU
def test_bdedepths_evaluation_command(bdedepth_hrnet_file, tmp_path, monkeypatch):
    """BDEdepth's evaluate.sh (with its checkpoint's real name), on a three-frame eigen split."""
    import split_lists

    kitti = tmp_path / "kitti_raw_data"
    for frame in range(3):
        write_image(kitti / DRIVE / "image_02" / "data" / f"{frame:010d}.png", 50, 160)
    gt = [np.random.default_rng(frame).uniform(1.0, 70.0, (50, 160)).astype(np.float32) for frame in range(3)]
    for split in ("eigen", "eigen_benchmark"):
        (tmp_path / "splits" / split).mkdir(parents=True)
        (tmp_path / "splits" / split / "test_files.txt").write_text("".join(f"{DRIVE} {f:010d} l\n" for f in range(3)))
        save_gt_depths(tmp_path / "splits" / split / "gt_depths.npz", gt)
    monkeypatch.setattr(split_lists, "SPLITS_DIR", tmp_path / "splits")
    monkeypatch.chdir(bdedepth_hrnet_file.parent)
    report = evaluate_depth.main(f"--pretrained_path ./final_hrnet18_640x192.pth --backbone hrnet --num_layers 18 "
                                 f"--batch_size 12 --width 640 --height 192 --kitti_path {kitti} --num_workers 0 "
                                 f"--eval_out_dir {tmp_path / 'out'}".split())
    assert [result["name"] for result in report["results"]] == ["eigen", "eigen_benchmark"]
    assert report["model_spec"]["backbone"] == "hrnet"


def test_bdedepths_training_recipes_pick_its_decoder(caplog):
    caplog.set_level(logging.INFO)
    cityscapes = parse_train_options(
        "--data_path /home/datasets/cityscapes --data_path_pre /home/datasets/cityscapes_preprocessed "
        "--dataset cityscapes --backbone resnet --width 512 --height 192 --num_scales 1 --batch_size 12 "
        "--num_epochs 20 --decay_step 15 --log_frequency 600 --save_frequency 600 --resume --use_local_crop "
        "--use_patch_reshuffle --warm_up 0".split())
    assert cityscapes.decoder == "bdedepth"
    assert "--backbone resnet with BDEdepth's --use_local_crop --use_patch_reshuffle --data_path_pre --warm_up and " \
           "no --decoder: BDEdepth's decoder (--decoder bdedepth), as its recipe trains" in caplog.text
    # BDEdepth's --data_path is the raw root it tests on; --data_path_pre the triplets it trains on.
    assert (cityscapes.data_path, cityscapes.eval_data_path) == ("/home/datasets/cityscapes_preprocessed",
                                                                 "/home/datasets/cityscapes")
    assert not hasattr(cityscapes, "data_path_pre") and not hasattr(cityscapes, "warm_up")
    kitti = parse_train_options("--dataset kitti --backbone hrnet --num_layers 18 --num_scales 1 --lr_sche_type step "
                                "--use_local_crop --use_patch_reshuffle".split())
    assert kitti.decoder == "bdedepth"
    assert parse_train_options([]).decoder == "monodepth2"
    assert parse_train_options(["--use_local_crop", "--decoder", "monodepth2"]).decoder == "monodepth2"


def test_warm_up_is_accepted_and_said_to_be_ignored(caplog):
    parse_train_options(["--warm_up", "0.1"])
    assert "--warm_up 0.1 is ignored: BDEdepth defines it but never reads it" in caplog.text
