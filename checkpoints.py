"""Self-describing checkpoints: the weights travel with the architecture and depth range.

A weights file (``models/model{epoch}.pth``) is a plain dict::

    {"format": CHECKPOINT_FORMAT, "model_spec": {...ModelSpec fields...},
     "encoder": state_dict, "depth": state_dict, "pose_encoder": ..., "pose": ..., "epoch": int}

so evaluation and inference rebuild the exact network without architecture flags. A resume
checkpoint (``checkpoints/step{step:09d}.pth``) adds the optimiser, scheduler, position (epoch,
batch, step), the run's augmentation seed and every rank's random states.
Everything is loaded with ``torch.load(weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils import atomic_output

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "monodepthkit-1"
MODEL_KEYS = ("encoder", "depth", "pose_encoder", "pose")


@dataclass
class ModelSpec:
    """Everything needed to rebuild the depth network and interpret its output."""

    backbone: str = "resnet"
    num_layers: int = 18
    decoder: str = "monodepth2"
    height: int = 192
    width: int = 640
    min_depth: float = 0.1
    max_depth: float = 100.0
    scales: list = field(default_factory=lambda: [0, 1, 2, 3])
    use_stereo: bool = False
    frame_ids: list = field(default_factory=lambda: [0, -1, 1])
    pose_model_type: str = "separate_resnet"
    pose_model_input: str = "pairs"
    dataset: str = "kitti"
    pose_num_layers: int | None = None

    @property
    def pose_layers(self) -> int:
        """Depth of the pose ResNet: ``--pose_num_layers``, or the depth network's by default."""
        return self.pose_num_layers or self.num_layers

    @property
    def metric_depth_scale(self) -> float | None:
        """The factor that makes predictions metric, or None when they are up to scale.

        A model that saw stereo pairs in training (stereo or mono+stereo) learned the scale of
        its 0.1-unit baseline: its depth times 5.4 is metres on KITTI, and it is evaluated so,
        without median scaling (Monodepth2's ``--eval_stereo``). A monocular model is median-
        scaled. Training validation, evaluate_depth.py and test_simple.py all ask this.
        """
        from kitti_utils import STEREO_SCALE_FACTOR

        return STEREO_SCALE_FACTOR if self.use_stereo else None

    @classmethod
    def from_options(cls, opts) -> "ModelSpec":
        values = {f.name: getattr(opts, f.name) for f in dataclasses.fields(cls)
                  if f.name != "scales" and hasattr(opts, f.name)}
        return cls(scales=list(range(opts.num_scales)), **values)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            logger.warning("checkpoint model_spec has fields this version does not know: %s", unknown)
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temporary file, fsync, rename)."""
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} is unreadable (truncated, corrupt, or not a "
                         f"weights-only torch file): {err}") from err
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} does not hold a dict of weights")
    return payload


RESUME_DIR = "checkpoints"
RESUME_KEYS = ("optimizer", "scheduler", "epoch", "batch_idx", "step")


def resume_checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / RESUME_DIR / f"step{step:09d}.pth"


def resume_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's resume checkpoints, newest (highest step) first."""
    folder = Path(run_dir) / RESUME_DIR
    return sorted(folder.glob("step*.pth"), reverse=True) if folder.is_dir() else []


def load_newest_resume_checkpoint(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest resume checkpoint that loads and holds a full training state.

    A truncated or corrupt file (a crash during a copy, a full disk, a bad sector) is named in
    a warning and skipped, falling back to the previous one. Returns None when the run has no
    checkpoint; raises when it has some but none is readable.
    """
    candidates = resume_checkpoints(run_dir)
    problems = []
    for path in candidates:
        try:
            payload = load_checkpoint(path)
            missing = [key for key in RESUME_KEYS if key not in payload]
            if missing:
                raise ValueError(f"checkpoint {path} lacks {missing}: not a resume checkpoint")
        except ValueError as err:
            logger.warning("Skipping unusable checkpoint: %s", err)
            problems.append(str(err))
            continue
        if problems:
            logger.warning("Resuming from the previous good checkpoint %s", path)
        return path, payload
    if problems:
        raise ValueError(f"no readable resume checkpoint in {Path(run_dir) / RESUME_DIR}: "
                         + "; ".join(problems) + ". Start afresh with --overwrite")
    return None


def prune_resume_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest resume checkpoints."""
    for stale in resume_checkpoints(run_dir)[keep_last:]:
        stale.unlink(missing_ok=True)


def model_state_dicts(models: dict[str, torch.nn.Module]) -> dict[str, dict]:
    """The networks' state dicts under the checkpoint's names, unwrapped from DDP."""
    state = {}
    for name, model in models.items():
        module = getattr(model, "module", model)
        state[name] = module.state_dict()
    return state


def spec_from_checkpoint(payload: dict, path: str | Path = "checkpoint") -> ModelSpec:
    if "model_spec" not in payload:
        raise ValueError(f"{path} has no model_spec: it was not written by this toolkit "
                         "(released Monodepth2/BDEdepth weights need their loader)")
    return ModelSpec.from_dict(payload["model_spec"])
