#!/usr/bin/env bash
# Builds build/cuda-emu/_C_cuda*.so: the CUDA module's sources (the .cu files and the .cuh they include) compiled
# by g++ against the host emulator (include/emu_cuda.h), with the real csrc/bindings_cuda.cpp, so
# tests/test_cuda_emu.py can run the kernels' logic and the Python CUDA layer's calls without a GPU.
# Usage (repo root): bash tests/cuda_emu/build.sh
# Environment: EMU_OUT (output folder, default build/cuda-emu), EMU_CXXFLAGS (extra g++ flags, e.g. sanitizers).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
OUT="${EMU_OUT:-build/cuda-emu}"
rm -rf "$OUT/include-pre"
mkdir -p "$OUT/src" "$OUT/include-pre"
for f in csrc/*/*.cu; do
  "$PY" tests/cuda_emu/preprocess.py "$f" "$OUT/src/$(basename "${f%.cu}").cpp"
done
# Kernels also live in headers (csrc/attention/attention_*.cuh): their rewritten copies, at the same relative paths
# under include-pre/, come before csrc/ on the include path, so `#include "attention/x.cuh"` finds the copy.
for f in csrc/*/*.cuh; do
  mkdir -p "$OUT/include-pre/$(basename "$(dirname "$f")")"
  "$PY" tests/cuda_emu/preprocess.py "$f" "$OUT/include-pre/${f#csrc/}"
done
# -O1: the kernels run as one OS thread per CUDA thread; optimisation matters little, compile time does.
g++ -std=c++20 -O1 -g0 -fPIC -shared -pthread -w -Itests/cuda_emu/include -include emu_cuda.h \
  -I"$OUT/include-pre" -Icsrc ${EMU_CXXFLAGS:-} \
  $("$PY" -m pybind11 --includes) "$OUT"/src/*.cpp csrc/bindings_cuda.cpp \
  -o "$OUT/_C_cuda$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
echo "built $OUT"
