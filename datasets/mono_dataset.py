"""`MonoDataset`: the base class every training and evaluation dataset derives from.

The data path is built for speed: each frame is decoded once with OpenCV and resized once,
straight to the network resolution; no image pyramid is built here (the losses read only scale 0
of the source frames, and the trainer makes the few smaller copies it needs on the device). The
colour-jitter parameters are drawn here, one set per sample, and applied later as batched tensor
operations (`augmentation.apply_color_jitter`), so augmentation can run on the GPU.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from augmentation import DEFAULT_SPLIT_RATIO, JITTER_PARAM_DIM, draw_color_jitter, draw_reshuffle_split
from local_crop import (CROP_RESIZED_HEIGHT, CROP_RESIZED_WIDTH, CROP_X0, CROP_Y0, DEFAULT_RESIZE_RATIO,
                        draw_local_crop)
from utils import image_to_tensor, read_rgb, resize_area

# Probability of a horizontal flip and of colour augmentation for a training sample (Monodepth2),
# and the hue range of the jitter (Monodepth2: 0.1; PackNet-SfM jitters every sample, hue 0.05).
FLIP_PROBABILITY = 0.5
COLOR_AUG_PROBABILITY = 0.5
COLOR_JITTER_HUE = 0.1

SIDE_TO_CAMERA = {"l": 2, "r": 3, "2": 2, "3": 3}
OTHER_SIDE = {"l": "r", "r": "l", "2": "3", "3": "2"}

# stereo_T's translation in training units: Monodepth2 treats the KITTI baseline as 0.1, so a
# stereo-trained network's depth times STEREO_SCALE_FACTOR (5.4 = 0.54 m / 0.1) is in metres.
STEREO_BASELINE_UNITS = 0.1


def sample_rng(key: int | tuple[int, int]) -> tuple[int, random.Random]:
    """Split a dataset key into the sample index and the generator its random draws use."""
    if isinstance(key, (tuple, list)):
        index, seed = key
        return int(index), random.Random(int(seed))
    return int(key), random._inst  # the module-level generator, seeded per worker


@dataclass(frozen=True)
class SplitItem:
    """One parsed split line: the sequence folder, the target frame index and the camera side."""

    folder: str
    frame_index: int
    side: str | None
    line_number: int


class MonoDataset(Dataset):
    """Base dataset: parses and checks the split at construction, loads samples as dicts.

    Subclasses implement `parse_line`, `image_path` and `normalized_intrinsics`.

    Args:
        data_path: dataset root folder.
        filenames: the split's lines (``folder frame side`` for KITTI).
        height, width: network input size in pixels.
        frame_ids: frames to load relative to the target, starting with 0; ``"s"`` loads the other
            camera of the stereo pair at the target time.
        num_scales: number of scales for which K and inv_K are provided.
        is_train: enables flips and colour-jitter parameter draws.
        img_ext: image file extension, ``.png`` or ``.jpg``.
        color_jitter, flip: switch the two augmentations off (training only).
        color_jitter_probability: chance that a training sample is colour-jittered.
        color_jitter_hue: hue shift range ``[-hue, hue]`` of the jitter, in turns.
        flip_in_depth_net: PackNet-SfM's flip: the frames stay unflipped and the sample says
            (``"flip_depth_input"``) whether the depth network sees its target mirrored, the
            pose network and the losses never do.
        jitter_per_frame: draw jitter parameters per frame (the BDEdepth behaviour) instead of
            once per sample.
        split_name: shown in error messages, e.g. the split file's path.
        local_crop: also return BDEdepth's resizing-cropping view of every frame (training).
        resize_ratio: ``(low, high)`` range of the local crop's resize ratio.
        patch_reshuffle: draw BDEdepth's splitting-permuting split point (training); the
            trainer permutes frame 0 on the device.
        split_ratio: ``(low, high)`` range of the split point, as a fraction of the size.
    """

    # Decoded frames at the network size (frame_cache.FrameCache), attached by `use_frame_cache`.
    frame_cache = None

    def __init__(self, data_path: str | Path, filenames: Sequence[str], height: int, width: int,
                 frame_ids: Sequence[int | str], num_scales: int, is_train: bool = False,
                 img_ext: str = ".png", color_jitter: bool = True, flip: bool = True,
                 jitter_per_frame: bool = False, split_name: str = "split", local_crop: bool = False,
                 resize_ratio: Sequence[float] = DEFAULT_RESIZE_RATIO, patch_reshuffle: bool = False,
                 split_ratio: Sequence[float] = DEFAULT_SPLIT_RATIO,
                 color_jitter_probability: float = COLOR_AUG_PROBABILITY,
                 color_jitter_hue: float = COLOR_JITTER_HUE, flip_in_depth_net: bool = False):
        super().__init__()
        self.data_path = Path(data_path)
        self.height = height
        self.width = width
        self.frame_ids = list(frame_ids)
        self.num_scales = num_scales
        self.is_train = is_train
        self.img_ext = img_ext
        self.color_jitter = color_jitter and is_train
        self.flip = flip and is_train
        self.jitter_per_frame = jitter_per_frame
        self.split_name = split_name
        self.local_crop = local_crop and is_train
        self.resize_ratio = tuple(resize_ratio)
        self.patch_reshuffle = patch_reshuffle and is_train
        self.split_ratio = tuple(split_ratio)
        self.color_jitter_probability = color_jitter_probability
        self.color_jitter_hue = color_jitter_hue
        self.flip_in_depth_net = flip_in_depth_net

        if not 0.0 <= color_jitter_probability <= 1.0:
            raise ValueError(f"colour-jitter probability must be in [0, 1], got {color_jitter_probability}")
        if not self.data_path.is_dir():
            raise FileNotFoundError(f"--data_path {self.data_path} does not exist or is not a folder")
        if not self.frame_ids or self.frame_ids[0] != 0:
            raise ValueError(f"frame_ids must start with 0, the target frame (got {self.frame_ids})")
        if img_ext not in (".png", ".jpg"):
            raise ValueError(f"img_ext must be .png or .jpg (got {img_ext!r})")
        self.items = self._parse_split(filenames)
        if "s" in self.frame_ids:
            for item in self.items:
                if item.side is None:
                    raise ValueError(f"{split_name}, line {item.line_number}: stereo training (--use_stereo) "
                                     "needs a camera side (l or r) on every line")
        self._check_files()

    # ----------------------------------------------------------------------------- subclass hooks
    def parse_line(self, line: str, line_number: int) -> SplitItem:
        """Parse one split line; raise ValueError naming ``line_number`` when it does not parse."""
        raise NotImplementedError

    def image_path(self, folder: str, frame_index: int, side: str | None) -> Path:
        """Where the image of ``frame_index`` on ``side`` of ``folder`` lives."""
        raise NotImplementedError

    def normalized_intrinsics(self, item: SplitItem) -> np.ndarray:
        """4 x 4 float32 K with row 0 divided by the image width and row 1 by its height."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------- construction checks
    def _parse_split(self, filenames: Sequence[str]) -> list[SplitItem]:
        items = []
        for number, line in enumerate(filenames, start=1):
            if not line.strip():
                continue
            items.append(self.parse_line(line, number))
        if not items:
            raise ValueError(f"{self.split_name} has no samples: check the split file or --split")
        return items

    def _frame_sources(self, item: SplitItem) -> dict:
        """Frame id -> (frame index, side) for every frame the sample loads."""
        sources = {}
        for frame_id in self.frame_ids:
            if frame_id == "s":
                sources[frame_id] = (item.frame_index, OTHER_SIDE[item.side])
            else:
                sources[frame_id] = (item.frame_index + frame_id, item.side)
        return sources

    def _check_files(self) -> None:
        """Fail now, with the split line and a hint, rather than in a worker mid-epoch."""
        for item in self.items:
            for frame_index, side in self._frame_sources(item).values():
                path = self.image_path(item.folder, frame_index, side)
                if not path.is_file():
                    raise FileNotFoundError(self._missing_image_message(item, path))

    def _missing_image_message(self, item: SplitItem, path: Path) -> str:
        message = (f"{self.split_name}, line {item.line_number}: image not found: {path}. "
                   "Check --data_path")
        other_ext = ".jpg" if self.img_ext == ".png" else ".png"
        if path.with_suffix(other_ext).is_file():
            flag = "--jpg" if other_ext == ".jpg" else "--png"
            message += f"; the same frame exists as {other_ext}: pass {flag}"
        elif item.frame_index != 0 and len(self.frame_ids) > 1:
            message += (f", and that every line's neighbouring frames ({self.frame_ids}) exist "
                        "(split lines must not sit at the ends of a sequence)")
        return message

    # ----------------------------------------------------------------------------- loading
    def __len__(self) -> int:
        return len(self.items)

    def read_image(self, path: Path, do_flip: bool) -> np.ndarray:
        """Decode ``path`` as RGB uint8 at its native size and flip it if asked."""
        image = read_rgb(path)
        return image[:, ::-1] if do_flip else image

    def load_image(self, path: Path, do_flip: bool) -> np.ndarray:
        """Decode ``path`` as RGB uint8, flip if asked, and resize to the network size.

        With a frame cache attached (`use_frame_cache`) the same array is read from the cache.
        """
        if self.frame_cache is not None:
            return self.frame_cache.load(self.data_path, path, do_flip)
        return resize_area(self.read_image(path, do_flip), self.height, self.width)

    def use_frame_cache(self, cache) -> None:
        """Read frames from ``cache`` (a `frame_cache.FrameCache`) after checking it serves this split.

        Raises ValueError naming the rebuild command when it was built for another size or split.
        """
        cache.check_dataset(self)
        self.frame_cache = cache

    def load_frames(self, item: SplitItem, do_flip: bool) -> dict:
        """Frame id -> uint8 H x W x 3 RGB at the network size for every frame of ``item``.

        Subclasses whose frames share one file (Cityscapes' stacked triplets) override this.
        """
        return {frame_id: self.load_image(self.image_path(item.folder, frame_index, side), do_flip)
                for frame_id, (frame_index, side) in self._frame_sources(item).items()}

    def native_frames(self, item: SplitItem, do_flip: bool) -> dict | None:
        """Frame id -> uint8 RGB frame *before* the resize to the network size, or None.

        The local crop is resampled from these, as the reference resamples the native image.
        A subclass whose `load_image`/`load_frames` preprocess the frames (undistortion, crops,
        stacked files) returns None unless it overrides this too; its local crops are then
        resampled from the network-size frames, which is geometrically identical but blurrier.
        """
        cls = type(self)
        if cls.load_image is not MonoDataset.load_image or cls.load_frames is not MonoDataset.load_frames:
            return None
        return {frame_id: self.read_image(self.image_path(item.folder, frame_index, side), do_flip)
                for frame_id, (frame_index, side) in self._frame_sources(item).items()}

    def crop_local(self, image: np.ndarray, crop: torch.Tensor) -> np.ndarray:
        """Resize ``image`` (any size) to the crop's ``W_r x H_r`` and cut the ``W x H`` box."""
        resized_w, resized_h = int(crop[CROP_RESIZED_WIDTH]), int(crop[CROP_RESIZED_HEIGHT])
        x0, y0 = int(crop[CROP_X0]), int(crop[CROP_Y0])
        shrink = resized_w <= image.shape[1] and resized_h <= image.shape[0]
        resized = cv2.resize(image, (resized_w, resized_h),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return np.ascontiguousarray(resized[y0:y0 + self.height, x0:x0 + self.width])

    def load_sample_frames(self, item: SplitItem, do_flip: bool, crop: torch.Tensor | None) -> dict:
        """``("color_uint8", f, 0)`` and, with a crop, ``("color_local_uint8", f, 0)`` (3 x H x W)."""
        native = self.native_frames(item, do_flip) if crop is not None else None
        if native is None:
            frames = self.load_frames(item, do_flip)
        else:
            frames = {frame_id: resize_area(image, self.height, self.width) for frame_id, image in native.items()}
        out = {}
        for frame_id, image in frames.items():
            out[("color_uint8", frame_id, 0)] = image_to_tensor(image)
            if crop is not None:
                local = self.crop_local(image if native is None else native[frame_id], crop)
                out[("color_local_uint8", frame_id, 0)] = image_to_tensor(local)
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Return one sample as a dict.

        ``key`` is the sample's index, or ``(index, augmentation_seed)``: the trainer's sampler
        passes a seed derived from (run seed, epoch, index) so that every random draw of the
        sample (flip, colour jitter, crops) is a pure function of it. A resumed run, any number
        of workers and any number of processes then see exactly the same augmented sample. A
        plain index draws from the worker's global ``random`` stream.

        Keys (B is added by the DataLoader):

        ``("color_uint8", f, 0)`` uint8 3 x H x W RGB of frame f at the network resolution.
                                 Frames are unaugmented; `model.prepare_batch` makes the float
                                 ``("color", f, s)``, the jittered ``("color_aug", f, 0)`` and
                                 smaller scales on the device.
        ``("K", s)``, ``("inv_K", s)``  float32 4 x 4 intrinsics in pixels of scale s
                                 (s = 0 .. num_scales-1; scale s is H/2^s x W/2^s) and their inverse.
        ``"stereo_T"``           float32 4 x 4 target-to-other-camera transform (only with "s").
        ``"color_jitter"``       float32 (JITTER_PARAM_DIM,), or (F, JITTER_PARAM_DIM) with
                                 jitter_per_frame, the sample's colour-jitter parameters.
        ``"do_color_aug"``       bool tensor: whether the jitter applies to this sample.
        ``"do_flip"``            bool tensor: whether the frames were flipped.
        ``"flip_depth_input"``   bool tensor, only with flip_in_depth_net: whether the depth
                                 network sees the target mirrored (the frames are not flipped).
        ``"index"``              int64 tensor: the sample's index in the split.

        BDEdepth views (training only):

        ``("color_local_uint8", f, 0)`` uint8 3 x H x W: frame f resized by the sample's ratio
                                 and cropped to the sample's box (the same box for every frame).
        ``"local_crop"``         float32 (LOCAL_CROP_DIM,): ratio, resized W and H, crop corner
                                 (layout in `local_crop`).
        ``"split_xy"``           int64 (2,): the reshuffle's split, ``(W - w_i, H - h_i)``.
        ``"bde_jitter"``         float32 (2, JITTER_PARAM_DIM): colour jitter of the local and
                                 the reshuffled view of frame 0 (the sample's own draw, or two
                                 independent draws with jitter_per_frame).
        """
        index, rng = sample_rng(key)
        item = self.items[index]
        # The same two draws whatever the probabilities, so the random stream stays the same.
        do_flip = self.flip and rng.random() < FLIP_PROBABILITY
        do_color_aug = self.color_jitter and rng.random() < self.color_jitter_probability
        flip_depth_input = do_flip and self.flip_in_depth_net
        do_flip = do_flip and not self.flip_in_depth_net

        sample: dict = {}
        # BDE draws happen only when their flags are on: the default random stream is unchanged.
        crop = draw_local_crop(rng, self.height, self.width, self.resize_ratio) if self.local_crop else None
        sample.update(self.load_sample_frames(item, do_flip, crop))

        K_normalized = self.normalized_intrinsics(item).copy()
        if do_flip:
            # Mirror the principal point; a no-op only when it is centred (KITTI), which the
            # reference silently assumed for every dataset.
            K_normalized[0, 2] = 1.0 - K_normalized[0, 2]
        for scale in range(self.num_scales):
            K = K_normalized.copy()
            K[0, :] *= self.width // (2 ** scale)
            K[1, :] *= self.height // (2 ** scale)
            sample[("K", scale)] = torch.from_numpy(K)
            sample[("inv_K", scale)] = torch.from_numpy(np.linalg.pinv(K).astype(np.float32))

        if "s" in self.frame_ids:
            side_sign = -1.0 if item.side in ("l", "2") else 1.0
            flip_sign = -1.0 if do_flip else 1.0
            stereo_T = np.eye(4, dtype=np.float32)
            stereo_T[0, 3] = side_sign * flip_sign * STEREO_BASELINE_UNITS
            sample["stereo_T"] = torch.from_numpy(stereo_T)

        num_draws = len(self.frame_ids) if self.jitter_per_frame else 1
        if do_color_aug:
            params = torch.stack([draw_color_jitter(rng, hue=self.color_jitter_hue) for _ in range(num_draws)])
        else:
            params = torch.zeros(num_draws, JITTER_PARAM_DIM, dtype=torch.float32)
        sample["color_jitter"] = params if self.jitter_per_frame else params[0]
        if crop is not None:
            sample["local_crop"] = crop
        if self.patch_reshuffle:
            sample["split_xy"] = draw_reshuffle_split(rng, self.height, self.width, self.split_ratio)
        if self.local_crop or self.patch_reshuffle:
            if self.jitter_per_frame and do_color_aug:
                sample["bde_jitter"] = torch.stack([draw_color_jitter(rng, hue=self.color_jitter_hue)
                                                    for _ in range(2)])
            else:
                sample["bde_jitter"] = params[:1].repeat(2, 1)
        sample["do_color_aug"] = torch.tensor(do_color_aug)
        sample["do_flip"] = torch.tensor(do_flip)
        if self.flip_in_depth_net:
            sample["flip_depth_input"] = torch.tensor(flip_depth_input)
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample
