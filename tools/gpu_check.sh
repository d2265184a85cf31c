#!/usr/bin/env bash
# One-shot device check (needs a CUDA GPU and CuPy; the device image has cupy-cuda13x preinstalled).
# Prints the GPU and CuPy version, runs the GPU tests, then the GPU benchmark: SGD, Adam and SIBP,
# fused against unfused, and the GPU/CPU ratio, on 784-500-10 and on 3072-4000-1000-4000-10 (batch 100).
# Everything also goes to $OUT/gpu_check.log when OUT is set. Budget: under 5 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-}"
log="${OUT:+$OUT/gpu_check.log}"
log="${log:-/dev/null}"
export PYTHONUNBUFFERED=1
{
  echo "== nvidia-smi"; nvidia-smi || true
  echo "== cupy"; python -c "import cupy; print('cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
  echo "== install (project only)"; python -m pip install -q --no-deps -e . 2>&1 | tail -2
  echo "== pytest -m gpu"; timeout 120 python -m pytest -m gpu -ra -q tests
  echo "== bench 784-500-10"
  timeout 75 python tools/bench.py --backend cupy --samples 22000 --repeats 2 --methods sgd,adam,sibp
  echo "== bench 3072-4000-1000-4000-10"
  timeout 75 python tools/bench.py --backend cupy --layers 3072,4000,1000,4000,10 --samples 3000 \
      --repeats 1 --methods sgd,adam,sibp
} 2>&1 | tee "$log"
