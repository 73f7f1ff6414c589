"""One lifecycle comparison on the demo for BENCHMARKS.md (run on demand).

Plain fp32 training then fp32 serving, against sparse training + quantization-aware training
then int8 serving (the seed papers' "train with sparse and quantized weights"): each run trains
the demo from scratch for --epochs, converts, and serves the eval split; the comparison prices
the lifecycle at --deploy-queries and finds the break-even. Prints the CLI's tables and writes
the reports (PDF, CSV, JSON) to --out.

    .venv/bin/python benchmarks/lifecycle_demo.py [--optimized "sparse-training:target=0.5 qat"]
"""

from __future__ import annotations

import argparse
import sys
import time

from wattlab.core.cli.main import main as wattlab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimized", default="sparse-training:target=0.5 qat")
    ap.add_argument("--epochs", default="2")
    ap.add_argument("--repeats", default="3")
    ap.add_argument("--deploy-queries", default="1000000")
    ap.add_argument("--out", default="benchmarks/results/lifecycle_demo")
    a = ap.parse_args()
    t0 = time.time()
    code = wattlab(
        [
            "compare", "--model", "demo", "--lifecycle", "--optimized", a.optimized,
            "--epochs", a.epochs, "--repeats", a.repeats, "--deploy-queries", a.deploy_queries,
            "--out", a.out,
        ]
    )  # fmt: skip
    print(f"\n{time.time() - t0:.0f} s in all", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
