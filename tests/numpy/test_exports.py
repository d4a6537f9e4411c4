"""The files `v1p train --out DIR` writes (the same the page offers for download), read the
way the seed's users read them: numpy.load, the seed's field names, its weight layouts."""
import csv
import os
import pathlib
import subprocess

import numpy as np
import pytest

from seed_files import check_run_files

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "simulated-v1.mat"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
V1P = pathlib.Path(os.environ.get("V1P_BIN", TARGET / "release" / "v1p"))

RUNS = {
    # The seed's network (2 conv layers, 7×7 kernels), briefly trained with Adam.
    "seed network": ["--preset", "fast", "--max_steps", "150", "--eval_every", "50"],
    # Three small conv layers: WC3 / BC3 and another feature-map size.
    "three conv layers": ["--preset", "fast", "--max_steps", "60", "--eval_every", "20", "--numconvlayer", "3",
                          "--conv1size", "3", "--conv2size", "3", "--conv1", "6", "--conv2", "8", "--hidden1", "40"],
    # One conv layer, no dropout, plain SGD.
    "one conv layer": ["--max_steps", "40", "--eval_every", "10", "--numconvlayer", "1", "--conv1", "5",
                       "--hidden1", "30", "--dropout", "1", "--learning_rate", "0.001"],
}


def files_in(directory):
    found = {}
    for path in directory.iterdir():
        name = path.name
        for kind, prefix, ext in [("training_npz", "training_manualsave_", ".npz"),
                                  ("training_json", "training_manualsave_", ".json"),
                                  ("pearson_npz", "pearsondata_", ".npz"), ("pearson_json", "pearsondata_", ".json"),
                                  ("network_npz", "network_manualsave_", ".npz"), ("network_bpk", "network_", ".bpk"),
                                  ("csv", "neurons_", ".csv"), ("progress_png", "training_plot_", ".png"),
                                  ("pearson_png", "pearsonplot_", ".png")]:
            if name.startswith(prefix) and name.endswith(ext) and name[len(prefix):-len(ext)].isdigit():
                found[kind] = path
    return found


@pytest.mark.parametrize("run", RUNS)
def test_exports_load_in_numpy_and_the_seed_forward_gives_the_reported_r(run, tmp_path):
    assert V1P.exists(), f"{V1P} is missing: build it (cargo build --release) or set V1P_BIN"
    subprocess.run([str(V1P), "train", "--data", str(DEMO), "--out", str(tmp_path), *RUNS[run]], check=True,
                   capture_output=True)
    files = files_in(tmp_path)
    assert sorted(files) == sorted(["training_npz", "training_json", "pearson_npz", "pearson_json", "network_npz",
                                    "network_bpk", "csv", "progress_png", "pearson_png"]), \
        sorted(p.name for p in tmp_path.iterdir())
    # The seed's two plots, drawn natively: real PNGs with something on them.
    for kind in ["progress_png", "pearson_png"]:
        assert files[kind].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[kind].stat().st_size > 10000
    # Every file carries the same start-time tag.
    assert len({p.name.split("_")[-1].split(".")[0] for p in files.values()}) == 1
    r_numpy, r_exported = check_run_files(files, [DEMO])
    # Our forward in float32 vs numpy's in float64: r agrees far inside what matters.
    np.testing.assert_allclose(r_numpy, r_exported, atol=2e-4)
    # Non-vacuous: most neurons get a non-zero r that the numpy forward had to reproduce.
    assert np.count_nonzero(np.abs(r_exported) > 0.05) > len(r_exported) // 2, r_exported
    with open(files["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(r_exported)
    np.testing.assert_allclose([float(row["pearson_r"]) for row in rows], r_exported)


def test_explain_arrays_load_in_numpy_with_the_documented_names_and_shapes(tmp_path):
    """`v1p explain` on a network `v1p train --out` saved: every array the README lists, in
    its shape, and the preferred images' rates re-checked against the predictions."""
    subprocess.run([str(V1P), "train", "--data", str(DEMO), "--out", str(tmp_path), *RUNS["seed network"]],
                   check=True, capture_output=True)
    network = next(tmp_path.glob("network_*.bpk"))
    subprocess.run([str(V1P), "explain", "--network", str(network), "--data", str(DEMO), "--out", str(tmp_path),
                    "--steps", "20"], check=True, capture_output=True)
    views = np.load(next(tmp_path.glob("explain_[0-9]*.npz")))
    n_images, n, size = 270, 40, 33
    filters = views["conv1_filters"]
    assert filters.ndim == 3 and filters.shape[1] == filters.shape[2]
    assert views["mean_image"].shape == (size, size) and float(views["budget"]) > 0
    for name in ["predicted", "measured"]:
        assert views[name].shape == (n_images, n), name
    for name in ["rf", "sta", "preferred", "suppressive", "true_filter"]:
        assert views[name].shape == (n, size, size), name
    for name in ["rval", "preferred_rate", "preferred_consistency", "suppressive_rate", "suppressive_consistency",
                 "rf_truth_similarity", "sta_truth_similarity", "preferred_truth_similarity"]:
        assert views[name].shape == (n,), name
    for name in ["top_measured", "top_predicted"]:
        assert views[name].shape == (n, 6) and views[name].dtype == np.int64, name
    # The top stimuli are the images with the highest measured rates, best first.
    best = views["top_measured"][:, 0]
    np.testing.assert_array_equal(views["measured"][best, np.arange(n)], views["measured"].max(axis=0))
    assert views["evaltrials"].dtype == np.int64 and len(views["evaltrials"]) == 52
    assert views["cell_types"].item().split(",")[:4] == ["simple"] * 4
    # Preferred images are predicted above every data image for most neurons, and stay within
    # the budget around the mean image.
    assert np.count_nonzero(views["preferred_rate"] > views["predicted"].max(axis=0)) >= 30
    distance = np.sqrt(((views["preferred"] - views["mean_image"]) ** 2).sum(axis=(1, 2)))
    assert np.all(distance <= float(views["budget"]) * 1.0001)
