"""``wattlab bench``'s figures and verdicts: per command, and each command against the first.

Energy is the command's own window: the profile run's energy over every phase but the parent's
own (the power settling wait, the idle baseline, start-up), gross and net of idle, computed by
the same ``phase_energy`` as a session's measured window.

Verdicts are ``compare``'s (run/stats.py ``paired_interval``): runs pair by round, the paired
ratios other/first on a log scale, a 95% Student-t interval of their mean, the margin, "too few
repeats" under MIN_PAIRS pairs. A run that failed (non-zero exit, cancelled) is in no pair and
no median: it is listed, never averaged in.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from wattlab.core.measure.carbon import co2_g, cost
from wattlab.core.measure.energy import NOT_WORK
from wattlab.core.measure.sensors.base import weakest_label
from wattlab.core.results import MIN_PAIRS, Verdict
from wattlab.core.run.client import phase_energy
from wattlab.core.run.stats import paired_interval, primary_metric

# name -> (label, unit, lower_is_better); compared for every pair of commands.
BENCH_METRICS: dict[str, tuple[str, str, bool]] = {
    "energy_per_item_j": ("Energy per item", "J", True),
    "energy_per_token_j": ("Energy per token", "J", True),
    "energy_j": ("Energy (command, gross)", "J", True),
    "energy_net_j": ("Energy net of idle", "J", True),
    "duration_s": ("Wall time", "s", True),
    "cpu_time_s": ("CPU time", "s", True),
    "peak_mem_bytes": ("Peak memory (RSS)", "bytes", True),
    "co2_g": ("CO2", "g", True),
    "cost": ("Cost", "", True),
}
ENERGY_DERIVED = {"energy_per_item_j", "energy_per_token_j", "energy_j", "energy_net_j"}
ENERGY_DERIVED |= {"co2_g", "cost"}
# Shown per command, not compared: how much work the markers say a run did.
COUNTS = ("items", "tokens")
PER = {"energy_per_item_j": "energy per item", "energy_per_token_j": "energy per token"}


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _count(v: object) -> float | None:
    """A marker count (items or tokens); unknown or zero stays None."""
    n = _num(v)
    return n if n is not None and n > 0 else None


def command_energy(result: dict[str, Any]) -> tuple[float | None, float | None, str | None]:
    """(gross J, net of idle J, label) of the command's window: every phase but the parent's
    own (energy.NOT_WORK), through the same ``phase_energy`` a session's measured window uses
    (a negative net is unknown, with its warning in the result)."""
    counted = [e for e in result.get("energy") or [] if e.get("in_total", True)]
    if not counted:
        return None, None, None
    phases = tuple(
        dict.fromkeys(p for e in counted for p in e.get("by_phase_j") or {} if p not in NOT_WORK)
    )
    pe = phase_energy(result, phases, result.setdefault("warnings", []))
    return pe.gross_j, pe.net_j, pe.label


def run_figures(result: dict[str, Any], carbon: dict[str, Any]) -> dict[str, float | None]:
    """The comparable numbers of one profile run. Per item/token: the API's own figure where
    the script marked its work (``energy_per_item_j``), else the command's energy over the
    items the markers counted; unknown without markers."""
    gross, net, _ = command_energy(result)
    found = result.get("markers")
    markers: dict[str, Any] = found if isinstance(found, dict) else {}
    items, tokens = _count(markers.get("items")), _count(markers.get("tokens"))
    per_item = _num(result.get("energy_per_item_j"))
    if per_item is None and gross is not None and items:
        per_item = gross / items
    per_token = _num(result.get("energy_per_token_j"))
    if per_token is None and gross is not None and tokens:
        per_token = gross / tokens
    return {
        "energy_per_item_j": per_item,
        "energy_per_token_j": per_token,
        "energy_j": gross,
        "energy_net_j": net,
        "duration_s": _num(result.get("duration_s")),
        "cpu_time_s": _num(result.get("cpu_time_s")),
        "peak_mem_bytes": _num(result.get("peak_rss_bytes")),
        "co2_g": co2_g(gross, carbon),
        "cost": cost(gross, carbon),
        "items": items,
        "tokens": tokens,
    }


def counted(run: dict[str, Any]) -> bool:
    """A run that belongs in the statistics: it ran to the end and exited 0."""
    return run.get("status") == "completed" and run.get("exit_code") == 0


def _median(vals: list[float | None]) -> float | None:
    known = [v for v in vals if v is not None]
    return statistics.median(known) if known else None


def _spread(vals: list[float | None]) -> list[float] | None:
    known = [v for v in vals if v is not None]
    return [min(known), max(known)] if known else None


def compare_pair(
    first: list[dict[str, float | None]],
    other: list[dict[str, float | None]],
    label: str | None,
    margin: float,
    currency: str,
) -> list[Verdict]:
    """Verdicts of ``other`` against ``first`` over paired runs (aligned lists, one entry per
    round where both counted); a metric neither side has is left out."""
    out: list[Verdict] = []
    for key, (name, unit, lower) in BENCH_METRICS.items():
        a = [m[key] for m in first]
        b = [m[key] for m in other]
        if all(x is None for x in a + b):
            continue
        if key in PER and (all(x is None for x in a) or all(x is None for x in b)):
            continue  # work counted on one side only: energy per item cannot be compared
        iv = paired_interval(a, b, lower, margin)
        amed, bmed = _median(a), _median(b)
        delta = bmed - amed if amed is not None and bmed is not None else None
        pct = 100.0 * (iv.ratio - 1.0) if iv.ratio is not None else None
        if pct is None and delta is not None and amed:
            pct = 100.0 * delta / amed
        sa, sb = _spread(a), _spread(b)
        out.append(
            Verdict(
                key, name, currency if key == "cost" else unit, amed, bmed,
                (sa[0], sa[1]) if sa else None, (sb[0], sb[1]) if sb else None,
                delta, pct, iv.ci, iv.verdict,
                label if key in ENERGY_DERIVED else None, iv.pairs,
            )
        )  # fmt: skip
    main = primary_metric(out)
    if main is not None:
        main.role = "primary"
    return out


def command_row(
    index: int,
    cmd: dict[str, Any],
    runs: list[dict[str, Any]],
    figures: dict[int, dict[str, float | None]],
    labels: dict[int, str | None],
) -> dict[str, Any]:
    """One command's line of the table: medians and ranges over its counted runs, and every
    run that failed with its exit code."""
    mine = [r for r in runs if r["command"] == index]
    ok = [r for r in mine if counted(r)]
    cancelled = [r for r in mine if r.get("status") == "cancelled"]
    failed = [r for r in mine if not counted(r) and r not in cancelled]
    figs = [figures[r["run_id"]] for r in ok if r.get("run_id") in figures]
    keys = [*BENCH_METRICS, *COUNTS]
    return {
        "index": index,
        "text": cmd["text"],
        "argv": cmd["argv"],
        "params": cmd.get("params") or {},
        "runs_attempted": len(mine),  # --prepare failures included (nothing measured)
        "runs_measured": len([r for r in mine if r.get("run_id") is not None]),
        "runs_ok": len(ok),
        "runs_failed": len(failed),
        "runs_cancelled": len(cancelled),
        "failures": [
            {k: r.get(k) for k in ("round", "run_id", "exit_code", "status", "reason")}
            for r in failed
        ],
        "energy_label": weakest_label([lb for r in ok if (lb := labels.get(r["run_id"]))]),
        "median": {k: _median([f[k] for f in figs]) for k in keys},
        "spread": {k: _spread([f[k] for f in figs]) for k in keys},
        "vs_first": None,
        "note": None,
    }


def paired_figures(
    runs: list[dict[str, Any]], figures: dict[int, dict[str, float | None]], a: int, b: int
) -> tuple[list[dict[str, float | None]], list[dict[str, float | None]]]:
    """Commands ``a`` and ``b``'s figures in the rounds where both counted, aligned by round."""
    by_round: dict[int, dict[int, dict[str, float | None]]] = {}
    for r in runs:
        if r["command"] in (a, b) and counted(r) and r.get("run_id") in figures:
            by_round.setdefault(r["round"], {})[r["command"]] = figures[r["run_id"]]
    both = [by_round[k] for k in sorted(by_round) if len(by_round[k]) == 2]
    return [x[a] for x in both], [x[b] for x in both]


def _quote(text: str, width: int = 60) -> str:
    """A command in a sentence: whole when short, else its start and its end (where commands
    of one bench usually differ) around an ellipsis."""
    if len(text) <= width:
        return f"`{text}`"
    tail = width * 2 // 3
    return f"`{text[: width - tail - 3]}...{text[-tail:]}`"


def _name(row: dict[str, Any]) -> str:
    return f"#{row['index'] + 1} {_quote(row['text'])}"


def pair_headline(a: str, b: str, vs: list[Verdict]) -> str:
    """One sentence: the primary energy metric's change of command ``b`` against ``a`` (both
    as ``_name`` gives them)."""
    e = primary_metric(vs)
    if e is None or e.delta_pct is None:
        return f"{b}: energy could not be compared with {a}."
    what = PER.get(e.metric, "energy")
    pct, src, n = e.delta_pct, e.source or "label unknown", e.pairs
    ci = (
        f"95% interval {100 * (e.ratio_ci[0] - 1):+.1f}% to {100 * (e.ratio_ci[1] - 1):+.1f}%"
        if e.ratio_ci
        else "no interval"
    )
    if e.verdict in ("better", "worse"):
        more = "less" if pct < 0 else "more"
        return f"{b} used {abs(pct):.1f}% {more} {what} than {a} ({e.verdict}; {ci}; {src})."
    if e.verdict == "too few repeats":
        return (
            f"{b}: {what} {pct:+.1f}% against {a} over {n} pair(s), too few repeats for a "
            f"verdict (at least {MIN_PAIRS}; {src})."
        )
    if e.verdict == "inconclusive":
        return (
            f"{b}: {what} {pct:+.1f}% against {a} ({ci}; {src}): a real change, not shown to "
            "exceed the practical margin; more runs would settle its size."
        )
    if e.verdict == "within noise":
        return (
            f"{b}: {what} {pct:+.1f}% against {a}, within this machine's noise ({ci}; {src}): "
            "no difference can be claimed here."
        )
    return (
        f"{b} made no meaningful difference to {what} against {a} ({pct:+.1f}%, {e.verdict}; "
        f"{src})."
    )


def bench_headline(rows: list[dict[str, Any]]) -> str:
    """The bench's one sentence: the only comparison with two commands; with more, the
    command whose energy changed most in its favour (or, when none did, the first that failed
    or could not be compared), said against the first."""
    if not rows:
        return "No command was benchmarked."
    first = rows[0]
    if len(rows) == 1:
        e = first["median"]["energy_j"]
        if e is None:
            return f"{_name(first)}: no run completed; no energy figure."
        return (
            f"{_name(first)}: median energy {e:.4g} J over {first['runs_ok']} run(s) "
            f"({first['energy_label'] or 'label unknown'}); nothing to compare it with."
        )
    if first["runs_ok"] == 0:
        return f"{_name(first)}, the reference, failed every run: nothing was compared."
    compared = [r for r in rows[1:] if r["vs_first"] and r["vs_first"].get("ratio") is not None]
    if len(rows) == 2 or not compared:
        r = rows[1] if len(rows) == 2 or not compared else compared[0]
        return r["vs_first"]["headline"] if r["vs_first"] else str(r["note"])
    best = min(compared, key=lambda r: r["vs_first"]["ratio"])
    return f"Of {len(rows) - 1} commands against the first: {best['vs_first']['headline']}"


def vs_first(
    rows: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    figures: dict[int, dict[str, float | None]],
    margin: float,
    currency: str,
) -> None:
    """Fill each row's comparison with the first command (in place), or its note saying why
    there is none."""
    first = rows[0]
    for row in rows[1:]:
        if row["runs_ok"] == 0:
            codes = sorted({f["exit_code"] for f in row["failures"] if f["exit_code"] is not None})
            row["note"] = (
                f"{_name(row)} failed every run"
                + (f" (exit code {', '.join(map(str, codes))})" if codes else "")
                + ": no verdict."
            )
            continue
        if first["runs_ok"] == 0:
            row["note"] = f"the first command failed every run: {_name(row)} has no verdict."
            continue
        a, b = paired_figures(runs, figures, 0, row["index"])
        label = weakest_label([x for x in (first["energy_label"], row["energy_label"]) if x])
        vs = compare_pair(a, b, label, margin, currency)
        main = primary_metric(vs)
        row["vs_first"] = {
            "pairs": len(a),
            "primary_metric": main.metric if main else None,
            "ratio": None if main is None or main.delta_pct is None else 1 + main.delta_pct / 100,
            "change_pct": main.delta_pct if main else None,
            "ratio_ci": list(main.ratio_ci) if main and main.ratio_ci else None,
            "verdict": main.verdict if main else "unknown",
            "label": main.source if main else None,
            "verdicts": [v.to_dict() for v in vs],
            "headline": pair_headline(_name(first), _name(row), vs),
        }
