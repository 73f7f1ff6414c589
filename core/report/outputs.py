"""Files a run or a comparison leaves behind: a run's JSON and samples CSV (`--out`), and a
comparison's report.pdf, emissions.csv, summary.csv and comparison.json."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wattlab.core.fileio import write_csv_atomic, write_json_atomic
from wattlab.core.measure.store import RunStore


def write_run_outputs(
    out_dir: Path, result: dict, store: RunStore, name: str = "summary.json"
) -> list[Path]:
    out_dir = Path(out_dir)
    summary = out_dir / name
    write_json_atomic(summary, result)
    samples = store.samples(result["run_id"])
    phases = [(t, e["name"]) for t, k, e in store.events(result["run_id"]) if k == "phase"]
    keys = sorted({k for s in samples for k in s.values})
    t0 = phases[0][0] if phases else (samples[0].t if samples else 0.0)

    def phase_at(t: float) -> str:
        name = "pre"
        for pt, pn in phases:
            if pt <= t:
                name = pn
        return name

    def fmt(v: object) -> object:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v

    rows = (
        [round(s.t - t0, 4), phase_at(s.t), *[fmt(s.values.get(k)) for k in keys]] for s in samples
    )
    csv_path = out_dir / "samples.csv"
    write_csv_atomic(csv_path, ["t_s", "phase", *keys], rows)
    return [summary, csv_path]


def write_reports(
    comp: dict[str, Any],
    store: RunStore,
    out: Path,
    pdf: bool = True,
    csv: bool = True,
    json_: bool = True,
) -> list[Path]:
    from wattlab.core.fileio import write_json_atomic
    from wattlab.core.report import csv_report, pdf_report
    from wattlab.core.report.charts import load_run_data

    out = Path(out)
    results, samples, phases = load_run_data(comp, store)
    paths: list[Path] = []
    if json_:
        p = out / "comparison.json"
        write_json_atomic(p, {**comp, "runs": results})
        paths.append(p)
    if csv:
        paths += csv_report.write(out, comp, results, samples)
        if comp.get("lifecycle"):
            from wattlab.core.report.lifecycle_report import write_csv

            paths.append(write_csv(out, comp["lifecycle"]))
    if pdf:
        paths.append(pdf_report.write(out / "report.pdf", comp, results, samples, phases))
    return paths
