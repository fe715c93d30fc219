"""Train a depth and pose network: ``python train.py --data_path KITTI --split eigen_zhou ...``."""

from __future__ import annotations

import sys
from typing import Sequence

from options import parse_train_options


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse options, train, and return the last evaluation's metrics."""
    from utils import configure_logging

    configure_logging()
    opts = parse_train_options(argv)
    from trainer import Trainer

    return Trainer(opts).train()


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
