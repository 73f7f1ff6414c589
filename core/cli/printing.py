"""How the CLI prints what a run or a comparison produced (one place, so `run`, `compare`
and `rag` read alike). Every figure comes through report/text.py."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from wattlab.core.report import text as units


# -- run (one profiled session) ------------------------------------------------------------------
class Progress:
    """One line per phase/epoch; a live step line on a terminal."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.phase = ""

    def __call__(self, ev: dict) -> None:
        kind = ev.get("event")
        w = self.stream.write
        if kind == "phase":
            self.phase = ev["name"]
            if self.tty:
                w("\n")
            w(f"[{self.phase}]\n")
        elif kind == "step" and self.tty:
            parts = [
                f"epoch {ev['epoch']}" if "epoch" in ev else "",
                f"batch {ev.get('batch')}/{ev.get('batches')}",
                f"{ev.get('items', 0)} items",
            ]
            if ev.get("loss") is not None:
                parts.append(f"loss {ev['loss']:.3f}")
            w("\r  " + "  ".join(p for p in parts if p) + "   ")
        elif kind == "epoch":
            acc = ev.get("accuracy")
            q = f"accuracy {acc:.3f}" if acc is not None else f"perplexity {ev.get('perplexity')}"
            w(
                ("\n" if self.tty else "") + f"  epoch {ev['epoch']}: eval loss "
                f"{ev['eval_loss']:.4f}, {q}\n"
            )
        elif kind == "log":
            w(f"  note: {ev['message']}\n")
        self.stream.flush()


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def print_session_summary(r: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up now: a redirected stdout is honoured
    p = lambda *a: print(*a, file=out)  # noqa: E731
    s = r.get("session") or {}
    pe = r["measured_phase"]
    p("")
    from wattlab.core.cli.printing import print_energy_summary

    print_energy_summary(r, out)
    p(
        f"measured phase ({'+'.join(pe['phases'])}): {units.seconds(pe['duration_s'])}, "
        f"{units.joules(pe['gross_j'])} gross, {units.joules(pe['net_j'])} net of idle "
        f"[{pe['label']}]"
    )
    p(
        f"energy per item  {_fmt(r.get('energy_per_item_j'), '.4f')} J   per token "
        f"{_fmt(r.get('energy_per_token_j'), '.6f')} J   (gross, {pe['label']})"
    )
    thr = s.get("throughput") or {}
    if thr:
        p(
            f"throughput       {_fmt(thr.get('items_per_s'), '.1f')} items/s   "
            f"{_fmt(thr.get('tokens_per_s'), '.0f')} tokens/s"
        )
    elif s.get("items") and s.get("train_time_s"):
        p(
            f"throughput       {s['items'] / s['train_time_s']:.1f} items/s (training, "
            "eval included)"
        )
    lat = s.get("latency_ms") or {}
    if lat.get("p50") is not None:
        p(f"latency          p50 {lat['p50']:.2f} ms   p95 {lat['p95']:.2f} ms per batch")
    mdl = s.get("model") or {}
    p(f"peak memory      {units.nbytes(s.get('peak_mem_bytes'))} ({s.get('peak_mem_source', '-')})")
    p(
        f"model            {mdl.get('source', '-')}: {units.nbytes(mdl.get('size_bytes'))}, "
        f"{mdl.get('num_params') or 0:,} parameters"
    )
    dev = s.get("device") or {}
    p(f"device           {dev.get('device', '-')}, {dev.get('threads', '-')} threads")
    for line in quality_lines(s):
        p(line)
    if s.get("saved_to"):
        p(f"trained weights cached in {s['saved_to']}")


def technique_lines(r: dict) -> list[str]:
    """What the techniques did and how far predictions moved (run summary and comparison)."""
    out = []
    for t in r.get("techniques") or []:
        out.append(f"technique        {t['name']}: {t['description']}")
        out += [f"                 warning: {w}" for w in t.get("warnings") or []]
    ag = r.get("agreement")
    if ag:
        out.append(
            f"agreement        {ag['prediction_agreement']:.1%} of {ag['items']} "
            f"predictions unchanged vs the unmodified model, max |logit diff| "
            f"{ag['max_abs_logit_diff']:.4f}"
        )
    return out


def print_comparison(comp: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up now: a redirected stdout is honoured
    from wattlab.core.report.text import verdict_cells
    from wattlab.core.results import Comparison

    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("")
    p(
        f"comparison {comp['comparison_id']}: baseline vs {comp['technique_text']} "
        f"({comp['pairs_completed']} interleaved pair(s))"
    )
    p(f"{'metric':<34} {'baseline':>14} {'optimized':>14} {'delta':>8}  {'verdict':<13} source")
    for v in Comparison.from_dict(comp).verdicts:
        label, base, opt, delta, verdict, source = verdict_cells(v)
        p(f"{label[:34]:<34} {base:>14} {opt:>14} {delta:>8}  {verdict:<13} {source}")
    for line in technique_lines(comp):
        p(line)
    p("")
    p(comp["headline"])


# -- profile -------------------------------------------------------------------------------------
def print_energy_summary(result: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up now: a redirected stdout is honoured
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"run {result['run_id']}  {result['status']}  duration {units.seconds(result['duration_s'])}")
    p(
        f"{'source':<8} {'label':<11} {'gross':>14} {'net of idle':>14} {'idle':>9} "
        f"{'mean':>9} {'peak':>9}"
    )
    for e in result["energy"]:
        p(
            f"{e['source']:<8} {e['label']:<11} {units.joules(e['gross_j']):>14} "
            f"{units.joules(e['net_j']):>14} {units.watts(e['idle_power_w']):>9} "
            f"{units.watts(e['mean_power_w']):>9} {units.watts(e['peak_power_w']):>9}"
        )
    t = result["total"]
    p(
        f"{'total':<8} {t['label'] or '-':<11} {units.joules(t['gross_j']):>14} "
        f"{units.joules(t['net_j']):>14}"
    )
    for e in result["energy"]:
        p(f"  {e['source']}: {e['method']}")
    if "cpu_time_s" in result:
        p(
            f"CPU time {units.seconds(result['cpu_time_s'])}, peak RSS "
            f"{units.nbytes(result.get('peak_rss_bytes'))}"
        )
    s = result["sampling"]
    p(
        f"sampling every {s['interval_s'] * 1000:.0f} ms: {s['ticks']} samples, "
        f"{s['missed_slots']} missed, idle baseline {s['idle_s']:.1f} s"
    )
    for w in result.get("warnings", []):
        p(f"warning: {w}")


def quality_lines(s: dict[str, Any]) -> list[str]:
    """The session's quality lines: per epoch, inference quality, techniques, early exit and
    lottery rounds."""
    out: list[str] = []
    for e in s.get("epochs") or []:
        q = (
            f"accuracy {_fmt(e.get('accuracy'))}  macro-F1 {_fmt(e.get('macro_f1'))}"
            if "accuracy" in e
            else f"perplexity {_fmt(e.get('perplexity'), '.2f')}"
        )
        auc = f"  AUC {_fmt(e.get('auc_roc'))}" if e.get("auc_roc") is not None else ""
        out.append(
            f"epoch {e['epoch']:<3}  train loss {_fmt(e.get('train_loss'), '.4f')}  eval loss "
            f"{_fmt(e.get('eval_loss'), '.4f')}  {q}{auc}  energy so far "
            f"{units.joules(e.get('energy_j_so_far'))}"
        )
    if s.get("mode") == "infer" and s.get("metrics"):
        m = s["metrics"]
        q = (
            f"accuracy {_fmt(m.get('accuracy'))}  macro-F1 {_fmt(m.get('macro_f1'))}"
            if "accuracy" in m
            else f"perplexity {_fmt(m.get('perplexity'), '.2f')}"
        )
        out.append(f"quality          {q}")
    out += technique_lines(s)
    ee = s.get("early_exit")
    if ee:
        out.append(
            f"early exit       mean {ee['mean_layers']:.2f} of {ee['layers']} layers, exits per "
            f"layer {ee['exit_histogram']}, theoretical speedup "
            f"{ee['theoretical_speedup']:.2f}x (measured speedup: compare with a baseline)"
        )
    for r in s.get("lottery_rounds") or []:
        acc = r.get("accuracy")
        out.append(
            f"lottery round {r['round']}: sparsity {r['sparsity']:.1%}"
            + (f", accuracy {acc:.3f}" if acc is not None else "")
            + (
                f", energy so far {units.joules(r.get('energy_j_so_far'))}"
                if r.get("energy_j_so_far") is not None
                else ""
            )
        )
    return out
