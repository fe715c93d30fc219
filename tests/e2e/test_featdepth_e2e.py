"""FeatDepth's two stages through train.py on the synthetic drives: the auto-encoder learns to rebuild frames
(and resumes exactly where it stopped), then depth trains with its frozen encoder's feature-metric loss and FeatDepth's losses (at 64 x 96)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import train
from checkpoints import ModelSpec, load_checkpoint
from datasets.kitti_dataset import KITTIRAWDataset
from model import AutoencoderTraining
from options import parse_train_options
from tests.e2e.test_distributed_resume import split_folder  # its first 12 training lines: 6 steps an epoch
from utils import seed_everything

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEED = 11


def common_args(root: Path, tmp_path: Path, exp_name: str, height: int, width: int) -> list[str]:
    return ["--data_path", str(root), "--split", str(split_folder(root, tmp_path)), "--log_dir",
            str(tmp_path / "runs"), "--exp_name", exp_name, "--weights_init", "scratch", "--height", str(height),
            "--width", str(width), "--batch_size", "2", "--num_workers", "0", "--device", "cpu",
            "--no-progress_bar", "--seed", str(SEED), "--log_frequency", "4", "--optimizer", "adam"]


def reconstruction_error(model: AutoencoderTraining, root: Path, split: Path) -> float:
    """Stage 1's reconstruction loss on the training frames (batch statistics, no gradient)."""
    lines = (split / "train_files.txt").read_text().splitlines()
    dataset = KITTIRAWDataset(root, lines, model.spec.height, model.spec.width, [0], 1, is_train=False)
    frames = torch.stack([dataset[i][("color_uint8", 0, 0)] for i in range(len(dataset))])
    image = frames.float() / 255
    model.train()
    with torch.no_grad():
        _, reconstructions = model.networks["feature_net"](image)
        from featdepth_losses import reconstruction_loss

        return float(reconstruction_loss(list(reconstructions.values()), image))


@pytest.mark.heavy
@pytest.mark.slow
def test_featdepth_stage1_learns_and_resumes_then_stage2_trains_with_the_frozen_encoder(synthetic_kitti, tmp_path):
    stage1 = common_args(synthetic_kitti, tmp_path, "autoencoder", 96, 128) + [
        "--method", "autoencoder", "--frame_ids", "0", "--no-eval", "--learning_rate", "3e-4", "--warmup_steps",
        "4", "--clip_grad", "35", "--decay_step", "10"]
    split = split_folder(synthetic_kitti, tmp_path)
    seed_everything(SEED)  # the Trainer seeds the same way before building its networks
    untrained = AutoencoderTraining.from_options(parse_train_options(stage1 + ["--num_epochs", "1"]))
    before = reconstruction_error(untrained, synthetic_kitti, split)

    train.main(stage1 + ["--num_epochs", "1"])
    train.main(stage1 + ["--num_epochs", "2", "--resume"])  # continues from the end of epoch 0
    run = tmp_path / "runs" / "autoencoder"
    errors = []
    for epoch in (0, 1):
        payload = load_checkpoint(run / "models" / f"model{epoch}.pth")
        assert set(payload) >= {"model_spec", "feature_net"} and payload["model_spec"]["method"] == "autoencoder"
        model = AutoencoderTraining(ModelSpec.from_dict(payload["model_spec"]))
        model.load_state_dicts(payload, "stage 1")
        errors.append(reconstruction_error(model, synthetic_kitti, split))
    assert "Resumed from" in (run / "logger.log").read_text()
    assert load_checkpoint(run / "models" / "model1.pth")["epoch"] == 1
    # The reconstruction error on the training frames falls epoch after epoch (resumed in between).
    assert errors[1] < errors[0] < before and errors[1] < 0.95 * before, (before, errors)

    stage1_weights = run / "models" / "model1.pth"
    stage2 = common_args(synthetic_kitti, tmp_path, "depth", 64, 96) + [
        "--eval_split", str(synthetic_kitti / "splits" / "synthetic_test"), "--num_epochs", "1",
        "--feature_metric_weight", "1e-3", "--feature_net_path", str(stage1_weights),
        # FeatDepth's losses, mono+stereo at its baseline and resized pose inputs, on a ResNet-18 Monodepth2
        # network (its ResNet-50 decoder is pinned by the unit tests; here it tripled the test's time)
        "--loss_preset", "featdepth", "--use_stereo", "--no-automask", "--stereo_baseline", "0.015",
        "--pose_input_size", "32", "64"]
    metrics = train.main(stage2)
    assert metrics and all(torch.isfinite(torch.tensor(value)) for value in metrics.values())
    depth_payload = load_checkpoint(tmp_path / "runs" / "depth" / "models" / "model0.pth")
    spec = ModelSpec.from_dict(depth_payload["model_spec"])
    assert spec.pose_input_size == [32, 64] and spec.use_stereo
    assert spec.metric_depth_scale == pytest.approx(36.0)  # what the evaluation above scaled by
    encoder = {k[len("encoder."):]: v for k, v in load_checkpoint(stage1_weights)["feature_net"].items()
               if k.startswith("encoder.")}
    frozen = depth_payload["feature_extractor"]
    # Frozen through the Trainer: every weight and batch-norm statistic is stage 1's, to the bit.
    assert frozen.keys() == encoder.keys() and all(torch.equal(frozen[k], encoder[k]) for k in encoder)
