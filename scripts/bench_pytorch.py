"""PyTorch-eager twin of `ists bench proxy`: the same reference architecture (MixGC and linear
attention cells, identity edges, channel layer norm, the same head), the same proxy budget
(Adam + global-norm clipping + masked MAE on de-normalized values), on the same inputs, one
intra-op thread. Prints seconds per proxy evaluation (median of --repeat) per input.

Usage: python scripts/bench_pytorch.py [--arch config/reference-arch.json] [--repeat 3]
(run by scripts/bench-proxy.sh, which also runs the tch side).
"""
import argparse
import json
import math
import os
import statistics
import time

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def sym_norm_with_loops(a):
    a = a.copy()
    n = a.shape[0]
    for i in range(n):
        if a[i, i] == 0:
            a[i, i] = 1.0
    d = a.sum(1)
    dinv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
    return (dinv[:, None] * a * dinv[None, :]).astype(np.float32)


class Conv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, (1, 1))

    def forward(self, x):
        return self.c(x)


class MixGc(nn.Module):
    def __init__(self, c, order, a):
        super().__init__()
        self.per = nn.ModuleList([Conv(c, c) for _ in range(order + 1)])
        self.proj = Conv(c * (order + 1), c)
        self.register_buffer("a", a)

    def forward(self, x):
        h, parts = x, []
        for k, lin in enumerate(self.per):
            if k > 0:
                h = torch.einsum("bcnt,mn->bcmt", h, self.a)
            parts.append(lin(h))
        return self.proj(torch.cat(parts, 1))


class LinearAttn(nn.Module):
    def __init__(self, c, heads, steps):
        super().__init__()
        self.q, self.k, self.v, self.o = Conv(c, c), Conv(c, c), Conv(c, c), Conv(c, c)
        self.pos = nn.Parameter(torch.randn(1, c, 1, steps) * 0.02)
        self.h = heads

    def forward(self, x):
        b, c, n, t = x.shape
        xp = x + self.pos
        split = lambda z: z.reshape(b, self.h, c // self.h, n, t)
        q = torch.nn.functional.elu(split(self.q(xp))) + 1
        k = torch.nn.functional.elu(split(self.k(xp))) + 1
        v = split(self.v(x))
        kv = torch.einsum("bhdnt,bhent->bhnde", k, v)
        den = torch.einsum("bhdnt,bhdn->bhnt", q, k.sum(-1)) + 1e-6
        num = torch.einsum("bhdnt,bhnde->bhent", q, kv)
        return self.o((num / den.unsqueeze(2)).reshape(b, c, n, t))


class Cell(nn.Module):
    def __init__(self, order, s, t):
        super().__init__()
        self.order, self.s, self.t = order, s, t

    def forward(self, x):
        if self.order == "STT":
            return self.t(self.s(x))
        if self.order == "TTS":
            return self.s(self.t(x))
        return self.s(x) + self.t(x)


class Model(nn.Module):
    def __init__(self, arch, n, fin, steps, horizon, hidden, end_hidden, heads, order, a):
        super().__init__()
        self.inp = Conv(fin, hidden)
        self.edges = []
        mods = nn.ModuleList()
        for e in arch["edges"]:
            op = e["op"]
            if op in ("zero", "none"):
                continue
            if op in ("identity", "skip"):
                m = nn.Identity()
            elif op in ("STT", "TTS", "STP"):
                if e.get("spatial", "mix_gc") != "mix_gc" or e.get("temporal", "linear_attn") != "linear_attn":
                    raise SystemExit("this twin implements mix_gc/linear_attn cells only")
                m = Cell(op, MixGc(hidden, order, a), LinearAttn(hidden, heads, steps))
            else:
                raise SystemExit(f"operator {op} not in the PyTorch twin")
            mods.append(m)
            self.edges.append((e["from"], e["to"], len(mods) - 1))
        self.mods = mods
        self.h1 = Conv(hidden * steps, end_hidden)
        self.h2 = Conv(end_hidden, horizon)
        self.nodes, self.c, self.steps = arch.get("nodes", 4), hidden, steps

    def forward(self, x):  # [B, T, N, F]
        b = x.shape[0]
        h0 = self.inp(x.permute(0, 3, 2, 1))
        states = [h0] + [None] * (self.nodes - 1)
        for node in range(1, self.nodes):
            acc = None
            for f, t, i in self.edges:
                if t == node and states[f] is not None:
                    y = self.mods[i](states[f])
                    acc = y if acc is None else acc + y
            if acc is not None:
                acc = torch.nn.functional.layer_norm(acc.permute(0, 2, 3, 1), (self.c,)).permute(0, 3, 1, 2)
            states[node] = acc
        out = states[-1] + h0 if states[-1] is not None else h0
        z = torch.relu(out).permute(0, 1, 3, 2).reshape(b, self.c * self.steps, 1, -1).permute(0, 1, 3, 2)
        return self.h2(torch.relu(self.h1(z)))


def masked_mae(p, y):
    m = (y != 0).float()
    m = m / m.mean()
    m = torch.where(torch.isnan(m), torch.zeros_like(m), m)
    return torch.where(m > 0, (p - y).abs() * m, torch.zeros_like(p)).mean()


def prepare(signal, adj, tin=12, tout=12, spd=288, split=(0.7, 0.1, 0.2)):
    t, n = signal.shape
    samples = t - tin - tout + 1
    ntrain = round(samples * split[0])
    ntest = round(samples * split[2])
    nval = samples - ntrain - ntest
    fit = signal[: ntrain - 1 + tin]
    valid = fit[fit != 0]
    mean, std = float(valid.mean()), float(max(valid.std(), 1e-6))
    z = (signal - mean) / std
    tod = (np.arange(t) % spd / spd)[:, None].repeat(n, 1)
    inputs = np.stack([z, tod], -1).astype(np.float32)
    return dict(inputs=torch.from_numpy(inputs), target=torch.from_numpy(signal.astype(np.float32)),
                train=range(0, ntrain), val=range(ntrain, ntrain + nval), mean=mean, std=std,
                a=torch.from_numpy(sym_norm_with_loops(adj)), n=n)


def batch(d, starts, tin=12, tout=12):
    idx = torch.tensor(starts)
    x = d["inputs"].unfold(0, tin, 1).index_select(0, idx).permute(0, 3, 1, 2)
    y = d["target"][tin:].unfold(0, tout, 1).index_select(0, idx).permute(0, 2, 1)
    return x, y


def proxy(arch, d, cfg, seed=1):
    torch.manual_seed(seed)
    m = Model(arch, d["n"], 2, 12, 12, cfg["hidden"], cfg["end_hidden"], cfg["heads"], cfg["order"], d["a"])
    opt = torch.optim.Adam(m.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    rng = np.random.default_rng(seed)
    order = []
    for _ in range(cfg["steps"]):
        if len(order) < cfg["batch"]:
            order = list(rng.permutation(list(d["train"])))
        starts, order = order[-cfg["batch"]:], order[: -cfg["batch"]]
        x, y = batch(d, starts)
        p = m(x).squeeze(-1) * d["std"] + d["mean"]
        loss = masked_mae(p, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg["clip"])
        opt.step()
    val = list(d["val"])
    k = cfg["val_samples"]
    if 0 < k < len(val):
        val = [val[0] + i * len(val) // k for i in range(k)]
    with torch.no_grad():
        preds, ys = [], []
        for i in range(0, len(val), 128):
            x, y = batch(d, val[i:i + 128])
            preds.append(m(x).squeeze(-1) * d["std"] + d["mean"])
            ys.append(y)
        return masked_mae(torch.cat(preds), torch.cat(ys)).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default=os.path.join(ROOT, "config/reference-arch.json"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=16)
    args = ap.parse_args()
    arch = json.load(open(args.arch))
    cfg = dict(hidden=args.hidden, end_hidden=64, heads=2, order=2, lr=0.002, wd=1e-4, clip=5.0,
               steps=args.steps, batch=args.batch, val_samples=256)
    speed = np.loadtxt(os.path.join(ROOT, "data/METR-LA/T-GCN_Los-loop/los_speed.csv"), delimiter=",", skiprows=1)
    adj = np.loadtxt(os.path.join(ROOT, "data/METR-LA/T-GCN_Los-loop/los_adj.csv"), delimiter=",")
    cases = [("METR-LA week (207 nodes)", prepare(speed, adj))]
    # PEMS08 shape: the real 170-node graph, the same synthetic signal as `ists bench proxy`.
    n8 = 170
    a8 = np.zeros((n8, n8), np.float32)
    rows = np.loadtxt(os.path.join(ROOT, "data/PEMS08/PEMS08.csv"), delimiter=",", skiprows=1)
    d = rows[:, 2]
    sigma = d.std()
    for f, t, c in rows:
        w = math.exp(-((c / sigma) ** 2))
        if w >= 0.1:
            a8[int(f), int(t)] = a8[int(t), int(f)] = w
    steps = np.arange(2016)[:, None]
    nodes = np.arange(n8)[None, :]
    phase = (steps % 288) / 288.0 * 2 * math.pi + nodes * 0.1
    flow = 200 + 150 * np.sin(phase) + (nodes % 7) * 5.0
    cases.append(("PEMS08 shape (170 nodes)", prepare(flow.astype(np.float32), a8, split=(0.6, 0.2, 0.2))))
    print(f"| input | steps | batch | PyTorch eager seconds per proxy evaluation (median of {args.repeat}) | val MAE |")
    print("|---|---:|---:|---:|---:|")
    for name, dd in cases:
        times, mae = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            mae = proxy(arch, dd, cfg)
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {args.steps} | {args.batch} | {statistics.median(times):.3f} | {mae:.4f} |")


if __name__ == "__main__":
    main()
