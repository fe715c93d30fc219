"""Self-describing checkpoints: the weights travel with the architecture and depth range.

A weights file (``models/model{epoch}.pth``) is a plain dict::

    {"format": CHECKPOINT_FORMAT, "model_spec": {...ModelSpec fields...},
     "encoder": state_dict, "depth": state_dict, "pose_encoder": ..., "pose": ..., "epoch": int}

so evaluation and inference rebuild the exact network without architecture flags. A resume
checkpoint (``checkpoints/step{step:09d}.pth``) adds the optimiser, scheduler, position (epoch,
batch, step), the run's augmentation seed and every rank's random states.
Everything is loaded with ``torch.load(weights_only=True)``: a checkpoint can never run code.

Every checkpoint written here also carries ``"checksum": {"algorithm": "sha256", "digest": hex}``,
a SHA-256 over the whole payload (tensor bytes, dtypes and shapes, and every plain value, in a
fixed key order; see `payload_checksum`). `load_checkpoint` verifies it, so a file damaged in
place (a bad sector, bytes overwritten by a faulty copy) is reported as corrupt instead of loading
weights of 3.4e38; files without one (older checkpoints, released weights) load as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from networks.sqldepth import SelfQuerySettings
from run_folder import RESUME_DIR
from utils import atomic_output

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "monodepthkit-1"


_SQL_DEFAULTS = SelfQuerySettings()


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
    pose_translation_scaling: str = "none"
    # Trained with PackNet's velocity loss (--velocity_weight > 0): its depth is in metres.
    velocity_supervised: bool = False
    # What the run trains: "depth" (depth and pose), or "autoencoder" (FeatDepth's stage 1: the
    # FeatureNet whose encoder the feature-metric loss reads; it predicts no depth).
    method: str = "depth"
    # Length of the stereo pair's baseline in training units (--stereo_baseline): Monodepth2's
    # 0.1, FeatDepth's 0.015. It sets the metric factor of a stereo-trained model.
    stereo_baseline: float = 0.1
    # (H, W) the pose network's inputs are resized to (--pose_input_size; FeatDepth: 192 x 640),
    # None: the training size.
    pose_input_size: list | None = None
    # Transforms the pairs pose decoder predicts (only the first is used): None gives Monodepth2's
    # 2; FeatDepth's released pose decoders predict 1.
    pose_num_transforms: int | None = None
    # SQLdepth's Self Query Layer (--decoder sql), flat so that `from_options` reads the flags by
    # name; `SelfQuerySettings.from_prefixed` turns them back into the settings.
    sql_patch_size: int = _SQL_DEFAULTS.patch_size
    sql_num_queries: int = _SQL_DEFAULTS.num_queries
    sql_num_bins: int = _SQL_DEFAULTS.num_bins
    sql_model_dim: int = _SQL_DEFAULTS.model_dim
    sql_dim_feedforward: int = _SQL_DEFAULTS.dim_feedforward
    sql_num_features: int = _SQL_DEFAULTS.num_features

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
        A velocity-supervised model (PackNet's velocity loss with the camera's travel in metres)
        predicts metres directly: its factor is 1. Another baseline (``stereo_baseline``,
        FeatDepth's 0.015) scales the factor inversely: 5.4 * 0.1 / 0.015 = 36.
        """
        from datasets.mono_dataset import STEREO_BASELINE_UNITS
        from kitti_utils import STEREO_SCALE_FACTOR

        if self.velocity_supervised:
            return 1.0
        if not self.use_stereo:
            return None
        if self.stereo_baseline == STEREO_BASELINE_UNITS:
            return STEREO_SCALE_FACTOR
        return STEREO_SCALE_FACTOR * STEREO_BASELINE_UNITS / self.stereo_baseline

    @classmethod
    def from_options(cls, opts) -> "ModelSpec":
        values = {f.name: getattr(opts, f.name) for f in dataclasses.fields(cls)
                  if f.name not in ("scales", "velocity_supervised") and hasattr(opts, f.name)}
        return cls(scales=list(range(opts.num_scales)),
                   velocity_supervised=getattr(opts, "velocity_weight", 0.0) > 0, **values)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            logger.warning("checkpoint model_spec has fields this version does not know: %s", unknown)
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHECKSUM_KEY = "checksum"
CHECKSUM_ALGORITHM = "sha256"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format is a zip archive


def _hash_value(digest, value: Any) -> None:
    """Feed ``value`` into ``digest`` unambiguously: a type tag, then its content."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)};".encode())
        # Reinterpreting as bytes works for every dtype (bf16 has no NumPy equivalent).
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)};".encode())
        # Keys of one dict may mix types (optimizer states use int keys); order by type, then text.
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            digest.update(f"K{type(key).__name__}:{key!r};".encode())
            _hash_value(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{type(value).__name__}{len(value)};".encode())
        for item in value:
            _hash_value(digest, item)
    else:  # int, float, bool, str, None, torch.Size entries, ...: their repr round-trips exactly
        digest.update(f"V{type(value).__name__}:{value!r};".encode())


def payload_checksum(payload: dict[str, Any]) -> str:
    """SHA-256 hex digest of a checkpoint payload, its own ``checksum`` entry left out.

    Tensors enter as their dtype, shape and raw bytes; dicts in sorted key order; so the digest
    depends only on the values, not on the order they were inserted or the device they live on.
    """
    digest = hashlib.sha256()
    _hash_value(digest, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with its checksum, atomically (temporary file, fsync, rename).

    Raises:
        OSError: naming ``path`` and the cause (a full disk, a folder that is not writable).
    """
    path = Path(path)
    stamped = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    stamped[CHECKSUM_KEY] = {"algorithm": CHECKSUM_ALGORITHM, "digest": payload_checksum(stamped)}
    with atomic_output(path) as tmp:
        # Through a Python file object, so that a full disk raises OSError(ENOSPC) instead of
        # torch's "unexpected pos" RuntimeError.
        with open(tmp, "wb") as f:
            torch.save(stamped, f)


def _describe_load_failure(path: Path, err: Exception) -> str:
    """Why torch.load refused ``path``, in our words (never torch's "weights_only=False" advice)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as read_error:
        return f"checkpoint {path} cannot be read: {read_error.strerror or read_error}"
    if not head:
        return f"checkpoint {path} is empty (a crash before its data reached the disk): it is corrupt"
    if not head.strip(b"\0"):
        return (f"checkpoint {path} is corrupt: it is filled with zero bytes (a crash before its data "
                "reached the disk, or a damaged copy)")
    if not head.startswith(ZIP_MAGIC):
        return (f"checkpoint {path} is corrupt or not a torch checkpoint: it does not start like one "
                "(torch.save writes a zip archive)")
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if refused or "Weights only load failed" in str(err):
        what = f" ({refused.group(1)})" if refused else ""
        return (f"checkpoint {path} holds Python objects other than tensors and plain values{what}; it "
                "was refused because loading them could run code. Use a file written by this toolkit, "
                "or released Monodepth2/BDEdepth weights")
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "weights_only" in first_line:  # torch's advice to load unsafely is never ours to give
        first_line = type(err).__name__
    return f"checkpoint {path} is unreadable (truncated or corrupt): {first_line}"


def _to_device(value: Any, device: str | torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return type(value)((k, _to_device(v, device)) for k, v in value.items())
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely and verify its checksum when it has one.

    Returns:
        The payload as it was given to `save_checkpoint` (the checksum entry removed).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, zero-filled, damaged (checksum mismatch), not a torch
            file, or holds objects other than tensors and plain values; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Onto the CPU first: the checksum is computed there, and a corrupt file never touches the GPU.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated, foreign or unsafe files
        raise ValueError(_describe_load_failure(path, err)) from err
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} does not hold a dict of weights")
    stored = payload.pop(CHECKSUM_KEY, None)
    if stored is not None:
        if not isinstance(stored, dict) or stored.get("algorithm") != CHECKSUM_ALGORITHM:
            raise ValueError(f"checkpoint {path} has a checksum this version cannot verify ({stored!r})")
        if payload_checksum(payload) != stored.get("digest"):
            raise ValueError(f"checkpoint {path} is corrupt: its contents do not match the checksum written "
                             "with it (damaged on disk or in a copy)")
    if torch.device(map_location) != torch.device("cpu"):
        payload = _to_device(payload, map_location)
    return payload


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


def spec_from_checkpoint(payload: dict, path: str | Path = "checkpoint") -> ModelSpec:
    if "model_spec" not in payload:
        raise ValueError(f"{path} has no model_spec: it was not written by this toolkit "
                         "(released Monodepth2/BDEdepth weights need their loader)")
    return ModelSpec.from_dict(payload["model_spec"])
