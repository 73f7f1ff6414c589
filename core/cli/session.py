"""``wattlab run``, ``compare``, ``report`` and ``techniques``: the ML-session commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from wattlab.core.cli.common import EXIT_USAGE, CliError, measure_settings, open_store
from wattlab.core.measure.store import RunStore
from wattlab.core.report import text as units

DEFAULT_MARGIN_PCT = 3.0

if TYPE_CHECKING:
    from wattlab.core.measure.carbon import CarbonSettings
    from wattlab.core.spec import RunSpec


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


def print_session_summary(r: dict, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    s = r.get("session") or {}
    pe = r["measured_phase"]
    p("")
    from wattlab.core.cli.main import print_energy_summary

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
    for e in s.get("epochs") or []:
        q = (
            f"accuracy {_fmt(e.get('accuracy'))}  macro-F1 {_fmt(e.get('macro_f1'))}"
            if "accuracy" in e
            else f"perplexity {_fmt(e.get('perplexity'), '.2f')}"
        )
        auc = f"  AUC {_fmt(e.get('auc_roc'))}" if e.get("auc_roc") is not None else ""
        p(
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
        p(f"quality          {q}")
    for line in technique_lines(s):
        p(line)
    ee = s.get("early_exit")
    if ee:
        p(
            f"early exit       mean {ee['mean_layers']:.2f} of {ee['layers']} layers, exits per "
            f"layer {ee['exit_histogram']}, theoretical speedup "
            f"{ee['theoretical_speedup']:.2f}x (measured speedup: compare with a baseline)"
        )
    for r in s.get("lottery_rounds") or []:
        acc = r.get("accuracy")
        p(
            f"lottery round {r['round']}: sparsity {r['sparsity']:.1%}"
            + (f", accuracy {acc:.3f}" if acc is not None else "")
            + (
                f", energy so far {units.joules(r.get('energy_j_so_far'))}"
                if r.get("energy_j_so_far") is not None
                else ""
            )
        )
    if s.get("saved_to"):
        p(f"trained weights cached in {s['saved_to']}")


def parse_technique(text: str) -> dict:
    from wattlab.core.techniques.base import parse_cli

    return parse_cli(text)


def cmd_techniques(args: argparse.Namespace) -> int:
    from wattlab.core.hardware import cpu_capabilities
    from wattlab.core.measure.sensors.nvml import probe_nvml
    from wattlab.core.techniques.base import Target, all_techniques
    from wattlab.core.techniques.compose import availability

    gpu, _ = probe_nvml()
    device = "cuda" if gpu is not None else "cpu"
    if gpu is not None:
        gpu.close()
    rows = []
    for t in all_techniques():
        defaults = {p.name: p.default for p in t.params}
        entry = {
            "name": t.name,
            "label": t.label,
            "summary": t.summary,
            "order": t.order,
            "params": [
                {
                    "name": p.name,
                    "type": p.type.__name__,
                    "default": p.default,
                    "min": p.min,
                    "max": p.max,
                    "choices": p.choices,
                    "help": p.help,
                }
                for p in t.params
            ],
            "applies": {},
        }
        for mode in ("infer", "train", "rag"):
            tgt = Target(mode, device, "hf")
            ok, why = availability(t, tgt, defaults)
            entry["applies"][mode] = {
                "ok": ok,
                "reason": why,
                "warning": t.warning(tgt, defaults) if ok else None,
            }
        rows.append(entry)
    if args.json:
        print(
            json.dumps({"device": device, "cpu": cpu_capabilities(), "techniques": rows}, indent=2)
        )
        return 0
    print(
        f"device: {device}; CPU low-precision units: "
        + ", ".join(k for k, v in cpu_capabilities().items() if v)
    )
    for e in rows:
        print(f"\n{e['name']}  ({e['summary']})")
        for p in e["params"]:
            rng = (
                f" one of {'|'.join(p['choices'])}"
                if p["choices"]
                else f" {p['min']}..{p['max']}"
                if p["min"] is not None
                else ""
            )
            print(f"    {p['name']}={p['default']}  {p['type']}{rng}: {p['help']}")
        for mode, a in e["applies"].items():
            state = "yes" if a["ok"] else f"no: {a['reason']}"
            warn = f" (warning: {a['warning']})" if a.get("warning") else ""
            print(f"    {mode:<5} {state}{warn}")
    print("\nOrder when combined: " + " -> ".join(e["name"] for e in rows))
    return 0


def spec_from_args(args: argparse.Namespace):
    from wattlab.core.spec import RunSpec

    d: dict = {
        "model": args.model,
        "dataset": args.dataset,
        "mode": args.mode,
        "task": args.task,
        "max_steps": args.max_steps,
        "grad_accum": args.grad_accum,
        "patience": args.patience,
        "device": args.device,
        "eval_fraction": args.eval_fraction,
        "warmup_batches": args.warmup_batches,
        "infer_batches": args.infer_batches,
        "text_column": args.text_column,
        "label_column": args.label_column,
        "threads": args.threads,
        "label": args.label,
        "techniques": tuple(parse_technique(t) for t in args.technique or ()),
    }
    recipe: dict = {}
    if args.model == "demo":
        from wattlab.core.models.demo import demo_definition

        recipe = demo_definition()["recipe"]
    for key, flag in (
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("learning_rate", "lr"),
        ("seq_len", "seq_len"),
        ("seed", "seed"),
    ):
        v = getattr(args, flag)
        if v is None:
            v = recipe.get(key, getattr(RunSpec, key))
        d[key] = v
    return RunSpec(**d)


def run_spec_cli(spec, args: argparse.Namespace, store: RunStore) -> dict:
    from wattlab.core.run.client import SessionFailed, SessionRunner

    runner = SessionRunner(spec, store, measure_settings(args), on_event=Progress())
    try:
        return runner.run()
    except KeyboardInterrupt:
        runner.cancel()
        raise
    except SessionFailed as exc:
        raise CliError(
            f"{exc} (run {exc.run_id} kept as failed)", EXIT_USAGE if exc.user else 1
        ) from None


def cmd_run(args: argparse.Namespace) -> int:

    from wattlab.core.run import preflight

    measure_settings(args)  # every flag checked before anything runs or is stored
    spec = preflight.check(spec_from_args(args))
    store = open_store(args)
    ensure_demo_trained(spec, args, store)
    result = run_spec_cli(spec, args, store)
    print_session_summary(result)
    if args.out:
        from wattlab.core.report.outputs import write_run_outputs

        files = write_run_outputs(Path(args.out), result, store, "result.json")
        print("wrote " + ", ".join(str(f) for f in files))
    return 0 if result["status"] == "completed" else 130


# -- compare and report -------------------------------------------------------------------------
def demo_preset() -> list[str]:
    """The demo's optimized side, chosen from BENCHMARKS.md: on CPUs with AMX/AVX512-BF16 the
    model cast to bf16 (-34% energy per item, accuracy unchanged, on the 2-core Sapphire Rapids
    VM), else ONNX Runtime dynamic int8 (-34% there, accuracy unchanged)."""
    from wattlab.core.hardware import cpu_has_fast_bf16

    if cpu_has_fast_bf16():
        return ["mixed-precision:dtype=bf16,mode=cast"]
    return ["quantization:backend=ort"]


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


def print_comparison(comp: dict, out=sys.stdout) -> None:
    from wattlab.core.report.pdf_report import fmt_delta, fmt_value

    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("")
    p(
        f"comparison {comp['comparison_id']}: baseline vs {comp['technique_text']} "
        f"({comp['pairs_completed']} interleaved pair(s))"
    )
    p(f"{'metric':<34} {'baseline':>14} {'optimized':>14} {'delta':>8}  {'verdict':<13} source")
    for v in comp["verdicts"]:
        d = fmt_delta(v)
        p(
            f"{v['label'][:34]:<34} {fmt_value(v['baseline_median'], v['unit']):>14} "
            f"{fmt_value(v['optimized_median'], v['unit']):>14} {d:>8}  {v['verdict']:<13} "
            f"{v['source'] or ''}"
        )
    for line in technique_lines(comp):
        p(line)
    p("")
    p(comp["headline"])


def carbon_from_args(args: argparse.Namespace):
    from wattlab.core.measure.carbon import CarbonSettings

    return CarbonSettings(args.region, args.carbon_intensity, args.pue, args.price, args.currency)


def ensure_demo_trained(spec, args: argparse.Namespace, store: RunStore) -> None:
    """The demo trains itself on first use; this is that training run, stored like any other."""
    from wattlab.core.worker.runner import demo_training_spec

    train = demo_training_spec(spec)
    if train is None:
        return
    print(
        "The demo model is not trained on this machine yet: training it first (about a "
        "minute on 2 cores; cached for every later run).",
        file=sys.stderr,
    )
    run_spec_cli(train, args, store)


def optimized_techniques(args: argparse.Namespace) -> list[str] | None:
    """The optimized side's technique specs; [] for ``--optimized none`` (an A/A check)."""
    specs = [t for chunk in (args.optimized or []) for t in chunk.replace(";", " ").split()]
    if [t.lower() for t in specs] == ["none"]:
        if args.technique:
            raise CliError("--optimized none is an A/A check: give no --technique with it")
        return []
    if any(t.lower() == "none" for t in specs):
        raise CliError('"none" cannot be combined with techniques in --optimized')
    specs += list(args.technique or [])
    return specs or None


def cmd_compare(args: argparse.Namespace) -> int:
    import dataclasses

    from wattlab.core.run import preflight
    from wattlab.core.run.comparison import write_reports

    if args.demo:
        args.model, args.dataset, args.mode = "demo", "demo", "infer"
        if args.infer_batches is None:
            args.infer_batches = 200
        if not args.optimized and not args.technique:
            args.technique = demo_preset()
    specs = optimized_techniques(args)
    if specs is None:
        raise CliError(
            'nothing to compare: give --optimized "TECHNIQUE SPECS", --optimized none (A/A) '
            "or --demo"
        )
    if args.repeats < 1:
        raise CliError(f"--repeats must be at least 1, got {args.repeats}")
    measure_settings(args)  # every flag checked before anything runs or is stored
    args.technique = specs
    opt = preflight.check(spec_from_args(args))
    base = dataclasses.replace(opt, techniques=())
    carbon = carbon_from_args(args)
    carbon.resolved()
    store = open_store(args)
    ensure_demo_trained(base, args, store)
    comp = compare_cli(base, opt, args, store, carbon, args.quality_target)
    print_comparison(comp)
    if args.out:
        files = write_reports(comp, store, Path(args.out))
        print("\nreports: " + "\n         ".join(str(f) for f in files))
    return 0


def _margin_pct(args: argparse.Namespace) -> float:
    margin = getattr(args, "margin", None)
    return DEFAULT_MARGIN_PCT if margin is None else margin


def compare_cli(
    base: RunSpec,
    opt: RunSpec,
    args: argparse.Namespace,
    store: RunStore,
    carbon: CarbonSettings,
    quality_target: float | None = None,
) -> dict:
    """``compare`` with terminal progress; a failed run becomes one line and an exit code."""
    from wattlab.core.run.client import SessionFailed
    from wattlab.core.run.comparison import compare

    try:
        return compare(
            base,
            opt,
            store,
            measure_settings(args),
            carbon,
            args.repeats,
            args.cooldown,
            quality_target,
            on_event=Progress(),
            on_progress=lambda m: print(f"== {m}", file=sys.stderr),
            margin=_margin_pct(args) / 100,
            rerun_disturbed=bool(getattr(args, "rerun_disturbed", False)),
        )
    except SessionFailed as exc:
        raise CliError(
            f"{exc} (run {exc.run_id} kept as failed)", EXIT_USAGE if exc.user else 1
        ) from None


def cmd_report(args: argparse.Namespace) -> int:
    from wattlab.core.report.outputs import write_run_outputs
    from wattlab.core.run.comparison import write_reports

    store = open_store(args)
    row = store.run(args.id)
    if row is None:
        raise CliError(f"no run or comparison with id {args.id} in {store.path}")
    res = store.result(args.id)
    if res is None:
        raise CliError(f"run {args.id} is {row.status} and has no stored result to report")
    out = Path(args.out)
    if row.kind == "comparison":
        every = not (args.pdf or args.csv or args.json)
        files = write_reports(
            res, store, out, pdf=args.pdf or every, csv=args.csv or every, json_=args.json or every
        )
        print_comparison(res)
    else:
        files = write_run_outputs(out, res, store, "result.json")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


# -- parsers -------------------------------------------------------------------------------------
def session_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", default="demo", help="demo, a Hugging Face folder or a .onnx file")
    s.add_argument("--dataset", default="demo", help="demo or a .csv/.tsv/.jsonl/.txt file")
    s.add_argument("--mode", choices=["train", "infer"], default="infer")
    s.add_argument("--task", choices=["classify", "causal-lm"], help="override detection")
    s.add_argument("--epochs", type=int)
    s.add_argument("--max-steps", type=int, help="stop training after N optimizer steps")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float, help="learning rate (AdamW)")
    s.add_argument("--grad-accum", type=int, default=1)
    s.add_argument("--patience", type=int, help="early stopping: epochs without improvement")
    s.add_argument("--seq-len", type=int, help="max tokens per item (truncation)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--seed", type=int)
    s.add_argument("--eval-fraction", type=float, default=0.2)
    s.add_argument("--warmup-batches", type=int, default=2)
    s.add_argument("--infer-batches", type=int, help="measure N batches (default: eval set)")
    s.add_argument("--text-column")
    s.add_argument("--label-column")
    s.add_argument("--threads", type=int, help="torch/ORT intra-op threads")
    s.add_argument("--interval", type=float, help="sampling interval, s (default 0.1)")
    s.add_argument("--idle", type=float, help="idle baseline, s (default 2)")
    s.add_argument(
        "--min-measure",
        type=float,
        help="inference repeats its batches until the measured phase lasts this long, on a GPU "
        "or when one pass spans fewer than 10 sensor updates (s, default 2; 0 = one pass)",
    )
    s.add_argument("--label", help="name of the run in the store")
    s.add_argument(
        "--technique",
        action="append",
        metavar="NAME:K=V,...",
        help="apply a technique (repeatable), e.g. quantization:backend=ort",
    )


def carbon_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--region", help="grid carbon intensity region, ISO code (default WORLD)")
    s.add_argument("--carbon-intensity", type=float, help="gCO2e/kWh, overrides --region")
    s.add_argument("--pue", type=float, help="power usage effectiveness (default 1.0)")
    s.add_argument("--price", type=float, help="electricity price per kWh")
    s.add_argument("--currency", help="default EUR")


def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers action type
    s = sub.add_parser("run", help="one measured training or inference session")
    session_flags(s)
    s.add_argument("--out", help="write result.json and samples.csv here")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("compare", help="baseline vs optimized, interleaved repeats, reports")
    session_flags(s)
    s.add_argument(
        "--optimized",
        action="append",
        metavar='"TECHNIQUE SPECS"',
        help="techniques of the optimized side, space-separated; 'none' runs the same spec on "
        "both sides (an A/A check of this machine's noise floor: run it first on a new machine)",
    )
    s.add_argument("--demo", action="store_true", help="the built-in model with a preset")
    s.add_argument(
        "--repeats", type=int, default=5, help="counterbalanced pairs (default 5; verdicts from 3)"
    )
    s.add_argument(
        "--margin",
        type=float,
        help=f"practical-equivalence margin in %% (default {DEFAULT_MARGIN_PCT:g}): smaller "
        "changes are 'no meaningful change'",
    )
    s.add_argument(
        "--rerun-disturbed",
        action="store_true",
        help="run a pair again when other processes disturbed it; the new pair replaces it",
    )
    s.add_argument("--cooldown", type=float, help="seconds between runs (default 3)")
    s.add_argument(
        "--quality-target",
        type=float,
        help="training: report energy until eval accuracy first reaches this",
    )
    carbon_flags(s)
    s.add_argument(
        "--out",
        help="write report.pdf, summary.csv, emissions.csv, "
        "comparison.json and per-run samples here",
    )
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("report", help="rewrite the reports of a stored run or comparison")
    s.add_argument("id", type=int)
    s.add_argument("--pdf", action="store_true")
    s.add_argument("--csv", action="store_true")
    s.add_argument("--json", action="store_true")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser(
        "techniques", help="every technique, its parameters, and whether it applies on this machine"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_techniques)

    from wattlab.core.cli.rag import register as register_rag

    register_rag(sub)
