#!/usr/bin/env bash
# Monodepth2 recipes on KITTI raw (640x192, ResNet-18, ImageNet-pretrained).
# Usage: bash run_kitti.sh {mono|stereo|mono_stereo} [extra train.py flags]
# Set KITTI to the raw data root and LOG to the output folder. Export the ground truth once:
#   python export_gt_depth.py --data_path $KITTI --split eigen
set -euo pipefail
cd "$(dirname "$0")"
KITTI=${KITTI:-kitti_data}
LOG=${LOG:-runs}
MODE=${1:-mono}; shift || true
COMMON=(--data_path "$KITTI" --log_dir "$LOG" --backbone resnet --num_layers 18 --height 192 --width 640
        --num_scales 4 --batch_size 12 --optimizer adam --learning_rate 1e-4 --num_epochs 20
        --lr_sche_type step --decay_step 15 --decay_rate 0.1 --eval_split eigen --num_workers 12)
case "$MODE" in
  mono)        python train.py "${COMMON[@]}" --exp_name mono_640x192 --split eigen_zhou "$@" ;;
  stereo)      python train.py "${COMMON[@]}" --exp_name stereo_640x192 --split eigen_full \
                 --use_stereo --frame_ids 0 "$@" ;;
  mono_stereo) python train.py "${COMMON[@]}" --exp_name mono_stereo_640x192 --split eigen_zhou \
                 --use_stereo "$@" ;;
  *) echo "usage: bash run_kitti.sh {mono|stereo|mono_stereo} [flags]" >&2; exit 2 ;;
esac
