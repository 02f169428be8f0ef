"""Peers on the learning benchmark's landscapes: BoTorch (SingleTaskGP + LogEI) and Optuna's TPE.

Runs each peer on exactly the problems `experiments::bench::landscape::suite` defines, as exported by
`landscapes export DIR SEEDS` (the experiments crate's example binary): the same spaces, tables, budgets, targets
and, per seed, the same noise draws. Continuous landscapes are evaluated by the same Rust code through
`landscapes serve`, so no function is written twice. A run stops at the first experiment whose true value reaches
the target; the result is that experiment's number (from 1), or nothing within the budget.

Usage: python run.py PROBLEM_DIR RESULTS_CSV --methods botorch,tpe --seeds 0..20 [--only NAME,...] (names, in the order to run them)
Results are appended one line per (problem, method, seed) and a line already present is not run again, so an
interrupted run resumes.
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


class Problem:
    """One exported landscape, with its features (unit coordinates, one-hot categorical levels)."""

    def __init__(self, spec, oracle):
        self.spec = spec
        self.name = spec["name"]
        self.dims = spec["dims"]
        self.budget = spec["budget"]
        self.target = spec["target"]
        self.noise_sd = spec["noise_sd"]
        self.initial = spec["initial"]
        self.oracle = oracle
        table = spec.get("table")
        self.rows = np.array(table["rows"], dtype=float) if table else None
        self.row_values = np.array(table["values"], dtype=float) if table else None

    def noise(self, seed, k):
        return self.noise_sd * self.spec["noise"][seed][k]

    def value(self, x):
        """The true value at native values `x` (the table's value for a row, else the Rust oracle's)."""
        return self.oracle.value(self.name, x)

    def features(self, x):
        out = []
        for d, v in zip(self.dims, x):
            if d["type"] == "categorical":
                values = [lv["value"] for lv in d["levels"]]
                out.extend(1.0 if abs(v - lv) < 1e-9 else 0.0 for lv in values)
            else:
                out.append((v - d["min"]) / (d["max"] - d["min"]))
        return out

    def from_features(self, f):
        """Native values from features (a categorical dimension takes its largest one-hot feature)."""
        x, i = [], 0
        for d in self.dims:
            if d["type"] == "categorical":
                k = len(d["levels"])
                x.append(d["levels"][int(np.argmax(f[i : i + k]))]["value"])
                i += k
            else:
                x.append(d["min"] + float(np.clip(f[i], 0.0, 1.0)) * (d["max"] - d["min"]))
                i += 1
        return x

    def feature_len(self):
        return sum(len(d["levels"]) if d["type"] == "categorical" else 1 for d in self.dims)


class Oracle:
    """The `landscapes serve` process: true values of continuous landscapes, computed by the suite's own code."""

    def __init__(self, binary):
        self.proc = subprocess.Popen([binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def value(self, name, x):
        self.proc.stdin.write(name + " " + " ".join(repr(float(v)) for v in x) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if line.startswith("error") or not line:
            raise RuntimeError(f"oracle: {line} for {name} {x}")
        return float(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def run_botorch(p, seed):
    import torch
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf, optimize_acqf_mixed
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(seed)
    dtype = torch.double
    nf = p.feature_len()
    xs, ys = [], []

    def evaluate(x):
        k = len(ys)
        truth = p.value(x) if p.rows is None else None
        return truth, k

    # Initial design: random rows of a table, or a scrambled Sobol design (categorical levels by its coordinate).
    if p.rows is not None:
        rng = np.random.default_rng(seed)
        order = list(rng.choice(len(p.rows), size=p.initial, replace=False))
        tried = set()
        init = [("row", int(i)) for i in order]
    else:
        sobol = torch.quasirandom.SobolEngine(len(p.dims), scramble=True, seed=seed).draw(p.initial).double().numpy()
        init = []
        for u in sobol:
            x = []
            for d, c in zip(p.dims, u):
                if d["type"] == "categorical":
                    x.append(d["levels"][min(int(c * len(d["levels"])), len(d["levels"]) - 1)]["value"])
                else:
                    x.append(d["min"] + c * (d["max"] - d["min"]))
            init.append(("x", x))
        tried = None
    step = 0
    for k in range(p.budget):
        if k < len(init):
            kind, what = init[k]
            if kind == "row":
                x, truth = list(p.rows[what]), float(p.row_values[what])
                tried.add(what)
            else:
                x, truth = what, p.value(what)
        else:
            X = torch.tensor(xs, dtype=dtype)
            Y = torch.tensor(ys, dtype=dtype).unsqueeze(-1)
            model = SingleTaskGP(X, Y)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            if p.noise_sd > 0:
                with torch.no_grad():
                    best_f = model.posterior(X).mean.max().item()
            else:
                best_f = Y.max().item()
            acq = LogExpectedImprovement(model, best_f=best_f)
            if p.rows is not None:
                untried = [i for i in range(len(p.rows)) if i not in tried]
                F = torch.tensor([p.features(p.rows[i]) for i in untried], dtype=dtype)
                with torch.no_grad():
                    vals = torch.cat([acq(F[j : j + 2048].unsqueeze(1)) for j in range(0, len(F), 2048)])
                i = untried[int(torch.argmax(vals))]
                x, truth = list(p.rows[i]), float(p.row_values[i])
                tried.add(i)
            else:
                bounds = torch.stack([torch.zeros(nf, dtype=dtype), torch.ones(nf, dtype=dtype)])
                cats = [(j, d) for j, d in enumerate(p.dims) if d["type"] == "categorical"]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if cats:
                        # One-hot columns fixed to each level in turn (BoTorch's mixed optimiser enumerates them).
                        (j0, d0), start = cats[0], sum(1 for d in p.dims[: cats[0][0]] if d["type"] != "categorical")
                        offset = sum(len(d["levels"]) if d["type"] == "categorical" else 1 for d in p.dims[:j0])
                        fixed = [
                            {offset + i: (1.0 if i == level else 0.0) for i in range(len(d0["levels"]))}
                            for level in range(len(d0["levels"]))
                        ]
                        cand, _ = optimize_acqf_mixed(
                            acq, bounds=bounds, q=1, num_restarts=4, raw_samples=256, fixed_features_list=fixed
                        )
                    else:
                        cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=4, raw_samples=256)
                x = p.from_features(cand.squeeze(0).tolist())
                truth = p.value(x)
        if truth >= p.target:
            return k + 1
        xs.append(p.features(x))
        ys.append(truth + p.noise(seed, k))
    return None


def run_tpe(p, seed):
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = {}
    for d in p.dims:
        if d["type"] == "categorical":
            dists[d["name"]] = CategoricalDistribution([lv["value"] for lv in d["levels"]])
        else:
            dists[d["name"]] = FloatDistribution(d["min"], d["max"])
    tried = set()
    if p.rows is not None:
        F = np.array([p.features(r) for r in p.rows])
    for k in range(p.budget):
        trial = study.ask(dists)
        x = [trial.params[d["name"]] for d in p.dims]
        if p.rows is None:
            truth = p.value(x)
            study.tell(trial, truth + p.noise(seed, k))
        else:
            # TPE proposes anywhere; the experiment run is the nearest untried row (in features), and that row,
            # not the proposal, is what the study records.
            dist = ((F - np.array(p.features(x))) ** 2).sum(axis=1)
            dist[list(tried)] = np.inf
            i = int(np.argmin(dist))
            tried.add(i)
            row = list(p.rows[i])
            truth = float(p.row_values[i])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            params = {d["name"]: v for d, v in zip(p.dims, row)}
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=dists, value=truth + p.noise(seed, k))
            )
        if truth >= p.target:
            return k + 1
    return None


METHODS = {"botorch": ("BoTorch SingleTaskGP LogEI", run_botorch), "tpe": ("Optuna TPE", run_tpe)}


def seeds_of(text):
    if ".." in text:
        a, b = text.split("..")
        return list(range(int(a), int(b)))
    return [int(s) for s in text.split(",")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("problems")
    ap.add_argument("results")
    ap.add_argument("--methods", default="botorch,tpe")
    ap.add_argument("--seeds", default="0..20")
    ap.add_argument("--only", default="")
    ap.add_argument("--oracle", default=os.path.join(HERE, ".target", "release", "examples", "landscapes"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    oracle = Oracle(args.oracle)
    done = set()
    if os.path.exists(args.results):
        with open(args.results) as f:
            for r in csv.DictReader(f):
                done.add((r["problem"], r["method"], int(r["seed"])))
    new = not os.path.exists(args.results)
    out = open(args.results, "a", newline="")
    w = csv.writer(out)
    if new:
        w.writerow(["problem", "method", "seed", "hit", "seconds"])
    only = [s for s in args.only.split(",") if s]
    specs = [json.load(open(os.path.join(args.problems, f))) for f in sorted(os.listdir(args.problems)) if f.endswith(".json")]
    if only:
        # In the order given, so the problems that matter most run first.
        specs = [s for name in only for s in specs if s["name"] == name]
    for spec in specs:
        p = Problem(spec, oracle)
        for m in args.methods.split(","):
            label, run = METHODS[m]
            for seed in seeds_of(args.seeds):
                if (p.name, m, seed) in done:
                    continue
                t = time.time()
                hit = run(p, seed)
                w.writerow([p.name, m, seed, "" if hit is None else hit, f"{time.time() - t:.2f}"])
                out.flush()
                print(p.name, m, seed, hit, f"{time.time() - t:.1f}s", flush=True)
    oracle.close()


if __name__ == "__main__":
    main()
