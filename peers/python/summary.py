"""Prints ours and the peers side by side, one row per landscape, with the issue's test of each.

Usage: python summary.py RESULTS_CSV [MORE_CSV...]   (ours comes from `landscapes ours SEEDS`, method `ours`)

For each landscape and method: seeds that reached the target within the budget, and the median over all seeds of
the experiments to reach it (a seed that did not counts as infinite; '>budget' when fewer than half did). The last
column is the issue's test, on the seeds every method ran: ours reaches the target in at least as many seeds as
the best peer, and ours' median is at most 10% above the best peer's median. A peer with fewer seeds than ours is
compared on the seeds both ran, and its seed count is shown.
"""

import csv
import sys
from collections import defaultdict

METHODS = [("ours", "ours"), ("botorch", "BoTorch"), ("tpe", "TPE")]


def median(values):
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2 if v else float("nan")


def stats(runs, seeds):
    hits = [runs[s] for s in seeds if runs[s] is not None]
    m = median([runs[s] if runs[s] is not None else float("inf") for s in seeds])
    return len(hits), m


def fmt(h, m, n):
    return f"{h}/{n}, " + (">budget" if m == float("inf") else f"{m:g}")


def main():
    runs = defaultdict(dict)
    for path in sys.argv[1:]:
        with open(path) as f:
            for r in csv.DictReader(f):
                runs[(r["problem"], r["method"])][int(r["seed"])] = int(r["hit"]) if r["hit"] else None
    problems = sorted({p for p, _ in runs})
    print("| landscape | ours | BoTorch | TPE | test (on the seeds all ran) |")
    print("|---|---|---|---|---|")
    for p in problems:
        have = [m for m, _ in METHODS if (p, m) in runs]
        if "ours" not in have:
            continue
        common = set(runs[(p, "ours")])
        for m in have:
            common &= set(runs[(p, m)])
        common = sorted(common)
        cells = []
        for m, _ in METHODS:
            if (p, m) not in runs:
                cells.append("not run")
                continue
            h, med = stats(runs[(p, m)], sorted(runs[(p, m)]))
            cells.append(fmt(h, med, len(runs[(p, m)])))
        verdict = "no peer"
        peers = [m for m in have if m != "ours"]
        if peers and common:
            oh, om = stats(runs[(p, "ours")], common)
            best_hits = max(stats(runs[(p, m)], common)[0] for m in peers)
            best_median = min(stats(runs[(p, m)], common)[1] for m in peers)
            ok_hits = oh >= best_hits
            ok_median = om <= 1.1 * best_median if best_median != float("inf") else True
            verdict = f"{len(common)} seeds: hits {oh} vs {best_hits} {'ok' if ok_hits else 'FAIL'}; median " + (
                f"{om:g} vs {best_median:g} {'ok' if ok_median else 'FAIL'}"
            )
        print(f"| {p} | " + " | ".join(cells) + f" | {verdict} |")


if __name__ == "__main__":
    main()
