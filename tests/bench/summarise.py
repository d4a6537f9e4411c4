"""Prints a markdown table of mean r per session (3 splits) from tests/bench/reproduce.sh's
JSON files. Usage: python3 summarise.py OUT_DIR"""
import collections, glob, json, os, statistics, sys

runs = collections.defaultdict(list)
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    run = json.load(open(path))
    session = os.path.basename(path).rsplit("-seed", 1)[0]
    best = run["report"]["best"]
    runs[session].append((best["mean_r"], best["step"], run["timing"]["ms_per_step"]))
print("| session | neurons | mean r (3 splits) | best step (median) | ms/step |")
print("|---|---|---|---|---|")
all_r = []
for session, rs in runs.items():
    rvals = [r for r, _, _ in rs]
    all_r += rvals
    n = json.load(open(glob.glob(os.path.join(sys.argv[1], session + "-seed*.json"))[0]))["dataset"]["n_neurons"]
    print("| %s | %d | %.3f (%s) | %d | %.1f |" % (session, n, statistics.mean(rvals), ", ".join("%.3f" % r for r in rvals),
          statistics.median(s for _, s, _ in rs), statistics.mean(t for _, _, t in rs)))
print("| **all** | | **%.3f** | | |" % statistics.mean(all_r))
