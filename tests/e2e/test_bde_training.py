"""train.py with BDEdepth's two augmentations, in-process on the synthetic data: every branch's loss
terms are computed, finite and weighted as the reference combines them, and the run checkpoints."""

from __future__ import annotations

import math

import pytest

import train
import model as model_module
from checkpoints import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_training_with_both_augmentations(synthetic_kitti, tmp_path, monkeypatch):
    lines = (synthetic_kitti / "splits" / "synthetic" / "train_files.txt").read_text().splitlines()[:4]
    split = tmp_path / "tiny_split"
    split.mkdir()
    for name in ("train_files.txt", "val_files.txt"):
        (split / name).write_text("\n".join(lines) + "\n")

    recorded = []
    compute_losses = model_module.SelfSupervisedDepth.losses

    def recording(self, inputs, outputs):
        losses = compute_losses(self, inputs, outputs)
        recorded.append({name: float(value.detach()) for name, value in losses.items()})
        return losses

    monkeypatch.setattr(model_module.SelfSupervisedDepth, "losses", recording)
    train.main(["--data_path", str(synthetic_kitti), "--split", str(split), "--log_dir", str(tmp_path / "runs"),
                "--exp_name", "bde", "--weights_init", "scratch", "--height", "64", "--width", "192",
                "--batch_size", "2", "--num_epochs", "1", "--num_workers", "0", "--num_scales", "2",
                "--device", "cpu", "--no-progress_bar", "--no_eval", "--use_local_crop", "--use_patch_reshuffle",
                "--val_batches", "0"])  # the two training steps only (tests/unit/test_first_run.py covers validation)

    assert len(recorded) == 2
    terms = ["photometric", "smoothness", "photometric_local", "smoothness_local", "photometric_reshuffle",
             "smoothness_reshuffle", "consistency_local", "consistency_reshuffle"]
    for losses in recorded:
        assert set(losses) == {f"loss/{t}" for t in terms} | {"loss"}
        assert all(math.isfinite(v) for v in losses.values())
        base = sum(losses[f"loss/{p}"] + 1e-3 * losses[f"loss/{s}"] for p, s in
                   (("photometric", "smoothness"), ("photometric_local", "smoothness_local"),
                    ("photometric_reshuffle", "smoothness_reshuffle"))) / 3
        consistency = losses["loss/consistency_local"] + losses["loss/consistency_reshuffle"]
        assert losses["loss"] == pytest.approx(base + 0.07 * consistency, rel=1e-5)
        assert consistency > 0
    payload = load_checkpoint(tmp_path / "runs" / "bde" / "models" / "model0.pth")
    assert payload["model_spec"]["width"] == 192
