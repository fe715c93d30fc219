"""The run folder ``<log_dir>/<exp_name>``: where it may be, when it may be reused, and what --overwrite deletes.

Intended call order in the trainer (rank 0 only; broadcast the verdict to the other ranks):

1. ``run_dir = check_run_folder(opts.log_dir, opts.exp_name, opts.resume, opts.overwrite)``
   first, before anything is built: refuses names outside --log_dir and an existing run without
   --resume/--overwrite. It touches nothing.
2. With --resume: ``check_resume_options(run_dir, vars(opts), opts.force_resume)`` refuses (or,
   when forced, returns for a warning) the options whose change would alter the run's arithmetic.
3. Every other check that can be made before training: data and split, eval split and ground
   truth, --pretrained_path, frame cache, networks built (ImageNet weights found), ...
4. Only then ``claim_run_folder(run_dir, opts.overwrite)``: with --overwrite it deletes the
   previous run's own artefacts (`RUN_ARTEFACTS`, nothing else, never outside ``run_dir``),
   creates the folder and proves it writable. Then write ``opt.json`` and ``config.yaml`` and open
   ``logger.log``.
5. ``remove_stale_temporaries(run_dir)`` before loading the newest resume checkpoint: the
   hidden temporaries of writes killed midway (up to a whole checkpoint each) are removed.

So a failing configuration with --overwrite leaves the previous run byte for byte intact.
Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping


RESUME_DIR = "checkpoints"  # as checkpoints.RESUME_DIR (not imported: that module needs torch)
WEIGHTS_DIR = "models"
OPTIONS_FILE = "opt.json"
CONFIG_FILE = "config.yaml"  # the run's options as a --config file (config_files.write_config_yaml)
# What a run writes into its folder; --overwrite deletes these and nothing else.
RUN_ARTEFACTS = (RESUME_DIR, WEIGHTS_DIR, "tensorboard", "logger.log", OPTIONS_FILE, CONFIG_FILE)
# Folders that hold a run's saved state: a run exists when one of them holds a real file.
STATE_DIRS = (RESUME_DIR, WEIGHTS_DIR)

# Options whose change alters what a resumed run computes (its data, networks, losses,
# optimiser or schedule). Not in this list: paths (data may move), logging and checkpoint
# frequencies, progress bars, worker counts, evaluation settings (they do not touch the
# weights), --device and the speed switches that keep the arithmetic (channels_last, fused
# optimiser, compile, frame cache: bit-identical frames), and --weights_init/--pretrained_path
# (a resumed run starts from its checkpoint).
ARITHMETIC_OPTIONS = (
    # data
    "dataset", "split", "height", "width", "frame_ids", "use_stereo", "img_ext", "color_jitter",
    "jitter_per_frame", "flip", "intrinsics", "stereo_baseline", "odom_camera", "color_jitter_probability",
    "color_jitter_hue", "flip_mode",
    # the method (depth, or FeatDepth's auto-encoder stage)
    "method",
    # networks
    "backbone", "num_layers", "pose_num_layers", "decoder", "pose_model_type", "pose_model_input", "num_scales",
    "min_depth", "max_depth", "sync_bn", "mixed_precision", "pose_input_size",
    # losses
    "disparity_smoothness", "ssim", "automask", "avg_reprojection", "v1_multiscale",
    "use_local_crop", "use_patch_reshuffle", "resize_ratio", "split_ratio", "local_crop_geometry",
    "consistency_weight", "consistency_stop_grad", "loss_preset", "feature_metric_weight", "feature_net_joint",
    # optimisation and schedule
    "optimizer", "learning_rate", "pose_lr_factor", "weight_decay", "beta1", "beta2", "momentum", "lr_sche_type",
    "decay_step", "decay_rate", "eta_min", "batch_size", "clip_grad", "seed", "warmup_steps", "warmup_ratio",
)
# The cosine schedule spans all epochs, so there --num_epochs changes every later learning rate;
# the step schedule does not depend on it (a run may be extended).
COSINE_SCHEDULE_OPTIONS = ("num_epochs",)

_MISSING = object()

# Temporaries of atomic writes (utils.atomic_output) are named ``.<final name>.<random>.atomic.tmp<suffix>``:
# hidden, beside their destination, and recognisable, so the leftovers of a killed write can be
# found and removed at the next start.
ATOMIC_TEMPORARY_MARKER = ".atomic.tmp"
_ATOMIC_TEMPORARY_NAMES = (
    re.compile(r"^\..+\.[A-Za-z0-9_]+" + re.escape(ATOMIC_TEMPORARY_MARKER) + r"(\.[^.]+)?$"),
    # Earlier versions: ``.<final name>.<8 random characters>.tmp<suffix>``.
    re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$"),
)


def is_atomic_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like the temporary file of a `utils.atomic_output` write."""
    name = Path(path).name
    return any(pattern.match(name) for pattern in _ATOMIC_TEMPORARY_NAMES)


def check_exp_name(exp_name: str) -> None:
    """Refuse an --exp_name that is not one plain folder name (it must stay inside --log_dir)."""
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if not isinstance(exp_name, str) or not exp_name.strip():
        raise ValueError("--exp_name is empty: give the run folder a name, e.g. --exp_name mono_640x192")
    if exp_name in (".", ".."):
        raise ValueError(f"--exp_name {exp_name!r} would make --log_dir itself or its parent the run folder: "
                         "give the run folder a name, e.g. --exp_name mono_640x192")
    if any(sep in exp_name for sep in separators) or os.path.isabs(exp_name) or "\0" in exp_name:
        raise ValueError(f"--exp_name {exp_name!r} is not a plain folder name: runs live in --log_dir, so use "
                         "--log_dir for the parent folder and a name without path separators for --exp_name")


def _is_inside(path: Path, folder: Path) -> bool:
    """Whether resolved ``path`` is ``folder`` or below it (both resolved here)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def has_saved_state(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a run: a real (non-temporary) file in checkpoints/ or models/.

    An empty or temporaries-only checkpoints/ (left by a first save that failed or was killed)
    is not a run, so a plain re-run is not blocked by it.
    """
    run_dir = Path(run_dir)
    for name in STATE_DIRS:
        folder = run_dir / name
        if folder.is_dir() and any(not is_atomic_temporary(p) for p in folder.iterdir()):
            return True
    return False


def check_run_folder(log_dir: str | os.PathLike, exp_name: str, resume: bool, overwrite: bool) -> Path:
    """The run folder ``<log_dir>/<exp_name>``, after checking it may be used. No side effects.

    Args:
        log_dir: ``--log_dir`` (``~`` expanded).
        exp_name: ``--exp_name``: one plain folder name.
        resume: ``--resume`` (continue the run there).
        overwrite: ``--overwrite`` (start afresh there; nothing is deleted here).

    Returns:
        ``<log_dir>/<exp_name>`` (it may not exist yet).

    Raises:
        ValueError: the name has separators, is empty, ``.``, ``..`` or absolute; the folder would
            resolve outside --log_dir (a symbolic link); both --resume and --overwrite.
        FileExistsError: the folder holds a run and neither --resume nor --overwrite was given;
            the message names both flags and --exp_name.
        NotADirectoryError: --log_dir or the run folder exists as a file.
    """
    check_exp_name(exp_name)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: choose one")
    log_dir = Path(log_dir).expanduser()
    if log_dir.exists() and not log_dir.is_dir():
        raise NotADirectoryError(f"--log_dir {log_dir} is a file, not a folder: choose another --log_dir")
    run_dir = log_dir / exp_name
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder: choose another --exp_name")
    if run_dir.is_symlink() and not _is_inside(run_dir.resolve().parent, log_dir):
        raise ValueError(f"{run_dir} is a symbolic link to {run_dir.resolve()}, outside --log_dir {log_dir}: "
                         "runs stay inside --log_dir; choose another --exp_name or point --log_dir there")
    if has_saved_state(run_dir) and not (resume or overwrite):
        raise FileExistsError(f"{run_dir} already holds a run: pass --resume to continue it, --overwrite to "
                              "delete it and start afresh, or choose another --exp_name")
    return run_dir


def _artefacts_to_delete(run_dir: Path) -> list[Path]:
    """The previous run's artefacts in ``run_dir``, after checking none leads outside it."""
    found = []
    for name in RUN_ARTEFACTS:
        target = run_dir / name
        if not (target.exists() or target.is_symlink()):
            continue
        if target.is_symlink() and not _is_inside(target, run_dir):
            raise ValueError(f"--overwrite: {target} is a symbolic link to {target.resolve()}, outside the run "
                             f"folder {run_dir}; nothing was deleted. Remove the link yourself or choose "
                             "another --exp_name")
        found.append(target)
    return found


def claim_run_folder(run_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Take ``run_dir`` for the new run: call only after every pre-training check has passed.

    With ``overwrite``, first deletes the previous run's own artefacts (`RUN_ARTEFACTS`: its
    checkpoints, weights, tensorboard logs, ``logger.log``, ``opt.json`` and ``config.yaml``) and nothing else;
    a symbolic link among them that leads outside ``run_dir`` is refused before anything is
    deleted, and a link inside it is removed as a link (its target stays). Then creates the
    folder and proves it (and its existing checkpoints/ and models/) writable with a probe file.

    Returns:
        ``run_dir``.

    Raises:
        ValueError: an artefact is a symbolic link leading outside the run folder.
        OSError: the folder cannot be created or written; the message names it and the fix.
    """
    run_dir = Path(run_dir)
    if overwrite and run_dir.is_dir():
        for target in _artefacts_to_delete(run_dir):
            if target.is_symlink() or not target.is_dir():
                target.unlink()
            else:
                shutil.rmtree(target)  # removes links inside the tree as links, never their targets
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(err.errno, f"cannot create the run folder {run_dir}: {err.strerror or err}; choose "
                                   "a writable --log_dir") from err
    for folder in [run_dir] + [run_dir / name for name in STATE_DIRS if (run_dir / name).is_dir()]:
        check_writable(folder)
    return run_dir


def check_writable(folder: str | os.PathLike, flag: str = "--log_dir") -> None:
    """Write and remove a probe file in ``folder``; raise OSError naming the folder and ``flag`` if that fails."""
    folder = Path(folder)
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as err:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise type(err)(err.errno, f"the folder {folder} is not writable ({err.strerror or err}): fix its "
                                   f"permissions or free space, or choose another {flag}") from err


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the hidden temporaries that killed atomic writes left in a run folder.

    Looks in ``folder`` itself (opt.json, config.yaml), ``checkpoints/`` and ``models/``; only files named
    like `utils.atomic_output` temporaries are touched. Call it at start-up, before any write of
    this run begins (another writer's live temporary would otherwise be deleted).

    Returns:
        The paths removed, sorted.
    """
    folder = Path(folder)
    removed = []
    for where in (folder, folder / RESUME_DIR, folder / WEIGHTS_DIR):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            if is_atomic_temporary(path) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return sorted(removed)


def _option_value(name: str, value: Any) -> Any:
    """An option's value for comparison: spellings that mean the same compare equal."""
    if name == "clip_grad" and isinstance(value, (int, float)) and value <= 0:
        return "off"  # 0 and the lineage's -1 both switch clipping off
    if name == "seed" and isinstance(value, int) and value <= 0:
        return "unseeded"  # the run's actual seed is in its checkpoints
    return _normalised(value)


def _normalised(value: Any) -> Any:
    """Options as opt.json stores them: tuples become lists, NaN equals NaN."""
    if isinstance(value, tuple):
        return [_normalised(v) for v in value]
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def changed_run_options(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The options whose change between the saved run and now would change a resumed run's arithmetic.

    Args:
        saved: the run's ``opt.json``.
        current: ``vars(opts)`` of the resuming command.

    Returns:
        Option names (without ``--``), in `ARITHMETIC_OPTIONS` order; an option missing from
        either side (an older opt.json) is not reported.
    """
    names = list(ARITHMETIC_OPTIONS)
    if saved.get("lr_sche_type") == "cos" or current.get("lr_sche_type") == "cos":
        names += list(COSINE_SCHEDULE_OPTIONS)
    changed = []
    for name in names:
        before, after = saved.get(name, _MISSING), current.get(name, _MISSING)
        if before is _MISSING or after is _MISSING:
            continue
        if _option_value(name, before) != _option_value(name, after):
            changed.append(name)
    return changed


def check_resume_options(run_dir: str | os.PathLike, current: Mapping[str, Any], force: bool) -> list[str]:
    """Refuse to resume ``run_dir`` with options that change its arithmetic, unless ``force``.

    Returns:
        The changed option names (empty when none, or when the run has no readable opt.json);
        with ``force`` the caller should log them as a warning.

    Raises:
        ValueError: options changed and ``force`` is False; the message names each with its saved
            and current value, and the two ways out.
    """
    path = Path(run_dir) / OPTIONS_FILE
    if not path.is_file():
        return []
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    if not isinstance(saved, dict):
        return []
    changed = changed_run_options(saved, current)
    if changed and not force:
        details = ", ".join(f"--{name} {saved[name]!r} -> {current[name]!r}" for name in changed)
        raise ValueError(f"--resume: {details} differ from the run's {path}; a resumed run with them would not "
                         "continue the same computation. Resume with the run's values, or pass --force_resume "
                         "to continue anyway")
    return changed
