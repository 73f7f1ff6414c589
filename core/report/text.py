"""Human formatting of measured quantities. Every energy string carries its label."""

from __future__ import annotations

from typing import Any

from wattlab.core.report import POINT_METRICS
from wattlab.core.results import RunResult, Verdict


def joules(j: float | None) -> str:
    if j is None:
        return "unknown"
    if abs(j) >= 3.6e6:
        return f"{j / 3.6e6:.3f} kWh"
    if abs(j) >= 3600:
        return f"{j:,.0f} J ({j / 3600:.2f} Wh)"
    return f"{j:.2f} J"


def watts(w: float | None) -> str:
    return "unknown" if w is None else f"{w:.1f} W"


def nbytes(b: float | None) -> str:
    if b is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


def seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 60:
        return f"{s:.2f} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{int(m)} min {s:04.1f} s"
    h, m = divmod(m, 60)
    return f"{int(h)} h {int(m):02d} min"


def fmt_delta(v: Verdict) -> str:
    """Deltas of accuracy-like fractions in percentage points (what people mean by "lost 1
    point"), everything else relative to the baseline."""
    if v.metric in POINT_METRICS and v.delta is not None:
        return f"{v.delta * 100:+.1f} pt"
    return "-" if v.delta_pct is None else f"{v.delta_pct:+.1f}%"


def verdict_cells(v: Verdict) -> list[str]:
    """One verdict as the table row every front end shows: metric, baseline, optimized, delta,
    verdict, source (CLI, app and PDF format it the same way, here)."""
    return [
        v.label,
        fmt_value(v.baseline_median, v.unit),
        fmt_value(v.optimized_median, v.unit),
        fmt_delta(v),
        v.verdict,
        v.source or "-",
    ]


def run_rows(r: RunResult) -> list[tuple[str, str]]:
    """One run's main figures as (name, text) rows; unknown stays "unknown", never 0."""
    pe = r.measured_phase
    label = f" [{pe.label}]" if pe and pe.label else ""
    s = r.session
    rows = [
        ("Energy (measured phase, gross)", (joules(pe.gross_j) if pe else "unknown") + label),
        ("Energy net of idle", (joules(pe.net_j) if pe else "unknown") + label),
        ("Energy per item", per_item_joules(r.energy_per_item_j) + label),
        ("Time (measured phase)", seconds(pe.duration_s) if pe else "unknown"),
        ("Peak memory", nbytes(s.extra.get("peak_mem_bytes"))),
        ("Model size", nbytes(s.model.get("size_bytes"))),
    ]
    for k in ("accuracy", "macro_f1", "perplexity"):
        if s.metrics.get(k) is not None:
            rows.append((k, f"{s.metrics[k]:.4f}"))
    return rows


def per_item_joules(j: float | None) -> str:
    return "unknown" if j is None else f"{j:.4g} J"


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "bytes":
        return nbytes(v)
    if unit == "kWh":
        return f"{v:.3g} kWh"
    if unit in ("", None):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return f"{v:.4g} {unit}"


METHODS = """\
Energy. GPU: NVML total-energy counter deltas where the GPU has it (measured), else trapezoidal \
integration of NVML power samples (integrated). CPU and DRAM: RAPL energy_uj counter deltas with \
wrap-around handling (measured) where readable; otherwise the named model wattlab-cpu-v2 applied \
to the workload's measured CPU time and RSS (estimated). Every total carries the weakest label of \
its parts.
Phases. The worker stamps each phase boundary with its own monotonic clock (the parent's clock on \
Linux) and a sample is taken at every boundary; the measured work ends with an explicit 'post' \
mark after the device is synchronised, so scoring, saving and teardown are never charged to it. \
Per-item energy, throughput, duration and CO2 all use that one window (infer, or train+eval). \
Inference shorter than ten sensor updates (or on a GPU) repeats its batches up to the minimum \
measured duration; accuracy is scored once per item.
Idle. Before each run the machine is left to settle (two power windows agreeing), then measured \
at rest; 'net of idle' subtracts that power over the time each source had readings. A negative \
net is a warning, not a figure.
Repeats. Pairs run in counterbalanced order (A B, B A, A B ...) with a cool-down between runs; \
other processes' CPU use during each measured phase is recorded and a disturbed run is marked.
Verdict. {stats}
CO2 and cost. Gross energy of the measured phase x PUE x grid intensity (or price). They inherit \
the energy's label.
Quality. Accuracy and macro-F1 on the held-out eval split (never used for training or \
calibration); perplexity for causal language models. Agreement: share of eval predictions that the \
optimized model makes identically to the unmodified model. Fairness (with --sensitive-column): \
accuracy per group of that column on the same eval items, and fairlearn's demographic parity \
difference, equalized-odds difference and disparate impact (parity ratio); a multi-class task is \
taken one-vs-rest and its worst class reported (each run's fairness.method says how)."""


def statistics_method(comp: dict[str, Any]) -> str:
    """The statistics this comparison was judged with (older stored ones: the bootstrap)."""
    return (comp.get("statistics") or {}).get("method") or (
        "Stored before version 0.2: the paired ratios were bootstrapped (2,000 draws) and the "
        "95% interval of their median computed; that method over-calls verdicts at 3 repeats."
    )


def methods_text(comp: dict[str, Any]) -> str:
    """The methods, with the statistics this comparison actually used."""
    return METHODS.format(stats=statistics_method(comp))


def verdict_footnote(comp: dict[str, Any]) -> str:
    """Under the summary table: how its verdicts and its Source column were obtained."""
    return (
        f"Verdict: {statistics_method(comp)} Source: how the energy was obtained (measured = "
        "hardware counter, integrated = power samples, estimated = named power model); CO2 and "
        "cost inherit it."
    )


# The parity figures of a session's fairness, as the one-line summary names them.
FAIRNESS_FIGURES = (
    ("demographic_parity_difference", "demographic parity diff"),
    ("equalized_odds_difference", "equalized-odds diff"),
    ("disparate_impact", "disparate impact"),
)


def fairness_text(f: dict[str, Any]) -> str:
    """A session's fairness in one line, the same in a run summary and a comparison: "by COL:
    A 0.950 (n=500), B 0.910 (n=480); demographic parity diff 0.030, ..." (a multi-class
    figure names its worst class). Stored results may lack any field: "-" then."""
    raw = f.get("groups")
    groups: dict[str, Any] = raw if isinstance(raw, dict) else {}
    per_group = ", ".join(
        f"{name} {number_or_dash(g.get('accuracy'), '.3f')} (n={g.get('n', '?')})"
        for name, g in groups.items()
        if isinstance(g, dict)
    )
    figures = ", ".join(
        f"{label} {number_or_dash(f.get(key), '.3f')}"
        + (f" (class {f[key + '_class']})" if f.get(key + "_class") is not None else "")
        for key, label in FAIRNESS_FIGURES
    )
    return f"by {f.get('column') or '?'}: {per_group or 'no groups'}; {figures}"


def fairness_lines(f: object, prefix: str = "") -> list[str]:
    """``fairness_text`` after ``prefix``, then one line per warning (small groups, undefined
    rates); nothing when ``f`` is not a stored fairness dict."""
    if not isinstance(f, dict):
        return []
    raw = f.get("warnings")
    warnings: list[Any] = raw if isinstance(raw, list) else []
    return [prefix + fairness_text(f)] + [f"  warning: {w}" for w in warnings]


def number_or_dash(value: object, spec: str) -> str:
    """``value`` formatted with ``spec``; "-" for a missing, null, non-numeric or non-finite
    one (a diverged epoch sends null)."""
    import math

    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return format(value, spec) if ok else "-"


def epoch_text(ev: dict[str, Any]) -> str:
    """One epoch's progress line, the same in the CLI and the app: eval loss, then accuracy
    for a classifier or perplexity for a causal LM; "-" where a diverged run has no number."""
    if isinstance(ev.get("accuracy"), (int, float)):
        quality = f"accuracy {number_or_dash(ev.get('accuracy'), '.3f')}"
    elif "perplexity" in ev:
        quality = f"perplexity {number_or_dash(ev.get('perplexity'), '.2f')}"
    else:
        quality = "accuracy -"
    epoch = ev.get("epoch")
    return f"epoch {'?' if epoch is None else epoch}: eval loss " + (
        f"{number_or_dash(ev.get('eval_loss'), '.4f')}, {quality}"
    )


def aligned(rows: list[list[str]], indent: str = "") -> list[str]:
    """Rows of cells (the header first) as text lines with every column padded to its widest
    cell: the terminal's tables (bench, sweep, lifecycle)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]
