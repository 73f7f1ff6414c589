"""``wattlab run``, ``compare``, ``report`` and ``techniques``: the ML-session commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattlab.core.cli.common import (
    CliError,
    check_out_dir,
    measure_settings,
    open_existing_store,
    open_store,
    store_path,
)
from wattlab.core.cli.execute import compare_cli, ensure_demo_trained, run_spec_cli
from wattlab.core.cli.flags import (
    DEFAULT_MARGIN_PCT,
    carbon_flags,
    carbon_from_args,
    parse_technique,
    session_flags,
)
from wattlab.core.cli.node_flags import node_flags, node_meter_from_args
from wattlab.core.cli.printing import print_comparison, print_session_summary
from wattlab.core.report.nodes_text import comparison_nodes_lines, nodes_lines

if TYPE_CHECKING:
    from wattlab.core.spec import RunSpec


def cmd_techniques(args: argparse.Namespace) -> int:
    from wattlab.core.hardware import cpu_capabilities
    from wattlab.core.measure.sensors.nvml import probe_nvml
    from wattlab.core.techniques.base import Target
    from wattlab.core.techniques.catalog import all_techniques
    from wattlab.core.techniques.compose import availability

    gpu, _ = probe_nvml()
    device = "cuda" if gpu is not None else "cpu"
    if gpu is not None:
        gpu.close()
    rows = []
    for t in all_techniques():
        defaults = {p.name: p.default for p in t.params}
        entry: dict[str, Any] = {
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
    from wattlab.core.spec import build_spec

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
        "sensitive_column": args.sensitive_column,
        "threads": args.threads,
        "nproc": getattr(args, "nproc", None),
        "label": args.label,
        "techniques": tuple(parse_technique(t) for t in args.technique or ()),
        "save_model": getattr(args, "save_model", None),  # `run` only
        "lifecycle": getattr(args, "lifecycle", False) or None,  # `compare` only
    }
    d.update(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seq_len=args.seq_len,
        seed=args.seed,
    )
    return build_spec(**d)


def cmd_run(args: argparse.Namespace) -> int:
    from wattlab.core.run import preflight

    measure_settings(args)  # every flag checked before anything runs or is stored
    spec = preflight.check(spec_from_args(args))
    meter = node_meter_from_args(args)  # --nodes / --prometheus, checked before anything runs
    store = open_store(args)
    ensure_demo_trained(spec, args, store)
    try:
        result = run_spec_cli(spec, args, store, meter)
    except KeyboardInterrupt:
        if spec.save_model is not None:
            print(f"training cancelled: nothing was saved to {spec.save_model}", file=sys.stderr)
        raise
    print_session_summary(result)
    if result.get("nodes"):
        print("\n".join(nodes_lines(result["nodes"])))
    if args.out:
        from wattlab.core.report.outputs import write_run_outputs

        files = write_run_outputs(Path(args.out), result, store, "result.json")
        print("wrote " + ", ".join(str(f) for f in files))
    if result["status"] != "completed":
        return 130
    return 0 if _saved_as_asked(spec, result) else 1


def _saved_as_asked(spec: RunSpec, result: dict) -> bool:
    """A completed training asked to ``--save-model`` whose model was not saved (a disk
    error, say) fails the command, so a script does not go on to measure a missing folder."""
    if spec.save_model is None:
        return True
    saved = (result.get("session") or {}).get("saved_model") or {}
    if saved.get("path"):
        return True
    why = saved.get("note") or "the worker gave no reason"
    print(f"error: the trained model was not saved: {why}", file=sys.stderr)
    return False


# -- compare and report -------------------------------------------------------------------------
def demo_preset() -> list[str]:
    """The demo's optimized side: the same "recommended for this machine" choice as the app's."""
    from wattlab.core.techniques.recommend import recommended

    return list(recommended().cli_texts)


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

    from wattlab.core.report.outputs import write_reports
    from wattlab.core.run import preflight

    if args.demo:
        args.model, args.dataset, args.mode = "demo", "demo", "infer"
        if args.infer_batches is None:
            args.infer_batches = 200
        if not args.optimized and not args.technique:
            args.technique = demo_preset()
    if getattr(args, "lifecycle", False):
        if args.mode == "infer":
            raise CliError("--lifecycle trains the model, then serves it: drop --mode infer")
        args.mode = "train"  # a lifecycle trains, then serves what it trained
    elif getattr(args, "deploy_queries", None) is not None:
        raise CliError("--deploy-queries prices a lifecycle: give it with --lifecycle")
    specs = optimized_techniques(args)
    if specs is None:
        raise CliError(
            'nothing to compare: give --optimized "TECHNIQUE SPECS", --optimized none (A/A) '
            "or --demo"
        )
    measure_settings(args)  # every flag checked before anything runs or is stored
    node_meter_from_args(args)  # --nodes / --prometheus checked now; each run gets its own
    args.technique = specs
    opt = preflight.check(spec_from_args(args))
    base = dataclasses.replace(opt, techniques=())
    carbon = carbon_from_args(args)
    carbon.resolved()
    store = open_store(args)
    ensure_demo_trained(opt, args, store)  # a distilling side needs the trained demo as teacher
    comp = compare_cli(base, opt, args, store, carbon, args.quality_target)
    print_comparison(comp)
    print_lifecycle(comp)
    runs = [(pr["side"], store.result(pr["run_id"]) or {}) for pr in comp["per_run"]]
    lines = comparison_nodes_lines(runs)
    if lines:
        print("\n" + "\n".join(lines))
    if args.out:
        files = write_reports(comp, store, Path(args.out))
        print("\nreports: " + "\n         ".join(str(f) for f in files))
    return 0


def print_lifecycle(comp: dict) -> None:
    """A lifecycle comparison's stage tables and break-even, after its verdict table."""
    if comp.get("lifecycle"):
        from wattlab.core.report.lifecycle_text import lifecycle_lines

        print("\n" + "\n".join(lifecycle_lines(comp["lifecycle"])))


def cmd_report(args: argparse.Namespace) -> int:
    from wattlab.core.report.outputs import write_reports, write_run_outputs

    check_out_dir(args)
    store = open_existing_store(args)
    row = store.run(args.id) if store is not None else None
    if store is None or row is None:
        raise CliError(f"no run or comparison with id {args.id} in {store_path(args)}")
    res = store.result(args.id)
    if res is None:
        raise CliError(f"run {args.id} is {row.status} and has no stored result to report")
    out = Path(args.out)
    if row.kind in ("sweep", "bench"):
        return _report_sweep_or_bench(row.kind, res, store, out)
    if row.kind == "comparison":
        every = not (args.pdf or args.csv or args.json)
        files = write_reports(
            res, store, out, pdf=args.pdf or every, csv=args.csv or every, json_=args.json or every
        )
        print_comparison(res)
        print_lifecycle(res)
    else:
        files = write_run_outputs(out, res, store, "result.json")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _report_sweep_or_bench(kind: str, res: dict, store, out: Path) -> int:  # noqa: ANN001
    """A stored sweep or bench: its own reports, rebuilt from the store."""
    if kind == "sweep":
        from wattlab.core.cli.sweep_print import print_sweep
        from wattlab.core.report.sweep_report import write_sweep_reports

        files = write_sweep_reports(res, store, out)
        print_sweep(res)
    else:
        from wattlab.core.cli.bench import print_bench
        from wattlab.core.report.bench_report import write_bench_reports

        files = write_bench_reports(res, store, out)
        print_bench(res)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers action type
    s = sub.add_parser("run", help="one measured training or inference session")
    session_flags(s)
    node_flags(s)
    s.add_argument("--out", help="write result.json and samples.csv here")
    s.add_argument(
        "--save-model",
        metavar="DIR",
        help="training: save the trained model here as a Hugging Face folder (after the "
        "measured phase), then measure it with --model DIR; replaces only an empty folder or a "
        "model folder",
    )
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("compare", help="baseline vs optimized, interleaved repeats, reports")
    session_flags(s)
    node_flags(s)
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
        "--lifecycle",
        action="store_true",
        help="each run trains, converts, then serves the trained model (implies --mode "
        "train): training, conversion and serving energy per stage, totals at --deploy-queries "
        "and the break-even number of queries",
    )
    s.add_argument(
        "--deploy-queries",
        type=int,
        help="queries the served model will answer over its life (default 1,000,000): prices "
        "the lifecycle's total energy and CO2",
    )
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
