"""Malicious files in every format the toolkit reads: none runs its payload, each gives a clear error.

Each payload is a pickled object whose ``__reduce__`` calls ``open(marker, "w")``: loading it
unsafely creates the marker file. Every test first proves its payload live (an unsafe load
creates the marker), then loads the file the toolkit's way and asserts the marker never appears.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import frame_cache
import convert_weights
from model import load_model
from checkpoints import CHECKPOINT_FORMAT, ModelSpec, load_checkpoint, load_newest_resume_checkpoint
from ground_truth import load_gt_depths
from networks import ResnetEncoder, hrnet


class Payload:
    """Unpickling this calls open(marker, "w"), creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def marker(tmp_path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def assert_payload_is_live(load_unsafely, marker: Path) -> None:
    """The control: loading the file the unsafe way does run the payload."""
    load_unsafely()
    assert marker.exists(), "the payload did not run even when loaded unsafely: the test proves nothing"
    marker.unlink()


def test_our_checkpoint_with_a_payload_is_refused(tmp_path, marker):
    path = tmp_path / "model0.pth"
    torch.save({"format": CHECKPOINT_FORMAT, "model_spec": ModelSpec().to_dict(),
                "encoder": {"conv1.weight": torch.zeros(1)}, "depth": {"trap": Payload(marker)}}, path)
    assert_payload_is_live(lambda: torch.load(path, weights_only=False), marker)
    with pytest.raises(ValueError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert str(path) in message and "could run code" in message and "weights_only=False" not in message
    assert not marker.exists()


def test_resume_skips_a_checkpoint_with_a_payload(tmp_path, marker):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    good = {"encoder": {}, "optimizer": {}, "scheduler": {}, "epoch": 0, "batch_idx": 1, "step": 1}
    torch.save(good, folder / "step000000001.pth")
    torch.save({**good, "step": 2, "optimizer": {"trap": Payload(marker)}}, folder / "step000000002.pth")
    path, payload = load_newest_resume_checkpoint(tmp_path / "run")
    assert path.name == "step000000001.pth" and payload["step"] == 1
    assert not marker.exists()


def test_monodepth2_folder_with_a_payload_is_refused(tmp_path, marker):
    folder = tmp_path / "mono_640x192"
    folder.mkdir()
    torch.save({"encoder.conv1.weight": torch.zeros(64, 3, 7, 7), "height": 192, "width": 640,
                "use_stereo": Payload(marker)}, folder / "encoder.pth")
    torch.save({"decoder.0.conv.conv.weight": torch.zeros(1)}, folder / "depth.pth")
    assert_payload_is_live(lambda: torch.load(folder / "encoder.pth", weights_only=False), marker)
    with pytest.raises(ValueError, match=r"encoder\.pth holds Python objects other than tensors"):
        load_model(folder)
    assert not marker.exists()


def test_bdedepth_file_with_a_payload_is_refused(tmp_path, marker):
    path = tmp_path / "kitti_resnet18_640x192.pth"
    torch.save({"encoder": {"encoder.conv1.weight": torch.zeros(1)}, "depth": Payload(marker), "height": 192,
                "width": 640}, path)
    assert_payload_is_live(lambda: torch.load(path, weights_only=False), marker)
    with pytest.raises(ValueError, match=r"kitti_resnet18_640x192\.pth holds Python objects"):
        load_model(path)
    with pytest.raises(ValueError, match="could run code"):
        convert_weights.main(["--input", str(path), "--output", str(tmp_path / "converted.pth")])
    assert not marker.exists() and not (tmp_path / "converted.pth").exists()


def reference_style_npz(path: Path, maps: list) -> None:
    """Monodepth2's gt_depths.npz: one key ``data``, an object array (stored pickled)."""
    data = np.empty(len(maps), dtype=object)
    for i, item in enumerate(maps):
        data[i] = item
    np.savez_compressed(path, data=data)


def test_reference_gt_depths_with_a_payload_is_refused(tmp_path, marker):
    path = tmp_path / "gt_depths.npz"
    reference_style_npz(path, [np.ones((3, 4), np.float32), Payload(marker)])

    def unsafe():
        with np.load(path, allow_pickle=True) as archive:
            archive["data"]

    assert_payload_is_live(unsafe, marker)
    with pytest.raises(ValueError) as refused:
        load_gt_depths(path)
    message = str(refused.value)
    assert str(path) in message and "refused the pickled global io.open" in message
    assert not marker.exists()


def test_gt_depths_payload_hidden_in_a_nested_array_is_refused(tmp_path, marker):
    """The payload inside an object array inside the object array: still never unpickled."""
    inner = np.empty(1, dtype=object)
    inner[0] = Payload(marker)
    path = tmp_path / "gt_depths.npz"
    reference_style_npz(path, [np.ones((3, 4), np.float32), inner])
    with pytest.raises(ValueError, match=r"gt_depths\.npz"):
        load_gt_depths(path)
    assert not marker.exists()


def test_gt_depths_payload_under_our_keys_or_as_a_bare_pickle_is_refused(tmp_path, marker):
    ours = tmp_path / "ours.npz"
    trap = np.empty(1, dtype=object)
    trap[0] = Payload(marker)
    np.savez_compressed(ours, depth_00000=np.ones((2, 2), np.float32), depth_00001=trap)
    with pytest.raises(ValueError, match=r"ours\.npz: depth_00001 is not an array of numbers"):
        load_gt_depths(ours)
    bare = tmp_path / "bare.npz"
    bare.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match=r"bare\.npz is not a gt_depths npz"):
        load_gt_depths(bare)
    assert not marker.exists()


def hub_cache_file(tmp_path, monkeypatch, url: str) -> Path:
    """Point the torch hub cache at ``tmp_path`` and return where ``url``'s file is looked for."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no set_dir() in force: TORCH_HOME applies
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    cache.parent.mkdir(parents=True)
    return cache


def test_poisoned_resnet_weights_in_the_hub_cache_are_refused(tmp_path, monkeypatch, marker):
    from networks.resnet_encoder import RESNETS

    cache = hub_cache_file(tmp_path, monkeypatch, RESNETS[18][1].url)
    torch.save({"conv1.weight": torch.zeros(1), "fc.bias": Payload(marker)}, cache)
    assert_payload_is_live(lambda: torch.load(cache, weights_only=False), marker)
    with pytest.raises(RuntimeError) as refused:
        ResnetEncoder(18, pretrained=True)
    message = str(refused.value)
    assert str(cache) in message and "could run code" in message and "Delete it" in message
    assert "--weights_init scratch" in message and "weights_only" not in message
    assert not marker.exists()


def test_poisoned_hrnet_weights_in_the_hub_cache_are_refused(tmp_path, monkeypatch, marker):
    cache = hub_cache_file(tmp_path, monkeypatch, hrnet.HRNET_W18_IMAGENET_URL)
    torch.save({"state_dict": Payload(marker)}, cache)
    with pytest.raises(RuntimeError, match="could run code"):
        hrnet.load_hrnet_imagenet_state_dict()
    assert not marker.exists()


def test_zero_filled_hub_cache_file_is_reported_as_corrupt(tmp_path, monkeypatch):
    from networks.resnet_encoder import RESNETS

    cache = hub_cache_file(tmp_path, monkeypatch, RESNETS[18][1].url)
    cache.write_bytes(bytes(4096))
    with pytest.raises(RuntimeError) as refused:
        ResnetEncoder(18, pretrained=True)
    assert "it is corrupt: delete it" in str(refused.value) and "weights_only" not in str(refused.value)


def test_frame_cache_index_holding_a_pickle_is_refused(tmp_path, marker):
    root = tmp_path / "cache"
    root.mkdir()
    (root / frame_cache.INDEX_FILE).write_bytes(pickle.dumps({"format": 1, "trap": Payload(marker)}))
    (root / frame_cache.FRAMES_FILE).write_bytes(b"")
    assert_payload_is_live(lambda: pickle.loads((root / frame_cache.INDEX_FILE).read_bytes()), marker)
    with pytest.raises(ValueError, match=r"index\.json is not a JSON frame-cache index"):
        frame_cache.FrameCache.open(root)
    (root / frame_cache.INDEX_FILE).write_text(json.dumps({"format": 1, "height": "192"}))
    with pytest.raises(ValueError, match=r"lacks or mistypes the fields \['dataset', 'img_ext', 'height'"):
        frame_cache.FrameCache.open(root)
    assert not marker.exists()
