"""Every GPU path of WattLab, checked on a real CUDA machine; prints a table for BENCHMARKS.md.

    python benchmarks/gpu_validation.py [--seconds 30] [--out gpu_validation.md] [--quick]

1. Counter vs integration: a steady matmul load for ``--seconds``; the NVML energy counter's
   joules and the trapezoid of the (instant) power samples over the same window must agree
   within 2%.
2. Short windows: bursts of 0.05-1 s measured by the counter read at their edges, against the
   steady load's mean power x duration; the error shows why windows under ten counter updates
   carry a warning.
3. A session per CUDA technique (``wattlab run --device cuda``): fp16 training with GradScaler,
   bf16 autocast, bf16 cast, 2:4 sparsity, torchao int8 and fp8 weights; each must complete,
   count only its own GPU, and label its GPU energy ``measured``.
4. One comparison (``wattlab compare --device cuda``), 5 counterbalanced pairs.

Exit code 2 with one line when there is no CUDA GPU or no NVML: it must run where the GPU is.
Nothing here is a timed test; it is a validation a person runs and reads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TECHNIQUE_SESSIONS = [
    ("fp16 training + GradScaler", "train", ["mixed-precision:dtype=fp16"]),
    ("bf16 autocast training", "train", ["mixed-precision:dtype=bf16"]),
    ("bf16 cast inference", "infer", ["mixed-precision:dtype=bf16,mode=cast"]),
    ("2:4 sparsity inference", "infer", ["pruning:method=semi-structured"]),
    ("torchao int8 weights", "infer", ["quantization:backend=torchao,dtype=int8"]),
    ("torchao fp8 weights", "infer", ["quantization:backend=torchao,dtype=fp8"]),
]


def _need_gpu() -> tuple[object, object]:
    try:
        import torch
    except ImportError:
        sys.exit("gpu_validation: torch is not installed")
    if not torch.cuda.is_available():
        print("gpu_validation: no CUDA GPU here; run it on a GPU machine", file=sys.stderr)
        sys.exit(2)
    from wattlab.core.measure.sensors.nvml import probe_nvml

    sensor, status = probe_nvml()
    if sensor is None:
        print(f"gpu_validation: NVML unavailable: {status.reason}", file=sys.stderr)
        sys.exit(2)
    return torch, sensor


def _steady_load(torch: object, seconds: float, stop_at: float | None = None) -> int:
    """Back-to-back bf16 matmuls for ``seconds``; returns how many ran."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)  # type: ignore[attr-defined]
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)  # type: ignore[attr-defined]
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(8):
            a @ b
        torch.cuda.synchronize()  # type: ignore[attr-defined]
        n += 8
    return n


def counter_vs_integrated(torch: object, sensor: object, seconds: float) -> dict[str, float]:
    from wattlab.core.measure.sampling import Sampler
    from wattlab.core.measure.sensors.base import EnergyChannel

    g = sensor.gpus[0]  # type: ignore[attr-defined]
    counter = EnergyChannel(g.label, f"{g.label}.energy_mj", "counter", "measured", "c", 1e-3)
    power = EnergyChannel(g.label + "-int", f"{g.label}.power_w", "power", "integrated", "p")
    s = Sampler([sensor], interval_s=0.05, channels=[counter, power])
    s.start()
    s.wait_first_sample()
    _steady_load(torch, 3.0)  # warm up clocks and temperature first
    t0 = s.mark_phase("load")
    s.sample_now()
    _steady_load(torch, seconds)
    s.sample_now()
    t1 = s.mark_phase("after")
    end = s.stop()
    by = {e.source: e for e in s.energy.results(end)}
    c_j = by[g.label].by_phase_j["load"]
    i_j = by[g.label + "-int"].by_phase_j["load"]
    return {
        "window_s": t1 - t0,
        "counter_j": c_j,
        "integrated_j": i_j,
        "diff_pct": 100 * (i_j - c_j) / c_j,
        "mean_power_w": c_j / (t1 - t0),
        "peak_power_w": by[g.label].peak_power_w or float("nan"),
        "instant_field": float(g.has_instant_power),
    }


def short_windows(torch: object, sensor: object, mean_w: float) -> list[dict[str, float]]:
    from wattlab.core.measure.sampling import Sampler

    rows = []
    for dur in (0.05, 0.1, 0.2, 0.5, 1.0):
        s = Sampler([sensor], interval_s=0.05)
        s.start()
        s.wait_first_sample()
        _steady_load(torch, 1.0)
        t0 = s.mark_phase("burst")
        s.sample_now()
        _steady_load(torch, dur)
        t1 = s.mark_phase("after")
        s.sample_now()
        end = s.stop()
        j = sum(e.by_phase_j.get("burst", 0.0) for e in s.energy.results(end))
        rows.append(
            {
                "window_s": t1 - t0,
                "counter_j": j,
                "expected_j": mean_w * (t1 - t0),
                "error_pct": 100 * (j - mean_w * (t1 - t0)) / (mean_w * (t1 - t0)),
            }
        )
    return rows


def wattlab(*args: str, out: Path) -> tuple[int, dict | None, str]:
    cmd = [sys.executable, "-m", "wattlab.app.entry", *args, "--out", str(out)]
    env = dict(os.environ, WATTLAB_DATA_DIR=str(out.parent / "data"))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    for name in ("comparison.json", "result.json"):
        if (out / name).exists():
            return p.returncode, json.loads((out / name).read_text()), p.stderr[-600:]
    return p.returncode, None, p.stderr[-600:]


def sessions(tmp: Path, quick: bool) -> list[dict[str, object]]:
    rows = []
    for name, mode, techs in TECHNIQUE_SESSIONS:
        args = ["run", "--model", "demo", "--mode", mode, "--device", "cuda"]
        if mode == "train":
            args += ["--epochs", "1" if quick else "2"]
        for t in techs:
            args += ["--technique", t]
        code, res, err = wattlab(*args, out=tmp / name.replace(" ", "_"))
        gpu = [e for e in (res or {}).get("energy", []) if e["source"].startswith("gpu")]
        rows.append(
            {
                "session": name,
                "exit": code,
                "gpu_label": ",".join(e["label"] for e in gpu if e.get("in_total", True)) or "-",
                "scope": (res or {}).get("scope") or "-",
                "energy_per_item_j": (res or {}).get("energy_per_item_j"),
                "warnings": len((res or {}).get("warnings", [])),
                "error": "" if code == 0 else err.strip().splitlines()[-1:],
            }
        )
    return rows


def comparison(tmp: Path, quick: bool) -> dict[str, object]:
    args = [
        "compare",
        "--demo",
        "--device",
        "cuda",
        "--repeats",
        "3" if quick else "5",
        "--optimized",
        "mixed-precision:dtype=bf16,mode=cast",
    ]
    code, comp, err = wattlab(*args, out=tmp / "compare")
    return {"exit": code, "headline": (comp or {}).get("headline", err)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="fewer epochs and pairs")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    a = ap.parse_args()
    torch, sensor = _need_gpu()
    gpu_name = sensor.gpus[0].name  # type: ignore[attr-defined]
    lines = [f"GPU: {gpu_name}, CUDA {torch.version.cuda}", ""]  # type: ignore[attr-defined]
    cv = counter_vs_integrated(torch, sensor, a.seconds)
    ok = abs(cv["diff_pct"]) <= 2.0
    lines += [
        "| steady load | window s | counter J | integrated J | diff | mean W | peak W (>=0.5 s) |",
        "|---|---|---|---|---|---|---|",
        f"| bf16 matmul | {cv['window_s']:.1f} | {cv['counter_j']:.0f} | {cv['integrated_j']:.0f} "
        f"| {cv['diff_pct']:+.2f}% {'ok' if ok else 'FAIL (>2%)'} | {cv['mean_power_w']:.0f} | "
        f"{cv['peak_power_w']:.0f} |",
        "",
        "| burst s | counter J | steady W x s | error |",
        "|---|---|---|---|",
    ]
    for r in short_windows(torch, sensor, cv["mean_power_w"]):
        lines.append(
            f"| {r['window_s']:.3f} | {r['counter_j']:.1f} | {r['expected_j']:.1f} "
            f"| {r['error_pct']:+.1f}% |"
        )
    with tempfile.TemporaryDirectory(prefix="wattlab-gpuval-") as tmp:
        rows = sessions(Path(tmp), a.quick)
        lines += [
            "",
            "| session | exit | GPU label | energy/item J | warnings | scope |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            e = r["energy_per_item_j"]
            lines.append(
                f"| {r['session']} | {r['exit']} {r['error'] or ''} | {r['gpu_label']} | "
                f"{'-' if e is None else f'{e:.4f}'} | {r['warnings']} | {r['scope']} |"
            )
        c = comparison(Path(tmp), a.quick)
        lines += ["", f"comparison (exit {c['exit']}): {c['headline']}"]
    sensor.close()  # type: ignore[attr-defined]
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0 if ok and all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
