"""A sweep on the terminal: its plan before it starts, its table and answer after it ends
(shared by ``wattlab sweep``, ``report`` and ``runs show``)."""

from __future__ import annotations

import sys
from typing import Any


def print_plan(plan: Any, file: Any = None) -> None:
    file = file or sys.stdout
    print(
        f"sweep: {len(plan.candidates)} technique sets against the baseline, {plan.repeats} rounds",
        file=file,
    )
    for c in plan.candidates:
        print(f"  {c.key}", file=file)
    for r in plan.refused:
        print(f"  refused: {r.key}: {r.reason}", file=file)


def print_sweep(out: dict[str, Any], file: Any = None) -> None:
    """The table (the columns a terminal holds; the CSV and PDF have them all), then the
    fronts, the recommendation and every set's note."""
    from wattlab.core.report import sweep_text as st
    from wattlab.core.report.text import aligned

    file = file or sys.stdout
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p("")
    p(st.status_line(out))
    keep = (0, 1, 2, 3, 5, 6, 8, 10, 11)
    rows = [[st.COLUMNS[i] for i in keep]]
    rows += [[st.row_cells(r, out["fronts"])[i] for i in keep] for r in out["rows"]]
    for line in aligned(rows):
        p(line)
    p("Front: A energy-accuracy, L energy-latency, M energy-memory (medians over rounds)")
    p("")
    for line in st.front_lines(out) + st.dominated_lines(out):
        p(line)
    p("")
    for r in out["rows"]:
        p(f"{r['text']}: {r['note']}")
    for line in st.other_lines(out):
        p(line)
    p("")
    for line in st.recommendation_lines(out):
        p(line)
