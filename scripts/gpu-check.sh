#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the backend parity tests (lm/tests/backends.rs,
# each backend against flex) and the SmolLM2 benchmark (benches/llama.rs) on CUDA and on
# Vulkan (burn's wgpu backend), with the flex benchmark beside them as the same machine's
# baseline. Prints the card, each command and its figures, then a summary.
# Without a GPU it says what it skipped and exits 0. Exit status 1 if a check that ran failed.
# Usage: scripts/gpu-check.sh [--no-bench]
#
# On a GPU machine without a Rust toolchain (or without the crates.io registry), build the
# binaries elsewhere and name their directory in RCO_PREBUILT: it holds `rco` (rco-cli built
# with `--release --features cuda`), `backends-test` (`cargo test -p rco-lm --test backends
# --release --features cuda --no-run`) and `llama-bench` (`cargo bench -p rco-benches
# --features cuda --bench llama --no-run`); the models come from RCO_MODELS_DIR
# (scripts/fetch-models.sh uses the files there and fetches only what is missing). Vulkan
# is skipped in that mode.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rco-target}"
export CARGO_TERM_COLOR=never
bench=1
[ "${1:-}" = "--no-bench" ] && bench=0

summary=()
failed=0
note() { summary+=("$1"); echo "gpu-check: $1"; }
run() {
  local label="$1"
  shift
  echo
  echo "+ $*"
  local start=$SECONDS
  if env "$@"; then
    note "$label: ok ($((SECONDS - start)) s)"
  else
    note "$label: FAILED ($((SECONDS - start)) s)"
    failed=1
  fi
}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi is missing or finds no card)."
  echo "gpu-check: skipped the CUDA and Vulkan parity tests and benchmarks; nothing ran."
  echo "gpu-check: the wgpu tests on software Vulkan run in scripts/test.sh instead."
  exit 0
fi

echo "== card"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
echo "CPU: $(nproc) threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

prebuilt="${RCO_PREBUILT:-}"
[ -n "$prebuilt" ] && echo "binaries: prebuilt in $prebuilt"
SMOLLM2_GGUF="$(scripts/fetch-models.sh)" || { echo "gpu-check: no SmolLM2 model"; exit 1; }
export SMOLLM2_GGUF
# Qwen is optional: the benchmark runs it too when it is there.
if QWEN_GGUF="$(scripts/fetch-models.sh qwen2.5-coder-0.5b 2>/dev/null)" && [ -n "$QWEN_GGUF" ]; then
  export QWEN_GGUF
else
  unset QWEN_GGUF
  echo "gpu-check: Qwen2.5-Coder-0.5B not available; the benchmark runs SmolLM2 only"
fi
# The parity tests also run Qwen2.5 and Gemma 3 (they fail when a model is missing).
GEMMA_GGUF="$(scripts/fetch-models.sh gemma-3-270m 2>/dev/null)" && export GEMMA_GGUF
if [ "$bench" = 1 ]; then
  # The benchmark compares with llama.cpp (on the CPU) when its Python package is there.
  python3 -c "import xllamacpp" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check "xllamacpp==2026.10.11549" >&2 \
    || echo "gpu-check: xllamacpp not installed; the benchmark prints '-' for llama.cpp"
fi

parity=(cargo test -p rco-lm --test backends)
parity_args=(-- --nocapture --test-threads=1)
cuda_parity=("${parity[@]}" --features cuda "${parity_args[@]}")
cuda_rco=(cargo run -q -p rco-cli --features cuda --)
cuda_bench=(cargo bench -p rco-benches --features cuda --bench llama)
flex_bench=(cargo bench -p rco-benches --bench llama)
if [ -n "$prebuilt" ]; then
  cuda_parity=("$prebuilt/backends-test" --nocapture --test-threads=1)
  cuda_rco=("$prebuilt/rco")
  cuda_bench=("$prebuilt/llama-bench" --bench)
  flex_bench=("$prebuilt/llama-bench" --bench)
fi

# CUDA: cubecl compiles its kernels with NVRTC, which comes with the CUDA toolkit (or the
# PyPI wheel nvidia-cuda-nvrtc-cu12), not with the driver.
nvrtc=""
if ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  nvrtc="system"
else
  for dir in ${CUDA_PATH:-} ${CUDA_HOME:-} /usr/local/cuda /usr/local/cuda-*; do
    if compgen -G "$dir/lib64/libnvrtc.so*" >/dev/null; then
      nvrtc="$dir/lib64"
      break
    fi
  done
  if [ -z "$nvrtc" ]; then
    wheel="$(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib"))' 2>/dev/null || true)"
    [ -n "$wheel" ] && compgen -G "$wheel/libnvrtc.so*" >/dev/null && nvrtc="$wheel"
  fi
  if [ -z "$nvrtc" ]; then
    # CUDA 13's wheels put it under nvidia/cu13/lib.
    root="$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || true)"
    found="$( [ -n "$root" ] && find "$root" -name 'libnvrtc.so*' 2>/dev/null | head -1)"
    [ -n "$found" ] && nvrtc="$(dirname "$found")"
  fi
fi
if [ -z "$nvrtc" ]; then
  note "CUDA skipped: NVRTC (libnvrtc.so) not found; install the CUDA toolkit or pip install nvidia-cuda-nvrtc-cu12"
else
  [ "$nvrtc" != system ] && export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo
  echo "== CUDA (NVRTC: $nvrtc)"
  if [ -n "$prebuilt" ] && [ ! -x "$prebuilt/backends-test" ]; then
    note "CUDA parity test skipped: no backends-test in $prebuilt (rco backends below compares the backends)"
  else
    run "CUDA parity test" "${cuda_parity[@]}"
  fi
  run "rco backends cpu,cuda:0" "${cuda_rco[@]}" backends \
    --model "$SMOLLM2_GGUF" --devices cpu,cuda:0 --out "${RCO_BACKENDS_OUT:-$CARGO_TARGET_DIR}/backends-cuda.json"
  [ "$bench" = 1 ] && run "CUDA benchmark" BENCH_DEVICE=cuda:0 "${cuda_bench[@]}"
fi

# Vulkan: the NVIDIA driver's Vulkan ICD, named explicitly so that a software driver
# (lavapipe) installed beside it is never picked by mistake.
icd=""
for file in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json; do
  [ -f "$file" ] && icd="$file" && break
done
if [ -n "$prebuilt" ]; then
  note "Vulkan skipped: the prebuilt binaries are built for CUDA"
elif [ -z "$icd" ]; then
  note "Vulkan skipped: no NVIDIA Vulkan driver (nvidia_icd.json); containers need the NVIDIA 'graphics' capability"
elif ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  note "Vulkan skipped: no Vulkan loader (libvulkan.so.1); apt-get install libvulkan1"
else
  echo
  echo "== Vulkan (ICD $icd)"
  run "Vulkan (wgpu) parity test" VK_ICD_FILENAMES="$icd" "${parity[@]}" --features wgpu "${parity_args[@]}"
  run "rco backends cpu,wgpu" VK_ICD_FILENAMES="$icd" cargo run -q -p rco-cli --features wgpu -- backends \
    --model "$SMOLLM2_GGUF" --devices cpu,wgpu --out "$CARGO_TARGET_DIR/backends-wgpu.json"
  [ "$bench" = 1 ] && run "Vulkan (wgpu) benchmark" VK_ICD_FILENAMES="$icd" BENCH_DEVICE=wgpu cargo bench -p rco-benches --features wgpu --bench llama
fi

if [ "$bench" = 1 ]; then
  echo
  echo "== flex (CPU) baseline on the same machine"
  run "flex benchmark" "${flex_bench[@]}"
fi

echo
echo "== summary"
printf '  %s\n' "${summary[@]}"
exit "$failed"
