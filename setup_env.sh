#!/usr/bin/env bash
# Creates (or repairs) the project's virtual environment in .venv and prints its python.
# Idempotent: a second call with a working environment installs nothing.
# Usage: PY=$(bash setup_env.sh [--dev])
set -euo pipefail
cd "$(dirname "$0")"
VENV=${MDK_VENV:-.venv}
REQ=requirements.txt
[ "${1:-}" = "--dev" ] && REQ=requirements-dev.txt
PYTHON_BIN=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$VENV" >&2
fi
check='import torch, torchvision, numpy, cv2, PIL, matplotlib, tensorboardX, h5py, tqdm, scipy, yaml'
[ "$REQ" = requirements-dev.txt ] && check="$check, pytest, pytest_timeout"
if ! "$VENV/bin/python" -c "$check" >/dev/null 2>&1; then
  echo "setup_env: installing $REQ into $VENV (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2 || true
  "$VENV/bin/python" -m pip install -q -r "$REQ" >&2
  "$VENV/bin/python" -c "$check" >&2
fi
echo "$VENV/bin/python"
