"""The Hugging Face callback: a tiny Trainer's training measured as a tracked run, with a phase
per epoch, items per step, and the energy so far in every log."""

from __future__ import annotations

import pytest

from tests.tiny_models import bert_classifier, sentences
from wattlab.core.measure.store import RunStore

# No process is started, but importing transformers and building a Trainer takes seconds on two
# cores: kept out of the fast tier (`make test-fast`) with the process-starting tests.
pytestmark = pytest.mark.e2e


class Recorder:
    """Stands in for a reporting callback (TensorBoard, W&B): keeps what each log said."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *a, **kw: None
        raise AttributeError(name)

    def on_log(self, args, state, control, logs=None, **kw):
        self.logs.append(dict(logs or {}))


def _trainer(tmp_path, recorder: Recorder):
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    folder = bert_classifier(tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    rows = sentences(16)
    enc = tok([t for t, _ in rows], padding="max_length", max_length=12, truncation=True)
    data = [
        {
            "input_ids": torch.tensor(enc["input_ids"][i]),
            "attention_mask": torch.tensor(enc["attention_mask"][i]),
            "labels": torch.tensor(1 if lab == "pos" else 0),
        }
        for i, (_, lab) in enumerate(rows)
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        num_train_epochs=2,
        logging_steps=2,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return Trainer(
        model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[recorder]
    )


def test_trainer_logs_get_energy_and_the_run_is_stored_with_its_epochs(tmp_path):
    from wattlab.integrations.hf import EPOCH_END_PHASE, WattLabCallback

    recorder = Recorder()
    trainer = _trainer(tmp_path, recorder)
    cb = WattLabCallback.install(trainer, label="tiny bert", interval_s=0.05, idle_s=0.2)
    assert trainer.callback_handler.callbacks[0] is cb
    trainer.train()

    r = cb.result
    assert r is not None and r["status"] == "completed"
    # 16 sentences, batch 4, 2 epochs: 8 steps of 4 items, each epoch its own phase
    mk = r["markers"]
    assert (mk["steps"], mk["items"]) == (8, 32)
    assert mk["phases"] == ["tracked", "epoch 1", EPOCH_END_PHASE, "epoch 2"]
    for epoch in ("epoch 1", "epoch 2"):
        assert r["phase_energy"][epoch]["gross_j"] > 0 and r["phase_energy"][epoch]["items"] == 16
    assert r["measured_phase"]["phases"] == ["epoch 1", "epoch 2"]
    assert r["energy_per_item_j"] == pytest.approx(r["measured_phase"]["gross_j"] / 32)
    # the energy so far reached the logs the reporters see, and the Trainer's own history
    energies = [log["energy_j"] for log in recorder.logs if "energy_j" in log]
    assert len(energies) >= 4 and energies == sorted(energies) and energies[0] > 0
    assert all("energy_per_item_j" in log for log in recorder.logs if "loss" in log)
    assert sum("energy_j" in h for h in trainer.state.log_history) == len(energies)
    # stored, listed, with its phases
    store = RunStore.open_default()
    row = store.run(r["run_id"])
    assert (row.kind, row.status, row.label) == ("track", "completed", "tiny bert")
    assert {"epoch 1", "epoch 2"} <= set(store.result(r["run_id"])["phases"])
