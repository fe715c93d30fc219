#!/usr/bin/env bash
# Evaluate one checkpoint on every dataset whose root is given (BDEdepth's evaluate.sh).
# Usage: CKPT=kitti_hrnet18_640x192.pth KITTI=kitti_data [MAKE3D=...] [NYUV2=...] [CITYSCAPES=...] \
#          bash evaluate.sh [extra evaluate_depth.py flags, e.g. --post_process]
# The checkpoint carries its architecture, input size and depth range, so no model flags are
# needed (the reference passed --backbone/--width/--height by hand and pointed at a 512x192 file
# while evaluating at 640). Stereo-trained models: add --eval_stereo.
set -euo pipefail
cd "$(dirname "$0")"
PY=$(bash setup_env.sh)  # the project's environment, created on first use
CKPT=${CKPT:-kitti_hrnet18_640x192.pth}
DATA=()
[[ -n "${KITTI:-}" ]] && DATA+=(--kitti_path "$KITTI" --eval_split "${EVAL_SPLIT:-eigen}")
[[ -n "${MAKE3D:-}" ]] && DATA+=(--make3d_path "$MAKE3D")
[[ -n "${NYUV2:-}" ]] && DATA+=(--nyuv2_path "$NYUV2")
[[ -n "${CITYSCAPES:-}" ]] && DATA+=(--cityscapes_path "$CITYSCAPES")
if [[ ${#DATA[@]} -eq 0 ]]; then
  echo "evaluate.sh: set at least one of KITTI, MAKE3D, NYUV2, CITYSCAPES to a dataset root" >&2
  exit 2
fi
"$PY" evaluate_depth.py --pretrained_path "$CKPT" --batch_size 12 "${DATA[@]}" "$@"
