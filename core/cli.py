"""``wattlab ...``: every engine feature as a headless command.

Errors a user can cause (bad paths, missing commands, bad flags) end in one line on stderr and
exit code 2 (127 for a command that does not exist, as shells do), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import units
from .errors import UserError
from .fileio import OutputError
from .measure import MeasureSettings
from .store import RunStore, StoreError

EXIT_USAGE = 2
EXIT_NOT_FOUND = 127


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _store(args: argparse.Namespace) -> RunStore:
    return RunStore.open_default(Path(args.data_dir) if args.data_dir else None)


# -- sensors -------------------------------------------------------------------------------------
def cmd_sensors(args: argparse.Namespace) -> int:
    from .sensors import discover

    found = discover()
    found.close()
    statuses = [s.__dict__ for s in found.statuses]
    if args.json:
        print(json.dumps({"sensors": statuses}, indent=2, default=str))
        return 0
    for s in found.statuses:
        mark = "present" if s.available else "missing"
        print(f"{s.name:<9} {mark:<8} {s.reason or ''}".rstrip())
        if s.name == "nvml" and s.available:
            for g in s.details.get("gpus", []):
                counter = "energy counter" if g["energy_counter"] else "power only (integrated)"
                print(f"          {g['label']}: {g['name']} ({counter})")
        if s.name == "estimate" and s.available:
            m = s.details["model"]
            print(
                f"          model {m['name']}: {m['active_w_per_cpu']:.2f} W busy / "
                f"{m['idle_w_per_cpu']:.2f} W idle per logical CPU x {m['logical_cpus']}, "
                f"{m['ram_w_per_gb']} W/GB RAM ({m['source']}); covers "
                f"{', '.join(s.details['covers'])}"
            )
    return 0


# -- profile -------------------------------------------------------------------------------------
def print_energy_summary(result: dict, out=sys.stdout) -> None:
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


def cmd_profile(args: argparse.Namespace) -> int:
    from .outputs import write_run_outputs
    from .profiler import CommandNotFound, profile_command

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CliError("no command to profile: use `wattlab profile [OPTIONS] -- CMD ARGS...`")
    if args.interval < 0.01:
        raise CliError(f"--interval must be at least 0.01 s, got {args.interval}")
    if args.idle < 0:
        raise CliError(f"--idle must be 0 or more seconds, got {args.idle}")
    store = _store(args)
    try:
        outcome = profile_command(
            cmd, store, MeasureSettings(args.interval, args.idle), label=args.label
        )
    except CommandNotFound as exc:
        raise CliError(f"command not found: {exc}", EXIT_NOT_FOUND) from None
    print_energy_summary(outcome.result)
    if args.out:
        files = write_run_outputs(Path(args.out), outcome.result, store)
        print("wrote " + ", ".join(str(f) for f in files))
    return outcome.exit_code


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
    for t in s.get("techniques") or []:
        p(f"technique        {t['name']}: {t['description']}")
        for w in t.get("warnings") or []:
            p(f"                 warning: {w}")
    ag = s.get("agreement")
    if ag:
        p(
            f"agreement        {ag['prediction_agreement']:.1%} of predictions unchanged vs the "
            f"unmodified model ({ag['items']} items), max |logit diff| "
            f"{ag['max_abs_logit_diff']:.4f}"
        )
    if s.get("saved_to"):
        p(f"trained weights cached in {s['saved_to']}")


def parse_technique(text: str) -> dict:
    from .techniques.base import parse_cli

    return parse_cli(text)


def cmd_techniques(args: argparse.Namespace) -> int:
    from .hardware import cpu_capabilities
    from .sensors.nvml import probe_nvml
    from .techniques.base import Target, all_techniques

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
        for mode in ("infer", "train"):
            tgt = Target(mode, device, "hf")
            ok, why = t.applicable(tgt, defaults)
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
    from .spec import RunSpec

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
        from .models.demo import demo_definition

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
    from .session import SessionFailed, SessionRunner

    runner = SessionRunner(
        spec, store, MeasureSettings(args.interval, args.idle), on_event=Progress()
    )
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
    import dataclasses

    from . import preflight

    spec = preflight.check(spec_from_args(args))
    store = _store(args)
    if spec.model == "demo" and spec.mode == "infer":
        from .models.demo import is_cached
        from .sessions.runner import demo_cache_folder

        if not is_cached(demo_cache_folder(spec)):
            from .models.demo import demo_definition

            r = demo_definition()["recipe"]
            print(
                "The demo model is not trained on this machine yet: training it first "
                "(about a minute on 2 cores; cached for every later run).",
                file=sys.stderr,
            )
            train = dataclasses.replace(
                spec,
                mode="train",
                epochs=r["epochs"],
                batch_size=r["batch_size"],
                learning_rate=r["learning_rate"],
                seq_len=r["seq_len"],
                seed=r["seed"],
                label="demo: training the cached weights",
            )
            run_spec_cli(train, args, store)
    result = run_spec_cli(spec, args, store)
    print_session_summary(result)
    if args.out:
        from .outputs import write_run_outputs

        files = write_run_outputs(Path(args.out), result, store, "result.json")
        print("wrote " + ", ".join(str(f) for f in files))
    return 0 if result["status"] == "completed" else 130


# -- runs ----------------------------------------------------------------------------------------
def cmd_runs_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.runs(args.limit)
    if not rows:
        print(f"no runs yet in {store.path}")
        return 0
    print(f"{'id':>5}  {'kind':<8} {'status':<12} {'started':<19} {'energy':>22}  label")
    for r in rows:
        res = store.result(r.id) or {}
        tot = res.get("total") or {}
        energy = (
            f"{units.joules(tot['gross_j'])} {tot.get('label') or ''}" if "gross_j" in tot else "-"
        )
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
        print(f"{r.id:>5}  {r.kind:<8} {r.status:<12} {started:<19} {energy:>22}  {r.label or ''}")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    store = _store(args)
    row = store.run(args.id)
    if row is None:
        raise CliError(f"no run with id {args.id} in {store.path}")
    res = store.result(args.id)
    if args.json:
        print(json.dumps({"run": row.__dict__, "result": res}, indent=2, default=str))
        return 0
    print(f"run {row.id} ({row.kind}) {row.status}: {row.label or ''}")
    print(f"spec: {json.dumps(row.spec)}")
    if row.message:
        print(f"message: {row.message}")
    if res:
        print_energy_summary(res)
    else:
        print("no result stored (the run did not finish)")
    return 0


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wattlab", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir",
        help="folder of the run store (default: $WATTLAB_DATA_DIR or the user data dir)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("sensors", help="what this machine can measure, and why not the rest")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sensors)

    s = sub.add_parser("profile", help="run a command and measure its energy")
    s.add_argument("--interval", type=float, default=0.1, help="sampling interval, s (>= 0.01)")
    s.add_argument("--idle", type=float, default=2.0, help="idle baseline before the command, s")
    s.add_argument("--out", help="write summary.json and samples.csv here")
    s.add_argument("--label", help="name of the run in the store")
    s.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("run", help="one measured training or inference session")
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
    s.add_argument("--interval", type=float, default=0.1, help="sampling interval, s")
    s.add_argument("--idle", type=float, default=2.0, help="idle baseline, s")
    s.add_argument("--label", help="name of the run in the store")
    s.add_argument("--out", help="write result.json and samples.csv here")
    s.add_argument(
        "--technique",
        action="append",
        metavar="NAME:K=V,...",
        help="apply a technique (repeatable), e.g. quantization:backend=ort",
    )
    s.set_defaults(func=cmd_run)

    s = sub.add_parser(
        "techniques", help="every technique, its parameters, and whether it applies on this machine"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_techniques)

    s = sub.add_parser("runs", help="runs in the store")
    rs = s.add_subparsers(dest="runs_command", metavar="ACTION")
    r = rs.add_parser("list", help="recent runs")
    r.add_argument("--limit", type=int, default=50)
    r.set_defaults(func=cmd_runs_list)
    r = rs.add_parser("show", help="one run's result")
    r.add_argument("id", type=int)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs_show)
    s.set_defaults(func=lambda a: (rs.print_help(), EXIT_USAGE)[1])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"wattlab: {exc}", file=sys.stderr)
        return exc.code
    except (StoreError, OutputError, UserError) as exc:
        print(f"wattlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("wattlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
