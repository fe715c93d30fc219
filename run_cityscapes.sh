#!/usr/bin/env bash
# BDEdepth's Cityscapes recipe (ResNet-18 + grid decoder, 512x192), launched with torchrun (python -m torch.distributed.run).
# Usage: bash run_cityscapes.sh [extra train.py flags]
# Prepare the training triplets once (frames -1, 0, +1 stacked, bottom quarter cropped):
#   python prepare_cityscapes.py --dataset_dir <raw root> --dump_root $CITYSCAPES_PRE \
#     --seq_length 3 --img_width 1024 --img_height 512 --num_threads 8
# Set CITYSCAPES_PRE to that folder (the reference's --data_path_pre), SPLIT to the split folder,
# LOG to the output folder and NUM_GPUS to the GPUs of this node. Every epoch is evaluated on the
# raw test set under CITYSCAPES (the list and its gt_depths/ folder in splits/cityscapes/, as for
# the reference); evaluate a checkpoint later with  CITYSCAPES=<raw root> CKPT=<model.pth> bash evaluate.sh
# Runs resume from their last checkpoint when restarted (--resume); to start from released or
# earlier weights add  --pretrained_path path/to/model.pth
set -euo pipefail
cd "$(dirname "$0")"
# The project's environment (created on first use); torchrun is its torch.distributed.run module, so no
# activated environment or torchrun on the PATH is needed.
PY=$(bash setup_env.sh)
CITYSCAPES_PRE=${CITYSCAPES_PRE:-cityscapes_preprocessed}
CITYSCAPES=${CITYSCAPES:-cityscapes}
SPLIT=${SPLIT:-cityscapes}
LOG=${LOG:-runs}
# The recipe is configs/bdedepth_cityscapes_resnet18_512x192.yaml; flags given here override it.
"$PY" -m torch.distributed.run --nproc_per_node="${NUM_GPUS:-1}" train.py --config configs/bdedepth_cityscapes_resnet18_512x192.yaml \
  --data_path "$CITYSCAPES_PRE" --split "$SPLIT" --eval_data_path "$CITYSCAPES" --log_dir "$LOG" --num_workers 12 \
  --resume "$@"
