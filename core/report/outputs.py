"""Files a run leaves behind with ``--out``: its full result as JSON and its samples as CSV."""

from __future__ import annotations

import math
from pathlib import Path

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
