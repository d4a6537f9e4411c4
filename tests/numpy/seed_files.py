"""What a user of the seed does with its files, in numpy: load every exported .npz, check the
seed's field names and shapes, and run the seed's network forward from `network_manualsave`
(NHWC convolutions with [kh, kw, in, out] kernels, VALID padding, dense [in, out]) to get
the r the page reported. Shared by the numpy tests and the page's end-to-end download test."""
import json

import numpy as np
import scipy.io

TRAINING_FIELDS = ["FLAGS", "trainlist", "earlystoplist", "evallist", "rlist", "step", "lossbaseline",
                   "traintrials", "earlystoptrials", "evaltrials"]
PEARSON_FIELDS = ["rval", "step", "meanr", "fve", "evalloss", "evalloss_per_neuron", "lossbaseline_per_neuron",
                  "evalvariance", "traintrials", "earlystoptrials", "evaltrials", "FLAGS"]


def flags_of(npz):
    flags = json.loads(str(npz["FLAGS"]))
    for name in ["learning_rate", "max_steps", "batch_size", "trainingset_frac", "earlystop_frac"]:
        assert name in flags, name
    for name in ["conv1", "conv2", "conv1size", "conv2size", "nk1", "nstride1", "nk2", "nstride2",
                 "numconvlayer", "hidden1", "dropout"]:
        assert name in flags["model"], name
    return flags


def check_split(npz, n_images):
    parts = [npz[k] for k in ["traintrials", "earlystoptrials", "evaltrials"]]
    for part in parts:
        assert part.dtype == np.int64 and part.ndim == 1
    assert sorted(np.concatenate(parts).tolist()) == list(range(n_images))
    return parts


def check_training_record(path, n_images):
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(TRAINING_FIELDS)
        k = len(npz["step"])
        assert k >= 1
        for name in ["trainlist", "earlystoplist", "evallist", "rlist"]:
            assert npz[name].shape == (k,) and npz[name].dtype == np.float64, name
            assert np.all(np.isfinite(npz[name])), name
        assert np.all(np.diff(npz["step"]) > 0)
        assert npz["lossbaseline"].shape == () and npz["lossbaseline"] > 0
        check_split(npz, n_images)
        return {"flags": flags_of(npz), **{name: npz[name] for name in npz.files if name != "FLAGS"}}


def check_pearson_data(path, n_images, n_neurons):
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(PEARSON_FIELDS)
        for name in ["rval", "evalloss_per_neuron", "lossbaseline_per_neuron", "evalvariance"]:
            assert npz[name].shape == (n_neurons,) and npz[name].dtype == np.float64, name
        assert np.all(np.abs(npz["rval"]) <= 1)
        assert np.isclose(npz["meanr"], npz["rval"].mean())
        assert np.isclose(npz["evalloss"], npz["evalloss_per_neuron"].mean())
        assert npz["step"].shape == ()
        train, early, evaluation = check_split(npz, n_images)
        return {"flags": flags_of(npz), "train": train, "eval": evaluation,
                **{name: npz[name] for name in ["rval", "step", "meanr", "evalloss_per_neuron"]}}


def check_network(path, n_neurons):
    """The seed's weight arrays with their layouts' shapes; returns them as a dict."""
    with np.load(path) as npz:
        flags = flags_of(npz)
        model = flags["model"]
        layers = model["numconvlayer"]
        expected = ["step", "FLAGS", "WH3", "BH3", "WL4", "BL4"] + [f"{p}{i}" for i in range(1, layers + 1) for p in ("WC", "BC")]
        assert sorted(npz.files) == sorted(expected)
        channels = 1
        for i in range(1, layers + 1):
            size, filters = (model["conv1size"], model["conv1"]) if i == 1 else (model["conv2size"], model["conv2"])
            assert npz[f"WC{i}"].shape == (size, size, channels, filters), f"WC{i}"
            assert npz[f"BC{i}"].shape == (filters,)
            channels = filters
        assert npz["WH3"].shape[1] == model["hidden1"] and npz["BH3"].shape == (model["hidden1"],)
        assert npz["WL4"].shape == (model["hidden1"], n_neurons) and npz["BL4"].shape == (n_neurons,)
        assert npz["WH3"].shape[0] % channels == 0
        return {"flags": flags, **{name: npz[name] for name in npz.files if name != "FLAGS"}}


def conv_valid(x, w, b):
    """NHWC input, [kh, kw, in, out] kernel: tf.nn.conv2d(padding='VALID') + bias."""
    kh, kw = w.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # n, h', w', c, kh, kw
    return np.einsum("nhwcyx,yxco->nhwo", windows, w) + b


def max_pool_valid(x, k, s):
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
    return windows.max(axis=(-2, -1))


def seed_forward(network, images):
    """The seed's ConvNetDrop at evaluation (no dropout), on raw pixels [n, h, w]."""
    model = network["flags"]["model"]
    x = images.astype(np.float64)[..., None]
    for i in range(1, model["numconvlayer"] + 1):
        k, s = (model["nk1"], model["nstride1"]) if i == 1 else (model["nk2"], model["nstride2"])
        x = max_pool_valid(np.maximum(conv_valid(x, network[f"WC{i}"], network[f"BC{i}"]), 0), k, s)
    x = x.reshape(len(x), -1)
    hidden = np.maximum(x @ network["WH3"] + network["BH3"], 0)
    return np.maximum(hidden @ network["WL4"] + network["BL4"], 0)


def pearson_per_neuron(prediction, activity):
    p = prediction - prediction.mean(0)
    a = activity - activity.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p * a).sum(0) / np.sqrt((p * p).sum(0) * (a * a).sum(0))
    return np.nan_to_num(r)


def load_mat(*paths):
    mats = [scipy.io.loadmat(str(p)) for p in paths]
    return mats[0]["images"], np.concatenate([m["activity"] for m in mats], axis=1)


def check_run_files(paths, mat_paths):
    """Every check above on one run's files (a dict: kind → path); returns the seed-forward r
    and the exported r."""
    images, activity = load_mat(*mat_paths)
    n_images, n_neurons = activity.shape
    record = check_training_record(paths["training_npz"], n_images)
    pearson = check_pearson_data(paths["pearson_npz"], n_images, n_neurons)
    network = check_network(paths["network_npz"], n_neurons)
    assert int(network["step"]) == int(pearson["step"])
    assert int(pearson["step"]) in record["step"].tolist()
    for kind, npz in [("training_json", record), ("pearson_json", pearson)]:
        data = json.loads(open(paths[kind]).read())
        assert data["FLAGS"] == npz["flags"]
    evaluation = pearson["eval"]
    prediction = seed_forward(network, images[evaluation])
    r = pearson_per_neuron(prediction, activity[evaluation])
    return r, pearson["rval"]
