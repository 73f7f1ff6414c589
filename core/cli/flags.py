"""Flags shared by the session and RAG commands (argparse parents), and turning them into
core objects: the techniques, the carbon settings, the verdict margin."""

from __future__ import annotations

import argparse

from wattlab.core.errors import SpecError
from wattlab.core.spec import RANGES, NumberRange

DEFAULT_MARGIN_PCT = 3.0

# Every numeric flag of every command (argparse dest -> its range), checked in one pass before
# anything runs or is stored. The shared ranges come from spec.RANGES, so a flag, the settings
# file and the GUI refuse the same values. tests/test_hardening_cli.py fails when a numeric
# flag is added without an entry here.
FLAG_RANGES: dict[str, NumberRange] = {
    "interval": RANGES["interval_s"],
    "idle": RANGES["idle_s"],
    "cooldown": RANGES["cooldown_s"],
    "min_measure": RANGES["min_measure_s"],
    "margin": RANGES["margin_pct"],
    "repeats": RANGES["repeats"],
    "quality_target": RANGES["quality_target"],
    "carbon_intensity": RANGES["intensity_g_per_kwh"],
    "pue": RANGES["pue"],
    "price": RANGES["price_per_kwh"],
    "epochs": RANGES["epochs"],
    "max_steps": RANGES["max_steps"],
    "batch_size": RANGES["batch_size"],
    "lr": RANGES["learning_rate"],
    "grad_accum": RANGES["grad_accum"],
    "patience": RANGES["patience"],
    "seq_len": RANGES["seq_len"],
    "seed": RANGES["seed"],
    "eval_fraction": RANGES["eval_fraction"],
    "warmup_batches": RANGES["warmup_batches"],
    "infer_batches": RANGES["infer_batches"],
    "threads": RANGES["threads"],
    "nproc": RANGES["nproc"],
    **{
        name: RANGES[name]
        for name in (
            "queries",
            "repeat_rate",
            "paraphrase_share",
            "negative_rate",
            "top_k",
            "context_chunks",
            "max_new_tokens",
            "chunk_words",
            "chunk_overlap",
        )
    },
    "limit": NumberRange("number of runs (--limit)", 1, 1_000_000, integer=True),
    "max_accuracy_loss": NumberRange(
        "accuracy budget (--max-accuracy-loss)", 0, 100, unit=" points"
    ),
    "max_fairness_gap": NumberRange(
        "group-gap budget (--max-fairness-gap)", 0, 100, unit=" points"
    ),
    "resume": NumberRange("sweep id (--resume)", 1, 2**62, integer=True),
    "deploy_queries": NumberRange("deployed queries (--deploy-queries)", 1, 10**15, integer=True),
}


def check_number_flags(args: argparse.Namespace) -> None:
    """Refuse the first numeric flag outside its range, naming the flag, before anything runs.
    Flags not given (None) are skipped: their defaults are in range, and values taken from the
    settings file were checked against the same ranges when it was read."""
    for dest, rng in FLAG_RANGES.items():
        value = getattr(args, dest, None)
        msg = None if value is None else rng.problem(value)
        if msg is not None:
            flag = "--" + dest.replace("_", "-")
            raise SpecError(msg if flag in msg else f"{flag}: {msg}")


def parse_technique(text: str) -> dict:
    from wattlab.core.techniques.catalog import parse_cli

    return parse_cli(text)


def carbon_from_args(args: argparse.Namespace):
    from wattlab.core.measure.carbon import CarbonSettings

    return CarbonSettings(args.region, args.carbon_intensity, args.pue, args.price, args.currency)


def _margin_pct(args: argparse.Namespace) -> float:
    margin = getattr(args, "margin", None)
    return DEFAULT_MARGIN_PCT if margin is None else margin


# -- parsers -------------------------------------------------------------------------------------
def session_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", default="demo", help="demo, a Hugging Face folder or a .onnx file")
    s.add_argument("--dataset", default="demo", help="demo or a .csv/.tsv/.jsonl/.txt file")
    s.add_argument(
        "--mode", choices=["train", "infer"], help="train or infer (default: infer)"
    )  # None when not given: --lifecycle tells an explicit --mode infer from the default
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
    s.add_argument(
        "--sensitive-column",
        metavar="COL",
        help="a column of the dataset (e.g. a demographic attribute; the demo dataset has "
        "'group'): report accuracy per group, demographic parity and equalized-odds "
        "differences and disparate impact on the eval items (classification only)",
    )
    s.add_argument("--threads", type=int, help="torch/ORT intra-op threads")
    s.add_argument(
        "--nproc",
        type=int,
        help="training: N ranks of distributed data-parallel training (torchrun; gloo on CPU, "
        "one GPU per rank with NCCL), each with cores/N threads unless --threads is given "
        "(default 1: one process)",
    )
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
