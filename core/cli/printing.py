"""How the CLI prints what a run or a comparison produced (one place, so `run`, `compare`
and `rag` read alike). Every figure comes through report/text.py.

Events come from the worker and results from the store, so any field may be missing or null
(the worker sends null for a NaN loss when training diverges, an interrupted run stores half a
result): every printer shows such a value as "-" and never raises on it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, TextIO

from wattlab.core.report import text as units


# -- field access that never raises ---------------------------------------------------------
def _num(v: object) -> float | None:
    """``v`` when it is a number (a bool is not), else None."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _fmt(v: object, spec: str = ".3f") -> str:
    """A number with ``spec``; "-" for a missing, null, non-numeric or non-finite value."""
    return units.number_or_dash(v, spec)


def _unit(fmt: Callable[[Any], str], v: object) -> str:
    """A report/text.py unit formatter given only finite numbers (it says "unknown" for None;
    some of them cannot split nan or inf into minutes)."""
    n = _num(v)
    return fmt(n if n is not None and math.isfinite(n) else None)


def _dict(v: object) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: object) -> list[Any]:
    return v if isinstance(v, list) else []


def _text(v: object, default: str = "-") -> str:
    return default if v is None or v == "" else str(v)


# -- run (one profiled session) ------------------------------------------------------------------
class Progress:
    """One line per phase/epoch; a live step line on a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # looked up now, not when the module was imported: a redirected stderr is honoured
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.phase = ""

    def __call__(self, ev: dict) -> None:
        line = self.line(ev)
        if line:
            self.stream.write(line)
        self.stream.flush()

    def line(self, ev: dict) -> str:
        """What an event prints ("" for none); each field may be missing or null."""
        kind = ev.get("event")
        if kind == "phase":
            self.phase = _text(ev.get("name"), "?")
            return ("\n" if self.tty else "") + f"[{self.phase}]\n"
        if kind == "step" and self.tty:
            return "\r  " + "  ".join(_step_parts(ev)) + "   "
        if kind == "epoch":
            return ("\n" if self.tty else "") + _epoch_line(ev)
        if kind == "log":
            return f"  note: {_text(ev.get('message'), '')}\n"
        return ""


def _step_parts(ev: dict) -> list[str]:
    parts = [
        f"epoch {ev['epoch']}" if ev.get("epoch") is not None else "",
        f"batch {_text(ev.get('batch'), '?')}/{_text(ev.get('batches'), '?')}",
        f"{_text(ev.get('items'), '0')} items",
    ]
    if _num(ev.get("loss")) is not None:
        parts.append(f"loss {_fmt(ev.get('loss'))}")
    return [p for p in parts if p]


def _epoch_line(ev: dict) -> str:
    return f"  {units.epoch_text(ev)}\n"


def print_session_summary(r: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up now: a redirected stdout is honoured
    p = lambda *a: print(*a, file=out)  # noqa: E731
    s = _dict(r.get("session"))
    pe = _dict(r.get("measured_phase"))
    p("")
    print_energy_summary(r, out)
    phases = "+".join(str(x) for x in _list(pe.get("phases"))) or "-"
    label = _text(pe.get("label"))
    p(
        f"measured phase ({phases}): {_unit(units.seconds, pe.get('duration_s'))}, "
        f"{_unit(units.joules, pe.get('gross_j'))} gross, "
        f"{_unit(units.joules, pe.get('net_j'))} net of idle [{label}]"
    )
    p(
        f"energy per item  {_fmt(r.get('energy_per_item_j'), '.4f')} J   per token "
        f"{_fmt(r.get('energy_per_token_j'), '.6f')} J   (gross, {label})"
    )
    for line in _performance_lines(s):
        p(line)
    for line in quality_lines(s):
        p(line)
    for line in units.fairness_lines(s.get("fairness"), "fairness         "):
        p(line)
    if s.get("saved_to"):
        p(f"trained weights cached in {s['saved_to']}")
    for line in saved_model_lines(s.get("saved_model")):
        p(line)
    caveat = untrained_head_caveat(r)
    if caveat:
        p(f"caution          {caveat}")


def saved_model_lines(saved: object) -> list[str]:
    """Where ``--save-model`` put the trained model (size, seconds, what it holds), or why
    it did not save it; nothing for a run that was not asked to save."""
    d = _dict(saved)
    if not d:
        return []
    if not d.get("path"):
        return [f"model NOT saved   {_text(d.get('note'))}"]
    return [
        f"model saved to   {d['path']}: {_unit(units.nbytes, d.get('size_bytes'))} in "
        f"{_unit(units.seconds, d.get('seconds'))} (after the measured phase, not in its energy)",
        f"                 {_text(d.get('note'))}",
    ]


def untrained_head_caveat(r: dict[str, Any]) -> str | None:
    """The caveat of a classifier measured through a new, untrained head, with its fix."""
    from wattlab.core.report.result_view import untrained_head_caveat as caveat

    try:
        return caveat(r)
    except (AttributeError, TypeError):  # a damaged stored result: no caveat, no traceback
        return None


def _performance_lines(s: dict[str, Any]) -> list[str]:
    """Throughput, latency, memory, model and device of a session summary."""
    out: list[str] = []
    thr = _dict(s.get("throughput"))
    items, train_s = _num(s.get("items")), _num(s.get("train_time_s"))
    if thr:
        out.append(
            f"throughput       {_fmt(thr.get('items_per_s'), '.1f')} items/s   "
            f"{_fmt(thr.get('tokens_per_s'), '.0f')} tokens/s"
        )
    elif items and train_s:
        out.append(f"throughput       {items / train_s:.1f} items/s (training, eval included)")
    lat = _dict(s.get("latency_ms"))
    if lat.get("p50") is not None:
        out.append(
            f"latency          p50 {_fmt(lat.get('p50'), '.2f')} ms   "
            f"p95 {_fmt(lat.get('p95'), '.2f')} ms per batch"
        )
    mdl, dev = _dict(s.get("model")), _dict(s.get("device"))
    params = _num(mdl.get("num_params"))
    out += [
        f"peak memory      {_unit(units.nbytes, s.get('peak_mem_bytes'))} "
        f"({_text(s.get('peak_mem_source'))})",
        f"model            {_text(mdl.get('source'))}: "
        f"{_unit(units.nbytes, mdl.get('size_bytes'))}, "
        f"{'-' if params is None else format(int(params), ',')} parameters",
        f"device           {_text(dev.get('device'))}, {_text(dev.get('threads'))} threads",
    ]
    return out


def technique_lines(r: dict) -> list[str]:
    """What the techniques did and how far predictions moved (run summary and comparison)."""
    out = []
    for t in _list(r.get("techniques")):
        t = _dict(t)
        out.append(f"technique        {_text(t.get('name'))}: {_text(t.get('description'))}")
        out += [f"                 warning: {w}" for w in _list(t.get("warnings"))]
    ag = _dict(r.get("agreement"))
    if ag:
        out.append(
            f"agreement        {_fmt(ag.get('prediction_agreement'), '.1%')} of "
            f"{_text(ag.get('items'))} predictions unchanged vs the unmodified model, max "
            f"|logit diff| {_fmt(ag.get('max_abs_logit_diff'), '.4f')}"
        )
    return out


def print_comparison(comp: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up now: a redirected stdout is honoured
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("")
    p(
        f"comparison {_text(comp.get('comparison_id'), '?')}: baseline vs "
        f"{_text(comp.get('technique_text'))} ({_text(comp.get('pairs_completed'), '0')} "
        "interleaved pair(s))"
    )
    p(f"{'metric':<34} {'baseline':>14} {'optimized':>14} {'delta':>8}  {'verdict':<13} source")
    for cells in _verdict_rows(comp):
        label, base, opt, delta, verdict, source = cells
        p(f"{label[:34]:<34} {base:>14} {opt:>14} {delta:>8}  {verdict:<13} {source}")
    for line in technique_lines(comp):
        p(line)
    for line in comparison_fairness_lines(comp):
        p(line)
    for line in scaling_lines(comp.get("scaling")):
        p(line)
    p("")
    p(_text(comp.get("headline"), "no verdict recorded"))
    caveat = untrained_head_caveat(comp)
    if caveat:
        p(f"caution: {caveat}")


def scaling_lines(sc: object) -> list[str]:
    """Data-parallel scaling of a comparison between rank counts (none otherwise)."""
    if not isinstance(sc, dict):
        return []
    ci = sc.get("efficiency_ci")
    ci_text = (
        f" (95% interval {ci[0]:.2f} to {ci[1]:.2f})" if ci else " (too few pairs for an interval)"
    )
    return [
        f"scaling          {sc['baseline_ranks']} -> {sc['optimized_ranks']} rank(s): "
        f"speed-up {sc['speedup']:.2f}x, scaling efficiency {sc['efficiency']:.2f}{ci_text}"
    ]


def comparison_fairness_lines(comp: dict[str, Any]) -> list[str]:
    """Per-group accuracy of each side (its first run; the table above has the medians)."""
    sides = _dict(comp.get("fairness"))
    out: list[str] = []
    for side in ("baseline", "optimized"):
        lines = units.fairness_lines(sides.get(side), f"fairness {side:<9} ")
        out += [line for line in lines if line not in out]  # a shared warning once
    return out


def _verdict_rows(comp: dict) -> list[list[str]]:
    """The verdict table's rows; none when the stored comparison is incomplete (a cancelled or
    damaged record) rather than a traceback."""
    from wattlab.core.report.text import verdict_cells
    from wattlab.core.results import Comparison

    try:
        verdicts = Comparison.from_dict(comp).verdicts
        return [[str(c) for c in verdict_cells(v)] for v in verdicts]
    except (KeyError, TypeError, ValueError, AttributeError):
        return []


# -- profile -------------------------------------------------------------------------------------
def print_energy_summary(result: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up now: a redirected stdout is honoured
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(
        f"run {_text(result.get('run_id'), '?')}  {_text(result.get('status'), '?')}  "
        f"duration {_unit(units.seconds, result.get('duration_s'))}"
    )
    p(
        f"{'source':<8} {'label':<11} {'gross':>14} {'net of idle':>14} {'idle':>9} "
        f"{'mean':>9} {'peak':>9}"
    )
    energy = [_dict(e) for e in _list(result.get("energy"))]
    for e in energy:
        p(
            f"{_text(e.get('source')):<8} {_text(e.get('label')):<11} "
            f"{_unit(units.joules, e.get('gross_j')):>14} "
            f"{_unit(units.joules, e.get('net_j')):>14} "
            f"{_unit(units.watts, e.get('idle_power_w')):>9} "
            f"{_unit(units.watts, e.get('mean_power_w')):>9} "
            f"{_unit(units.watts, e.get('peak_power_w')):>9}"
        )
    t = _dict(result.get("total"))
    p(
        f"{'total':<8} {_text(t.get('label')):<11} {_unit(units.joules, t.get('gross_j')):>14} "
        f"{_unit(units.joules, t.get('net_j')):>14}"
    )
    for e in energy:
        p(f"  {_text(e.get('source'))}: {_text(e.get('method'))}")
    if "cpu_time_s" in result:
        p(
            f"CPU time {_unit(units.seconds, result.get('cpu_time_s'))}, peak RSS "
            f"{_unit(units.nbytes, result.get('peak_rss_bytes'))}"
        )
    for line in marker_lines(result):
        p(line)
    s = _dict(result.get("sampling"))
    interval_ms = _num(s.get("interval_s"))
    p(
        f"sampling every {_fmt(None if interval_ms is None else interval_ms * 1000, '.0f')} ms: "
        f"{_text(s.get('ticks'))} samples, {_text(s.get('missed_slots'))} missed, idle baseline "
        f"{_fmt(s.get('idle_s'), '.1f')} s"
    )
    for w in _list(result.get("warnings")):
        p(f"warning: {w}")


def marker_lines(result: dict[str, Any]) -> list[str]:
    """What a script that used WattLab's markers said: energy per marked phase, and per item
    over the work (a profile or tracked run; nothing when no marker arrived)."""
    phases = _dict(result.get("phase_energy"))
    if not phases:
        return []
    lines = [f"{'phase':<16} {'time':>10} {'energy':>22} {'items':>8} {'per item':>12}"]
    for name, ph in phases.items():
        ph = _dict(ph)
        energy = f"{_unit(units.joules, ph.get('gross_j'))} {_text(ph.get('label'), '')}"
        lines.append(
            f"{str(name)[:16]:<16} {_unit(units.seconds, ph.get('duration_s')):>10} "
            f"{energy:>22} {_text(ph.get('items')):>8} "
            f"{_unit(units.per_item_joules, ph.get('energy_per_item_j')):>12}"
        )
    basis = _text(_dict(result.get("markers")).get("energy_basis"), "the marked work")
    if result.get("energy_per_item_j") is not None:
        lines.append(
            f"energy per item {units.per_item_joules(result['energy_per_item_j'])} over "
            f"{basis} ({_text(_dict(result.get('measured_phase')).get('label'), '?')})"
        )
    return lines


def quality_lines(s: dict[str, Any]) -> list[str]:
    """The session's quality lines: per epoch, inference quality, techniques, early exit and
    lottery rounds."""
    out: list[str] = []
    for e in _list(s.get("epochs")):
        e = _dict(e)
        auc = f"  AUC {_fmt(e.get('auc_roc'))}" if e.get("auc_roc") is not None else ""
        out.append(
            f"epoch {_text(e.get('epoch'), '?'):<3}  train loss {_fmt(e.get('train_loss'), '.4f')}"
            f"  eval loss {_fmt(e.get('eval_loss'), '.4f')}  {_quality(e)}{auc}  energy so far "
            f"{_unit(units.joules, e.get('energy_j_so_far'))}"
        )
    metrics = _dict(s.get("metrics"))
    if s.get("mode") == "infer" and metrics:
        out.append(f"quality          {_quality(metrics)}")
    out += technique_lines(s)
    ee = _dict(s.get("early_exit"))
    if ee:
        out.append(
            f"early exit       mean {_fmt(ee.get('mean_layers'), '.2f')} of "
            f"{_text(ee.get('layers'))} layers, exits per layer {_text(ee.get('exit_histogram'))}"
            f", theoretical speedup {_fmt(ee.get('theoretical_speedup'), '.2f')}x (measured "
            "speedup: compare with a baseline)"
        )
    out += [_lottery_line(_dict(r)) for r in _list(s.get("lottery_rounds"))]
    return out


def _quality(m: dict[str, Any]) -> str:
    """Accuracy and macro-F1 for a classifier, perplexity for a language model."""
    if "accuracy" in m:
        return f"accuracy {_fmt(m.get('accuracy'))}  macro-F1 {_fmt(m.get('macro_f1'))}"
    return f"perplexity {_fmt(m.get('perplexity'), '.2f')}"


def _lottery_line(r: dict[str, Any]) -> str:
    acc, energy = r.get("accuracy"), r.get("energy_j_so_far")
    return (
        f"lottery round {_text(r.get('round'), '?')}: sparsity {_fmt(r.get('sparsity'), '.1%')}"
        + (f", accuracy {_fmt(acc)}" if acc is not None else "")
        + (f", energy so far {_unit(units.joules, energy)}" if energy is not None else "")
    )
