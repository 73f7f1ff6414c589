"""Do `wattlab bench` and `wattlab profile` agree on the energy of one command?

The same command (the shipped single-core cpu_burn, 2 s) is measured in interleaved rounds: each
round runs `wattlab profile` once and `wattlab bench --runs 1` once, the order alternating, each
through the real CLI with its own idle baseline. Per round the table gives

- profile's total (what `wattlab profile` prints as "total"),
- profile's command window: the same run's energy without the power-settling wait before its
  idle baseline (bench_stats.command_energy applied to profile's summary.json),
- bench's energy (its median over its one run: the command window),

and the ratios. Agreement is bench against profile's command window (same definition, two
separate runs: the run-to-run noise of this machine); the total differs by the settling wait.

    .venv/bin/python benchmarks/bench_vs_profile.py [--rounds 4] [--seconds 2] [--idle 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from wattlab.core.run.bench_stats import command_energy
from wattlab.core.run.stats import paired_interval

WATTLAB = [sys.executable, "-m", "wattlab.core.cli.main"]
BURN = [sys.executable, "-m", "wattlab.resources.workloads.cpu_burn"]


def run_profile(env: dict[str, str], out: Path, burn: list[str], idle: float) -> dict:
    cmd = [*WATTLAB, "profile", "--idle", str(idle), "--out", str(out), "--", *burn]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    res = json.loads((out / "summary.json").read_text())
    gross, net, label = command_energy(res)
    return {
        "total_j": res["total"]["gross_j"],
        "window_j": gross,
        "window_net_j": net,
        "label": label,
        "settle_s": res["phases"].get("settle"),
        "duration_s": res["duration_s"],
    }


def run_bench(env: dict[str, str], out: Path, burn: list[str], idle: float) -> dict:
    cmd = [*WATTLAB, "bench", shlex.join(burn), "--runs", "1", "--idle", str(idle)]
    cmd += ["--cooldown", "0", "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    row = json.loads((out / "bench.json").read_text())["rows"][0]
    return {
        "energy_j": row["median"]["energy_j"],
        "net_j": row["median"]["energy_net_j"],
        "label": row["energy_label"],
        "duration_s": row["median"]["duration_s"],
    }


def measure(rounds: int, seconds: float, idle: float) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="wl-bench-vs-profile-") as tmp:
        return _measure(Path(tmp), rounds, seconds, idle)


def _measure(work: Path, rounds: int, seconds: float, idle: float) -> list[dict]:
    env = dict(os.environ, WATTLAB_DATA_DIR=str(work / "data"))
    burn = [*BURN, "--seconds", str(seconds)]
    out = []
    for k in range(rounds):
        order = ("profile", "bench") if k % 2 == 0 else ("bench", "profile")
        got: dict[str, dict] = {}
        for arm in order:
            folder = work / f"r{k}-{arm}"
            fn = run_profile if arm == "profile" else run_bench
            got[arm] = fn(env, folder, burn, idle)
            print(f"round {k + 1}/{rounds} {arm}: done", file=sys.stderr)
        out.append({"round": k + 1, "order": " then ".join(order), **got})
    return out


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "unknown" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    lines = [
        "| round | order | profile total (printed) | profile command window | bench energy "
        "| bench / profile window | bench / profile total | settle wait | label |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        p, b = r["profile"], r["bench"]
        lines.append(
            f"| {r['round']} | {r['order']} | {fmt(p['total_j'])} J | {fmt(p['window_j'])} J "
            f"| {fmt(b['energy_j'])} J | {fmt(b['energy_j'] / p['window_j'], '.3f')} "
            f"| {fmt(b['energy_j'] / p['total_j'], '.3f')} | {fmt(p['settle_s'])} s "
            f"| {b['label']} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    win = [r["profile"]["window_j"] for r in rows]
    tot = [r["profile"]["total_j"] for r in rows]
    ben = [r["bench"]["energy_j"] for r in rows]
    iv = paired_interval(win, ben, True)
    ci_text = f"95% interval {iv.ci[0]:.3f} to {iv.ci[1]:.3f}" if iv.ci else "no interval"
    return (
        f"Medians: profile total {statistics.median(tot):.2f} J, profile command window "
        f"{statistics.median(win):.2f} J, bench {statistics.median(ben):.2f} J. Bench against "
        f"profile's command window: geometric-mean ratio {fmt(iv.ratio, '.3f')} "
        f"({ci_text}, {iv.pairs} pairs: {iv.verdict} at a 3% "
        f"margin). Bench against profile's printed total: median ratio "
        f"{statistics.median(b / t for b, t in zip(ben, tot, strict=True)):.3f}."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--idle", type=float, default=2.0)
    a = ap.parse_args()
    rows = measure(a.rounds, a.seconds, a.idle)
    print(
        f"cpu_burn {a.seconds:g} s, idle baseline {a.idle:g} s, {a.rounds} interleaved rounds; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs\n"
    )
    print(table(rows))
    print()
    print(summary(rows))


if __name__ == "__main__":
    main()
