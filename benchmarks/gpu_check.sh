#!/usr/bin/env bash
# One-shot GPU verification of every kernel, for a lent GPU machine (see /work/.library/device/*.md): build the CUDA
# module for the GPU at hand, run the CUDA cases of the op tests, benchmark every kernel's CUDA path against its GPU
# peers with the one harness (python -m pyfast bench --device cuda), and leave under $OUT:
#   $OUT/gpu-<date>.json   benchmark record (machine floors, masking, SGNS, attention, word2vec), merged from one process per
#                          benchmark, so a crash or a sticky CUDA fault in one loses nothing of the others
#   $OUT/env.txt, $OUT/build.log, $OUT/tests.log, $OUT/tests.xml (junit), $OUT/bench.log
# Caps: tests <= 150 s; benchmarks machine <= 30 s, masking <= 45 s, sgns <= 60 s, attention <= 130 s (its sweep
# stops starting cases after 80 s), word2vec <= 75 s (the CUDA trainer: one epoch on Zipf corpora, words/s by CUDA
# events, then skip-gram on the real-text corpus beside the CPU trainer with analogy / WS353; stops starting cases
# after 50 s, 2 repeats). Sized for ~5 minutes with the build (~1 min for one arch on 16 cores) when nothing hits its
# cap; every cap reached adds up to ~9 (under the device tool's 10-minute call limit). The attention fwd+bwd cases time pyfast's default backward (the single kernel
# of #17 stage 3); one case (D 64, N 4096, full) also times the deterministic two-kernel backward.
# Usage (repo root): OUT=/tmp/out bash benchmarks/gpu_check.sh
# Exit status: that of the tests (the benchmarks run whatever they say, so a failing kernel still gets timed).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export PATH="$PATH:/usr/local/cuda/bin"   # nvcc, where the image keeps it off the PATH
# The lent machine's image has no gensim (device KINDS.md), whose test data and evaluators the word2vec real-text
# quality case needs: benchmarks/gpu_wheels.sh (run here, before the device call) saves its wheels in .whl/ (ignored by
# git), and a run that names .whl in `carry` installs them into /tmp/site. Without them that one case is skipped.
EXTRA_PATH=""
if ls .whl/*.whl > /dev/null 2>&1 && "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl; then
  EXTRA_PATH=":/tmp/site"
fi
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
PYTHONPATH=".$EXTRA_PATH" "$PY" -c 'import pyfast, json; print(json.dumps(pyfast.info()))' 2>&1 | tee -a "$OUT/env.txt"

t0=$(date +%s)
# The op tests' cuda cases (the `device` fixture's cuda param, and tests marked cuda_only) plus the foundation.
# pytest-xdist where the image has it: a test that crashes the interpreter then fails alone instead of ending the
# run, and 8 workers share the GPU.
XDIST=""; "$PY" -c 'import xdist' 2>/dev/null && XDIST="-n 8"
PYTHONPATH=".$EXTRA_PATH" timeout 150 "$PY" -m pytest -q $XDIST -p no:cacheprovider --junitxml="$OUT/tests.xml" \
  tests/test_attention.py tests/test_cuda_primitives.py tests/test_masking.py tests/test_patch_masking.py tests/test_sgns.py tests/test_sgns_step.py tests/test_foundation.py \
  tests/test_hf_integration.py tests/test_word2vec_cuda.py -k "cuda or gpu" \
  2>&1 | tee "$OUT/tests.log" | tail -n 40
test_rc=${PIPESTATUS[0]}
echo "tests rc=$test_rc in $(( $(date +%s) - t0 )) s"

# The sgns section times three contenders per case, interleaved: plain PyTorch nn.Embedding(sparse=True) + SGD, the
# SkipGramNS autograd step + SGD, and the fused SkipGramNS.sgd_step (issue #18's step ratio: its first case, V=50k,
# D=128, N=4096, K=5; the 2026-11-28 run took 5 s for the section with two contenders).
JSON="$OUT/gpu-$(date +%F).json"
PARTS=()
for section in machine:30:20 masking:45:30 sgns:60:45 attention:130:80 word2vec:75:50:2; do
  IFS=: read -r name limit budget repeat <<< "$section"
  t0=$(date +%s)
  PYTHONPATH=".$EXTRA_PATH" timeout "$limit" "$PY" -m pyfast bench "$name" --device cuda --repeat "${repeat:-5}" --budget-s "$budget" \
    --json "$OUT/part-$name.json" > "$OUT/bench-$name.log" 2>&1
  echo "bench $name rc=$? in $(( $(date +%s) - t0 )) s"; tail -n 5 "$OUT/bench-$name.log"
  { echo "=== $name"; cat "$OUT/bench-$name.log"; } >> "$OUT/bench.log"; rm -f "$OUT/bench-$name.log"
  PARTS+=("$OUT/part-$name.json")
done
"$PY" - "$JSON" "${PARTS[@]}" <<'PYEOF'
import json, os, sys
out, parts = sys.argv[1], sys.argv[2:]
record = {"sections": {}}
for p in parts:
    name = os.path.basename(p)[len("part-"):-len(".json")]
    try:
        with open(p) as f:
            part = json.load(f)
    except (OSError, ValueError) as exc:
        record["sections"][name] = {"status": f"no record ({type(exc).__name__})"}
        continue
    record.setdefault("machine", part.get("machine"))
    record["sections"][name] = {"command": part.get("command"), "results": part.get("results"),
                                "skipped_for_time": part.get("skipped_for_time")}
    os.remove(p)
with open(out + ".tmp", "w") as f:
    json.dump(record, f, indent=1)
os.replace(out + ".tmp", out)
print("wrote", out)
PYEOF
date -u
exit "$test_rc"
