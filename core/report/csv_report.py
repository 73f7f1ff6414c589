"""CSV reports: the summary table, each run's samples, and a CodeCarbon-compatible emissions.csv.

``emissions.csv`` follows CodeCarbon 3.3.0's file: its header in its order, its units (energy in
kWh, emissions in kg, power in W, duration in s), PUE applied to every energy column as
CodeCarbon applies it (so emissions = energy_consumed x intensity), ISO 3166 alpha-3 country
codes, ``tracking_mode`` "machine" unless every counted source is per-process (the workload-tree
estimate). Values WattLab does not know (water, WUE, coordinates) are left empty, never 0. Each
row covers one run's measured phase. The measured/estimated labels live in summary.csv.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from wattlab.core.fileio import write_csv_atomic

CODECARBON_FORMAT_VERSION = "3.3.0"
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
    "water_consumed",
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
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
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


def _counted(res: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in res.get("energy", []) if e.get("in_total", True)]


def tracking_mode(res: dict[str, Any]) -> str:
    """ "process" only when every counted source is the workload tree's estimate; RAPL and NVML
    measure the whole package or device."""
    counted = _counted(res)
    per_process = counted and all(e.get("label") == "estimated" for e in counted)
    return "process" if per_process else "machine"


def _country(c: dict[str, Any]) -> tuple[str, str, str]:
    """(country_name, country_iso_code alpha-3, region) for the intensity the run used."""
    if c.get("intensity_g_per_kwh") is not None:
        return "", "", ""
    from wattlab.core.measure.carbon import table

    reg = table()["regions"].get(str(c.get("region", "")).upper()) or {}
    iso3 = reg.get("iso3", "")
    return (reg.get("name", "") if iso3 else ""), iso3, ("" if iso3 else str(c.get("region", "")))


def _mean_util(samples: list[Any], key: str, t0: float, t1: float) -> float | str:
    vals = [s.values.get(key) for s in samples if t0 <= s.t <= t1]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else ""


def emissions_rows(
    comp: dict[str, Any],
    results: dict[int, dict[str, Any]],
    samples: dict[int, list[Any]] | None = None,
) -> list[list[Any]]:
    c = comp["carbon"]
    hw = comp["manifest"]["hardware"]
    name, iso3, region = _country(c)
    pue = c["pue"]
    rows = []
    for pr in comp["per_run"]:
        res = results[pr["run_id"]]
        dur = res["measured_phase"]["duration_s"] or 0.0
        phases = tuple(res["measured_phase"]["phases"])

        def phase_j(e: dict[str, Any] | None, phases: tuple = phases) -> float:
            return sum(e["by_phase_j"].get(p, 0.0) for p in phases) if e else 0.0

        counted = _counted(res)
        cpu_j = sum(phase_j(e) for e in counted if e["source"] == "cpu")
        gpu_j = sum(phase_j(e) for e in counted if e["source"].startswith("gpu"))
        ram_j = sum(phase_j(e) for e in counted if e["source"] == "ram")
        kwh = [j / 3.6e6 * pue for j in (cpu_j, gpu_j, ram_j)]  # PUE on energy, as CodeCarbon
        total_kwh = sum(kwh)
        kg = total_kwh * c["g_per_kwh"] / 1000.0
        smp = (samples or {}).get(pr["run_id"]) or []
        win = _window(res)
        gpus_used = [e["source"] for e in counted if e["source"].startswith("gpu")]
        peak = (res.get("session") or {}).get("peak_mem_bytes")
        on_cpu = str(((res.get("session") or {}).get("device") or {}).get("device")) == "cpu"
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
                *kwh,
                total_kwh,
                "",  # water_consumed: WattLab knows no WUE
                name,
                iso3,
                region,
                "",
                "",
                platform.platform(),
                platform.python_version(),
                "",  # codecarbon_version: not produced by CodeCarbon (format: see the docstring)
                hw["logical_cpus"],
                hw["cpu_model"],
                len(gpus_used),
                ",".join(g["name"] for g in hw["gpus"]) if gpus_used else "",
                "",
                "",
                hw["memory_bytes"] / 2**30,
                tracking_mode(res),
                _mean_util(smp, "sys.cpu_util_pct", *win) if win else "",
                _mean_util(smp, f"{gpus_used[0]}.util_pct", *win) if win and gpus_used else "",
                "",
                peak / 2**30 if peak and on_cpu else "",
                "N",
                pue,
                "",
            ]
        )
    return rows


def _window(res: dict[str, Any]) -> tuple[float, float] | None:
    """Start and end (monotonic s) of the measured phase, from the run's phase marks."""
    marks = res.get("phase_marks") or []
    measured = set(res["measured_phase"]["phases"])
    start = next((t for t, n in marks if n in measured), None)
    if start is None:
        return None
    end = next((t for t, n in marks if t > start and n not in measured), None)
    return (start, end) if end is not None else None


def write(
    out: Path,
    comp: dict[str, Any],
    results: dict[int, dict[str, Any]],
    samples: dict[int, list[Any]],
) -> list[Path]:
    out = Path(out)
    paths = [out / "summary.csv", out / "emissions.csv"]
    write_csv_atomic(paths[0], SUMMARY_COLUMNS, summary_rows(comp))
    write_csv_atomic(paths[1], EMISSIONS_COLUMNS, emissions_rows(comp, results, samples))
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
