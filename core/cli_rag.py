"""``wattlab rag``: a retrieval-augmented generation workload, measured; with ``--technique
rag-cache:...`` it is a comparison (the same seeded query stream without and with the cache,
interleaved repeats, verdicts, reports), without it one measured run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import units
from .cli_common import EXIT_USAGE, CliError, open_store
from .measure import MeasureSettings


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def rag_lines(rag: dict, energy: dict | None = None) -> list[str]:
    """What each cache layer did in one run (or one side of a comparison)."""
    ql, pl, ix = rag["query_layer"], rag["prefix_layer"], rag["index"]
    out = [f"cache layers     {', '.join(rag['layers']) or 'none'}"]
    idx = (
        f"index            {ix['chunks']} chunks ({ix.get('index', '-')}), "
        f"{ix['embedded']} embedded, {ix['from_cache']} from the embedding cache"
    )
    if ix.get("energy_j") is not None:
        idx += f", {units.joules(ix['energy_j'])} [{ix.get('energy_label')}]"
    out.append(idx)
    if ql["on"]:
        out.append(
            f"query layer      hit rate {_pct(ql['hit_rate'])} ({ql['exact_hits']} exact, "
            f"{ql['semantic_hits']} semantic); on repeats/paraphrases "
            f"{_pct(ql['hit_rate_on_repeats'])}"
        )
        out.append(
            f"false hits       {ql['false_hits']} of {ql['hits']} hits; hard negatives "
            f"served another question's entry {ql['hard_negative_false_hits']} of "
            f"{ql['hard_negatives']} "
            f"({_pct(ql['false_hit_rate_on_hard_negatives'])}); guard blocked "
            f"{ql['guard_blocked']}; hits equal to a fresh search "
            f"{_pct(ql['retrieval_same_as_fresh'])}"
        )
    if pl["on"]:
        out.append(
            f"prefix layer     {pl['prefix_tokens']}-token prefix reused in {pl['generations']} "
            f"generations: {_pct(pl['prefill_saved'])} of prompt tokens not recomputed"
        )
    lat, tt = rag["latency_ms"], rag["ttft_ms"]
    out.append(
        f"latency p50      hits {_ms(lat['hits']['p50'])}, misses {_ms(lat['misses']['p50'])}; "
        f"time to first token p50 hits {_ms(tt['hits']['p50'])}, misses "
        f"{_ms(tt['misses']['p50'])}"
    )
    e = energy or rag.get("energy")
    if e:
        h, m = e["hit"], e["miss"]
        out.append(
            f"energy / query   hits {units.joules(h['energy_per_query_j'])}, misses "
            f"{units.joules(m['energy_per_query_j'])} [{e['label']}, {e['method']}]"
        )
    out.append(
        f"quality          retrieval recall@{rag['options']['top_k']} "
        f"{_pct(rag['retrieval_recall'])}, answer accuracy {_pct(rag['answer_accuracy'])}"
    )
    return out


def print_rag_comparison(comp: dict, out=sys.stdout) -> None:
    rag = comp.get("rag") or {}
    opt = rag.get("optimized")
    if opt:
        print("\noptimized side:", file=out)
        ql = opt["query_layer"]
        print(
            f"  cache layers {', '.join(opt['layers'])}; query-layer hit rate "
            f"{_pct(ql['hit_rate'])}, false-hit rate on hard negatives "
            f"{_pct(ql['false_hit_rate_on_hard_negatives'])} ({ql['hard_negative_false_hits']} of "
            f"{ql['hard_negatives']}), false hits {ql['false_hits']} of {ql['hits']}",
            file=out,
        )
        print(
            f"  energy per query (median) hits {units.joules(opt['hit_energy_per_query_j'])}, "
            f"misses {units.joules(opt['miss_energy_per_query_j'])} [{opt['energy_label']}; "
            "attributed by time]",
            file=out,
        )
        print(
            f"  TTFT p50 hits {_ms(opt['hit_ttft_p50_ms'])}, misses "
            f"{_ms(opt['miss_ttft_p50_ms'])}; prefix layer saved "
            f"{_pct(opt['prefix_layer']['prefill_saved'])} of prompt tokens",
            file=out,
        )
        idx = [f"{x['from_cache']}/{x['unique_chunks']}" for x in opt["index_per_run"]]
        print(f"  embedding cache hits per run (chunks): {', '.join(idx)}", file=out)
    s = rag.get("saved_per_1000_queries")
    if s:
        print(
            f"  energy saved per 1,000 queries: {units.joules(s['joules'])} "
            f"({s['verdict']}; {s['label']})",
            file=out,
        )


def spec_from_args(args: argparse.Namespace):
    from .cli_session import parse_technique
    from .rag.options import RagOptions
    from .spec import RunSpec

    opts = RagOptions(
        encoder=args.encoder,
        queries=args.queries,
        repeat_rate=args.repeat_rate,
        paraphrase_share=args.paraphrase_share,
        negative_rate=args.negative_rate,
        top_k=args.top_k,
        context_chunks=args.context_chunks,
        max_new_tokens=args.max_new_tokens,
        chunk_words=args.chunk_words,
        chunk_overlap=args.chunk_overlap,
        index=args.index,
        queries_file=args.queries_file,
    ).validate()
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


def preflight(spec) -> None:
    """Wrong paths fail here in a second, not after the idle baseline and a worker start."""
    from .errors import DataError
    from .models.hf import read_config

    spec.validate()
    for folder in (spec.model, spec.rag["encoder"]):
        if folder != "demo":
            read_config(Path(folder))
    if spec.dataset != "demo":
        p = Path(spec.dataset)
        if not p.exists():
            raise DataError(f"corpus not found: {p}")
        if not p.is_dir() and p.suffix.lower() != ".jsonl":
            raise DataError(
                f"unsupported corpus {p.name}: give a folder of .txt/.md files or a .jsonl file"
            )
    qf = spec.rag.get("queries_file")
    if qf and not Path(qf).is_file():
        raise DataError(f"queries file not found: {qf}")
    if spec.techniques:
        from .techniques.base import Target
        from .techniques.compose import resolve

        resolve(spec.techniques, Target("rag", "cpu", "hf", "causal-lm"))


def cmd_rag(args: argparse.Namespace) -> int:
    import dataclasses

    from .cli_session import Progress, carbon_from_args, run_spec_cli

    spec = spec_from_args(args)
    preflight(spec)
    store = open_store(args)
    settings = MeasureSettings(args.interval, args.idle)
    if not spec.techniques:
        result = run_spec_cli(spec, args, store)
        from .cli_session import print_session_summary

        print_session_summary(result)
        for line in rag_lines(result["session"]["rag"]):
            print(line)
        if args.out:
            from .outputs import write_run_outputs

            files = write_run_outputs(Path(args.out), result, store, "result.json")
            print("wrote " + ", ".join(str(f) for f in files))
        return 0 if result["status"] == "completed" else 130
    if args.repeats < 1:
        raise CliError(f"--repeats must be at least 1, got {args.repeats}")
    from .comparison import compare, write_reports
    from .session import SessionFailed

    carbon = carbon_from_args(args)
    carbon.resolved()
    base = dataclasses.replace(spec, techniques=())
    try:
        comp = compare(
            base,
            spec,
            store,
            settings,
            carbon,
            args.repeats,
            args.cooldown,
            on_event=Progress(),
            on_progress=lambda m: print(f"== {m}", file=sys.stderr),
        )
    except SessionFailed as exc:
        raise CliError(
            f"{exc} (run {exc.run_id} kept as failed)", EXIT_USAGE if exc.user else 1
        ) from None
    from .cli_session import print_comparison

    print_comparison(comp)
    print_rag_comparison(comp)
    if args.out:
        files = write_reports(comp, store, Path(args.out))
        print("\nreports: " + "\n         ".join(str(f) for f in files))
    return 0


def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers action type
    from .cli_session import carbon_flags

    s = sub.add_parser(
        "rag",
        help="retrieval-augmented generation over a seeded query stream; with "
        "--technique rag-cache:... baseline vs cached, interleaved",
    )
    s.add_argument("--corpus", default="demo", help="demo, a folder of .txt/.md files, or .jsonl")
    s.add_argument("--generator", default="demo", help="demo or a local causal LM folder")
    s.add_argument("--encoder", default="demo", help="demo or a local encoder folder")
    s.add_argument("--queries", type=int, default=200, help="queries in the stream")
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
