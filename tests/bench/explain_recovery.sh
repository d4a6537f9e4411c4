#!/usr/bin/env bash
# Does inversion recover the truth? Trains the CNN on the bundled demo session (whose neurons'
# filters are known) with the fast preset on 3 splits, runs `v1p explain` on each best
# network, and prints the median similarity to the true filters per cell type, pooled over
# the splits, with the time each explain took (CPU, this machine).
# Usage: [EXPLAIN_FLAGS='--budget_scale 0.5'] tests/bench/explain_recovery.sh OUT_DIR
set -euo pipefail
out=${1:?usage: explain_recovery.sh OUT_DIR}
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/v1-predictor/target}
cargo build --release --bin v1p -q
v1p="$CARGO_TARGET_DIR/release/v1p"
data=data/simulated-v1.mat
mkdir -p "$out"
# Trained networks are kept: a second call re-runs only the inversions (EXPLAIN_FLAGS).
for seed in 0 1 2; do
  dir="$out/seed$seed"
  if ! [ -s "$dir/train.json" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    "$v1p" train --data "$data" --preset fast --seed "$seed" --out "$dir" --json > "$dir/train.json.part"
    mv "$dir/train.json.part" "$dir/train.json"
  fi
  # shellcheck disable=SC2086
  "$v1p" explain --network "$dir"/network_*.bpk --data "$data" --out "$dir" --json ${EXPLAIN_FLAGS:-} > "$dir/explain.json"
  echo "seed $seed done" >&2
done
python3 - "$out" <<'PY'
import collections, glob, json, statistics, sys
by_type = collections.defaultdict(lambda: collections.defaultdict(list))
beats, consistency, seconds, mean_r = [], [], [], []
for path in sorted(glob.glob(f"{sys.argv[1]}/seed*/explain.json")):
    run = json.load(open(path))
    train = json.load(open(path.replace("explain.json", "train.json")))
    mean_r.append(train["report"]["best"]["mean_r"])
    summary = run["summary"]
    beats.append(summary["preferred_beats_data"])
    consistency.append(summary["median_consistency"])
    seconds.append(run["timing"]["total_seconds"])
    for n in summary["neurons"]:
        for key in ["preferred_truth", "rf_truth", "sta_truth", "r"]:
            if n[key] is not None:
                by_type[n["cell_type"]][key].append(n[key])
print(f"{len(mean_r)} splits; mean r of the networks {statistics.mean(mean_r):.3f}; "
      f"preferred image beats every data image for {beats} of 40 neurons; "
      f"median agreement of starts {statistics.mean(consistency):.2f}; "
      f"explain took {', '.join(f'{s:.1f}' for s in seconds)} s")
print("| cell type | neurons × splits | median r (prediction) | preferred image | RF estimate (gradient) | STA (data) |")
print("|---|---|---|---|---|---|")
for cell_type, values in sorted(by_type.items()):
    med = lambda k: statistics.median(values[k])
    print(f"| {cell_type} | {len(values['r'])} | {med('r'):.2f} | {med('preferred_truth'):.2f} | "
          f"{med('rf_truth'):.2f} | {med('sta_truth'):.2f} |")
PY
