"""train.py in-process on the synthetic data: every mode runs, writes its artefacts, and reloads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate_depth
import test_simple
import train
from checkpoints import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_split(root: Path, tmp_path: Path, count: int = 4) -> Path:
    """A split folder holding the first ``count`` training lines (fast epochs)."""
    lines = (root / "splits" / "synthetic" / "train_files.txt").read_text().splitlines()[:count]
    split = tmp_path / "tiny_split"
    split.mkdir(exist_ok=True)
    (split / "train_files.txt").write_text("\n".join(lines) + "\n")
    (split / "val_files.txt").write_text("\n".join(lines) + "\n")
    return split


def train_args(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--data_path", str(root), "--split", str(tiny_split(root, tmp_path)),
            "--eval_split", str(root / "splits" / "synthetic_test"), "--log_dir", str(tmp_path / "runs"),
            "--exp_name", "smoke", "--weights_init", "scratch", "--height", "64", "--width", "192",
            "--batch_size", "2", "--num_epochs", "1", "--num_workers", "0", "--log_frequency", "1",
            "--device", "cpu", "--no-progress_bar", *extra]


def pose_input_channels(payload: dict) -> int:
    return payload["pose_encoder"]["encoder.conv1.weight"].shape[1]


# Each mode's own effect, read off its checkpoint: what it must change beyond "it runs".
MODE_EFFECTS = {
    # Monodepth2: a separate ResNet pose encoder fed (source, target) pairs of 6 channels.
    "mono": lambda payload, clips: pose_input_channels(payload) == 6 and not clips,
    # Stereo only: no pose network at all, and a metric model (5.4) described by its spec.
    "stereo": lambda payload, clips: "pose" not in payload and "pose_encoder" not in payload
    and payload["model_spec"]["use_stereo"],
    # PoseCNN has no separate encoder; the cosine schedule steps every batch.
    "mono_stereo_posecnn": lambda payload, clips: "pose" in payload and "pose_encoder" not in payload,
    # All three frames at once: 9 input channels.
    "all_v1_avg": lambda payload, clips: pose_input_channels(payload) == 9,
    # --clip_grad 1.0 clips every step with that norm.
    "ablations": lambda payload, clips: clips == [1.0, 1.0],
}


@pytest.mark.parametrize("extra", [
    [],
    ["--use_stereo", "--frame_ids", "0", "--num_scales", "1"],
    ["--use_stereo", "--pose_model_type", "posecnn", "--lr_sche_type", "cos", "--optimizer", "sgd"],
    ["--pose_model_input", "all", "--v1_multiscale", "--avg_reprojection", "--jitter_per_frame"],
    ["--no-automask", "--no-ssim", "--optimizer", "adam", "--clip_grad", "1.0"],
], ids=list(MODE_EFFECTS))
def test_training_modes_run_and_write_artifacts(synthetic_kitti, tmp_path, extra, request, monkeypatch):
    clips = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        clips.append(max_norm)
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    metrics = train.main(train_args(synthetic_kitti, tmp_path, *extra))
    run = tmp_path / "runs" / "smoke"
    assert set(metrics) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"}
    assert all(np.isfinite(v) for v in metrics.values())
    opts = json.loads((run / "opt.json").read_text())
    assert opts["frame_ids"] == ([0] if "--frame_ids" in extra else [0, -1, 1])
    payload = load_checkpoint(run / "models" / "model0.pth")
    assert payload["model_spec"]["height"] == 64 and payload["model_spec"]["width"] == 192
    assert MODE_EFFECTS[request.node.callspec.id](payload, clips)
    resume = load_checkpoint(run / "checkpoints" / "step000000002.pth")
    assert (resume["epoch"], resume["batch_idx"], resume["step"]) == (1, 0, 2)
    assert set(resume["rng_states"][0]) >= {"python", "numpy", "torch"}
    assert "loss: " in (run / "logger.log").read_text()
    assert list((run / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert not list(run.rglob("*.tmp*")), "a temporary checkpoint file was left behind"


def test_checkpoint_alone_is_enough_to_evaluate_and_predict(synthetic_kitti, tmp_path):
    train.main(train_args(synthetic_kitti, tmp_path))
    checkpoint = tmp_path / "runs" / "smoke" / "models" / "model0.pth"
    report = evaluate_depth.main(["--pretrained_path", str(checkpoint), "--kitti_path", str(synthetic_kitti),
                                  "--eval_split", str(synthetic_kitti / "splits" / "synthetic_test"),
                                  "--num_workers", "0", "--device", "cpu", "--post_process",
                                  "--output_json", str(tmp_path / "metrics.json")])
    assert json.loads((tmp_path / "metrics.json").read_text())["results"] == report["results"]
    assert [r["protocol"] for r in report["results"]] == ["eigen"]
    assert all(np.isfinite(v) for v in report["results"][0]["metrics"].values())
    image = next((synthetic_kitti / "2000_01_01").glob("*_drive_0003_sync")) / "image_02" / "data" / "0000000010.png"
    written = test_simple.main(["--image_path", str(image), "--pretrained_path", str(checkpoint),
                                "--output_dir", str(tmp_path / "pred"), "--save_npy", "--device", "cpu"])
    names = sorted(p.name for p in written)
    assert names == ["0000000010_disp.jpeg", "0000000010_disp.npy"]
    disp = np.load(tmp_path / "pred" / "0000000010_disp.npy")
    assert disp.shape == (1, 1, 64, 192) and np.all((disp >= 0.01) & (disp <= 10.0))


def test_existing_run_is_refused_without_resume(synthetic_kitti, tmp_path):
    args = train_args(synthetic_kitti, tmp_path, "--no_eval")
    train.main(args)
    with pytest.raises(FileExistsError, match="pass --resume to continue it, --overwrite to delete it and start afresh"):
        train.main(args)
    train.main(args + ["--overwrite"])


def test_resume_continues_at_the_saved_step(synthetic_kitti, tmp_path):
    args = train_args(synthetic_kitti, tmp_path, "--no_eval")
    train.main(args)
    train.main([a if a != "1" or args[i - 1] != "--num_epochs" else "2" for i, a in enumerate(args)]
               + ["--resume"])
    resume = load_checkpoint(tmp_path / "runs" / "smoke" / "checkpoints" / "step000000004.pth")
    assert (resume["epoch"], resume["step"]) == (2, 4)
    assert (tmp_path / "runs" / "smoke" / "models" / "model1.pth").is_file()


def test_missing_ground_truth_names_the_fix(synthetic_kitti, tmp_path):
    split = tmp_path / "no_gt"
    split.mkdir()
    (split / "test_files.txt").write_text((synthetic_kitti / "splits" / "synthetic_test" / "test_files.txt").read_text())
    args = train_args(synthetic_kitti, tmp_path)
    args[args.index("--eval_split") + 1] = str(split)
    with pytest.raises(FileNotFoundError, match="run `python export_gt_depth.py"):
        train.main(args)


def test_non_finite_loss_is_reported_with_its_terms(synthetic_kitti, tmp_path, monkeypatch):
    import losses

    nan_term = losses.LossTerm(lambda i, o, s, n: (torch.tensor(float("nan")), {}), lambda opts: 1e-3)
    monkeypatch.setitem(losses.LOSS_TERMS, "smoothness", nan_term)
    with pytest.raises(FloatingPointError, match=r"non-finite values at step 1: loss/smoothness, loss\b"):
        train.main(train_args(synthetic_kitti, tmp_path, "--no_eval"))


def test_training_starts_from_a_released_monodepth2_folder(synthetic_kitti, tmp_path):
    from options import parse_train_options
    from tests.unit.test_released_weights import write_md2_folder
    from trainer import Trainer

    folder = write_md2_folder(tmp_path / "mono_640x192", use_stereo=False)
    trainer = Trainer(parse_train_options(train_args(synthetic_kitti, tmp_path, "--no_eval",
                                                     "--pretrained_path", str(folder))))
    trainer.close()
    released = {name: torch.load(folder / f"{name}.pth", weights_only=True) for name in ("encoder", "depth", "pose")}
    modules = trainer.model.checkpoint_modules()
    assert torch.equal(modules["encoder"].state_dict()["encoder.layer4.1.conv2.weight"],
                       released["encoder"]["encoder.layer4.1.conv2.weight"])
    assert torch.equal(modules["depth"].state_dict()["convs.dispconv_0.conv.weight"],
                       released["depth"]["decoder.10.conv.weight"])
    assert torch.equal(modules["pose"].state_dict()["pose2.weight"], released["pose"]["net.3.weight"])


def test_fine_tuning_from_released_weights_fetches_no_imagenet_weights(synthetic_kitti, tmp_path, monkeypatch, caplog):
    import logging

    import networks.resnet_encoder
    from options import parse_train_options
    from tests.unit.test_released_weights import write_md2_folder
    from trainer import Trainer

    def offline(num_layers):
        raise RuntimeError(f"ImageNet ResNet-{num_layers} download attempted")

    monkeypatch.setattr(networks.resnet_encoder, "load_imagenet_state_dict", offline)
    caplog.set_level(logging.INFO)
    folder = write_md2_folder(tmp_path / "mono_640x192", use_stereo=False)
    trainer = Trainer(parse_train_options(train_args(synthetic_kitti, tmp_path, "--no_eval", "--weights_init",
                                                     "pretrained", "--load_weights_folder", str(folder))))
    trainer.close()
    loaded = f"Initial weights: encoder, depth, pose_encoder, pose from the Monodepth2 model folder {folder}"
    assert loaded in caplog.text
    # Monodepth2's --models_to_load: the pose network is not taken from the folder (and starts from scratch).
    trainer = Trainer(parse_train_options(train_args(synthetic_kitti, tmp_path, "--no_eval", "--overwrite",
                                                     "--pretrained_path", str(folder), "--models_to_load", "encoder",
                                                     "depth")))
    trainer.close()
    released = torch.load(folder / "pose.pth", weights_only=True)["net.3.weight"]
    assert not torch.equal(trainer.model.checkpoint_modules()["pose"].state_dict()["pose2.weight"], released)
    # ...and with ImageNet weights for what it does not load, that network alone asks for them.
    with pytest.raises(RuntimeError, match="ImageNet ResNet-18 download attempted"):
        Trainer(parse_train_options(train_args(synthetic_kitti, tmp_path, "--no_eval", "--overwrite", "--weights_init",
                                               "pretrained", "--pretrained_path", str(folder), "--models_to_load",
                                               "encoder", "depth")))


def test_released_weights_of_another_architecture_name_the_flags_that_fit(synthetic_kitti, tmp_path):
    from options import parse_train_options
    from tests.unit.test_released_weights import write_md2_folder
    from trainer import Trainer

    folder = write_md2_folder(tmp_path / "mono_640x192", use_stereo=False)
    with pytest.raises(ValueError, match=r"mono_640x192 holds a --num_layers 18 --num_scales 4 network, this run asks "
                                         r"for --num_layers 34 --num_scales 1: pass --num_layers 18 --num_scales 4"):
        Trainer(parse_train_options(train_args(synthetic_kitti, tmp_path, "--no_eval", "--num_layers", "34",
                                               "--num_scales", "1", "--load_weights_folder", str(folder))))
    with pytest.raises(ValueError, match=r"has no pose_encoder, pose weights: pass --models_to_load encoder depth"):
        for name in ("pose.pth", "pose_encoder.pth"):
            (folder / name).unlink()
        Trainer(parse_train_options(train_args(synthetic_kitti, tmp_path, "--no_eval", "--load_weights_folder",
                                               str(folder))))
