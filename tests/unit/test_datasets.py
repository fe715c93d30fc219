"""MonoDataset / KITTIRAWDataset: key schema, intrinsics per scale, stereo and flip rules, bad input."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from augmentation import HUE_INDEX, JITTER_PARAM_DIM
from datasets import KITTIRAWDataset

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
NATIVE_W, NATIVE_H = 96, 30
HEIGHT, WIDTH = 32, 64


def write_drive(root: Path, frames=range(5), ext=".png", seed=0) -> None:
    rng = np.random.default_rng(seed)
    for camera in (2, 3):
        folder = root / DRIVE / f"image_0{camera}" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            image = rng.integers(0, 256, size=(NATIVE_H, NATIVE_W, 3), dtype=np.uint8)
            cv2.imwrite(str(folder / f"{frame:010d}{ext}"), image)


@pytest.fixture
def kitti_root(tmp_path) -> Path:
    write_drive(tmp_path)
    return tmp_path


def make(root, lines, frame_ids=(0, -1, 1), num_scales=4, **kwargs):
    return KITTIRAWDataset(root, lines, HEIGHT, WIDTH, list(frame_ids), num_scales, **kwargs)


def test_key_schema_and_shapes(kitti_root):
    dataset = make(kitti_root, [f"{DRIVE} 2 l"], frame_ids=(0, -1, 1, "s"))
    sample = dataset[0]
    frames = [0, -1, 1, "s"]
    expected = ({("color_uint8", f, 0) for f in frames} | {("K", s) for s in range(4)}
                | {("inv_K", s) for s in range(4)}
                | {"stereo_T", "color_jitter", "do_color_aug", "do_flip", "index"})
    assert set(sample) == expected
    for f in frames:
        image = sample[("color_uint8", f, 0)]
        assert image.dtype == torch.uint8 and image.shape == (3, HEIGHT, WIDTH)
    assert sample["color_jitter"].shape == (JITTER_PARAM_DIM,)
    assert not sample["do_flip"] and not sample["do_color_aug"]  # evaluation mode: no augmentation


def test_intrinsics_at_every_scale(kitti_root):
    sample = make(kitti_root, [f"{DRIVE} 2 l"])[0]
    for scale in range(4):
        w, h = WIDTH // 2 ** scale, HEIGHT // 2 ** scale
        expected = np.array([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                            dtype=np.float32)
        np.testing.assert_allclose(sample[("K", scale)].numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(sample[("inv_K", scale)].numpy() @ expected, np.eye(4), atol=1e-5)


def test_images_are_the_decoded_frames_resized(kitti_root):
    sample = make(kitti_root, [f"{DRIVE} 3 r"])[0]
    for frame_id, frame in ((0, 3), (-1, 2), (1, 4)):
        raw = cv2.imread(str(kitti_root / DRIVE / "image_03" / "data" / f"{frame:010d}.png"))
        expected = cv2.resize(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(sample[("color_uint8", frame_id, 0)].permute(1, 2, 0).numpy(), expected)


class ConstantDraws(random.Random):
    """A generator whose ``random()`` always returns ``value`` (flip/jitter decisions forced)."""

    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def fix_random_draws(monkeypatch, value: float) -> None:
    monkeypatch.setattr("datasets.mono_dataset.sample_rng", lambda key: (int(key), ConstantDraws(value)))


def test_augmentation_is_a_pure_function_of_the_sample_seed(kitti_root):
    dataset = make(kitti_root, [f"{DRIVE} 2 l", f"{DRIVE} 3 l"], is_train=True)
    draws = [dataset[(1, seed)] for seed in range(12)]
    again = dataset[(1, 5)]
    for key in (("color_uint8", 0, 0), "color_jitter", "do_flip", "do_color_aug"):
        assert torch.equal(again[key], draws[5][key])
    assert int(again["index"]) == 1
    # twelve seeds must not all give the same decision (probability 2 * 0.5^12 per flag)
    assert len({bool(d["do_flip"]) for d in draws}) == 2
    assert len({bool(d["do_color_aug"]) for d in draws}) == 2


@pytest.mark.parametrize("side, flipped, expected", [("l", False, -0.1), ("r", False, 0.1),
                                                     ("l", True, 0.1), ("r", True, -0.1)])
def test_stereo_transform_sign(kitti_root, monkeypatch, side, flipped, expected):
    dataset = make(kitti_root, [f"{DRIVE} 2 {side}"], frame_ids=(0, "s"), is_train=True, color_jitter=False)
    # draw order in __getitem__: flip first; 0.0 < 0.5 flips, 0.99 does not
    fix_random_draws(monkeypatch, 0.0 if flipped else 0.99)
    sample = dataset[0]
    assert bool(sample["do_flip"]) == flipped
    T = sample["stereo_T"].numpy()
    np.testing.assert_allclose(T[:3, :3], np.eye(3))
    assert T[0, 3] == pytest.approx(expected)
    other = "image_03" if side == "l" else "image_02"
    raw = cv2.cvtColor(cv2.imread(str(kitti_root / DRIVE / other / "data" / "0000000002.png")), cv2.COLOR_BGR2RGB)
    if flipped:
        raw = raw[:, ::-1]
    expected_image = cv2.resize(np.ascontiguousarray(raw), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(sample[("color_uint8", "s", 0)].permute(1, 2, 0).numpy(), expected_image)


def test_flip_mirrors_principal_point(kitti_root, monkeypatch):
    class OffCentre(KITTIRAWDataset):
        def normalized_intrinsics(self, item):
            K = super().normalized_intrinsics(item).copy()
            K[0, 2] = 0.4
            return K

    dataset = OffCentre(kitti_root, [f"{DRIVE} 2 l"], HEIGHT, WIDTH, [0, 1], 1, is_train=True, color_jitter=False)
    fix_random_draws(monkeypatch, 0.0)
    assert dataset[0][("K", 0)][0, 2].item() == pytest.approx(0.6 * WIDTH)


def test_jitter_parameters_drawn_per_sample_or_per_frame(kitti_root, monkeypatch):
    shared = make(kitti_root, [f"{DRIVE} 2 l"], is_train=True, flip=False)
    per_frame = make(kitti_root, [f"{DRIVE} 2 l"], is_train=True, flip=False, jitter_per_frame=True)
    fix_random_draws(monkeypatch, 0.0)  # always augment
    assert shared[0]["do_color_aug"] and shared[0]["color_jitter"].shape == (JITTER_PARAM_DIM,)
    params = per_frame[0]["color_jitter"]
    assert params.shape == (3, JITTER_PARAM_DIM)


def test_packnet_augmentation_jitters_every_sample_and_flips_the_depth_input_only(kitti_root):
    lines = [f"{DRIVE} 2 l", f"{DRIVE} 3 l"]
    plain = make(kitti_root, lines, is_train=True)
    packnet = make(kitti_root, lines, is_train=True, color_jitter_probability=1.0, color_jitter_hue=0.05,
                   flip_in_depth_net=True)
    draws = [(plain[(1, seed)], packnet[(1, seed)]) for seed in range(16)]
    for ours, theirs in draws:
        assert bool(theirs["do_color_aug"]) and not bool(theirs["do_flip"])
        assert abs(float(theirs["color_jitter"][HUE_INDEX])) <= 0.05
        # the same random stream: PackNet's depth-input flip is the sample flip it replaces
        assert bool(theirs["flip_depth_input"]) == bool(ours["do_flip"])
        assert "flip_depth_input" not in ours
    assert len({bool(theirs["flip_depth_input"]) for _, theirs in draws}) == 2
    unflipped = [ours for ours, _ in draws if not bool(ours["do_flip"])][0]
    for _, theirs in draws:  # frames and intrinsics are never mirrored
        for frame_id in (0, -1, 1):
            assert torch.equal(theirs[("color_uint8", frame_id, 0)], unflipped[("color_uint8", frame_id, 0)])
        assert torch.equal(theirs[("K", 0)], unflipped[("K", 0)])
    with pytest.raises(ValueError, match="colour-jitter probability must be in"):
        make(kitti_root, lines, is_train=True, color_jitter_probability=1.5)


# ----------------------------------------------------------------------------------- bad input


def test_missing_data_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data_path .*nowhere"):
        make(tmp_path / "nowhere", [f"{DRIVE} 1 l"])


def test_empty_split(kitti_root):
    with pytest.raises(ValueError, match="no samples"):
        make(kitti_root, ["", "  "], split_name="train_files.txt")


def test_unparsable_line_names_its_number(kitti_root):
    lines = [f"{DRIVE} 1 l", f"{DRIVE} 2", f"{DRIVE} 3 l"]
    with pytest.raises(ValueError, match=r"train_files.txt, line 2: expected"):
        make(kitti_root, lines, split_name="train_files.txt")
    with pytest.raises(ValueError, match=r"line 1: frame index 'x1' is not an integer"):
        make(kitti_root, [f"{DRIVE} x1 l"], split_name="train_files.txt")


def test_missing_image_gives_path_and_jpg_hint(tmp_path):
    write_drive(tmp_path, ext=".jpg")
    expected = tmp_path / DRIVE / "image_02" / "data" / "0000000002.png"
    with pytest.raises(FileNotFoundError, match="pass --jpg") as info:
        make(tmp_path, [f"{DRIVE} 2 l"], split_name="val_files.txt")
    assert str(expected) in str(info.value) and "val_files.txt, line 1" in str(info.value)
    make(tmp_path, [f"{DRIVE} 2 l"], img_ext=".jpg")  # and with the flag it loads


def test_missing_neighbour_frame_is_an_error_not_a_substitute(kitti_root):
    with pytest.raises(FileNotFoundError, match=r"0000000005.png.*neighbouring frames"):
        make(kitti_root, [f"{DRIVE} 4 l"])


def test_stereo_needs_a_side(kitti_root):
    class NoSide(KITTIRAWDataset):
        def parse_line(self, line, line_number):
            item = super().parse_line(line, line_number)
            return type(item)(item.folder, item.frame_index, None, line_number)

    with pytest.raises(ValueError, match="line 1: stereo training"):
        NoSide(kitti_root, [f"{DRIVE} 2 l"], HEIGHT, WIDTH, [0, "s"], 1)


def test_reads_the_real_kitti_frame(realdata):
    root = realdata / "kitti_raw"
    dataset = KITTIRAWDataset(root, ["2011_09_26/2011_09_26_drive_0005_sync 0 l"], 192, 640, [0], 1)
    image = dataset[0][("color_uint8", 0, 0)]
    raw = cv2.imread(str(root / "2011_09_26/2011_09_26_drive_0005_sync/image_02/data/0000000000.png"))
    assert raw.shape == (375, 1242, 3)
    expected = cv2.resize(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), (640, 192), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)
