#!/usr/bin/env bash
# Saves, in .whl/ (ignored by git), the wheels that benchmarks/gpu_check.sh installs on a lent GPU machine whose image
# lacks them: gensim (the word2vec real-text case: its test corpus, analogy and WS353 evaluators) and smart_open, its
# one requirement that image does not have. For the image's Python 3.12 on x86_64 (device KINDS.md). ~28 MB, under
# the device tool's 64 MiB carry limit. Usage (repo root, where pip reaches PyPI): bash benchmarks/gpu_wheels.sh; then
# run gpu_check.sh with carry [".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "gensim==4.4.0" "smart_open==9.0.4"
ls -la .whl
