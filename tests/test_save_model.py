"""`wattlab run --mode train --save-model DIR`: the trained model kept as a Hugging Face folder
that `--model DIR` measures with the fine-tuned accuracy; every bad destination refused in one
line before anything is measured; nothing half-written left behind; what each technique saves.

The e2e tests run the CLI (a worker each); the rest call core in-process, without torch.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.fileio import current_umask
from wattlab.core.models.saved import MARKER, OLD_PREFIX, SAVE_PREFIX
from wattlab.core.run import preflight
from wattlab.core.spec import RunSpec, build_spec
from wattlab.core.worker.events import CancelToken, Emitter

WATTLAB = [sys.executable, "-m", "wattlab.core.cli.main"]
# Quick measuring (no idle baseline, 0.5 s minimum) and a training that learns in one epoch.
FAST = ["--idle", "0", "--min-measure", "0.5", "--batch-size", "16", "--seq-len", "16"]
TRAIN = ["--mode", "train", "--epochs", "1", "--lr", "0.02", *FAST]


def wl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*WATTLAB, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("save-model")
    return {
        "bert": tm.bert_classifier(root / "bert"),
        "data": tm.write_csv(root / "reviews.csv", tm.sentences(240)),
    }


def one_line_exit_2(r: subprocess.CompletedProcess, needle: str) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def no_leftovers(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith((SAVE_PREFIX, OLD_PREFIX))]
    assert left == []


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_trained_model_is_saved_and_infers_with_the_fine_tuned_accuracy(assets, tmp_path):
    from safetensors.torch import load_file

    dest, out = tmp_path / "kept" / "fine-tuned", tmp_path / "out"
    r = wl("run", "--model", str(assets["bert"]), "--dataset", str(assets["data"]), *TRAIN,
           "--save-model", str(dest), "--out", str(out / "train"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"model saved to   {dest}" in r.stdout
    result = json.loads((out / "train" / "result.json").read_text())
    assert result["phases"]["save"] > 0  # its own phase, after the measured one
    assert result["measured_phase"]["phases"] == ["train", "eval"]
    trained = result["session"]
    saved = trained["saved_model"]
    assert set(saved) == {"path", "size_bytes", "seconds", "note"}
    assert saved["path"] == str(dest) and saved["size_bytes"] > 0 and saved["seconds"] >= 0
    assert "--model" in saved["note"] and str(dest) in saved["note"]
    names = {p.name for p in dest.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", MARKER} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["id2label"] == {"0": "neg", "1": "pos"} and cfg["label2id"] == {"neg": 0, "pos": 1}
    before = load_file(str(assets["bert"] / "model.safetensors"))
    after = load_file(str(dest / "model.safetensors"))
    assert any(not (before[k] == after[k]).all() for k in before)  # fine-tuned, not a copy
    no_leftovers(dest.parent)

    r = wl("run", "--model", str(dest), "--dataset", str(assets["data"]), "--mode", "infer",
           *FAST, "--out", str(out / "infer"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    inferred = json.loads((out / "infer" / "result.json").read_text())["session"]
    final_eval = trained["epochs"][-1]
    assert inferred["metrics"]["accuracy"] == final_eval["accuracy"]
    assert final_eval["accuracy"] > 0.75  # learned: the checkpoint itself is at chance here
    assert inferred["metrics"]["macro_f1"] == pytest.approx(final_eval["macro_f1"])
    assert inferred["metrics"]["scored_items"] == trained["dataset"]["eval_items"]
    assert inferred["dataset"]["label_names"] == ["neg", "pos"]
    assert not any("freshly initialised" in n for n in inferred["model"]["notes"])


@pytest.mark.e2e
def test_bad_save_destinations_are_one_line_exit_2(assets, tmp_path):
    foreign = tmp_path / "my-notes"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("not a model")
    common = ["run", "--model", str(assets["bert"]), "--dataset", str(assets["data"])]
    r = wl(*common, *TRAIN, "--save-model", str(foreign))
    one_line_exit_2(r, "it is not empty and WattLab did not save it")
    assert [p.name for p in foreign.iterdir()] == ["thesis.txt"]
    r = wl(*common, "--mode", "infer", "--save-model", str(tmp_path / "new"))
    one_line_exit_2(r, "use it with --mode train")
    assert not (tmp_path / "new").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["unstructured", "structured"])
def test_a_pruned_training_saves_a_plain_loadable_model(assets, tmp_path, method):
    from safetensors.torch import load_file

    from wattlab.core.models.hf import load_hf_folder

    dest = tmp_path / "pruned"
    technique = f"pruning:method={method},amount=0.5" + (",heads=false" * (method == "structured"))
    r = wl("run", "--model", str(assets["bert"]), "--dataset", str(assets["data"]), *TRAIN,
           "--technique", technique, "--save-model", str(dest))  # fmt: skip
    assert r.returncode == 0, r.stderr
    tensors = load_file(str(dest / "model.safetensors"))
    assert not [k for k in tensors if k.endswith(("weight_orig", "weight_mask"))]
    if method == "unstructured":
        assert "pruning made permanent" in r.stdout
        dense = tensors["bert.encoder.layer.0.attention.self.query.weight"]
        assert (dense == 0).float().mean() > 0.2  # the zeros were kept, stored dense
    else:  # the FFN is narrower, and config.json says so
        assert json.loads((dest / "config.json").read_text())["intermediate_size"] == 32
        assert tensors["bert.encoder.layer.0.intermediate.dense.weight"].shape == (32, 32)
    loaded = load_hf_folder(dest, "classify", 2, ["neg", "pos"])
    assert not [n for n in loaded.notes if "initialised" in n]  # every tensor found its place


# -- preflight: refused before anything is measured ----------------------------------------------
def test_the_spec_field_is_optional_and_only_for_training(tmp_path):
    old = build_spec(mode="train").to_dict()
    del old["save_model"]  # a spec stored before the field existed
    assert RunSpec.from_dict(old).save_model is None
    spec = build_spec(mode="train", save_model=str(tmp_path / "m")).validate()
    assert RunSpec.from_dict(spec.to_dict()).save_model == str(tmp_path / "m")
    with pytest.raises(SpecError, match="use it with --mode train"):
        build_spec(mode="infer", save_model="m").validate()
    with pytest.raises(SpecError, match="needs a folder name"):
        build_spec(mode="train", save_model=" ").validate()


@pytest.mark.parametrize(
    "case,needle",
    [
        ("foreign", "it is not empty and WattLab did not save it"),
        ("file", "it is a file, not a folder"),
        ("own", "it is the model folder this run trains from"),
        ("heads", "structured pruning with heads=true removes attention heads"),
        ("sparse", "2:4 semi-structured"),
    ],
)
def test_preflight_refuses_what_cannot_be_saved(tmp_path, case, needle):
    bert = tm.bert_classifier(tmp_path / "bert")
    dest = tmp_path / "dest"
    techniques: tuple = ()
    if case == "foreign":
        dest.mkdir()
        (dest / "data.csv").write_text("a,b\n")
    elif case == "file":
        dest.write_text("x")
    elif case == "own":
        dest = bert
    elif case == "heads":
        techniques = ({"name": "pruning", "params": {"method": "structured"}},)
    else:
        techniques = ({"name": "pruning", "params": {"method": "semi-structured"}},)
    spec = build_spec(model=str(bert), mode="train", save_model=str(dest), techniques=techniques)
    with pytest.raises(SpecError, match=needle):
        preflight.check_save_model(spec, str(dest))


def test_preflight_accepts_a_new_an_empty_and_a_model_folder(tmp_path):
    bert = tm.bert_classifier(tmp_path / "bert")
    empty = tmp_path / "empty"
    empty.mkdir()
    earlier = tm.bert_classifier(tmp_path / "earlier")  # an earlier --save-model: its marker
    (earlier / MARKER).write_text("{}")
    downloaded = tm.bert_classifier(tmp_path / "downloaded")  # a model WattLab did not save
    ffn_only = ({"name": "pruning", "params": {"method": "structured", "heads": False}},)
    for dest in (tmp_path / "a" / "new", empty, earlier):
        spec = build_spec(model=str(bert), mode="train", save_model=str(dest), techniques=ffn_only)
        preflight.check_save_model(spec, str(dest))
    assert not (tmp_path / "a").exists()  # preflight creates nothing
    spec = build_spec(model=str(bert), mode="train", save_model=str(downloaded))
    with pytest.raises(SpecError, match="WattLab did not save it"):  # never deleted to make room
        preflight.check_save_model(spec, str(downloaded))


def test_copy_as_cli_command_repeats_the_save_folder():
    from wattlab.core.cli.main import build_parser
    from wattlab.core.cli.session import spec_from_args
    from wattlab.core.report.command import argv_for

    spec = build_spec(model="demo", mode="train", save_model="/data/my model").to_dict()
    argv = argv_for("session", spec)
    assert argv[argv.index("--save-model") + 1] == "/data/my model"
    assert spec_from_args(build_parser().parse_args(argv[1:])).save_model == "/data/my model"


# -- the worker's save: nothing half-written, a cancelled training saves nothing -----------------
class _Config:
    model_type = "bert"


class _Model:
    """Writes part of a model, then fails (a full disk) unless ``ok``."""

    config = _Config()

    def __init__(self, ok: bool = False) -> None:
        self.ok = ok

    def save_pretrained(self, folder, safe_serialization: bool) -> None:
        assert safe_serialization
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        if not self.ok:
            raise OSError(28, "No space left on device")
        (Path(folder) / "config.json").write_text("{}")


class _Tokenizer:
    def save_pretrained(self, folder) -> None:
        (Path(folder) / "tokenizer.json").write_text("{}")


def _save(dest: Path, session: dict | None = None, ok: bool = False, cancel=None):
    from wattlab.core.models.loaded import LoadedModel
    from wattlab.core.worker.save_model import save_trained

    loaded = LoadedModel("hf", "classify", _Tokenizer(), "bert", 0, 0, model=_Model(ok))
    spec = build_spec(model="bert", mode="train", save_model=str(dest))
    stream = io.StringIO()
    saved = save_trained(spec, loaded, [], session or {}, Emitter(stream), cancel or CancelToken())
    logs = [json.loads(x)["message"] for x in stream.getvalue().splitlines() if '"log"' in x]
    return saved, logs


def test_a_cancelled_training_saves_nothing_and_says_so(tmp_path):
    dest = tmp_path / "m"
    saved, logs = _save(dest, {"cancelled": True})
    assert saved["path"] is None and "cancelled" in saved["note"]
    assert any("model not saved" in line and "cancelled" in line for line in logs)
    assert not dest.exists()
    saved, _ = _save(dest, {"diverged": "diverged at epoch 1: the training loss is nan"})
    assert saved["path"] is None and "diverged" in saved["note"] and not dest.exists()


def test_a_failed_save_leaves_no_half_written_folder(tmp_path):
    dest = tmp_path / "m"
    saved, _ = _save(dest)
    assert saved["path"] is None and "No space left on device" in saved["note"]
    assert not dest.exists()
    no_leftovers(tmp_path)


def test_a_model_folder_is_replaced_whole_and_a_foreign_one_never(tmp_path, monkeypatch):
    from wattlab.core.models import hf

    monkeypatch.setattr(hf, "check_saved_folder", lambda folder, task: None)
    dest = tm.bert_classifier(tmp_path / "earlier")
    (dest / MARKER).write_text("{}")  # a model an earlier --save-model wrote
    (dest / "stale.txt").write_text("from the earlier model")
    saved, _ = _save(dest, ok=True)
    assert saved["path"] == str(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["model.safetensors", "config.json", "tokenizer.json", MARKER]
    )
    no_leftovers(tmp_path)
    mode = 0o666 & ~current_umask()  # as open() makes them (safetensors alone gives 0o600)
    assert {p.stat().st_mode & 0o777 for p in dest.iterdir()} == {mode}
    foreign = tmp_path / "notes"  # appeared while the model trained: the worker asks again
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("x")
    saved, _ = _save(foreign, ok=True)
    assert saved["path"] is None and "WattLab did not save it" in saved["note"]
    assert [p.name for p in foreign.iterdir()] == ["thesis.txt"]


def test_the_untrained_head_caveat_points_to_the_fix():
    from wattlab.core.report.result_view import untrained_head_caveat
    from wattlab.core.results import UNTRAINED_HEAD_FIX, UNTRAINED_HEAD_MARK

    older = f"bert checkpoint without a classification head: a new head ({UNTRAINED_HEAD_MARK})"
    result = {"spec": {"mode": "infer"}, "session": {"model": {"notes": [older]}}}
    caveat = untrained_head_caveat(result)
    assert caveat is not None and "--save-model DIR" in caveat and "--model DIR" in caveat
    newer = f"a new head ({UNTRAINED_HEAD_MARK}: {UNTRAINED_HEAD_FIX})"
    result["session"]["model"]["notes"] = [newer]
    assert untrained_head_caveat(result).count("--save-model") == 1  # said once


# -- the app -------------------------------------------------------------------------------------
def test_the_save_box_sets_the_spec_for_training_and_is_off_for_inference(window, tmp_path):
    w = window.workload
    folder = tmp_path / "kept"
    folder.mkdir()
    w.mode.setCurrentIndex(w.mode.findData("train"))
    assert w.save_model.isEnabled() and w.spec().save_model is None
    assert w.save_model.set_folder(str(folder))
    assert w.save_model.check.isChecked() and w.spec().save_model == str(folder)
    assert w.spec(save=False).save_model is None  # a comparison's runs do not save
    w.save_model.check.setChecked(False)
    assert w.spec().save_model is None
    w.save_model.check.setChecked(True)
    w.mode.setCurrentIndex(w.mode.findData("infer"))
    assert not w.save_model.isEnabled() and w.spec().save_model is None
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    assert not w.save_model.set_folder(str(foreign))  # core refuses it at once, in a message
    assert "WattLab did not save it" in window.error.text()


def test_which_techniques_leave_a_model_a_folder_can_hold():
    from wattlab.core.models.saved import technique_problem

    heads = technique_problem("sparse-training", {"method": "structured", "heads": True}, "bert")
    assert heads is not None and "heads=false" in heads
    assert technique_problem("sparse-training", {"method": "structured", "heads": False}) is None
    assert technique_problem("sparse-training", {"method": "unstructured"}) is None
    for weights_only in ("distillation", "data", "grad-accum", "mixed-precision"):
        assert technique_problem(weights_only, {}) is None
    assert "int8 kernels" in (technique_problem("qat", {"backend": "ort"}) or "")
