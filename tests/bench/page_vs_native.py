"""The page's CPU backend beside native `v1p`, at the same thread count, in one run.

Both train the seed's network (batch 50, plain SGD) on the bundled demo data, evaluated only
at the first and last step; ms per step in steady state is the difference of a long and a
short run divided by the extra steps, so start-up (and, in the page, loading) cancels out.
Rounds alternate page and native so that the machine's drift hits both alike; medians and
the ratio page / native are printed.

Thread counts (`--threads 1,2`): native `v1p` runs with RAYON_NUM_THREADS=N, the page with
`cpu-workers=N` in its address (its CPU runs take a batch's halves in N workers; a build
without that ignores it and runs in one). Each count is timed in the same rounds.

Usage: python3 tests/bench/page_vs_native.py [--rounds 3] [--steps 10,40] [--threads 1] [--backend cpu|wgpu] V1P_BINARY [NAME=DIST_DIR[:V1P] …]
(default DIST_DIR: dist/, built by `trunk build`). A build that names its own `v1p` (the
binary built from the same commit) is compared with that one, timed in the same rounds as
"NAME native"; the others with V1P_BINARY ("native", timed only if some build needs it)."""
import argparse, json, os, pathlib, statistics, subprocess, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import ROOT, chromium  # noqa: E402
from page_load import serve  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DEMO = ROOT / "data" / "simulated-v1.mat"


def page_seconds(driver, base, steps, backend="cpu", threads=1):
    driver.get(f"{base}/index.html?backend={backend}&max_steps={steps}&eval_every=100000&cpu-workers={threads}")
    WebDriverWait(driver, 300).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 900).until(
        lambda d: d.execute_script("return document.body.dataset.state") in ("finished", "error"))
    assert driver.execute_script("return document.body.dataset.state") == "finished"
    return driver.execute_script("return performance.getEntriesByName('v1p:run-finished').pop().detail.elapsedMs") / 1000


def native_seconds(binary, steps, threads=1):
    out = subprocess.run([binary, "train", "--backend", "cpu", "--data", str(DEMO), "--max_steps", str(steps),
                          "--eval_every", "100000", "--json"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, RAYON_NUM_THREADS=str(threads))).stdout
    return json.loads(out)["timing"]["total_seconds"]


def ms_per_step(seconds, steps):
    short, long = steps
    return (seconds(long) - seconds(short)) * 1000 / (long - short)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", default="10,40", help="SHORT,LONG: the two runs' lengths (longer: less noise)")
    parser.add_argument("--backend", default="cpu", choices=["cpu", "wgpu"],
                        help="the page's backend (wgpu: the page's WebGPU step beside native's CPU step)")
    parser.add_argument("--threads", default="1", help="thread counts, comma-separated (1,2)")
    parser.add_argument("binary")
    parser.add_argument("builds", nargs="*", help="NAME=DIST_DIR[:V1P]")
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    counts = [int(n) for n in args.threads.split(",")]
    if not counts or min(counts) < 1:
        parser.error("--threads takes counts of 1 or more, comma-separated")
    if len(steps) != 2 or not 0 < steps[0] < steps[1]:
        parser.error("--steps takes SHORT,LONG with 0 < SHORT < LONG")
    builds = dict(item.split("=", 1) for item in args.builds) or {"page": str(ROOT / "dist")}
    natives = {}
    for name, build in list(builds.items()):
        if name == "native" or name.endswith(" native"):
            parser.error(f"{name!r}: a build's name must not end in 'native' (its binary's row)")
        if ":" in build:
            builds[name], natives[f"{name} native"] = build.rsplit(":", 1)
    if any(f"{name} native" not in natives for name in builds):
        natives["native"] = args.binary  # timed only where some page needs it
    servers = {name: serve(dist) for name, dist in builds.items()}
    driver = chromium()
    at = (lambda name, k: f"{name} @{k}") if len(counts) > 1 else (lambda name, k: name)
    times = {at(name, k): [] for k in counts for name in [*builds, *natives]}
    try:
        for round_ in range(args.rounds):
            for k in counts:
                for name, server in servers.items():
                    base = f"http://127.0.0.1:{server.server_address[1]}"
                    times[at(name, k)].append(
                        ms_per_step(lambda n: page_seconds(driver, base, n, args.backend, k), steps))
                for name, binary in natives.items():
                    times[at(name, k)].append(ms_per_step(lambda n: native_seconds(binary, n, k), steps))
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {v[-1]:.1f} ms" for n, v in times.items()), flush=True)
    finally:
        driver.quit()
        for server in servers.values():
            server.shutdown()
    median = {name: statistics.median(values) for name, values in times.items()}
    threads = "/".join(map(str, counts))
    page = f"page on WebGPU, native on {threads} CPU threads" if args.backend == "wgpu" else f"{threads} threads"
    print(f"\n| contender ({page}) | ms per step (median) | rounds | ratio to its native |")
    print("|---|---|---|---|")
    for k in counts:
        for name in [*builds, *natives]:
            values = times[at(name, k)]
            spread = ", ".join(f"{v:.1f}" for v in values)
            ratio = ""
            if name in builds:  # a native row has no ratio of its own
                native = f"{name} native" if f"{name} native" in natives else "native"
                ratio = f"{median[at(name, k)] / median[at(native, k)]:.2f}"
            print(f"| {at(name, k)} | {median[at(name, k)]:.1f} | {spread} | {ratio} |")


if __name__ == "__main__":
    main()
