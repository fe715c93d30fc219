"""Datasets. `DATASETS` maps ``--dataset`` names to classes: it is the whole registry.

`dataset_options` turns a dataset's own flags into its constructor's keyword arguments.
"""

from __future__ import annotations

from datasets.cityscapes_dataset import CityscapesDataset
from datasets.custom_dataset import CustomDataset
from datasets.ddad_dataset import DDADDataset
from datasets.euroc_dataset import EuRoCDataset
from datasets.image_folder_dataset import ImageFolderDataset
from datasets.kitti_dataset import KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset
from datasets.mono_dataset import MonoDataset, SplitItem
from datasets.nyu_dataset import NYUDataset

DATASETS = {
    "kitti": KITTIRAWDataset,
    "kitti_odom": KITTIOdomDataset,
    "kitti_depth": KITTIDepthDataset,
    "nyuv2": NYUDataset,
    "cityscapes": CityscapesDataset,
    "custom": CustomDataset,
    "image_folder": ImageFolderDataset,
    "ddad": DDADDataset,
    "euroc": EuRoCDataset,
}


def dataset_options(opts) -> dict:
    """Keyword arguments of ``DATASETS[opts.dataset]`` from its own flags (``{}`` for most).

    ``--intrinsics`` reaches `CustomDataset` and `ImageFolderDataset` as one string (numbers or a file path);
    ``--odom_camera`` reaches `KITTIOdomDataset` as ``camera``;
    ``--velocity_weight`` > 0 asks KITTI raw or DDAD for the camera's travel between frames
    (``translation_norms``).
    """
    options = {}
    if opts.dataset in ("custom", "image_folder") and getattr(opts, "intrinsics", None):
        options["intrinsics"] = " ".join(opts.intrinsics)
    if opts.dataset == "kitti_odom":
        options["camera"] = getattr(opts, "odom_camera", "color")
    if getattr(opts, "velocity_weight", 0.0) > 0:
        options["translation_norms"] = True
    return options


__all__ = ["DATASETS", "CityscapesDataset", "CustomDataset", "DDADDataset", "EuRoCDataset", "ImageFolderDataset",
           "KITTIDepthDataset", "KITTIOdomDataset", "KITTIRAWDataset", "MonoDataset", "NYUDataset", "SplitItem",
           "dataset_options"]
