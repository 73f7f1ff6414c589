"""Cheap checks in the parent before a run starts, so a wrong path fails in a second with a
specific message instead of after the idle baseline and a worker start. The worker repeats the
full validation (it is the authority); these only catch what needs no ML imports."""

from __future__ import annotations

from pathlib import Path

from wattlab.core.errors import DataError, ModelError, SpecError
from wattlab.core.spec import RunSpec
from wattlab.core.techniques.base import Target

DATASET_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt", ".md")


def check(spec: RunSpec) -> RunSpec:
    spec.validate()
    _check_as_run(spec)
    if spec.mode == "rag":
        return _check_rag(spec)
    if spec.model != "demo":
        check_model(spec.model)
    if spec.dataset != "demo":
        d = Path(spec.dataset)
        if not d.exists():
            raise DataError(f"dataset not found: {d}")
        if d.is_dir():
            raise DataError(f"dataset is a folder, expected a file: {d}")
        if d.suffix.lower() not in DATASET_SUFFIXES:
            raise DataError(
                f"unsupported dataset format {d.suffix or '(no extension)'}: use "
                ".csv, .tsv, .jsonl or .txt"
            )
    if spec.techniques:
        _check_techniques(spec)
    if spec.sensitive_column is not None:
        _check_sensitive_column(spec, spec.sensitive_column)
    if spec.save_model is not None:
        check_save_model(spec, spec.save_model)
    return spec


def _check_as_run(spec: RunSpec) -> None:
    """The spec as the session will run it, its techniques' overrides applied (``ddp:nproc=2``
    sets nproc): what that spec refuses (inference, --save-model or --lifecycle with several
    ranks) is refused now, not after the idle baseline. One GPU's power limit does not cap the
    other ranks' GPUs, so the two are refused together."""
    from wattlab.core.run.launch import launch_spec

    run = launch_spec(spec)
    if run.nproc > 1 and any(t.get("name") == "power-limit" for t in spec.techniques):
        raise SpecError(
            f"power-limit sets one GPU's limit and the {run.nproc} ranks run on {run.nproc} "
            "GPUs; measure the power limit with one process"
        )


def check_save_model(spec: RunSpec, dest: str) -> None:
    """``--save-model DIR`` refused now, in one line, rather than after a training that cannot
    be kept: a folder WattLab must not replace, or a technique whose model a Hugging Face folder
    cannot hold. The worker asks the same again just before it writes."""
    from wattlab.core.errors import SpecError
    from wattlab.core.models.saved import destination_problem, techniques_problem
    from wattlab.core.techniques.catalog import get

    problem = destination_problem(dest, spec.model)
    if problem is None and spec.techniques:
        chosen = [
            (str(t["name"]), get(str(t["name"])).parse_params(t.get("params") or {}))
            for t in spec.techniques
        ]
        problem = techniques_problem(chosen, _model_type(spec.model))
    if problem is not None:
        raise SpecError(problem)


def _model_type(model: str) -> str | None:
    """The model_type of a Hugging Face folder's config.json (the demo is a BERT)."""
    from wattlab.core.models.config import model_kind, read_config

    if model == "demo":
        return "bert"
    if model_kind(model) != "hf":
        return None
    mt = read_config(Path(model)).get("model_type")
    return mt if isinstance(mt, str) else None


def check_model(model: str) -> None:
    """A model path the user picked: it exists, and a folder has a readable config.json. The
    app calls this when a folder is opened, so a broken one never enters Recent models."""
    if model == "demo":
        return
    p = Path(model)
    if not p.exists():
        raise ModelError(f"model path does not exist: {p}")
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise ModelError(f"{p} is not a file")
    else:
        from wattlab.core.models.config import read_config

        read_config(p)


def _check_techniques(spec: RunSpec) -> None:
    """Refuse impossible combinations now; the worker re-checks with the real device."""
    from wattlab.core.techniques.compose import resolve

    resolve(spec.techniques, target_of(spec))


def target_of(spec: RunSpec) -> Target:
    """What a technique is asked about for this spec: its mode, the device it will run on
    ("auto" is a GPU when NVML finds one) and the model's kind."""
    from wattlab.core.measure.sensors.nvml import probe_nvml

    device = spec.device
    if device == "auto":
        gpu, _ = probe_nvml()
        device = "cuda" if gpu is not None else "cpu"
        if gpu is not None:
            gpu.close()
    kind = "onnx" if spec.model.lower().endswith(".onnx") else "hf"
    return Target(spec.mode, device.split(":")[0], kind)


def _check_rag(spec: RunSpec) -> RunSpec:
    """A RAG run's generator and encoder are model folders; its corpus a folder or .jsonl."""
    from wattlab.core.models.config import read_config

    for folder in (spec.model, (spec.rag or {}).get("encoder", "demo")):
        if folder != "demo":
            if not Path(folder).exists():
                raise ModelError(f"model path does not exist: {folder}")
            read_config(Path(folder))
    if spec.dataset != "demo":
        p = Path(spec.dataset)
        if not p.exists():
            raise DataError(f"corpus not found: {p}")
        if not p.is_dir() and p.suffix.lower() != ".jsonl":
            raise DataError(
                f"unsupported corpus {p.name}: give a folder of .txt/.md files or a .jsonl file"
            )
    qf = (spec.rag or {}).get("queries_file")
    if qf and not Path(qf).is_file():
        raise DataError(f"queries file not found: {qf}")
    if spec.techniques:
        _check_techniques(spec)
    return spec


def _check_sensitive_column(spec: RunSpec, column: str) -> None:
    """A --sensitive-column the dataset lacks, or asked of a model or dataset without labels,
    fails now in one line instead of after the idle baseline (the worker checks again)."""
    import importlib.util

    from wattlab.core.errors import SpecError
    from wattlab.core.models import datasets as ds
    from wattlab.core.models.config import detect_task, model_kind, read_config

    if importlib.util.find_spec("fairlearn") is None:
        raise SpecError("--sensitive-column needs fairlearn: pip install 'fairlearn>=0.12'")
    if spec.task is None and model_kind(spec.model) == "hf":
        if detect_task(read_config(Path(spec.model)))[0] == "causal-lm":
            raise SpecError(
                f"--sensitive-column {column} needs a classifier; {Path(spec.model).name} is a "
                "causal language model, with no predicted labels to compare across groups"
            )
    if spec.dataset == "demo":
        ds.check_demo_column(column)
        return
    path = Path(spec.dataset)
    if path.suffix.lower() in (".txt", ".md"):
        raise DataError(
            f"--sensitive-column {column}: {path.name} is plain text, without columns; "
            "fairness needs a labelled .csv, .tsv or .jsonl dataset"
        )
    columns = ds.dataset_columns(path)
    if column not in columns:
        raise ds.no_sensitive_column(path.name, column, columns)
