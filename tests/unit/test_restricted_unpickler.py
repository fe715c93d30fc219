"""packnet_weights.restricted_load: tensors come back exactly, everything else stays inert data."""

from __future__ import annotations

import collections
import os
import zipfile

import pytest
import torch

from packnet_weights import TRUSTED_EXTRACTION_RECIPE, InertObject, load_packnet_file, restricted_load
from tests.unit.test_malicious_files import Payload, assert_payload_is_live


class Settings(dict):
    """A dict subclass the reader never imports (like yacs' CfgNode)."""


class RunsACommand:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_tensors_of_every_dtype_and_shared_storages_come_back_exactly(tmp_path, zip_format):
    base = torch.arange(12, dtype=torch.float32).view(3, 4)
    tensors = {"f32": base, "view": base[1:, ::2], "t": base.t(), "f16": base.half(), "bf16": base.bfloat16(),
               "i64": torch.arange(5), "bool": torch.tensor([True, False]), "empty": torch.zeros(0, 3),
               "scalar": torch.tensor(2.5, dtype=torch.float64), "param": torch.nn.Parameter(torch.ones(2))}
    path = tmp_path / "x.ckpt"
    torch.save({"config": Settings(size=(192, 640), name="PackNet01"), "state_dict": collections.OrderedDict(tensors),
                "epoch": 3, "lrs": {0.1, 0.2}}, path, _use_new_zipfile_serialization=zip_format)
    loaded = restricted_load(path)
    for key, value in tensors.items():
        got = loaded["state_dict"][key]
        assert type(got) is torch.Tensor and got.dtype == value.dtype and got.shape == value.shape, key
        assert torch.equal(got, value.detach()), key
    assert isinstance(loaded["state_dict"], collections.OrderedDict)
    assert loaded["epoch"] == 3 and loaded["lrs"] == {0.1, 0.2}
    config = loaded["config"]
    assert type(config) is not Settings and isinstance(config, InertObject)
    assert config.pickled_global == f"{__name__}.Settings" and config == {"size": (192, 640), "name": "PackNet01"}


def test_a_command_in_the_pickle_is_recorded_not_run(tmp_path):
    marker = tmp_path / "COMMAND_RAN"
    path = tmp_path / "trap.ckpt"
    torch.save({"config": RunsACommand(marker), "state_dict": {}}, path)
    assert_payload_is_live(lambda: torch.load(path, weights_only=False), marker)
    loaded = load_packnet_file(path)
    assert loaded["config"].pickled_global in ("posix.system", "nt.system")
    assert loaded["config"].call_args == ((f"touch {marker}",), {})
    assert not marker.exists()


def test_a_legacy_format_file_with_a_payload_loads_without_running_it(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    legacy = tmp_path / "old.pth.tar"
    torch.save({"config": Payload(marker), "state_dict": {"w": torch.arange(3.0)}}, legacy,
               _use_new_zipfile_serialization=False)
    assert_payload_is_live(lambda: torch.load(legacy, weights_only=False), marker)
    loaded = load_packnet_file(legacy)
    assert loaded["config"].pickled_global == "io.open" and torch.equal(loaded["state_dict"]["w"], torch.arange(3.0))
    assert not marker.exists()


def test_a_file_it_cannot_read_is_refused_with_the_trusted_recipe(tmp_path):
    legacy = tmp_path / "old.pth.tar"
    torch.save({"config": Settings(), "state_dict": {"w": torch.arange(1000.0)}}, legacy,
               _use_new_zipfile_serialization=False)
    truncated = tmp_path / "cut.pth.tar"
    truncated.write_bytes(legacy.read_bytes()[:-100])
    with pytest.raises(ValueError) as refused:
        load_packnet_file(truncated)
    message = str(refused.value)
    assert str(truncated) in message and "storage" in message and "truncated" in message
    assert TRUSTED_EXTRACTION_RECIPE in message


def test_a_view_outside_its_storage_is_refused(tmp_path):
    """A crafted size that reads past the stored bytes is an error, never memory beyond them."""
    path = tmp_path / "x.ckpt"
    torch.save({"config": Settings(), "state_dict": {"w": torch.zeros(4)}}, path)
    with zipfile.ZipFile(path) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    # Shrink the one storage record to 2 floats: the tensor still claims 4.
    data_name = next(name for name in records if "/data/" in name)
    records[data_name] = records[data_name][:8]
    crafted = tmp_path / "crafted.ckpt"
    with zipfile.ZipFile(crafted, "w", zipfile.ZIP_STORED) as archive:
        for name, raw in records.items():
            archive.writestr(name, raw)
    with pytest.raises(ValueError, match=r"crafted\.ckpt could not be read with the restricted reader"):
        restricted_load(crafted)
