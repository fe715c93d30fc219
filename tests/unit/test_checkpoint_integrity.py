"""Checkpoints prove their integrity; writes fail with one clear message and leave no temporary."""

from __future__ import annotations

import errno
import os

import pytest
import torch

import checkpoints
from checkpoints import (CHECKSUM_KEY, load_checkpoint, load_newest_resume_checkpoint, payload_checksum,
                         resume_checkpoint_path, save_checkpoint)
from run_folder import is_atomic_temporary
from utils import atomic_output


def resume_payload(step: int, size: int = 4096) -> dict:
    gen = torch.Generator().manual_seed(step)
    weights = {"conv.weight": torch.randn(size, generator=gen), "bn.num_batches_tracked": torch.tensor(step)}
    optimizer = {"state": {0: {"step": torch.tensor(float(step)), "exp_avg": torch.randn(size, generator=gen)}},
                 "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]}
    return {"encoder": weights, "optimizer": optimizer, "scheduler": {"last_epoch": step}, "epoch": 0,
            "batch_idx": step, "step": step, "rng_states": [{"torch": torch.get_rng_state()}]}


def overwrite_middle(path, data: bytes = b"\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f") -> None:
    """Overwrite len(data) bytes in the middle of the file, as a bad sector or a faulty copy would."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(data)


def test_round_trip_keeps_the_payload_and_stores_a_checksum(tmp_path):
    payload = resume_payload(3)
    path = tmp_path / "step.pth"
    save_checkpoint(path, payload)
    raw = torch.load(path, weights_only=True)
    assert raw[CHECKSUM_KEY] == {"algorithm": "sha256", "digest": payload_checksum(payload)}
    loaded = load_checkpoint(path)
    assert CHECKSUM_KEY not in loaded and CHECKSUM_KEY not in payload  # the caller's dict is not changed
    assert payload_checksum(loaded) == payload_checksum(payload)
    assert torch.equal(loaded["encoder"]["conv.weight"], payload["encoder"]["conv.weight"])


def test_checksum_depends_on_values_not_on_insertion_order_or_storage():
    payload = resume_payload(1)
    reordered = dict(reversed(list(payload.items())))
    reordered["encoder"] = {"bn.num_batches_tracked": payload["encoder"]["bn.num_batches_tracked"],
                            "conv.weight": payload["encoder"]["conv.weight"].clone()}
    assert payload_checksum(reordered) == payload_checksum(payload)
    for change in (lambda p: p["encoder"]["conv.weight"].__setitem__(7, 0.5),  # one weight
                   lambda p: p.__setitem__("step", 4),  # a plain value
                   lambda p: p["optimizer"]["param_groups"][0].__setitem__("lr", 2e-4),
                   lambda p: p["encoder"].__setitem__("conv.weight", p["encoder"]["conv.weight"].double())):
        changed = resume_payload(1)
        change(changed)
        assert payload_checksum(changed) != payload_checksum(payload)
    # Same bytes, another shape: still a different checkpoint.
    reshaped = resume_payload(1)
    reshaped["encoder"]["conv.weight"] = reshaped["encoder"]["conv.weight"].reshape(64, 64)
    assert payload_checksum(reshaped) != payload_checksum(payload)
    bf16 = {"w": torch.ones(3, dtype=torch.bfloat16)}  # no NumPy dtype: hashed as raw bytes
    assert payload_checksum(bf16) != payload_checksum({"w": torch.ones(3, dtype=torch.float16)})


def test_eight_overwritten_bytes_are_reported_and_the_previous_checkpoint_used(tmp_path, caplog):
    for step in (1, 2):
        save_checkpoint(resume_checkpoint_path(tmp_path, step), resume_payload(step, size=65536))
    newest = resume_checkpoint_path(tmp_path, 2)
    overwrite_middle(newest)
    # Without the checksum the damaged file would load (the bytes land in a tensor's data).
    assert torch.load(newest, weights_only=True)["step"] == 2
    with pytest.raises(ValueError, match="is corrupt: its contents do not match the checksum"):
        load_checkpoint(newest)
    path, payload = load_newest_resume_checkpoint(tmp_path)
    assert path == resume_checkpoint_path(tmp_path, 1) and payload["step"] == 1
    assert f"{newest} is corrupt" in caplog.text


@pytest.mark.parametrize("content, expected", [
    (bytes(1 << 16), "is corrupt: it is filled with zero bytes"),
    (b"", "is empty"),
    (b"garbage" * 100, "is corrupt or not a torch checkpoint"),
])
def test_zero_filled_empty_and_foreign_files_are_corruption_without_a_weights_only_hint(tmp_path, content,
                                                                                       expected):
    path = tmp_path / "step000000001.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError) as refused:
        load_checkpoint(path)
    assert expected in str(refused.value) and str(path) in str(refused.value)
    assert "weights_only" not in str(refused.value)


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint(path, resume_payload(1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="unreadable \\(truncated or corrupt\\)"):
        load_checkpoint(path)


def test_checkpoints_without_a_checksum_still_load(tmp_path):
    path = tmp_path / "released.pth"
    torch.save({"encoder": {"w": torch.ones(2)}, "height": 192}, path)
    assert load_checkpoint(path)["height"] == 192


def test_an_unknown_checksum_algorithm_is_refused(tmp_path):
    path = tmp_path / "future.pth"
    torch.save({"w": torch.ones(2), CHECKSUM_KEY: {"algorithm": "sha3", "digest": "00"}}, path)
    with pytest.raises(ValueError, match="has a checksum this version cannot verify"):
        load_checkpoint(path)


def test_full_disk_during_save_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    target = tmp_path / "checkpoints" / "step000000005.pth"
    save_checkpoint(target, resume_payload(4))
    before = target.read_bytes()
    real_open = open
    # The checkpoint's bytes go to /dev/full, where every write fails with ENOSPC, as on a full disk.
    monkeypatch.setattr(checkpoints, "open", lambda path, mode: real_open("/dev/full", mode), raising=False)
    with pytest.raises(OSError) as failure:
        save_checkpoint(target, resume_payload(5, size=1 << 16))
    message = str(failure.value)
    assert failure.value.errno == errno.ENOSPC
    assert f"{target} was not written" in message and "no space left" in message
    assert "atomic.tmp" not in message and "unexpected pos" not in message
    assert target.read_bytes() == before  # the previous version is intact
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary left


def test_a_writer_hiding_enospc_in_its_own_error_is_still_reported_as_a_full_disk(tmp_path):
    target = tmp_path / "model.pth"
    with pytest.raises(OSError) as failure:
        with atomic_output(target):
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert failure.value.errno == errno.ENOSPC and f"{target} was not written" in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_named_not_the_temporary(tmp_path, monkeypatch):
    import utils

    folder = tmp_path / "locked"
    folder.mkdir()

    def denied(prefix, suffix, dir):  # what mkstemp raises in a folder without write permission
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(dir, prefix + "x1" + suffix))

    monkeypatch.setattr(utils.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as failure:
        with atomic_output(folder / "opt.json") as tmp:
            tmp.write_text("{}")
    message = str(failure.value)
    assert f"cannot write {folder / 'opt.json'}" in message and f"{folder} is not writable" in message
    assert "atomic.tmp" not in message and list(folder.iterdir()) == []


def test_errors_inside_the_block_name_the_final_path(tmp_path):
    target = tmp_path / "model.pth"
    with pytest.raises(OSError) as failure:
        with atomic_output(target) as tmp:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(tmp))
    assert str(failure.value) == f"[Errno {errno.EIO}] could not write {target}: {os.strerror(errno.EIO)}"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError):  # not a write error: passes through unchanged
        with atomic_output(target):
            raise KeyError("x")
    assert list(tmp_path.iterdir()) == []


def test_temporaries_are_recognisable(tmp_path):
    seen = []
    with atomic_output(tmp_path / "model3.pth") as tmp:
        seen.append(tmp)
        assert is_atomic_temporary(tmp) and tmp.name.startswith(".model3.pth.")
        assert tmp.match("*.tmp*")  # what the end-to-end tests glob for leftovers
    with atomic_output(tmp_path / "gt_depths.npz", suffix=".npz") as tmp:
        assert is_atomic_temporary(tmp) and tmp.suffix == ".npz"
    assert is_atomic_temporary(tmp_path / ".step000000004.pth.k2j4_x9a.tmp")  # earlier versions' naming
    for name in ("model3.pth", ".hidden", "opt.json", ".model.pth.tmp", "step.tmp.pth"):
        assert not is_atomic_temporary(tmp_path / name), name


def test_errors_about_other_files_pass_through_unchanged(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(FileNotFoundError) as failure:
        with atomic_output(target):
            open(tmp_path / "missing_input.png", "rb")
    assert "missing_input.png" in str(failure.value) and "could not write" not in str(failure.value)
    with pytest.raises(OSError, match=r"^could not encode the image$"):  # a writer's own message, no errno
        with atomic_output(target):
            raise OSError("could not encode the image")
    assert list(tmp_path.iterdir()) == []
