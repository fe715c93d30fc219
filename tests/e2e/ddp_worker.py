"""Run under torchrun by test_distributed.py: train, then save this rank's weights.

    torchrun --standalone --nproc_per_node 2 ddp_worker.py OUT_DIR [train.py flags...]

With FREEZE_BATCHNORM=1 the BatchNorm layers run on their running statistics (eval mode) while
everything else trains: BatchNorm's batch statistics are the one part of the computation that
depends on how a global batch is split over processes (SyncBatchNorm, which would remove that,
exists only for CUDA), so the one-process comparison freezes them to compare the rest exactly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from options import parse_train_options  # noqa: E402
from trainer import Trainer  # noqa: E402


def freeze_batchnorm(trainer: Trainer) -> None:
    original_set_train = trainer.set_train

    def set_train() -> None:
        original_set_train()
        for module in trainer.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

    trainer.set_train = set_train


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out_dir = Path(argv[0])
    trainer = Trainer(parse_train_options(argv[1:]))
    if os.environ.get("FREEZE_BATCHNORM") == "1":
        freeze_batchnorm(trainer)
    rank = trainer.dist.rank
    trainer.train()
    weights = {f"{name}.{key}": value for name, state in trainer.model.state_dicts().items()
               for key, value in state.items()}
    torch.save(weights, out_dir / f"rank{rank}.pth")


if __name__ == "__main__":
    main()
