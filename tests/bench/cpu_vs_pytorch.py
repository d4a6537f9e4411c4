"""Native CPU training speed beside PyTorch, measured side by side in one invocation.

ms per SGD step of the seed's network (batch 50) on session 07, at 1 and 2 threads:
- `v1p train` (each binary given): two runs, 20 and 120 steps, evaluated only at the first
  and last step; (T(120) − T(20)) / 100, so start-up cancels out. Threads: RAYON_NUM_THREADS.
- PyTorch eager (`../shared/reference/single_step_bench.py`, 300 timed steps after 50 warm-up
  steps), threads by `torch.set_num_threads`.
Rounds alternate the contenders so that the machine's drift hits each alike; the median of
the rounds is reported, with the ratio v1p / PyTorch (< 1: v1p is faster).

PyTorch is a benchmark-only dependency: `bash .ci/setup bench` installs it (never `.ci/test`).

Usage: python3 tests/bench/cpu_vs_pytorch.py [--rounds 3] NAME=V1P_BINARY [NAME=V1P_BINARY …]
e.g.   python3 tests/bench/cpu_vs_pytorch.py before=/tmp/v1p-before after=target/release/v1p"""
import argparse, json, os, pathlib, re, statistics, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "kohn-v1" / "07mean50ms_smallim_d2_crop.mat"
TORCH_BENCH = SHARED / "reference" / "single_step_bench.py"


def v1p_seconds(binary, steps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "train", "--backend", "cpu", "--data", str(DATA), "--max_steps", str(steps),
                          "--eval_every", "100000", "--json"], check=True, capture_output=True, text=True,
                         env=env).stdout
    return json.loads(out)["timing"]["total_seconds"]


def v1p_ms_per_step(binary, threads):
    short = v1p_seconds(binary, 20, threads)
    long = v1p_seconds(binary, 120, threads)
    return (long - short) * 1000 / 100


def torch_ms_per_step(threads):
    out = subprocess.run([sys.executable, str(TORCH_BENCH), "cpu", str(threads)], check=True, capture_output=True,
                         text=True).stdout
    return float(re.search(r"([0-9.]+) ms/step", out).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("binaries", nargs="+", help="NAME=PATH of a v1p binary")
    args = parser.parse_args()
    binaries = dict(item.split("=", 1) for item in args.binaries)
    threads = [int(t) for t in args.threads.split(",")]
    times = {(name, t): [] for name in [*binaries, "pytorch"] for t in threads}
    for round_ in range(args.rounds):
        for t in threads:
            for name, path in binaries.items():
                times[(name, t)].append(v1p_ms_per_step(path, t))
            times[("pytorch", t)].append(torch_ms_per_step(t))
        print(f"round {round_ + 1}: " + ", ".join(f"{n}@{t}={v[-1]:.1f}" for (n, t), v in times.items()),
              flush=True)
    print("\n| contender | threads | ms per step (median) | rounds | ratio to PyTorch |")
    print("|---|---|---|---|---|")
    for (name, t), values in times.items():
        median = statistics.median(values)
        ratio = median / statistics.median(times[("pytorch", t)])
        spread = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {t} | {median:.1f} | {spread} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
