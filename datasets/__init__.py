"""Datasets. `DATASETS` maps ``--dataset`` names to classes: it is the whole registry."""

from __future__ import annotations

from datasets.cityscapes_dataset import CityscapesDataset
from datasets.custom_dataset import CustomDataset
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
}

__all__ = ["DATASETS", "CityscapesDataset", "CustomDataset", "KITTIDepthDataset", "KITTIOdomDataset",
           "KITTIRAWDataset", "MonoDataset", "NYUDataset", "SplitItem"]
