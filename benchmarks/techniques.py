"""Technique savings on the demo (run on demand; results go into BENCHMARKS.md).

Each technique alone, then the best combination, is compared with the plain PyTorch fp32
baseline by `wattlab.core.comparison.compare` (interleaved repeats, paired-bootstrap verdicts),
inference on the CPU; then bf16 autocast training vs fp32 training. Prints a Markdown table and
writes the full comparisons as JSON.

    .venv/bin/python benchmarks/techniques.py [--repeats 3] [--infer-batches 150] [--out F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wattlab.core.carbon import CarbonSettings
from wattlab.core.comparison import compare
from wattlab.core.measure import MeasureSettings
from wattlab.core.models.demo import demo_definition
from wattlab.core.spec import RunSpec
from wattlab.core.store import RunStore
from wattlab.core.techniques.base import parse_cli

INFER = [
    ["onnx-runtime"],
    ["quantization:backend=ort"],
    ["quantization:backend=ort,mode=static"],
    ["quantization:backend=torch"],
    ["mixed-precision:dtype=bf16"],
    ["mixed-precision:dtype=bf16,mode=cast"],
    ["pruning:method=unstructured,amount=0.5"],
    ["pruning:method=structured,amount=0.3"],
    ["pruning:method=structured,amount=0.2", "mixed-precision:dtype=bf16,mode=cast"],
]
TRAIN = [["mixed-precision:dtype=bf16"]]


def row(comp: dict) -> dict:
    by = {v["metric"]: v for v in comp["verdicts"]}

    def d(k: str) -> str:
        v = by.get(k)
        if not v or v["delta_pct"] is None:
            return "-"
        return f"{v['delta_pct']:+.1f}% ({v['verdict']})"

    acc = by.get("accuracy")
    ag = comp.get("agreement")
    e = by.get("energy_per_item_j")
    return {
        "technique": comp["technique_text"],
        "energy_per_item": (
            f"{e['baseline_median'] * 1000:.2f} -> {e['optimized_median'] * 1000:.2f} mJ"
            if e
            else "-"
        ),
        "energy": d("energy_per_item_j"),
        "time": d("duration_s"),
        "throughput": d("throughput_items_s"),
        "peak_mem": d("peak_mem_bytes"),
        "size": d("model_size_bytes"),
        "accuracy": (
            f"{acc['baseline_median']:.3f} -> {acc['optimized_median']:.3f}" if acc else "-"
        ),
        "agreement": f"{ag['prediction_agreement']:.1%}" if ag else "-",
        "source": e["source"] if e else "-",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--infer-batches", type=int, default=150)
    ap.add_argument("--out", default="benchmarks/results/techniques.json")
    ap.add_argument("--skip-train", action="store_true")
    a = ap.parse_args()
    store = RunStore.open_default()
    settings = MeasureSettings(0.1, 1.0)
    carbon = CarbonSettings()
    r = demo_definition()["recipe"]
    base = RunSpec(
        model="demo",
        mode="infer",
        infer_batches=a.infer_batches,
        batch_size=r["batch_size"],
        seq_len=r["seq_len"],
    )
    comps = []
    t0 = time.time()
    for techs in INFER:
        opt = RunSpec(**{**base.to_dict(), "techniques": tuple(parse_cli(t) for t in techs)})
        print(f"[{time.time() - t0:6.0f}s] infer: {' + '.join(techs)}", file=sys.stderr)
        comps.append(compare(base, opt, store, settings, carbon, a.repeats, cooldown_s=2.0))
    if not a.skip_train:
        tb = RunSpec(
            model="demo",
            mode="train",
            epochs=1,
            batch_size=r["batch_size"],
            seq_len=r["seq_len"],
            learning_rate=r["learning_rate"],
        )
        for techs in TRAIN:
            opt = RunSpec(**{**tb.to_dict(), "techniques": tuple(parse_cli(t) for t in techs)})
            print(f"[{time.time() - t0:6.0f}s] train: {' + '.join(techs)}", file=sys.stderr)
            comps.append(
                compare(tb, opt, store, settings, carbon, max(2, a.repeats - 1), cooldown_s=2.0)
            )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(comps, indent=1, default=str))
    cols = [
        "technique",
        "energy_per_item",
        "energy",
        "time",
        "throughput",
        "peak_mem",
        "size",
        "accuracy",
        "agreement",
        "source",
    ]
    print("| mode | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for c in comps:
        rr = row(c)
        print(f"| {c['baseline_spec']['mode']} | " + " | ".join(rr[k] for k in cols) + " |")
    print(f"\n{time.time() - t0:.0f} s in all; JSON in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
