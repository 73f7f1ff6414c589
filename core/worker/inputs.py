"""A session's inputs inside the worker: the model (demo, Hugging Face folder or ONNX file), the
dataset, and the tokenised splits the loops read (``PreparedData``), built once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattlab.core.errors import DataError, ModelError, SpecError
from wattlab.core.models import datasets as ds
from wattlab.core.models.config import model_kind
from wattlab.core.models.loaded import LoadedModel, Task
from wattlab.core.spec import RunSpec, demo_cache_folder
from wattlab.core.worker.batching import encode, lm_blocks
from wattlab.core.worker.events import Emitter
from wattlab.core.worker.prepared import PreparedData

RawData = ds.ClassificationData | ds.TextData


def as_task(name: str) -> Task:
    """``name`` as a task; RunSpec.validate and detection only ever give these two."""
    if name == "classify":
        return "classify"
    if name == "causal-lm":
        return "causal-lm"
    raise ValueError(f"unknown task {name!r}")


def detect_task(spec: RunSpec) -> Task | None:
    """The session's task from the spec or the model's config; None for an ONNX file, whose
    task is known only once it is loaded."""
    kind = model_kind(spec.model)
    if spec.task:
        return as_task(spec.task)
    if kind == "demo":
        return "classify"
    if kind == "hf":
        from wattlab.core.models.config import detect_task as detect_hf_task
        from wattlab.core.models.hf import read_config

        return detect_hf_task(read_config(Path(spec.model)))[0]
    return None


def _check_sensitive_column(spec: RunSpec, task: str) -> None:
    """Fairness needs a classifier's predicted labels and fairlearn; refuse before any work
    (preflight says the same when it can see the model; an ONNX file's task is known here)."""
    if spec.sensitive_column is None:
        return
    if task == "causal-lm":
        raise SpecError(
            f"--sensitive-column {spec.sensitive_column} needs a classifier: fairness across "
            "groups compares predicted labels, and this model is a causal language model"
        )
    import importlib.util

    if importlib.util.find_spec("fairlearn") is None:
        raise SpecError("--sensitive-column needs fairlearn: pip install 'fairlearn>=0.12'")


def load_data(spec: RunSpec, task: str) -> RawData:
    _check_sensitive_column(spec, task)
    if spec.dataset == "demo":
        if task == "causal-lm":
            raise DataError(
                "the demo dataset is for classification; give a causal LM a .txt or "
                ".jsonl text file with --dataset"
            )
        from wattlab.core.models.demo import demo_definition

        d = demo_definition()["data"]
        return ds.load_demo(
            d["n"], d["seed"], spec.eval_fraction, sensitive_column=spec.sensitive_column
        )
    path = Path(spec.dataset)
    if task == "causal-lm":
        return ds.load_text(path, spec.text_column, spec.eval_fraction, spec.seed)
    return ds.load_classification(
        path,
        spec.text_column,
        spec.label_column,
        spec.eval_fraction,
        spec.seed,
        sensitive_column=spec.sensitive_column,
    )


def _untrained_demo(data: RawData | None) -> LoadedModel:
    """A fresh demo classifier over the training split's vocabulary, to be trained now."""
    from wattlab.core.models.demo import build_untrained

    if not isinstance(data, ds.ClassificationData):
        raise ModelError("the demo model is a classifier: give it a labelled dataset")
    model, tok, notes = build_untrained(data.train_texts, data.label_names)
    return LoadedModel(
        kind="hf",
        task="classify",
        tokenizer=tok,
        source="demo",
        size_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        num_params=sum(p.numel() for p in model.parameters()),
        model=model,
        label_names=data.label_names,
        notes=notes,
    )


def _cached_demo(spec: RunSpec, names: list[str] | None) -> LoadedModel:
    """The demo's weights trained earlier on this machine (refused when there are none)."""
    from wattlab.core.models.demo import is_cached
    from wattlab.core.models.hf import load_hf_folder

    folder = demo_cache_folder(spec)
    if not is_cached(folder):
        raise ModelError(
            "the demo model has not been trained yet on this machine: run "
            "`wattlab run --model demo --mode train` first"
        )
    loaded = load_hf_folder(folder, "classify", len(names) if names else None, names)
    loaded.source = f"demo (cached weights in {folder})"
    return loaded


def load_model(
    spec: RunSpec, task: Task, data: RawData | None, dev: Any, emit: Emitter
) -> LoadedModel:
    """The session's model, checked against the spec's sequence length (and, for an ONNX
    graph, its batch size) before any batch is built."""
    loaded = _load_model(spec, task, data, dev)
    check_fits(spec, loaded)
    return loaded


def check_fits(spec: RunSpec, loaded: LoadedModel) -> None:
    """Refuse a ``--seq-len`` beyond the model's position limit (it would index past the
    position table mid-run) and ONNX inputs with fixed shapes WattLab's batches cannot meet."""
    limit = _position_limit(loaded)
    if limit is not None and spec.seq_len > limit[0]:
        raise SpecError(
            f"--seq-len {spec.seq_len} is above the model's limit of {limit[0]} positions "
            f"({limit[1]} in its config.json): use --seq-len {limit[0]} or less"
        )
    if loaded.kind == "onnx" and loaded.session is not None:
        from wattlab.core.models.onnx_model import check_input_shapes

        check_input_shapes(loaded, spec.batch_size, spec.seq_len)


def _position_limit(loaded: LoadedModel) -> tuple[int, str] | None:
    """(positions, the config field naming them) of a torch model's config, or of the
    config.json beside an ONNX file; None when neither names a limit."""
    from wattlab.core.models.config import position_limit

    if loaded.model is not None and hasattr(loaded.model, "config"):
        return position_limit(loaded.model.config.to_dict())
    if loaded.kind == "onnx":
        from wattlab.core.models.onnx_model import sidecar_config

        cfg = sidecar_config(Path(loaded.source))
        return position_limit(cfg) if cfg else None
    return None


def _load_model(spec: RunSpec, task: Task, data: RawData | None, dev: Any) -> LoadedModel:
    """The model the spec names, built for ``task`` and the data's labels."""
    kind = model_kind(spec.model)
    names = getattr(data, "label_names", None)
    if kind == "onnx":
        from wattlab.core.models.onnx_model import load_onnx

        spec_task = as_task(spec.task) if spec.task else None
        return load_onnx(Path(spec.model), dev.type, spec_task, spec.threads)
    if kind == "hf":
        from wattlab.core.models.hf import load_hf_folder

        n = len(names) if names else None
        return load_hf_folder(Path(spec.model), task, n, names, for_training=spec.mode == "train")
    if spec.mode == "train":
        return _untrained_demo(data)
    return _cached_demo(spec, names)


def load_model_and_data(
    spec: RunSpec, dev: Any, emit: Emitter
) -> tuple[LoadedModel, RawData, Task]:
    """Both, and the session's task, in the order the task allows: an ONNX file says its task
    only once loaded; every other model is built for the data (its label count, the demo's
    vocabulary)."""
    task = detect_task(spec)
    if task is None:
        loaded = load_model(spec, "classify", None, dev, emit)
        return loaded, load_data(spec, loaded.task), loaded.task
    data = load_data(spec, task)
    return load_model(spec, task, data, dev, emit), data, task


def _align_labels(loaded: LoadedModel, data: ds.ClassificationData, mode: str) -> None:
    """Make dataset label ids mean what the model's outputs mean, by label name."""
    m = loaded.label_names
    if mode != "infer" or not m or m == data.label_names:
        return
    if sorted(m) == sorted(data.label_names):
        remap = {i: m.index(name) for i, name in enumerate(data.label_names)}
        data.train_labels = [remap[x] for x in data.train_labels]
        data.eval_labels = [remap[x] for x in data.eval_labels]
        data.label_names = list(m)
    elif len(m) != len(data.label_names):
        raise ModelError(
            f"the model classifies into {len(m)} labels but the dataset has "
            f"{len(data.label_names)} classes"
        )


def _nonempty(ids: list[list[int]], split: str, data: ds.ClassificationData) -> list[list[int]]:
    """Refuse texts that give no token at all (an empty text column): a batch of them has no
    length, and the model cannot run on it."""
    empty = sum(1 for x in ids if not x)
    if empty:
        raise DataError(
            f"{empty} of {len(ids)} texts in the {split} split of {data.source} give no token "
            "(empty text): fill or remove those rows, or choose the text column with --text-column"
        )
    return ids


def prepare_data(spec: RunSpec, loaded: LoadedModel, data: RawData, task: str) -> PreparedData:
    """Tokenise both splits for ``task``: classifier texts truncated to seq_len with labels
    aligned to the model's, or LM text cut into seq_len blocks."""
    tok = loaded.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    if task == "classify":
        if not isinstance(data, ds.ClassificationData):
            raise DataError("classification needs a labelled dataset")
        _align_labels(loaded, data, spec.mode)
        train_ids = _nonempty(encode(tok, data.train_texts, spec.seq_len), "training", data)
        eval_ids = _nonempty(encode(tok, data.eval_texts, spec.seq_len), "evaluation", data)
        return PreparedData(
            task=task,
            train_ids=train_ids,
            eval_ids=eval_ids,
            train_labels=data.train_labels,
            eval_labels=data.eval_labels,
            pad_id=pad_id,
            num_labels=data.num_labels,
            source=data.source,
            label_names=data.label_names,
            eval_groups=data.eval_groups,
            sensitive_column=spec.sensitive_column if data.eval_groups is not None else None,
        )
    train_ids = lm_blocks(tok, data.train_texts, spec.seq_len)
    eval_ids = lm_blocks(tok, data.eval_texts, spec.seq_len)
    if not eval_ids:
        raise DataError("the evaluation split has no text after tokenisation")
    return PreparedData(
        task=task,
        train_ids=train_ids,
        eval_ids=eval_ids,
        train_labels=None,
        eval_labels=None,
        pad_id=pad_id,
        num_labels=0,
        source=data.source,
        label_names=getattr(data, "label_names", None),
    )
