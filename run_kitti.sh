#!/usr/bin/env bash
# KITTI raw recipes (640x192, ImageNet-pretrained encoders), launched with torchrun.
# Usage: bash run_kitti.sh {bde|bde_resnet|mono|stereo|mono_stereo} [extra train.py flags]
#   bde          BDEdepth's recipe: HRNet-18 + grid decoder, 1 scale, resizing-cropping and
#                splitting-permuting, AdamW 1e-4 stepped at epoch 15, 10 images per GPU
#                (the reference trained on 2 GPUs: NUM_GPUS=2 for the same global batch)
#   bde_resnet   the same with the ResNet-18 backbone (BDEdepth's released kitti_resnet18_640x192)
#   mono, stereo, mono_stereo   Monodepth2's recipes (ResNet-18, 4 scales, Adam, batch 12)
# Set KITTI to the raw data root, LOG to the output folder and NUM_GPUS to the GPUs of this node.
# Export the evaluation ground truth once:  python export_gt_depth.py --data_path $KITTI --split eigen
# Runs resume from their last checkpoint when restarted (--resume); to start from released or
# earlier weights add  --pretrained_path path/to/model.pth
set -euo pipefail
cd "$(dirname "$0")"
KITTI=${KITTI:-kitti_data}
LOG=${LOG:-runs}
MODE=${1:-mono}; shift || true
TRAIN=(torchrun --nproc_per_node="${NUM_GPUS:-1}" train.py --data_path "$KITTI" --log_dir "$LOG"
       --dataset kitti --height 192 --width 640 --eval_split eigen --num_workers 12)
BDE=(--split eigen_zhou --num_layers 18 --decoder bdedepth --num_scales 1 --batch_size 10
     --optimizer adamw --lr_sche_type step --learning_rate 1e-4 --eta_min 5e-6 --num_epochs 20
     --decay_step 15 --decay_rate 0.1 --log_frequency 400 --save_frequency 400 --resume
     --use_local_crop --use_patch_reshuffle)
MD2=(--backbone resnet --num_layers 18 --num_scales 4 --batch_size 12 --optimizer adam --learning_rate 1e-4
     --num_epochs 20 --lr_sche_type step --decay_step 15 --decay_rate 0.1)
case "$MODE" in
  bde)         "${TRAIN[@]}" "${BDE[@]}" --backbone hrnet --exp_name kitti_hrnet18_640x192 "$@" ;;
  bde_resnet)  "${TRAIN[@]}" "${BDE[@]}" --backbone resnet --exp_name kitti_resnet18_640x192 "$@" ;;
  mono)        "${TRAIN[@]}" "${MD2[@]}" --exp_name mono_640x192 --split eigen_zhou "$@" ;;
  stereo)      "${TRAIN[@]}" "${MD2[@]}" --exp_name stereo_640x192 --split eigen_full \
                 --use_stereo --frame_ids 0 "$@" ;;
  mono_stereo) "${TRAIN[@]}" "${MD2[@]}" --exp_name mono_stereo_640x192 --split eigen_zhou \
                 --use_stereo "$@" ;;
  *) echo "usage: bash run_kitti.sh {bde|bde_resnet|mono|stereo|mono_stereo} [flags]" >&2; exit 2 ;;
esac
