#!/usr/bin/env bash
# The test suite: fetches the real model the tests read (once), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOLLM2_GGUF="$(scripts/fetch-models.sh)"
# The references the model tests compare against: llama.cpp's server, and an f32 numpy
# forward over weights dequantized by llama.cpp's gguf package.
python3 -c "import xllamacpp, gguf, numpy" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check "xllamacpp==2026.10.11549" "gguf==0.19.0" "numpy>=1.26" >&2
export SMOLLM2_GGUF
cargo test --workspace "$@"
