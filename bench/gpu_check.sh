#!/usr/bin/env bash
# Every figure the H200 goals need, in one call of under 8 minutes on a GPU machine (no internet
# needed: the synthetic KITTI-layout data is generated here):
#   1. samples/s and peak memory of both recipes (Monodepth2, BDEdepth; 640x192, batch 12) with the
#      defaults (bf16, channels_last, fused optimiser, deferred non-finite check);
#   2. the same with bf16 off (--mixed_precision none);
#   3. with the per-step non-finite check's host synchronisation (--finite_check every_step);
#   4. with the frame cache (--frame_cache, built here);
#   5. with --compile (capped at COMPILE_TIMEOUT seconds: compilation is the slow part);
#   6. the loader per worker with and without the frame cache;
#   7. the 697-image evaluation time (evaluate_depth.py, both backbones).
# Each step prints its Markdown table; the JSON files land in $GPU_CHECK_OUT (bench_out/gpu_check).
#
#   bash bench/gpu_check.sh                  # on the GPU machine
#   GPU_CHECK_TINY=1 bash bench/gpu_check.sh # the same steps on the CPU at tiny sizes (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${GPU_CHECK_OUT:-bench_out/gpu_check}
mkdir -p "$OUT"

if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then
  DEVICE=cpu
  DATA=(--work_dir "$OUT/data" --synthetic_size 256 80 --frames_per_drive 6)
  SIZE=(--height 64 --width 128)
  TRAIN=(--batch_size 2 --num_workers 0 --warmup 1 --steps 1 --recipes md2)
  LOADER=(--samples 1)
  EVAL=(--num_images 4 --batch_size 2 --num_workers 0 --backbones resnet)
  COMPILE_TIMEOUT=0  # compiling on a CI CPU takes minutes: the step is shown, not run
else
  DEVICE=cuda
  DATA=(--work_dir "$OUT/data")
  SIZE=(--height 192 --width 640)
  TRAIN=(--batch_size 12 --num_workers "$(( $(nproc) < 8 ? $(nproc) : 8 ))" --warmup 5 --steps 20)
  LOADER=(--samples 36)
  EVAL=()
  COMPILE_TIMEOUT=${COMPILE_TIMEOUT:-240}
fi

step() { echo; echo "=== $1"; }

start=$(date +%s)
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

# The generated data (bench/common.py names its folder after the flags and generates it on the
# first call; a script file, not stdin, because the generator's worker pool re-imports it), and
# the frame cache of its training split at the measured size.
ROOT=$("$PY" bench/common.py "${DATA[@]}")
CACHE="$OUT/frame_cache_$(basename "$ROOT")_${SIZE[3]}x${SIZE[1]}"
if [ ! -f "$CACHE/index.json" ]; then
  "$PY" build_frame_cache.py --data_path "$ROOT" --split "$ROOT/splits/synthetic" "${SIZE[@]}" \
      --output "$CACHE" --no-progress_bar
fi

# Steps 1-4 in one process: one start-up, and each configuration builds its own Trainer and loader.
step "training throughput: defaults, bf16 off, per-step and deferred non-finite check, frame cache"
"$PY" bench/train_throughput.py --device "$DEVICE" "${DATA[@]}" "${SIZE[@]}" "${TRAIN[@]}" \
    --variant defaults= --variant bf16_off=--mixed_precision=none \
    --variant finite_check_every_step=--finite_check=every_step \
    --variant finite_check_deferred=--finite_check=deferred \
    --variant "frame_cache=--frame_cache=$(printf %q "$CACHE")" --json "$OUT/train.json"

step "training throughput: --compile (at most ${COMPILE_TIMEOUT}s)"
if [ "$COMPILE_TIMEOUT" -gt 0 ]; then
  timeout "$COMPILE_TIMEOUT" "$PY" bench/train_throughput.py --device "$DEVICE" "${DATA[@]}" "${SIZE[@]}" \
      "${TRAIN[@]}" --json "$OUT/train_compile.json" -- --compile \
    || echo "--compile did not finish within ${COMPILE_TIMEOUT}s (raise COMPILE_TIMEOUT)"
else
  echo "skipped in the tiny run (COMPILE_TIMEOUT=0)"
fi

step "loader per worker, with and without the frame cache"
"$PY" bench/loader_throughput.py "${DATA[@]}" "${SIZE[@]}" "${LOADER[@]}" --frame_cache "$CACHE" \
    --json "$OUT/loader.json"

step "evaluation of an Eigen-sized split"
"$PY" bench/eval_throughput.py --device "$DEVICE" --work_dir "$OUT/data" "${DATA[@]:2}" "${SIZE[@]}" "${EVAL[@]}" \
    --json "$OUT/eval.json"

echo
echo "gpu_check done in $(( $(date +%s) - start )) s; JSON in $OUT"
