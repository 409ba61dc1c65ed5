#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the backend parity tests (lm/tests/backends.rs,
# each backend against flex) and the SmolLM2 benchmark (benches/llama.rs) on CUDA and on
# Vulkan (burn's wgpu backend), with the flex benchmark beside them as the same machine's
# baseline. Prints the card, each command and its figures, then a summary.
# Without a GPU it says what it skipped and exits 0. Exit status 1 if a check that ran failed.
# Usage: scripts/gpu-check.sh [--no-bench]
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

SMOLLM2_GGUF="$(scripts/fetch-models.sh)"
QWEN_GGUF="$(scripts/fetch-models.sh qwen2.5-coder-0.5b)"
export SMOLLM2_GGUF QWEN_GGUF
if [ "$bench" = 1 ]; then
  # The benchmark compares with llama.cpp (on the CPU) when its Python package is there.
  python3 -c "import xllamacpp" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check "xllamacpp==2026.10.11549" >&2 \
    || echo "gpu-check: xllamacpp not installed; the benchmark prints '-' for llama.cpp"
fi

parity=(cargo test -p rco-lm --test backends)
parity_args=(-- --nocapture --test-threads=1)

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
fi
if [ -z "$nvrtc" ]; then
  note "CUDA skipped: NVRTC (libnvrtc.so) not found; install the CUDA toolkit or pip install nvidia-cuda-nvrtc-cu12"
else
  [ "$nvrtc" != system ] && export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo
  echo "== CUDA (NVRTC: $nvrtc)"
  run "CUDA parity test" "${parity[@]}" --features cuda "${parity_args[@]}"
  run "rco backends cpu,cuda:0" cargo run -q -p rco-cli --features cuda -- backends \
    --model "$SMOLLM2_GGUF" --devices cpu,cuda:0 --out "$CARGO_TARGET_DIR/backends-cuda.json"
  [ "$bench" = 1 ] && run "CUDA benchmark" BENCH_DEVICE=cuda:0 cargo bench -p rco-benches --features cuda --bench llama
fi

# Vulkan: the NVIDIA driver's Vulkan ICD, named explicitly so that a software driver
# (lavapipe) installed beside it is never picked by mistake.
icd=""
for file in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json; do
  [ -f "$file" ] && icd="$file" && break
done
if [ -z "$icd" ]; then
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
  run "flex benchmark" cargo bench -p rco-benches --bench llama
fi

echo
echo "== summary"
printf '  %s\n' "${summary[@]}"
exit "$failed"
