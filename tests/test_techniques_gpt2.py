"""Every technique of this round on a tiny GPT-2 causal LM: it runs a real session (train or
infer, two optimizer steps at most) and reports what it did, or it is refused before anything
runs with a one-sentence reason. A technique that silently did nothing would fail here."""

from __future__ import annotations

import io

import pytest

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.spec import RunSpec
from wattlab.core.techniques.catalog import parse_cli

# (mode, technique) -> what a run must show: None when it must be refused on this CPU.
RUNS = {
    ("train", "distillation:student_layers=1"): "student",
    ("infer", "distillation:student_layers=1"): "student",
    ("train", "sparse-training:target=0.5"): "sparsity",
    ("train", "sparse-training:target=0.5,method=structured"): "sparsity",
    ("train", "qat:backend=ort"): "int8",
    ("infer", "qat:backend=ort"): "int8",
    ("train", "data:keep=0.5"): "kept",
    ("train", "data:keep=0.5,method=score,warmup_steps=1"): "kept",
    ("train", "grad-accum:steps=2"): "grad_accum",
    ("train", "early-stopping:patience=1"): "patience",
    ("infer", "batch-size:size=4"): "batch_size",
    ("infer", "seq-len:tokens=8"): "seq_len",
    ("train", "augment"): None,  # corrupts the text a causal LM learns to predict
    ("train", "qat:backend=torch"): None,  # GPT-2's Conv1D is not a Linear
    ("train", "power-limit:watts=200"): None,  # a GPU power limit needs an NVIDIA GPU
    ("infer", "sparse-training:target=0.5"): None,  # prunes while training only
}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2")
    return tm.gpt2(root / "gpt2"), tm.write_text_corpus(root / "c.txt", 30)


def _spec(gpt2, mode: str, technique: str) -> RunSpec:
    folder, corpus = gpt2
    return RunSpec(
        model=str(folder),
        dataset=str(corpus),
        mode=mode,
        epochs=1,
        max_steps=2,
        batch_size=4,
        seq_len=16,
        infer_batches=2,
        techniques=(parse_cli(technique),),
    )


@pytest.mark.parametrize(("mode", "technique"), list(RUNS))
def test_each_technique_runs_on_gpt2_or_is_refused_with_its_reason(gpt2, mode, technique):
    from wattlab.core.run import preflight
    from wattlab.core.worker.events import CancelToken, Emitter
    from wattlab.core.worker.runner import run_session

    expect = RUNS[(mode, technique)]
    spec = _spec(gpt2, mode, technique)
    if expect is None:
        with pytest.raises(SpecError) as err:
            preflight.check(spec)
            run_session(spec, Emitter(io.StringIO()), CancelToken())
        assert len(str(err.value).splitlines()) == 1 and len(str(err.value)) > 20
        return
    preflight.check(spec)
    result = run_session(spec, Emitter(io.StringIO()), CancelToken())
    (applied,) = result["techniques"]
    assert applied["name"] == technique.split(":")[0]
    said = (applied["description"] + " " + str(applied["details"])).lower()
    assert expect in said, said
    metrics = result.get("metrics") or {}
    assert metrics.get("perplexity") is not None and metrics["perplexity"] > 1
