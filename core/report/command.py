"""A stored run as the ``wattlab`` command that repeats it: "Copy as CLI command" in the app.

Every field of the stored spec is written out, defaults included: a default that changes in a
later version (the demo's recipe, say) must not change what the copied command runs. Flag names
are those of core/cli (flags.py ``session_flags``, session.py ``compare``, rag.py, main.py
``profile``); tests/test_runs_table.py parses each command back with the real parser and checks
the spec that comes out equals the stored one, so a renamed flag fails there. This module does
not import core/cli (the CLI imports report/, and core's packages must not import in a cycle).

Not reproduced, because the store does not keep them as given: ``--quality-target`` (training
comparisons fill it in from what every run reached), ``--out`` and ``--data-dir``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

# RunSpec field -> flag of `wattlab run` / `wattlab compare` (session_flags), in the order the
# flags are written.
SESSION_FLAGS: tuple[tuple[str, str], ...] = (
    ("model", "--model"),
    ("dataset", "--dataset"),
    ("mode", "--mode"),
    ("task", "--task"),
    ("epochs", "--epochs"),
    ("max_steps", "--max-steps"),
    ("batch_size", "--batch-size"),
    ("learning_rate", "--lr"),
    ("grad_accum", "--grad-accum"),
    ("patience", "--patience"),
    ("seq_len", "--seq-len"),
    ("device", "--device"),
    ("seed", "--seed"),
    ("eval_fraction", "--eval-fraction"),
    ("warmup_batches", "--warmup-batches"),
    ("infer_batches", "--infer-batches"),
    ("text_column", "--text-column"),
    ("label_column", "--label-column"),
    ("sensitive_column", "--sensitive-column"),
    ("threads", "--threads"),
    ("nproc", "--nproc"),
)
# RunSpec field -> flag of `wattlab rag` (the generator is the model, the corpus the dataset).
RAG_SPEC_FLAGS: tuple[tuple[str, str], ...] = (
    ("dataset", "--corpus"),
    ("model", "--generator"),
    ("device", "--device"),
    ("seed", "--seed"),
    ("threads", "--threads"),
)
# RagOptions field -> flag of `wattlab rag`.
RAG_OPTION_FLAGS: tuple[tuple[str, str], ...] = (
    ("encoder", "--encoder"),
    ("queries", "--queries"),
    ("repeat_rate", "--repeat-rate"),
    ("paraphrase_share", "--paraphrase-share"),
    ("negative_rate", "--negative-rate"),
    ("queries_file", "--queries-file"),
    ("top_k", "--top-k"),
    ("context_chunks", "--context-chunks"),
    ("max_new_tokens", "--max-new-tokens"),
    ("chunk_words", "--chunk-words"),
    ("chunk_overlap", "--chunk-overlap"),
    ("index", "--index"),
)
# CarbonSettings as stored in a comparison (``carbon``) -> flag of `compare` and `rag`.
CARBON_FLAGS: tuple[tuple[str, str], ...] = (
    ("region", "--region"),
    ("intensity_g_per_kwh", "--carbon-intensity"),
    ("pue", "--pue"),
    ("price_per_kwh", "--price"),
    ("currency", "--currency"),
)


class CommandError(ValueError):
    """A stored run no ``wattlab`` command can repeat (said to the user as it is)."""


def command_for(kind: str, spec: dict[str, Any], result: dict[str, Any] | None = None) -> str:
    """The shell command (POSIX quoting) that repeats a stored run of ``kind`` with ``spec``;
    ``result``, when stored, adds how it was measured (sampling, cool-down, margin, carbon)."""
    return shlex.join(argv_for(kind, spec, result))


def argv_for(kind: str, spec: dict[str, Any], result: dict[str, Any] | None = None) -> list[str]:
    """``command_for`` as an argument list (``wattlab`` first)."""
    if kind == "comparison":
        return compare_argv(spec, result)
    if kind == "profile":
        return profile_argv(spec)
    if kind == "session":
        return session_argv(spec, (result or {}).get("sampling"))
    raise CommandError(f"a {kind} run has no wattlab command")


def session_argv(spec: dict[str, Any], sampling: dict[str, Any] | None = None) -> list[str]:
    """``wattlab run`` (or ``wattlab rag`` for a RAG session) for one session's spec."""
    if spec.get("mode") == "rag":
        return ["wattlab", "rag", *_rag_flags(spec), *_sampling_flags(sampling)]
    argv = ["wattlab", "run", *_session_flags(spec)]
    argv += _flag("--save-model", spec.get("save_model"))  # `run` only, not `compare`
    argv += _sampling_flags(sampling)
    argv += _flag("--min-measure", spec.get("min_measure_s"))  # filled in by the parent
    return argv


def compare_argv(spec: dict[str, Any], result: dict[str, Any] | None = None) -> list[str]:
    """``wattlab compare`` (``wattlab rag`` for RAG) for a stored comparison: the optimized
    side's spec with its techniques (``--optimized none`` for an A/A check), the repeats, and,
    from the result, how it was measured and judged."""
    base, opt = spec.get("baseline"), spec.get("optimized")
    if not isinstance(base, dict) or not isinstance(opt, dict):
        raise CommandError("this comparison's stored spec has no baseline and optimized sides")
    _check_same_but_techniques(base, opt)
    res = result or {}
    rag = opt.get("mode") == "rag"
    if rag:
        if not opt.get("techniques"):
            raise CommandError("wattlab rag compares only with a technique (rag-cache:...)")
        argv = ["wattlab", "rag", *_rag_flags(opt)]
    else:
        argv = ["wattlab", "compare", *_session_flags(opt)]
        if not opt.get("techniques"):
            argv += ["--optimized", "none"]
    argv += _flag("--repeats", spec.get("repeats", res.get("repeats")))
    argv += _flag("--cooldown", res.get("cooldown_s"))
    argv += _sampling_flags(res.get("sampling"))
    if not rag:
        argv += _flag("--min-measure", (res.get("sampling") or {}).get("min_measure_s"))
        margin = (res.get("statistics") or {}).get("margin")
        argv += _flag("--margin", None if margin is None else round(margin * 100, 9))
        if any(isinstance(r, dict) and r.get("rerun_of_pair") is not None for r in _per_run(res)):
            argv.append("--rerun-disturbed")
        if opt.get("lifecycle"):
            argv.append("--lifecycle")
            argv += _flag("--deploy-queries", (res.get("lifecycle") or {}).get("deploy_queries"))
    carbon = res.get("carbon") or {}
    for key, flag in CARBON_FLAGS:
        argv += _flag(flag, carbon.get(key))
    return argv


def profile_argv(spec: dict[str, Any]) -> list[str]:
    """``wattlab profile`` for a profiled command."""
    cmd = spec.get("command")
    if not isinstance(cmd, list) or not cmd:
        raise CommandError("this profile run's stored spec names no command")
    argv = ["wattlab", "profile"]
    argv += _flag("--interval", spec.get("interval_s"))
    argv += _flag("--idle", spec.get("idle_s"))
    return [*argv, "--", *(str(c) for c in cmd)]


def technique_arg(t: dict[str, Any]) -> str:
    """One technique as ``--technique`` takes it: ``name:key=value,key=value``. A list value
    joins with "+" (the parser splits on it as on ","); a bool is true/false."""
    params = t.get("params") or {}
    parts = [f"{k}={_param_text(k, v, t.get('name'))}" for k, v in params.items()]
    return f"{t.get('name')}:{','.join(parts)}" if parts else str(t.get("name"))


def techniques_text(techniques: Iterable[dict[str, Any]]) -> str:
    """Techniques with their parameters, short, as the runs table shows them ("" for none)."""
    return " ".join(technique_arg(t) for t in techniques if isinstance(t, dict))


# -- pieces --------------------------------------------------------------------------------------
def _session_flags(spec: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, flag in SESSION_FLAGS:
        value = spec.get(key)
        if key == "nproc" and value == 1:
            continue  # one process is what no flag means
        argv += _flag(flag, value)
    argv += _flag("--label", spec.get("label"))
    for t in spec.get("techniques") or ():
        argv += ["--technique", technique_arg(t)]
    return argv


def _rag_flags(spec: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, flag in RAG_SPEC_FLAGS:
        argv += _flag(flag, spec.get(key))
    options = spec.get("rag") or {}
    for key, flag in RAG_OPTION_FLAGS:
        argv += _flag(flag, options.get(key))
    argv += _flag("--label", spec.get("label"))
    for t in spec.get("techniques") or ():
        argv += ["--technique", technique_arg(t)]
    return argv


def _sampling_flags(sampling: dict[str, Any] | None) -> list[str]:
    s = sampling or {}
    return _flag("--interval", s.get("interval_s")) + _flag("--idle", s.get("idle_s"))


def _flag(flag: str, value: object) -> list[str]:
    """``[flag, value]``, nothing for None; ``flag=value`` when the value starts with "-" (as a
    separate word argparse would take it for a flag)."""
    if value is None:
        return []
    text = _value_text(value)
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]


def _value_text(value: object) -> str:
    """A number as the shortest text that reads back as the same number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _param_text(key: str, value: object, technique: object) -> str:
    if isinstance(value, (list, tuple)):
        text = "+".join(_value_text(v) for v in value)
    else:
        text = _value_text(value)
    if "," in text or "=" in text:
        raise CommandError(
            f"{technique}: {key}={text!r} cannot be written as --technique (it holds , or =)"
        )
    return text


def _check_same_but_techniques(base: dict[str, Any], opt: dict[str, Any]) -> None:
    """``compare`` takes one spec for both sides: a stored pair that differs elsewhere (never
    stored by WattLab itself) has no command."""
    ignore = ("techniques", "label", "min_measure_s", "sensor_update_s")
    diff = sorted(k for k in {*base, *opt} - set(ignore) if base.get(k) != opt.get(k))
    if diff:
        raise CommandError(
            f"baseline and optimized differ in {', '.join(diff)}: no single command repeats it"
        )


def _per_run(result: dict[str, Any]) -> list[Any]:
    per_run = result.get("per_run")
    return per_run if isinstance(per_run, list) else []
