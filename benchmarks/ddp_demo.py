"""One process against 2 DDP ranks on the demo, for BENCHMARKS.md (run on demand).

`wattlab compare --model demo --mode train --optimized "ddp:nproc=2"`: on a 2-core machine, one
process with 2 threads against 2 ranks with 1 thread each (gloo), one epoch of the demo from
scratch, interleaved repeats. Prints the comparison (energy per item, time, throughput, the
speed-up and scaling efficiency) and writes its reports to --out.

    .venv/bin/python benchmarks/ddp_demo.py [--repeats 3] [--epochs 1]
"""

from __future__ import annotations

import argparse
import sys
import time

from wattlab.core.cli.main import main as wattlab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", default="2")
    ap.add_argument("--epochs", default="1")
    ap.add_argument("--repeats", default="3")
    ap.add_argument("--out", default="benchmarks/results/ddp_demo")
    a = ap.parse_args()
    t0 = time.time()
    code = wattlab(
        [
            "compare", "--model", "demo", "--mode", "train", "--optimized",
            f"ddp:nproc={a.nproc}", "--epochs", a.epochs, "--repeats", a.repeats,
            "--out", a.out,
        ]
    )  # fmt: skip
    print(f"\n{time.time() - t0:.0f} s in all", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
