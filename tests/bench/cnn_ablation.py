"""Ablation of the seed CNN (fast preset) for V1 response prediction, in PyTorch (a prototype:
quick to vary; the recipe it found is `v1p --preset best`). CPU, 1 thread. BENCHMARKS.md,
"Models", gives the table it produced and the commands. PyTorch: `.ci/setup bench`.

Baseline (fast preset): conv1 16@7x7 VALID+ReLU, maxpool 3/2, conv2 32@7x7 VALID+ReLU, maxpool 3/2,
dense 300+ReLU, dropout keep .55, linear+ReLU, MSE, raw 0..255 pixels, Adam 1e-4, batch 50, 2000 steps,
init trunc-normal (std .1 convs, .1/sqrt(fan_in) dense), zero biases.
Split exactly as reference/torch_replica.py (RandomState(1000+split): train 180, eval 52, stop 38).
Eval every 100 steps; best = lowest early-stop loss; optional patience (stop when no new best for P steps).

Every member's predictions on the stop and eval images are stored at every checkpoint, so ensembles
(each member early-stopped on its own, or the averaged ensemble early-stopped as a whole) are computed
post hoc from the same runs.

usage: OMP_NUM_THREADS=1 python3 tests/bench/cnn_ablation.py NAME [--opt val ...]
       writes OUT/NAME.json (--out, default cnn-ablation/)
"""
import argparse, glob, json, math, os, time
import numpy as np
import scipy.io as sio
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/kohn-v1"))
p.add_argument("--out", default="cnn-ablation")
p.add_argument("--sessions", default="1-10")
p.add_argument("--split", type=int, default=0)
p.add_argument("--seeds", default="0")            # init seeds, e.g. 0-4 -> ensemble
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--patience", type=int, default=600)  # 0 = off
p.add_argument("--every", type=int, default=100)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--sched", default="none")         # none | cos | step (x0.1 at 2/3)
p.add_argument("--warm", type=int, default=0)     # linear warmup steps
p.add_argument("--batch", type=int, default=50)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--wdmode", default="adamw")       # adamw (decoupled) | l2 (added to loss, weights only)
p.add_argument("--std", type=int, default=0)      # input standardisation with train mean/std
p.add_argument("--loss", default="mse")           # mse | poisson
p.add_argument("--out_nl", default="auto")        # relu | softplus | auto (relu for mse, softplus for poisson)
p.add_argument("--bn", type=int, default=0)       # batchnorm after each conv (before ReLU)
p.add_argument("--c1", type=int, default=16)
p.add_argument("--c2", type=int, default=32)
p.add_argument("--k1", type=int, default=7)
p.add_argument("--k2", type=int, default=7)
p.add_argument("--pad2", type=int, default=0)     # padding of conv2
p.add_argument("--pool2", type=int, default=1)    # second maxpool on/off
p.add_argument("--hidden", type=int, default=300)
p.add_argument("--keep", type=float, default=0.55)
p.add_argument("--readout", default="dense")      # dense | klindt
p.add_argument("--l1m", type=float, default=0.0)  # klindt: L1 on spatial masks (sum|m|/N)
p.add_argument("--l1w", type=float, default=0.0)  # klindt: L1 on feature weights (sum|w|/N)
p.add_argument("--biasinit", type=int, default=0) # output bias = train mean response (inverse nl)
a = p.parse_args()
out_nl = a.out_nl if a.out_nl != "auto" else ("softplus" if a.loss == "poisson" else "relu")


def rng_list(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            lo, hi = part.split("-"); out += list(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return out


def tn(shape, std):
    t = torch.empty(shape)
    torch.nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std)
    return t


class Net(torch.nn.Module):
    def __init__(self, N, ymean):
        super().__init__()
        self.c1 = torch.nn.Parameter(tn((a.c1, 1, a.k1, a.k1), 0.1)); self.b1 = torch.nn.Parameter(torch.zeros(a.c1))
        self.c2 = torch.nn.Parameter(tn((a.c2, a.c1, a.k2, a.k2), 0.1)); self.b2 = torch.nn.Parameter(torch.zeros(a.c2))
        if a.bn:
            self.bn1 = torch.nn.BatchNorm2d(a.c1); self.bn2 = torch.nn.BatchNorm2d(a.c2)
        h = 33 - a.k1 + 1; h = (h - 3) // 2 + 1; h = h + 2 * a.pad2 - a.k2 + 1
        if a.pool2: h = (h - 3) // 2 + 1
        self.h = h
        flat = a.c2 * h * h
        if a.readout == "dense":
            self.W3 = torch.nn.Parameter(tn((flat, a.hidden), 0.1 / math.sqrt(flat))); self.B3 = torch.nn.Parameter(torch.zeros(a.hidden))
            self.W4 = torch.nn.Parameter(tn((a.hidden, N), 0.1 / math.sqrt(a.hidden))); self.B4 = torch.nn.Parameter(torch.zeros(N))
        else:  # Klindt et al. 2017 factorised readout
            self.M = torch.nn.Parameter((1.0 + 0.1 * torch.randn(N, h * h).abs()) / (h * h))
            self.W = torch.nn.Parameter(torch.randn(N, a.c2) * 0.001)
            self.B4 = torch.nn.Parameter(torch.zeros(N))
        if a.biasinit:
            ym = torch.tensor(ymean).clamp_min(1e-3)
            with torch.no_grad():
                self.B4.copy_(torch.log(torch.expm1(ym)) if out_nl == "softplus" else ym)

    def core(self, x):
        z = F.conv2d(x, self.c1, self.b1)
        if a.bn: z = self.bn1(z)
        z = F.max_pool2d(torch.relu(z), 3, 2)
        z = F.conv2d(z, self.c2, self.b2, padding=a.pad2)
        if a.bn: z = self.bn2(z)
        z = torch.relu(z)
        if a.pool2: z = F.max_pool2d(z, 3, 2)
        return z

    def forward(self, x):
        z = self.core(x[:, None])
        if a.readout == "dense":
            z = torch.relu(z.flatten(1) @ self.W3 + self.B3)
            if self.training and a.keep < 1: z = F.dropout(z, 1 - a.keep, training=True)
            o = z @ self.W4 + self.B4
        else:
            z = z.flatten(2)  # [B,C,S]
            o = torch.einsum("bcs,ns,nc->bn", z, self.M, self.W) + self.B4
        return torch.relu(o) if out_nl == "relu" else F.softplus(o)

    def reg(self):
        r = 0.0
        if a.readout == "klindt":
            N = self.M.shape[0]
            r = r + a.l1m * self.M.abs().sum() / N + a.l1w * self.W.abs().sum() / N
        if a.wd > 0 and a.wdmode == "l2":
            ws = [self.c1, self.c2] + ([self.W3, self.W4] if a.readout == "dense" else [self.M, self.W])
            r = r + a.wd * sum((w ** 2).sum() for w in ws)
        return r


def lossf(pred, y):
    if a.loss == "mse": return ((pred - y) ** 2).mean()
    return (pred - y * torch.log(pred + 1e-6)).mean()


def pearson(pred, y):  # numpy [B,N] -> [N]
    pc = pred - pred.mean(0); yc = y - y.mean(0)
    num = (pc * yc).sum(0); den = np.sqrt((pc ** 2).sum(0) * (yc ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return np.nan_to_num(r)


def train_one(x, y, tr, st, ev, seed):
    torch.manual_seed(seed)
    X = torch.tensor(x); Y = torch.tensor(y)
    if a.std:
        mu, sd = X[tr].mean(), X[tr].std(); X = (X - mu) / sd
    Xtr, Ytr = X[tr], Y[tr]; Xst, Yst = X[st], Y[st]; Xev, Yev = X[ev], Y[ev]
    net = Net(y.shape[1], y[tr].mean(0))
    decay = [p_ for n_, p_ in net.named_parameters() if not n_.startswith(("b", "B", "bn"))]
    other = [p_ for n_, p_ in net.named_parameters() if n_.startswith(("b", "B", "bn"))]
    if a.wd > 0 and a.wdmode == "adamw":
        opt = torch.optim.AdamW([dict(params=decay, weight_decay=a.wd), dict(params=other, weight_decay=0.0)], lr=a.lr)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=a.lr)

    def lr_at(s):
        f = 1.0
        if a.warm and s < a.warm: f = (s + 1) / a.warm
        if a.sched == "cos": f *= 0.5 * (1 + math.cos(math.pi * s / a.steps))
        elif a.sched == "step" and s >= 2 * a.steps // 3: f *= 0.1
        return a.lr * f

    ntr = len(tr); nb = min(a.batch, ntr)
    best = (1e18, -1); ckpts = []; t0 = time.time(); nsteps = 0
    for s in range(a.steps):
        for g in opt.param_groups: g["lr"] = lr_at(s)
        net.train()
        idx = torch.randperm(ntr)[:nb]
        loss = lossf(net(Xtr[idx]), Ytr[idx])
        loss = loss + net.reg()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); nsteps += 1
        if (s + 1) % a.every == 0 or s + 1 == a.steps:
            net.eval()
            with torch.no_grad():
                ps = net(Xst); pe = net(Xev)
                ls = float(lossf(ps, Yst))
            ckpts.append(dict(step=s + 1, stop_loss=ls, ps=ps.numpy(), pe=pe.numpy()))
            if ls < best[0]: best = (ls, s + 1)
            if a.patience and s + 1 - best[1] >= a.patience: break
    secs = time.time() - t0
    return ckpts, best, secs, nsteps


files = sorted(glob.glob(os.path.join(a.data, "*mean50ms_smallim_d2_crop.mat")))
sess = rng_list(a.sessions); seeds = rng_list(a.seeds)
res = dict(args=vars(a), out_nl=out_nl, sessions=[])
tall = time.time()
for si in sess:
    f = files[si - 1]
    m = sio.loadmat(f)
    x = m["images"].astype(np.float32); y = m["activity"].astype(np.float32)
    n = x.shape[0]; ntrain = int(math.ceil(n * 2 / 3)); nstop = int(math.floor(n / 7)); neval = n - ntrain - nstop
    perm = np.random.RandomState(1000 + a.split).permutation(n)
    tr, ev, st = perm[:ntrain], perm[ntrain:ntrain + neval], perm[ntrain + neval:]
    yev, yst = y[ev], y[st]
    members = []; tsess = 0.0; nsteps_tot = 0
    for sd in seeds:
        ck, best, secs, ns = train_one(x, y, tr, st, ev, sd)
        tsess += secs; nsteps_tot += ns
        bi = [c["step"] for c in ck].index(best[1])
        members.append(dict(seed=sd, best_step=best[1], stopped_at=ck[-1]["step"], secs=secs, ms_step=1000 * secs / ns,
                            r=float(pearson(ck[bi]["pe"], yev).mean()), ck=ck, bi=bi))
    d = dict(file=os.path.basename(f), ncell=int(y.shape[1]), secs=tsess, ms_step=1000 * tsess / nsteps_tot,
             member_r=[mm["r"] for mm in members], member_best=[mm["best_step"] for mm in members],
             member_stop=[mm["stopped_at"] for mm in members])
    d["r_single_mean"] = float(np.mean(d["member_r"]))
    if len(members) > 1:
        # (1) each member early-stopped on its own
        pe = np.mean([mm["ck"][mm["bi"]]["pe"] for mm in members], 0)
        d["r_ens_own"] = float(pearson(pe, yev).mean())
        for k in range(2, len(members)):  # ensembles of the first k members (own early stopping)
            d["r_ens_own_%d" % k] = float(pearson(np.mean([mm["ck"][mm["bi"]]["pe"] for mm in members[:k]], 0), yev).mean())
        # (2) ensemble early-stopped as a whole: average members at the same checkpoint (members that
        # stopped earlier contribute their last checkpoint), pick checkpoint with lowest ensemble stop loss
        L = max(len(mm["ck"]) for mm in members); bestl = 1e18; bestr = None
        for j in range(L):
            cs = [mm["ck"][min(j, len(mm["ck"]) - 1)] for mm in members]
            ps = torch.tensor(np.mean([c["ps"] for c in cs], 0))
            ls = float(lossf(ps, torch.tensor(yst)))
            if ls < bestl:
                bestl = ls; bestr = float(pearson(np.mean([c["pe"] for c in cs], 0), yev).mean()); bj = j
        d["r_ens_whole"] = bestr; d["ens_whole_step"] = (bj + 1) * a.every
    res["sessions"].append(d)
    print("%s n=%d r_single=%.3f %s best=%s stop=%s %.1fs %.1fms/step" % (
        d["file"][:2], d["ncell"], d["r_single_mean"],
        ("ens_own=%.3f ens_whole=%.3f" % (d["r_ens_own"], d["r_ens_whole"])) if "r_ens_own" in d else "",
        d["member_best"], d["member_stop"], d["secs"], d["ms_step"]), flush=True)
S = res["sessions"]
res["mean_r_single"] = float(np.mean([d["r_single_mean"] for d in S]))
if "r_ens_own" in S[0]:
    res["mean_r_ens_own"] = float(np.mean([d["r_ens_own"] for d in S]))
    res["mean_r_ens_whole"] = float(np.mean([d["r_ens_whole"] for d in S]))
res["ms_step"] = float(sum(d["secs"] for d in S) / sum(d["secs"] / d["ms_step"] for d in S))
res["secs_total"] = time.time() - tall

os.makedirs(a.out, exist_ok=True)
json.dump(res, open(os.path.join(a.out, "%s.json" % a.name), "w"), indent=1)
print("== %s: mean r single %.4f %s | %.1f ms/step | %.0fs total" % (
    a.name, res["mean_r_single"],
    ("ens_own %.4f ens_whole %.4f" % (res["mean_r_ens_own"], res["mean_r_ens_whole"])) if "mean_r_ens_own" in res else "",
    res["ms_step"], res["secs_total"]), flush=True)
