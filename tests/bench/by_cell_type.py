#!/usr/bin/env python3
"""Per-cell-type r of every model in a `v1p sweep` folder run on the simulated demo session.

    v1p sweep --data data/simulated-v1.mat --model cnn,cnnplus,ln,gabor --preset fast \
        --seeds 0..3 --out OUT
    python3 tests/bench/by_cell_type.py OUT data/simulated-v1-truth.json

Prints a markdown table: model × cell type, the mean over that type's neurons of the mean r
over seeds, with the noise ceiling (the r that trial noise allows) for scale."""
import json
import pathlib
import statistics
import sys
from collections import defaultdict


def main(sweep_dir, truth_file):
    sweep = pathlib.Path(sweep_dir)
    truth = json.loads(pathlib.Path(truth_file).read_text())
    types = [n["cell_type"] for n in truth["neurons"]]
    ceilings = [n["r_ceiling"] for n in truth["neurons"]]
    manifest = json.loads((sweep / "sweep.json").read_text())
    # model label → neuron → r of every seed
    r_by_model = defaultdict(lambda: defaultdict(list))
    for cell in manifest["cells"]:
        path = sweep / "cells" / f"{cell['id']}.json"
        if not path.exists():
            continue
        best = json.loads(path.read_text())["report"]["best"]
        label = " ".join([cell["model"]] + [f"{k}={v}" for k, v in cell["settings"]])
        for neuron, r in enumerate(best["r"]):
            r_by_model[label][neuron].append(r)
    order = sorted(set(types), key=types.index)
    print("| model | " + " | ".join(f"{t} (n={types.count(t)})" for t in order) + " | all |")
    print("|---|" + "---|" * (len(order) + 1))
    ceiling_row = [statistics.mean(c for c, t in zip(ceilings, types) if t == kind) for kind in order]
    print("| noise ceiling | " + " | ".join(f"{c:.2f}" for c in ceiling_row) + f" | {statistics.mean(ceilings):.2f} |")
    for label, by_neuron in sorted(r_by_model.items()):
        means = {n: statistics.mean(rs) for n, rs in by_neuron.items()}
        seeds = min(len(rs) for rs in by_neuron.values())
        cells = [statistics.mean(means[n] for n in means if types[n] == kind) for kind in order]
        print(f"| {label} ({seeds} seeds) | " + " | ".join(f"{c:.2f}" for c in cells) +
              f" | {statistics.mean(means.values()):.2f} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
