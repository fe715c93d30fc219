"""Datasets. `DATASETS` maps ``--dataset`` names to classes: it is the whole registry."""

from __future__ import annotations

from datasets.kitti_dataset import KITTIRAWDataset
from datasets.mono_dataset import MonoDataset, SplitItem

DATASETS = {
    "kitti": KITTIRAWDataset,
}

__all__ = ["DATASETS", "KITTIRAWDataset", "MonoDataset", "SplitItem"]
