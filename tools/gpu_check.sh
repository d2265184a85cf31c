#!/usr/bin/env bash
# One-shot device check (needs a CUDA GPU and CuPy; the device image has cupy-cuda13x preinstalled and no
# network, so only the project itself is installed, with --no-deps and without build isolation).
# Prints the GPU and the versions, runs every `gpu` test, then the GPU benchmark on 784-500-10 and on
# 3072-4000-1000-4000-10 (batch 100, float32): seconds per epoch of SGD, Adam, SIBP (the trust-region
# default) and ProxBP (row-space form chosen per layer), the fused against the unfused line search (whole
# epochs, and each fused op against its unfused reference per call), and the GPU/CPU speed-up with the CPU
# at 1 BLAS thread and at every core; then SIBP with control="host" and "device" against GPU SGD and the
# CPU, ending with one "GPU SUMMARY ..." line. Everything also goes to $OUT/gpu_check.log when OUT is set.
# Budget: about 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-}"
log="${OUT:+$OUT/gpu_check.log}"
log="${log:-/dev/null}"
PY="${PYTHON:-python3}"
ncpu="$(nproc)"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "== nvidia-smi"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  echo "== versions"; "$PY" -c "import sys, numpy, scipy, cupy; print(sys.version.split()[0], 'numpy', numpy.__version__, 'scipy', scipy.__version__, 'cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
  echo "== install (project only)"
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2 || echo "(install failed; running from PYTHONPATH)"
  echo "== pytest -m gpu"
  timeout 170 "$PY" -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors tests \
      | tee /tmp/sibp_gpu_tests.txt
  passed=$(grep -oE '[0-9]+ passed' /tmp/sibp_gpu_tests.txt | tail -1 | grep -oE '[0-9]+')
  total=$(grep -oE '[0-9]+ (passed|failed|error|errors|skipped)' /tmp/sibp_gpu_tests.txt | grep -oE '[0-9]+' \
      | awk '{s += $1} END {print s}')
  export GPU_TESTS="${passed:-0}/${total:-0}"
  echo "== bench 784-500-10"
  timeout 120 "$PY" tools/bench.py --backend cupy --samples 22000 --repeats 2 \
      --cpu-samples 3000 --cpu-threads "1,$ncpu"
  echo "== bench 3072-4000-1000-4000-10"
  timeout 150 "$PY" tools/bench.py --backend cupy --layers 3072,4000,1000,4000,10 --samples 5000 \
      --repeats 2 --cpu-samples 500 --cpu-threads "1,$ncpu"
  echo "== SIBP control host vs device, GPU against the CPU (tools/device_control.py summary)"
  timeout 240 "$PY" tools/device_control.py summary --backend cupy --samples 10000 --repeats 2 \
      --cpu-threads "1,$ncpu"
} 2>&1 | tee "$log"
