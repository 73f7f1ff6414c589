"""`wattlab run` as a user runs it: the demo flow, and every bad input as one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiny_models as tm

pytestmark = pytest.mark.e2e  # every test runs the CLI in a subprocess

WATTLAB = [sys.executable, "-m", "wattlab.core.cli.main"]

TINY_DEMO = {
    "model": {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    },
    "data": {"n": 400, "seed": 13, "min_word_freq": 2},
    "recipe": {"epochs": 1, "batch_size": 32, "learning_rate": 0.001, "seq_len": 32, "seed": 0},
}


def wl(*args, env=None):
    return subprocess.run(
        [*WATTLAB, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_demo_infer_trains_once_then_reuses_the_cache(tmp_path):
    d = tmp_path / "demo.json"
    d.write_text(json.dumps(TINY_DEMO))
    env = {"WATTLAB_DEMO_DEFINITION": str(d)}
    # Starts from an empty cache: conftest shares trained models only with tests that ask.
    assert not (Path(os.environ["WATTLAB_DATA_DIR"]) / "models").exists()
    out = tmp_path / "out"
    fast = ["--idle", "0", "--min-measure", "0.5"]  # the measured phase: 0.5 s, not 2 s
    r = wl("run", "--model", "demo", "--mode", "infer", *fast, "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert "not trained on this machine yet" in r.stderr
    assert "quality          accuracy" in r.stdout and "energy per item" in r.stdout
    res = json.loads((out / "result.json").read_text())
    assert res["session"]["model"]["source"].startswith("demo (cached weights")
    r2 = wl("run", "--model", "demo", "--mode", "infer", *fast, env=env)
    assert r2.returncode == 0 and "not trained" not in r2.stderr
    runs = wl("runs", "list").stdout
    assert runs.count("completed") == 3  # training once, inference twice


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tm.bert_classifier(tmp_path_factory.mktemp("m") / "bert")


@pytest.mark.parametrize(
    "case,needle",
    [
        ("nopath", "model path does not exist"),
        ("noconfig", "has no config.json"),
        ("notonnx", "not a loadable ONNX model"),
        ("emptycsv", "is empty"),
        ("nocolumn", "cannot tell which column is the label"),
        ("oneclass", "single class"),
        ("batch0", "batch size must be a positive integer"),
        ("batchneg", "batch size must be a positive integer"),
        ("cuda", "CUDA was requested"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, folder, case, needle):
    import torch

    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("has a GPU")
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(20))
    args = ["--model", str(folder), "--dataset", str(data)]
    if case == "nopath":
        args[1] = str(tmp_path / "nope")
    elif case == "noconfig":
        (tmp_path / "empty").mkdir()
        args[1] = str(tmp_path / "empty")
    elif case == "notonnx":
        (tmp_path / "x.onnx").write_text("garbage")
        args[1] = str(tmp_path / "x.onnx")
    elif case == "emptycsv":
        (tmp_path / "e.csv").write_text("")
        args[3] = str(tmp_path / "e.csv")
    elif case == "nocolumn":
        args[3] = str(tm.write_csv(tmp_path / "c.csv", tm.sentences(8), header=("text", "z")))
    elif case == "oneclass":
        args[3] = str(tm.write_csv(tmp_path / "o.csv", [("a b", "x")] * 8))
    elif case == "batch0":
        args += ["--batch-size", "0"]
    elif case == "batchneg":
        args += ["--batch-size", "-3"]
    elif case == "cuda":
        args += ["--device", "cuda"]
    out = tmp_path / "out"
    r = wl("run", *args, "--idle", "0", "--out", str(out))
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("wattlab: ") and needle in last
    assert "Traceback" not in r.stderr and not out.exists()


@pytest.mark.parametrize(
    "cmd,flags,needle",
    [
        ("run", ["--interval", "0.001"], "sampling interval (--interval) must be between 0.01"),
        ("run", ["--interval", "nan"], "sampling interval"),
        ("run", ["--interval", "inf"], "sampling interval"),
        ("run", ["--idle", "-1"], "idle baseline (--idle)"),
        ("run", ["--idle", "inf"], "idle baseline (--idle)"),
        ("run", ["--min-measure", "-2"], "minimum measured duration"),
        ("compare", ["--optimized", "onnx-runtime", "--cooldown", "inf"], "cool-down"),
        ("compare", ["--optimized", "onnx-runtime", "--cooldown", "-5"], "cool-down"),
        ("compare", ["--optimized", "onnx-runtime", "--margin", "nan"], "--margin"),
        ("compare", ["--optimized", "none onnx-runtime"], "cannot be combined"),
        ("profile", ["--interval", "0"], "--interval"),
    ],
)
def test_measurement_flags_are_checked_before_anything_runs(tmp_path, folder, cmd, flags, needle):
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(20))
    args = [] if cmd == "profile" else ["--model", str(folder), "--dataset", str(data)]
    tail = ["--", sys.executable, "-c", "pass"] if cmd == "profile" else []
    r = wl(cmd, *args, *flags, *tail)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("wattlab: ") and needle in line
    assert wl("runs", "list").stdout.startswith("no runs yet")  # nothing stored: no orphan run


def test_aa_comparison_is_counterbalanced_and_reports_the_noise_floor(tmp_path, folder):
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(60))
    out = tmp_path / "aa"
    r = wl(
        "compare",
        "--model",
        str(folder),
        "--dataset",
        str(data),
        "--optimized",
        "none",
        "--repeats",
        "3",
        "--batch-size",
        "8",
        "--interval",
        "0.05",
        "--idle",
        "0.1",
        "--cooldown",
        "0",
        "--min-measure",
        "0.5",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["aa"] is True and comp["optimized_spec"]["techniques"] == []
    assert "A/A check" in comp["headline"] and "noise floor" in comp["headline"]
    order = [(p["side"], p["index"]) for p in sorted(comp["per_run"], key=lambda p: p["position"])]
    assert order == [
        ("baseline", 0),
        ("optimized", 0),
        ("optimized", 1),
        ("baseline", 1),
        ("baseline", 2),
        ("optimized", 2),
    ]
    e = next(v for v in comp["verdicts"] if v["metric"] == "energy_per_item_j")
    assert e["verdict"] not in ("better", "worse") and e["pairs"] == 3
    assert all(p["contention"] is not None for p in comp["per_run"])
