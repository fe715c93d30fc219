#!/usr/bin/env bash
# KITTI raw recipes (ImageNet-pretrained encoders), launched with torchrun (python -m torch.distributed.run).
# Usage: bash run_kitti.sh {bde|bde_resnet|mono|stereo|mono_stereo|mono_1024x320|packnet} [extra train.py flags]
#   bde            BDEdepth's recipe: HRNet-18 + grid decoder, 1 scale, resizing-cropping and
#                  splitting-permuting, AdamW 1e-4 stepped at epoch 15, 10 images per GPU
#                  (the reference trained on 2 GPUs: NUM_GPUS=2 for the same global batch)
#   bde_resnet     the same with the ResNet-18 backbone (BDEdepth's released kitti_resnet18_640x192)
#   mono, stereo, mono_stereo   Monodepth2's 640x192 recipes (ResNet-18, 4 scales, Adam, batch 12)
#   mono_1024x320  Monodepth2's 1024x320 fine-tuning (5 epochs at 1e-5) from the mono run's epoch-9
#                  weights (PRETRAINED, default $LOG/mono_640x192/models/model9.pth)
#   packnet        PackNet01 with PackNet-SfM's optimiser settings (its own loss recipe is not wired yet)
# Each recipe is a file in configs/ (its first line names the source and the published number); flags
# given after the mode override it. Without torchrun the same is
#   python train.py --config configs/monodepth2_mono_640x192.yaml --data_path kitti_data --log_dir runs
# Set KITTI to the raw data root, LOG to the output folder and NUM_GPUS to the GPUs of this node.
# Export the evaluation ground truth once:  python export_gt_depth.py --data_path $KITTI --split eigen
# Every run writes its options to <LOG>/<exp_name>/config.yaml: --config that file repeats it.
# BDEdepth runs resume from their last checkpoint when restarted (--resume); to start from released or
# earlier weights add  --pretrained_path path/to/model.pth
set -euo pipefail
cd "$(dirname "$0")"
# The project's environment (created on first use); torchrun is its torch.distributed.run module, so no
# activated environment or torchrun on the PATH is needed.
PY=$(bash setup_env.sh)
KITTI=${KITTI:-kitti_data}
LOG=${LOG:-runs}
MODE=${1:-mono}; shift || true
TRAIN=("$PY" -m torch.distributed.run --nproc_per_node="${NUM_GPUS:-1}" train.py --data_path "$KITTI" --log_dir "$LOG" --num_workers 12)
case "$MODE" in
  bde)           "${TRAIN[@]}" --config configs/bdedepth_hrnet18_640x192.yaml --resume "$@" ;;
  bde_resnet)    "${TRAIN[@]}" --config configs/bdedepth_resnet18_640x192.yaml --resume "$@" ;;
  mono)          "${TRAIN[@]}" --config configs/monodepth2_mono_640x192.yaml "$@" ;;
  stereo)        "${TRAIN[@]}" --config configs/monodepth2_stereo_640x192.yaml "$@" ;;
  mono_stereo)   "${TRAIN[@]}" --config configs/monodepth2_mono_stereo_640x192.yaml "$@" ;;
  mono_1024x320) "${TRAIN[@]}" --config configs/monodepth2_mono_1024x320.yaml \
                   --pretrained_path "${PRETRAINED:-$LOG/mono_640x192/models/model9.pth}" "$@" ;;
  packnet)       "${TRAIN[@]}" --config configs/packnet_640x192.yaml "$@" ;;
  sqldepth)      "${TRAIN[@]}" --config configs/sqldepth_resnet50_640x192_mono.yaml "$@" ;;
  sqldepth_ms)   "${TRAIN[@]}" --config configs/sqldepth_resnet50_640x192_mono_stereo.yaml "$@" ;;
  *) echo "usage: bash run_kitti.sh {bde|bde_resnet|mono|stereo|mono_stereo|mono_1024x320|packnet|sqldepth|sqldepth_ms} [flags]" >&2
     exit 2 ;;
esac
