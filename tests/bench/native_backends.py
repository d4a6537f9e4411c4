"""ms per training step natively, per backend, in steady state: two runs of the seed's
network on session 07 (20 and 120 steps, evaluated only at the first and last step), and
(T(120) − T(20)) / 100, so that start-up and kernel compilation cancel out.

Usage: python3 tests/bench/native_backends.py V1P_BINARY BACKEND [BACKEND …]
(for wgpu, build with `cargo build --release --features wgpu`; on a machine without a GPU,
point VK_ICD_FILENAMES at Mesa's lavapipe)."""
import json, pathlib, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "kohn-v1" / "07mean50ms_smallim_d2_crop.mat"
binary, backends = sys.argv[1], sys.argv[2:] or ["cpu"]


def seconds(backend, steps):
    out = subprocess.run([binary, "train", "--backend", backend, "--data", str(DATA), "--max_steps", str(steps),
                          "--eval_every", "100000", "--json"], check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    return report["backend"], report["timing"]["total_seconds"]


for backend in backends:
    name, short = seconds(backend, 20)
    _, long = seconds(backend, 120)
    print(f"{backend} ({name}): 20 steps {short:.2f} s, 120 steps {long:.2f} s → "
          f"{(long - short) * 1000 / 100:.1f} ms per step (steady state)")
