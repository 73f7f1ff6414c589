"""The demo's sweep for BENCHMARKS.md: `wattlab sweep --model demo --mode infer --auto`, timed,
then its table as Markdown and its Pareto chart as a PNG under benchmarks/results/.

    .venv/bin/python benchmarks/sweep_demo.py                 # run the sweep (15-20 min here)
    .venv/bin/python benchmarks/sweep_demo.py --from OUT_DIR  # render an existing sweep.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wattlab.core.report import sweep_text as st
from wattlab.core.report.sweep_report import pareto_png

RESULTS = Path(__file__).parent / "results"
COMMAND = [
    "sweep", "--model", "demo", "--mode", "infer", "--auto", "--sensitive-column", "group",
]  # fmt: skip


def run_sweep(out: Path) -> float:
    """The CLI as a user runs it; its wall time, start to finish."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "wattlab.core.cli.main", *COMMAND, "--out", str(out)]
    subprocess.run(cmd, check=True)
    return time.monotonic() - t0


def markdown_table(summary: dict) -> str:
    keep = (0, 1, 2, 3, 5, 6, 7, 8, 10, 11)
    head = [st.COLUMNS[i] for i in keep]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary["rows"]:
        cells = st.row_cells(row, summary["fronts"])
        lines.append("| " + " | ".join(cells[i] for i in keep) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="src", help="a folder holding sweep.json (skip the run)")
    args = p.parse_args()
    wall_s = None
    if args.src:
        folder = Path(args.src)
    else:
        folder = Path(tempfile.mkdtemp(prefix="wattlab-bench-sweep-"))
        wall_s = run_sweep(folder)
    summary = json.loads((folder / "sweep.json").read_text())
    RESULTS.mkdir(exist_ok=True)
    slim = {k: v for k, v in summary.items() if k != "comparisons"}
    (RESULTS / "sweep_demo.json").write_text(json.dumps({**slim, "wall_s": wall_s}, indent=1))
    shutil.copy(folder / "sweep.csv", RESULTS / "sweep_demo.csv")
    (RESULTS / "sweep_demo_pareto.png").write_bytes(pareto_png(summary, dpi=90))
    print(st.status_line(summary) + (f"; wall time {wall_s:.0f} s" if wall_s else ""))
    print(markdown_table(summary))
    print("\n".join(st.recommendation_lines(summary) + st.front_lines(summary)))
    print("\n".join(f"- {r['text']}: {r['note']}" for r in summary["rows"]))
    print("\n".join(st.other_lines(summary)))


if __name__ == "__main__":
    main()
