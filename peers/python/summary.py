"""Prints the peers' results (and ours, from `landscapes ours`) side by side: hits and median per landscape.

Usage: python summary.py RESULTS_CSV [MORE_CSV...]
A seed that did not reach the target counts as infinite in the median ('>budget' when fewer than half reached it).
"""

import csv
import sys
from collections import defaultdict


def median(values):
    v = sorted(values)
    n = len(v)
    if n == 0:
        return float("nan")
    mid = (v[(n - 1) // 2] + v[n // 2]) / 2
    return mid


def main():
    rows = defaultdict(dict)
    for path in sys.argv[1:]:
        with open(path) as f:
            for r in csv.DictReader(f):
                rows[(r["problem"], r["method"])][int(r["seed"])] = int(r["hit"]) if r["hit"] else None
    print("| landscape | method | seeds | hits | median | worst |")
    print("|---|---|---|---|---|---|")
    for (problem, method), seeds in sorted(rows.items()):
        hits = [h for h in seeds.values() if h is not None]
        m = median([h if h is not None else float("inf") for h in seeds.values()])
        worst = max(hits) if len(hits) == len(seeds) else "-"
        ms = ">budget" if m == float("inf") else f"{m:g}"
        print(f"| {problem} | {method} | {len(seeds)} | {len(hits)}/{len(seeds)} | {ms} | {worst} |")


if __name__ == "__main__":
    main()
