"""``wattlab rag``: a retrieval-augmented generation workload, measured; with ``--technique
rag-cache:...`` it is a comparison (the same seeded query stream without and with the cache,
interleaved repeats, verdicts, reports), without it one measured run."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from wattlab.core.cli.common import measure_settings, open_store
from wattlab.core.report.rag_text import rag_comparison_lines, rag_lines


def spec_from_args(args: argparse.Namespace):
    from wattlab.core.cli.flags import parse_technique
    from wattlab.core.rag.options import RagOptions
    from wattlab.core.spec import RunSpec

    opts = RagOptions(**{f.name: getattr(args, f.name) for f in fields(RagOptions)})
    opts.validate()
    return RunSpec(
        model=args.generator,
        dataset=args.corpus,
        mode="rag",
        device=args.device,
        seed=args.seed,
        threads=args.threads,
        label=args.label,
        techniques=tuple(parse_technique(t) for t in args.technique or ()),
        rag=opts.to_dict(),
    )


def cmd_rag(args: argparse.Namespace) -> int:
    import dataclasses

    from wattlab.core.cli.execute import run_spec_cli
    from wattlab.core.cli.flags import carbon_from_args
    from wattlab.core.run.preflight import check

    measure_settings(args)  # every flag checked before anything runs or is stored
    spec = check(spec_from_args(args))
    store = open_store(args)
    if not spec.techniques:
        result = run_spec_cli(spec, args, store)
        from wattlab.core.cli.printing import print_session_summary

        print_session_summary(result)
        rag = (result.get("session") or {}).get("rag")
        for line in rag_lines(rag) if rag else []:
            print(line)
        if args.out:
            from wattlab.core.report.outputs import write_run_outputs

            files = write_run_outputs(Path(args.out), result, store, "result.json")
            print("wrote " + ", ".join(str(f) for f in files))
        return 0 if result["status"] == "completed" else 130
    from wattlab.core.cli.execute import compare_cli
    from wattlab.core.cli.printing import print_comparison
    from wattlab.core.report.outputs import write_reports

    carbon = carbon_from_args(args)
    carbon.resolved()
    comp = compare_cli(dataclasses.replace(spec, techniques=()), spec, args, store, carbon)
    print_comparison(comp)
    lines = rag_comparison_lines(comp)
    if lines:
        print("\nRAG cache (optimized side):\n  " + "\n  ".join(lines))
    if args.out:
        files = write_reports(comp, store, Path(args.out))
        print("\nreports: " + "\n         ".join(str(f) for f in files))
    return 0


def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers action type
    from wattlab.core.cli.flags import carbon_flags

    s = sub.add_parser(
        "rag",
        help="retrieval-augmented generation over a seeded query stream; with "
        "--technique rag-cache:... baseline vs cached, interleaved",
    )
    s.add_argument("--corpus", default="demo", help="demo, a folder of .txt/.md files, or .jsonl")
    s.add_argument("--generator", default="demo", help="demo or a local causal LM folder")
    s.add_argument("--encoder", default="demo", help="demo or a local encoder folder")
    s.add_argument("--queries", type=int, default=1000, help="queries in the stream")
    s.add_argument("--repeat-rate", type=float, default=0.5, help="share re-asking a question")
    s.add_argument(
        "--paraphrase-share", type=float, default=0.5, help="of the repeats, share reworded"
    )
    s.add_argument(
        "--negative-rate",
        type=float,
        default=0.1,
        help="share of hard negatives (negated or name-swapped twins of earlier questions)",
    )
    s.add_argument("--queries-file", help="JSONL of queries (text, intent, kind, gold_doc, answer)")
    s.add_argument("--top-k", type=int, default=3, help="chunks retrieved per query")
    s.add_argument("--context-chunks", type=int, default=1, help="retrieved chunks in the prompt")
    s.add_argument("--max-new-tokens", type=int, default=8)
    s.add_argument("--chunk-words", type=int, default=80)
    s.add_argument("--chunk-overlap", type=int, default=16)
    s.add_argument("--index", choices=["auto", "exact", "faiss"], default="auto")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--seed", type=int, default=0, help="seed of the query stream")
    s.add_argument("--threads", type=int, help="torch intra-op threads")
    s.add_argument(
        "--technique",
        action="append",
        metavar="rag-cache:K=V,...",
        help="e.g. rag-cache:layers=embed,query,prefix (makes this a comparison)",
    )
    s.add_argument("--repeats", type=int, default=3, help="interleaved pairs when comparing")
    s.add_argument("--cooldown", type=float, help="seconds between runs (default 3)")
    s.add_argument("--interval", type=float, help="sampling interval, s (default 0.1)")
    s.add_argument("--idle", type=float, help="idle baseline, s (default 2)")
    s.add_argument("--label", help="name of the run in the store")
    carbon_flags(s)
    s.add_argument("--out", help="write the reports (or result.json for one run) here")
    s.set_defaults(func=cmd_rag)
