#!/usr/bin/env bash
# Reproduction runs for BENCHMARKS.md: every session in ../shared/data/kohn-v1 (or the files
# given in SESSIONS) × 3 splits with one preset, natively on the CPU backend, one JSON per run.
# Usage: tests/bench/reproduce.sh PRESET OUT_DIR [extra v1p flags]
set -euo pipefail
preset=$1; out=$2; shift 2
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/v1-predictor/target}
cargo build --release --bin v1p -q
mkdir -p "$out"
sessions=${SESSIONS:-$(ls ../shared/data/kohn-v1/*.mat)}
for file in $sessions; do
  for seed in 0 1 2; do
    name=$(basename "$file" .mat)-seed$seed
    [ -s "$out/$name.json" ] && continue
    "$CARGO_TARGET_DIR/release/v1p" train --data "$file" --preset "$preset" --seed "$seed" --json "$@" > "$out/$name.json.part"
    mv "$out/$name.json.part" "$out/$name.json"
    echo "$name done" >&2
  done
done
python3 tests/bench/summarise.py "$out"
