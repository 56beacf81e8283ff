#!/usr/bin/env python3
"""Prints one Markdown row per run directory given: ferroplane / kernel + iptables (RPS) /
kernel + iptables (no RPS) for each bulk row of compare-testbed.md, and the ratio."""
import sys
for d in sys.argv[1:]:
    rows = [l for l in open(f"{d}/compare-testbed.md") if l.startswith("| Bulk TCP") or l.startswith("| CPU per GB")][:8]
    cells = []
    for l in rows:
        f = [c.strip() for c in l.strip().strip("|").split("|")]
        cells.append(" / ".join(f[2:5]))
    one = [float(x) for x in cells[0].split(" / ")]
    print(f"| {d} | " + " | ".join(cells) + f" | {one[0]/one[1]:.2f} / {one[0]/one[2]:.2f} |")
