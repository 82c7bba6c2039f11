#!/usr/bin/env bash
# One-shot GPU verification for issues #8 and #6 (and #5's masking kernel), for a lent GPU machine (see
# /work/.library/device/*.md): build the CUDA module for the GPU at hand, run the CUDA tests, benchmark, and
# leave everything under $OUT:
#   $OUT/gpu-<date>.json   benchmark record (masking tokens/s, SGNS pairs/s, attention TFLOP/s vs torch SDPA)
#   $OUT/env.txt, $OUT/build.log, $OUT/tests.log, $OUT/tests.xml (junit), $OUT/bench.log
# Caps: tests <= 180 s, then one process per benchmark section (masking <= 45 s, SGNS <= 60 s, attention <= 150 s)
# so a crash or a sticky CUDA fault in one section loses nothing of the others (each merges into the same JSON).
# Measured on an H200 (16 cores, 2026-11-28): the whole script took 118 s (build for sm_90 ~50 s, tests 26 s until
# a crash, benchmarks 11 + 10 + 24 s); the machine started in ~30 s.
# Usage (repo root): OUT=/tmp/out bash benchmarks/gpu_check.sh
# Exit status: that of the tests (the benchmarks run whatever they say, so a failing kernel still gets timed).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export PATH="$PATH:/usr/local/cuda/bin"   # nvcc, where the image keeps it off the PATH
# At most 8 files come back from a lent machine: env.txt, build.log, tests.log, tests.xml, bench.log, the JSON.
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  command -v nvcc && nvcc --version | tail -n 2
  "$PY" - <<'PYEOF'
import os, sys, sysconfig
import torch
inc = sysconfig.get_paths()["include"]
print(sys.version.split()[0], torch.__version__, inc, "headers:", os.path.exists(os.path.join(inc, "Python.h")))
PYEOF
} 2>&1 | tee "$OUT/env.txt"

# Arch of GPU 0 (90 on Hopper, 80 on Ampere); fall back to both.
ARCH="$("$PY" -c 'import torch; c=torch.cuda.get_device_capability(0); print(f"{c[0]}{c[1]}")' 2>/dev/null || echo "80;90")"
echo "building for CUDA arch $ARCH"
t0=$(date +%s)
BUILD_DIR=build/gpu PYFAST_CUDA=ON PYTHON="$PY" .ci/dev-build -DCMAKE_CUDA_ARCHITECTURES="$ARCH" > "$OUT/build.log" 2>&1
build_rc=$?
echo "build rc=$build_rc in $(( $(date +%s) - t0 )) s"; tail -n 20 "$OUT/build.log"
if [ "$build_rc" -ne 0 ]; then
  # Fallback: the pip route the README documents.
  PYFAST_CUDA=ON "$PY" -m pip install --no-build-isolation --no-deps -q . >> "$OUT/build.log" 2>&1 || exit 2
fi
PYTHONPATH=. "$PY" -c 'import pyfast, json; print(json.dumps(pyfast.info()))' 2>&1 | tee -a "$OUT/env.txt"

t0=$(date +%s)
# pytest-xdist where the image has it: a test that crashes the interpreter then fails alone instead of ending the
# run (a segfault in one CUDA test hid the rest on 2026-11-28), and 8 workers share the GPU.
XDIST=""; "$PY" -c 'import xdist' 2>/dev/null && XDIST="-n 8"
PYTHONPATH=. timeout 180 "$PY" -m pytest -q $XDIST -p no:cacheprovider --junitxml="$OUT/tests.xml" tests/test_cuda.py \
  tests/test_foundation.py 2>&1 | tee "$OUT/tests.log" | tail -n 40
test_rc=${PIPESTATUS[0]}
echo "tests rc=$test_rc in $(( $(date +%s) - t0 )) s"

JSON="$OUT/gpu-$(date +%F).json"
for section in masking:45:0 sgns:60:0 attention:150:90; do
  IFS=: read -r name limit budget <<< "$section"
  t0=$(date +%s)
  PYTHONPATH=. timeout "$limit" "$PY" benchmarks/gpu_bench.py --out "$JSON" --only "$name" --reps 5 \
    --budget-s "$budget" > "$OUT/bench-$name.log" 2>&1
  echo "bench $name rc=$? in $(( $(date +%s) - t0 )) s"; tail -n 5 "$OUT/bench-$name.log"
  { echo "=== $name"; cat "$OUT/bench-$name.log"; } >> "$OUT/bench.log"; rm -f "$OUT/bench-$name.log"
done
date -u
exit "$test_rc"
