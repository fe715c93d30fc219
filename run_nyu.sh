#!/usr/bin/env bash
# BDEdepth's NYUv2 recipe (HRNet-18 + grid decoder, 384x288, max depth 10 m), launched with torchrun (python -m torch.distributed.run).
# Usage: bash run_nyu.sh [extra train.py flags]
# Set NYU to the NYUv2 training root, SPLIT to the split folder (train_files.txt), LOG to the
# output folder and NUM_GPUS to the GPUs of this node. The reference trained on one GPU with 16
# images and left splitting-permuting off (commented out in its script): add
# --use_patch_reshuffle to try it. Every epoch is evaluated on the labelled NYUv2 test set: set
# NYU_TEST to the folder of its .h5 files (the list is splits/nyuv2/test_files.txt, fetched on first
# use). Evaluate a checkpoint later with  NYUV2=<nyu test root> CKPT=<model.pth> bash evaluate.sh
# Runs resume from their last checkpoint when restarted (--resume); to start from released or
# earlier weights add  --pretrained_path path/to/model.pth
set -euo pipefail
cd "$(dirname "$0")"
# The project's environment (created on first use); torchrun is its torch.distributed.run module, so no
# activated environment or torchrun on the PATH is needed.
PY=$(bash setup_env.sh)
NYU=${NYU:-nyu_data}
NYU_TEST=${NYU_TEST:-nyu_test}
SPLIT=${SPLIT:-nyu}
LOG=${LOG:-runs}
"$PY" -m torch.distributed.run --nproc_per_node="${NUM_GPUS:-1}" train.py --data_path "$NYU" --split "$SPLIT" --log_dir "$LOG" \
  --exp_name nyu_hrnet18_384x288 --dataset nyuv2 --backbone hrnet --num_layers 18 --decoder bdedepth \
  --width 384 --height 288 --max_depth 10 --num_scales 1 --batch_size 16 --optimizer adamw \
  --lr_sche_type step --learning_rate 1e-4 --eta_min 5e-6 --num_epochs 50 --decay_step 26 36 \
  --decay_rate 0.1 --log_frequency 400 --save_frequency 400 --resume --eval_data_path "$NYU_TEST" --num_workers 12 \
  --use_local_crop "$@"
