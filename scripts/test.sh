#!/usr/bin/env bash
# The test suite: fetches the real model the tests read (once), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOLLM2_GGUF="$(scripts/fetch-models.sh)"
export SMOLLM2_GGUF
cargo test --workspace "$@"
