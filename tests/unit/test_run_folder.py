"""run_folder: names confined to --log_dir, --overwrite that cannot destroy, stale temporaries, resume options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import run_folder
from run_folder import (ARITHMETIC_OPTIONS, RUN_ARTEFACTS, changed_run_options, check_resume_options,
                        check_run_folder, claim_run_folder, remove_stale_temporaries)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path below ``folder`` with its bytes (None for folders and links' targets kept apart)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def make_run(run_dir: Path) -> Path:
    """A finished run's folder: every artefact a run writes, plus a file of the user's."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step000000010.pth").write_bytes(b"resume state")
    (run_dir / "models").mkdir()
    (run_dir / "models" / "model0.pth").write_bytes(b"weights")
    (run_dir / "tensorboard" / "train").mkdir(parents=True)
    (run_dir / "tensorboard" / "train" / "events.out").write_bytes(b"events")
    (run_dir / "logger.log").write_text("old run's log\n")
    (run_dir / "opt.json").write_text("{}")
    (run_dir / "config.yaml").write_text("exp_name: run\n")
    (run_dir / "notes.txt").write_text("the user's own notes")
    return run_dir


@pytest.mark.parametrize("name", ["", "  ", ".", "..", "a/b", "../elsewhere", "/abs/path", "runs/../x"])
def test_exp_names_outside_log_dir_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="--exp_name"):
        check_run_folder(tmp_path, name, resume=False, overwrite=True)


def test_a_plain_name_gives_the_folder_inside_log_dir_without_creating_it(tmp_path):
    run_dir = check_run_folder(tmp_path / "logs", "mono_640x192", resume=False, overwrite=False)
    assert run_dir == tmp_path / "logs" / "mono_640x192"
    assert not (tmp_path / "logs").exists()  # no side effects


def test_an_existing_run_needs_resume_or_overwrite(tmp_path):
    run_dir = make_run(tmp_path / "run")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError) as refused:
        check_run_folder(tmp_path, "run", resume=False, overwrite=False)
    message = str(refused.value)
    assert "--resume" in message and "--overwrite" in message and "--exp_name" in message
    assert check_run_folder(tmp_path, "run", resume=True, overwrite=False) == run_dir
    assert check_run_folder(tmp_path, "run", resume=False, overwrite=True) == run_dir
    with pytest.raises(ValueError, match="contradict"):
        check_run_folder(tmp_path, "run", resume=True, overwrite=True)
    assert snapshot(tmp_path) == before  # checking never changes anything


def test_a_failed_first_save_does_not_count_as_a_run(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "logger.log").write_text("crashed before the first save\n")
    assert check_run_folder(tmp_path, "run", resume=False, overwrite=False) == run_dir
    (run_dir / "checkpoints" / ".step000000002.pth.k2j4x9ab.atomic.tmp").write_bytes(b"half")
    assert check_run_folder(tmp_path, "run", resume=False, overwrite=False) == run_dir
    (run_dir / "models").mkdir()
    (run_dir / "models" / "model0.pth").write_bytes(b"weights")
    with pytest.raises(FileExistsError):
        check_run_folder(tmp_path, "run", resume=False, overwrite=False)


def test_a_run_folder_linking_outside_log_dir_is_refused(tmp_path):
    elsewhere = make_run(tmp_path / "elsewhere")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "linked").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="outside --log_dir"):
        check_run_folder(logs, "linked", resume=False, overwrite=True)


def test_overwrite_deletes_only_the_previous_runs_artefacts(tmp_path):
    run_dir = make_run(tmp_path / "run")
    (tmp_path / "neighbour").mkdir()
    (tmp_path / "neighbour" / "model0.pth").write_bytes(b"another run")
    claim_run_folder(run_dir, overwrite=True)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]  # logger.log went with the old run
    assert (tmp_path / "neighbour" / "model0.pth").read_bytes() == b"another run"
    assert set(RUN_ARTEFACTS) == {"checkpoints", "models", "tensorboard", "logger.log", "opt.json", "config.yaml"}


def test_without_overwrite_claiming_deletes_nothing(tmp_path):
    run_dir = make_run(tmp_path / "run")
    before = snapshot(run_dir)
    claim_run_folder(run_dir, overwrite=False)
    assert snapshot(run_dir) == before


def test_overwrite_refuses_an_artefact_linking_outside_before_deleting_anything(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis_results.pth").write_bytes(b"irreplaceable")
    run_dir = make_run(tmp_path / "run")
    (run_dir / "tensorboard").rename(tmp_path / "tb_moved")
    (run_dir / "tensorboard").symlink_to(precious)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="outside the run folder .*nothing was deleted"):
        claim_run_folder(run_dir, overwrite=True)
    assert snapshot(tmp_path) == before


def test_overwrite_removes_a_link_inside_the_run_folder_as_a_link(tmp_path):
    run_dir = make_run(tmp_path / "run")
    (run_dir / "logger.log").unlink()
    (run_dir / "logger.log").symlink_to(run_dir / "notes.txt")
    claim_run_folder(run_dir, overwrite=True)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
    assert (run_dir / "notes.txt").read_text() == "the user's own notes"


def test_links_inside_deleted_folders_are_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.pth").write_bytes(b"keep")
    run_dir = make_run(tmp_path / "run")
    (run_dir / "models" / "pointer").symlink_to(precious)
    claim_run_folder(run_dir, overwrite=True)
    assert (precious / "keep.pth").read_bytes() == b"keep"


def test_claim_creates_the_folder_and_leaves_no_probe(tmp_path):
    run_dir = claim_run_folder(tmp_path / "logs" / "new", overwrite=False)
    assert run_dir.is_dir() and list(run_dir.iterdir()) == []


def test_an_unwritable_folder_is_named(tmp_path, unwritable_probes):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(PermissionError, match=f"the folder {run_dir} is not writable .*--log_dir"):
        claim_run_folder(run_dir, overwrite=False)


def test_remove_stale_temporaries_removes_only_killed_writes(tmp_path):
    run_dir = make_run(tmp_path / "run")
    stale = [run_dir / "checkpoints" / ".step000000012.pth.a1b2c3d4.atomic.tmp",
             run_dir / "models" / ".model1.pth.zz_99xyq.atomic.tmp",
             run_dir / ".opt.json.q1w2e3r4.atomic.tmp",
             run_dir / "checkpoints" / ".step000000011.pth.k2j4x9ab.tmp"]  # earlier versions' naming
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    kept = snapshot(make_run(tmp_path / "other"))
    before = {k: v for k, v in snapshot(run_dir).items() if not Path(k).name.startswith(".")}
    assert remove_stale_temporaries(run_dir) == sorted(stale)
    assert snapshot(run_dir) == before
    assert snapshot(tmp_path / "other") == kept
    assert remove_stale_temporaries(run_dir) == []
    assert remove_stale_temporaries(tmp_path / "absent") == []


# ------------------------------------------------------------------------------------ resume options
def options(**changes) -> dict:
    from options import parse_train_options

    return {**vars(parse_train_options(["--device", "cpu"])), **changes}


def test_unchanged_options_and_harmless_changes_are_not_reported():
    saved = json.loads(json.dumps(options()))  # as opt.json stores them (tuples become lists)
    harmless = options(num_workers=0, log_frequency=1, save_frequency=7, progress_bar=False, data_path="/moved",
                       log_dir="/elsewhere", eval_batch_size=3, keep_last=5, device="cuda", num_epochs=40)
    assert changed_run_options(saved, options()) == []
    assert changed_run_options(saved, harmless) == []


@pytest.mark.parametrize("name, value", [
    ("batch_size", 6), ("learning_rate", 2e-4), ("decay_step", [10]), ("decay_rate", 0.5), ("seed", 7),
    ("frame_ids", [0, 1]), ("num_scales", 1), ("height", 320), ("disparity_smoothness", 0.0),
    ("optimizer", "sgd"), ("backbone", "hrnet"), ("split", "eigen_full"), ("dataset", "nyu"),
    ("weight_decay", 0.0), ("clip_grad", 1.0), ("use_local_crop", True), ("mixed_precision", "bf16"),
    ("img_ext", ".jpg"), ("intrinsics", ["0.9", "1.2", "0.5", "0.5"]), ("method", "autoencoder"),
    ("stereo_baseline", 0.015), ("pose_input_size", [192, 640]), ("loss_preset", "featdepth"),
    ("feature_metric_weight", 1e-3), ("feature_net_joint", True), ("warmup_steps", 500), ("warmup_ratio", 0.5),
])
def test_arithmetic_changes_are_reported(name, value):
    assert name in ARITHMETIC_OPTIONS
    assert changed_run_options(options(), options(**{name: value})) == [name]


def test_spellings_that_mean_the_same_are_equal_and_cosine_runs_depend_on_num_epochs():
    assert changed_run_options(options(clip_grad=-1.0), options(clip_grad=0.0)) == []
    assert changed_run_options(options(seed=0), options(seed=-1)) == []
    assert changed_run_options(options(lr_sche_type="cos"), options(lr_sche_type="cos", num_epochs=40)) == [
        "num_epochs"]
    older = {k: v for k, v in options().items() if k != "jitter_per_frame"}  # an older opt.json
    assert changed_run_options(older, options(jitter_per_frame=True)) == []


def test_resume_with_changed_options_is_refused_unless_forced(tmp_path):
    (tmp_path / "opt.json").write_text(json.dumps(options()))
    current = options(batch_size=6, learning_rate=1e-3)
    with pytest.raises(ValueError) as refused:
        check_resume_options(tmp_path, current, force=False)
    message = str(refused.value)
    assert "--batch_size 12 -> 6" in message and "--learning_rate 0.0001 -> 0.001" in message
    assert "--force_resume" in message and str(tmp_path / "opt.json") in message
    assert check_resume_options(tmp_path, current, force=True) == ["learning_rate", "batch_size"]
    assert check_resume_options(tmp_path / "no_run", current, force=False) == []


def test_the_module_needs_no_torch():
    check = "import sys, run_folder; assert 'torch' not in sys.modules, 'run_folder imported torch'"
    result = subprocess.run([sys.executable, "-c", check], cwd=Path(run_folder.__file__).parent,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
