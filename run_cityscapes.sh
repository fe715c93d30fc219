#!/usr/bin/env bash
# BDEdepth's Cityscapes recipe (ResNet-18 + grid decoder, 512x192), launched with torchrun.
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
CITYSCAPES_PRE=${CITYSCAPES_PRE:-cityscapes_preprocessed}
CITYSCAPES=${CITYSCAPES:-cityscapes}
SPLIT=${SPLIT:-cityscapes}
LOG=${LOG:-runs}
torchrun --nproc_per_node="${NUM_GPUS:-1}" train.py --data_path "$CITYSCAPES_PRE" --split "$SPLIT" \
  --log_dir "$LOG" --exp_name cs_resnet18_512x192 --dataset cityscapes --backbone resnet --num_layers 18 \
  --decoder bdedepth --width 512 --height 192 --num_scales 1 --batch_size 12 --optimizer adamw \
  --lr_sche_type step --learning_rate 1e-4 --eta_min 5e-6 --num_epochs 20 --decay_step 15 \
  --decay_rate 0.1 --log_frequency 600 --save_frequency 600 --resume --eval_data_path "$CITYSCAPES" --num_workers 12 \
  --use_local_crop --use_patch_reshuffle "$@"
