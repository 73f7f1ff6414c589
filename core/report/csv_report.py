"""CSV reports: the summary table, each run's samples, and a CodeCarbon-compatible emissions.csv.

``emissions.csv`` uses CodeCarbon's column names and units (energy in kWh, emissions in kg,
power in W, duration in s) so tools written for CodeCarbon output read it unchanged. Its
``tracking_mode`` column says ``process`` and WattLab adds nothing else to the row format; the
measured/estimated labels live in summary.csv.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from ..fileio import write_csv_atomic

EMISSIONS_COLUMNS = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "on_cloud",
    "pue",
]
SUMMARY_COLUMNS = [
    "row_type",
    "run_id",
    "side",
    "repeat",
    "metric",
    "label",
    "unit",
    "baseline_median",
    "baseline_min",
    "baseline_max",
    "optimized_median",
    "optimized_min",
    "optimized_max",
    "value",
    "delta",
    "delta_pct",
    "ratio_ci_low",
    "ratio_ci_high",
    "verdict",
    "source",
]


def summary_rows(comp: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for pr in comp["per_run"]:
        for metric, value in pr["metrics"].items():
            if value is None:
                continue
            rows.append(
                [
                    "run",
                    pr["run_id"],
                    pr["side"],
                    pr["index"] + 1,
                    metric,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    value,
                    "",
                    "",
                    "",
                    "",
                    "",
                    pr.get("label") if metric.startswith(("energy", "co2", "cost")) else "",
                ]
            )
    for v in comp["verdicts"]:
        bs, os_, ci = (
            v["baseline_spread"] or (None, None),
            v["optimized_spread"] or (None, None),
            v["ratio_ci"] or (None, None),
        )
        rows.append(
            [
                "comparison",
                "",
                "",
                "",
                v["metric"],
                v["label"],
                v["unit"],
                v["baseline_median"],
                bs[0],
                bs[1],
                v["optimized_median"],
                os_[0],
                os_[1],
                "",
                v["delta"],
                v["delta_pct"],
                ci[0],
                ci[1],
                v["verdict"],
                v["source"] or "",
            ]
        )
    return rows


def _by_source(res: dict[str, Any], src: str) -> dict[str, Any] | None:
    return next((e for e in res.get("energy", []) if e["source"] == src), None)


def emissions_rows(comp: dict[str, Any], results: dict[int, dict[str, Any]]) -> list[list[Any]]:
    c = comp["carbon"]
    hw = comp["manifest"]["hardware"]
    rows = []
    for pr in comp["per_run"]:
        res = results[pr["run_id"]]
        dur = res["measured_phase"]["duration_s"] or 0.0
        phases = tuple(res["measured_phase"]["phases"])

        def phase_j(src: str, res: dict[str, Any] = res, phases: tuple = phases) -> float:
            e = _by_source(res, src)
            return sum(e["by_phase_j"].get(p, 0.0) for p in phases) if e else 0.0

        cpu_j = phase_j("cpu")
        gpu_j = sum(
            phase_j(e["source"]) for e in res.get("energy", []) if e["source"].startswith("gpu")
        )
        ram_j = phase_j("ram")
        total_kwh = (cpu_j + gpu_j + ram_j) / 3.6e6
        kg = total_kwh * c["pue"] * c["g_per_kwh"] / 1000.0
        rows.append(
            [
                time.strftime(
                    "%Y-%m-%dT%H:%M:%S", time.localtime(res.get("created_at", time.time()))
                ),
                "wattlab",
                pr["run_id"],
                comp.get("comparison_id", ""),
                dur,
                kg,
                kg / dur if dur else 0.0,
                cpu_j / dur if dur else 0.0,
                gpu_j / dur if dur else 0.0,
                ram_j / dur if dur else 0.0,
                cpu_j / 3.6e6,
                gpu_j / 3.6e6,
                ram_j / 3.6e6,
                total_kwh,
                "",
                c["region"] if c.get("intensity_g_per_kwh") is None else "",
                "",
                "",
                "",
                platform.platform(),
                platform.python_version(),
                "",
                hw["logical_cpus"],
                hw["cpu_model"],
                len(hw["gpus"]),
                ",".join(g["name"] for g in hw["gpus"]),
                "",
                "",
                hw["memory_bytes"] / 2**30,
                "process",
                "N",
                c["pue"],
            ]
        )
    return rows


def write(
    out: Path,
    comp: dict[str, Any],
    results: dict[int, dict[str, Any]],
    samples: dict[int, list[Any]],
) -> list[Path]:
    out = Path(out)
    paths = [out / "summary.csv", out / "emissions.csv"]
    write_csv_atomic(paths[0], SUMMARY_COLUMNS, summary_rows(comp))
    write_csv_atomic(paths[1], EMISSIONS_COLUMNS, emissions_rows(comp, results))
    for pr in comp["per_run"]:
        smp = samples.get(pr["run_id"]) or []
        keys = sorted({k for s in smp for k in s.values})
        t0 = smp[0].t if smp else 0.0
        p = out / f"samples_run{pr['run_id']}_{pr['side']}{pr['index'] + 1}.csv"
        write_csv_atomic(
            p, ["t_s", *keys], ([round(s.t - t0, 4), *[s.values.get(k) for k in keys]] for s in smp)
        )
        paths.append(p)
    return paths
