"""Early exit: heads change where confident samples leave; calibration respects the tolerance on
the held-out split; the batch really shrinks; refusals are explained."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.models.hf import load_hf_folder
from wattlab.core.techniques.base import Target
from wattlab.core.techniques.catalog import parse_cli
from wattlab.core.techniques.compose import resolve
from wattlab.core.worker.techniques.catalog import implementation
from wattlab.core.worker.techniques.context import TechniqueContext
from wattlab.core.worker.techniques.early_exit import EarlyExitModel, calibrate, simulate


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import io

    from wattlab.core.spec import RunSpec
    from wattlab.core.worker.events import CancelToken, Emitter
    from wattlab.core.worker.prepared import PreparedData, TrainSettings
    from wattlab.core.worker.train import train

    root = tmp_path_factory.mktemp("ee")
    folder = tm.bert_classifier(root / "bert")
    lm = load_hf_folder(folder, None, 2, for_training=True)
    rows = tm.sentences(240)
    ids = lm.tokenizer([t for t, _ in rows], truncation=True, max_length=16)["input_ids"]
    y = [1 if lab == "pos" else 0 for _, lab in rows]
    # Early exit is for trained classifiers: a random backbone gives its exits nothing to read.
    data = PreparedData(
        task="classify",
        train_ids=ids,
        eval_ids=ids[200:],
        train_labels=y,
        eval_labels=y[200:],
        pad_id=lm.tokenizer.pad_token_id,
        num_labels=2,
        source="tiny sentences",
    )
    spec = RunSpec(mode="train", epochs=8, batch_size=16, learning_rate=3e-3)
    settings = TrainSettings.from_spec(spec, torch.device("cpu"))
    train(lm.model, data, settings, Emitter(io.StringIO()), CancelToken())
    lm.model.eval()
    lm.model.save_pretrained(folder)  # the reference model below is the trained one
    return lm, ids, y, RunSpec(mode="infer", batch_size=16)


def make_ctx(lm, ids, y, spec):
    ctx = TechniqueContext(
        lm,
        spec,
        torch.device("cpu"),
        "classify",
        lm.tokenizer.pad_token_id,
        ids[:200],
        Path(tempfile.mkdtemp()),
        lambda m: None,
    )
    ctx.calib_labels, ctx.eval_ids, ctx.eval_labels = y[:200], ids[200:], y[200:]
    return ctx


def test_trained_heads_let_confident_samples_leave_early(setup):
    lm, ids, y, spec = setup
    tech = implementation("early-exit")
    ctx = make_ctx(lm, ids, y, spec)
    app = tech.apply(ctx, tech.parse_params({"threshold": "0.6", "head_epochs": "15"}))
    w = ctx.loaded.model
    assert isinstance(w, EarlyExitModel) and app.details["heads"].startswith("trained")
    assert app.details["head_losses"][-1] < app.details["head_losses"][0]
    x, m = (torch.tensor(a) for a in _collate(ids[200:], lm.tokenizer.pad_token_id))
    w.reset_stats()
    with torch.inference_mode():
        out = w(input_ids=x, attention_mask=m)
    assert out.logits.shape == (40, 2)
    hist = w.stats()["exit_histogram"]
    assert sum(hist) == 40 and hist[0] > 0  # trained heads: some samples leave at layer 1
    # a threshold above any confidence: everyone runs every layer
    w.threshold = 1.01
    w.reset_stats()
    with torch.inference_mode():
        full = w(input_ids=x, attention_mask=m).logits
    assert w.stats()["exit_histogram"] == [0, 40]
    ref = lm_reference(setup)(x, m)
    assert torch.allclose(full, ref, atol=1e-5)  # the last exit is the model's own classifier
    assert {"curve", "calibration"} <= set(app.details)


def lm_reference(setup):
    folder_model = load_hf_folder(Path(setup[0].folder), None, 2).model.eval()

    def f(x, m):
        with torch.inference_mode():
            return folder_model(input_ids=x, attention_mask=m).logits

    return f


def _collate(ids, pad):
    from wattlab.core.worker.batching import collate

    return collate(ids, pad)


def test_calibration_respects_tolerance_on_held_out_split():
    rng = np.random.default_rng(0)
    n, layers = 400, 4
    y = rng.integers(0, 2, n)
    probs = np.zeros((layers, n, 2))
    for i in range(layers):  # deeper layers are more often right and more confident
        right = rng.random(n) < 0.6 + 0.1 * i
        conf = 0.55 + 0.1 * i + 0.05 * rng.random(n)
        pred = np.where(right, y, 1 - y)
        probs[i, np.arange(n), pred] = conf
        probs[i, np.arange(n), 1 - pred] = 1 - conf
    full = float((probs[-1].argmax(-1) == y).mean())
    for tol in (0.0, 0.01, 0.05):
        t, table = calibrate(probs, y, "maxprob", tol)
        acc, layers_run = simulate(probs, y, t, "maxprob")
        assert acc >= full - tol - 1e-12
        # no other threshold in the table saves more layers within the tolerance
        ok = [r for r in table if r["accuracy"] >= full - tol - 1e-12]
        assert layers_run == min(r["mean_layers"] for r in ok)


@pytest.mark.parametrize(
    "specs,target,needle",
    [
        (
            ["early-exit", "quantization:backend=ort"],
            Target("infer", "cpu", "hf"),
            "layer by layer",
        ),
        (["early-exit"], Target("infer", "cpu", "onnx"), "needs the PyTorch model"),
        (["early-exit"], Target("infer", "cpu", "hf", "causal-lm", "gpt2"), "for classifiers"),
        (["early-exit"], Target("train", "cpu", "hf"), "choose inference mode"),
    ],
)
def test_refusals(specs, target, needle):
    with pytest.raises(SpecError, match=needle):
        resolve([parse_cli(s) for s in specs], target)


def test_worker_reports_exit_histogram_for_the_measured_phase(tmp_path):
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner
    from wattlab.core.spec import RunSpec

    folder = tm.bert_classifier(tmp_path / "bert")
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(200))
    spec = RunSpec(
        model=str(folder),
        dataset=str(data),
        batch_size=8,
        seq_len=16,
        infer_batches=5,
        techniques=(parse_cli("early-exit:threshold=0.5"),),
    )
    one_pass = MeasureSettings(0.05, 0.1, min_measure_s=0.0)  # exactly the 5 batches asked for
    r = SessionRunner(spec, RunStore(tmp_path / "w.db"), one_pass).run()
    ee = r["session"]["early_exit"]
    assert ee["items"] == 40 and sum(ee["exit_histogram"]) == 40  # measured batches only
    assert 1 <= ee["mean_layers"] <= 2 and ee["theoretical_speedup"] >= 1


def test_early_exit_runs_on_a_torch_int8_backbone(tmp_path):
    """PyTorch's dynamic int8 Linear keeps packed parameters (a tuple) in its state_dict: the
    exit heads' cache key hashes them too instead of crashing on them."""
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner
    from wattlab.core.spec import RunSpec

    folder = tm.bert_classifier(tmp_path / "bert")
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(200))
    spec = RunSpec(
        model=str(folder),
        dataset=str(data),
        batch_size=8,
        seq_len=16,
        infer_batches=3,
        techniques=(
            parse_cli("quantization:backend=torch"),
            parse_cli("early-exit:threshold=0.5"),
        ),
    )
    one_pass = MeasureSettings(0.05, 0.1, min_measure_s=0.0)  # exactly the 3 batches asked for
    r = SessionRunner(spec, RunStore(tmp_path / "w.db"), one_pass).run()
    assert r["status"] == "completed"
    assert sum(r["session"]["early_exit"]["exit_histogram"]) == 24
