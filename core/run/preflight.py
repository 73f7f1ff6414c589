"""Cheap checks in the parent before a run starts, so a wrong path fails in a second with a
specific message instead of after the idle baseline and a worker start. The worker repeats the
full validation (it is the authority); these only catch what needs no ML imports."""

from __future__ import annotations

from pathlib import Path

from wattlab.core.errors import DataError, ModelError
from wattlab.core.spec import RunSpec

DATASET_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt", ".md")


def check(spec: RunSpec) -> RunSpec:
    spec.validate()
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
    return spec


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
    from wattlab.core.measure.sensors.nvml import probe_nvml
    from wattlab.core.techniques.base import Target
    from wattlab.core.techniques.compose import resolve

    device = spec.device
    if device == "auto":
        gpu, _ = probe_nvml()
        device = "cuda" if gpu is not None else "cpu"
        if gpu is not None:
            gpu.close()
    kind = "onnx" if spec.model.lower().endswith(".onnx") else "hf"
    resolve(spec.techniques, Target(spec.mode, device.split(":")[0], kind))


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
