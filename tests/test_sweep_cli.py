"""`wattlab sweep` as a user runs it: a real sweep on a tiny model, stopped with Ctrl-C after
its first round, resumed to the end, with its reports; and its bad input as one line, exit 2."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiny_models as tm

pytestmark = pytest.mark.e2e  # every test runs the CLI in a subprocess

WATTLAB = [sys.executable, "-m", "wattlab.core.cli.main"]
FAST = ["--idle", "0", "--min-measure", "0.3", "--interval", "0.05", "--cooldown", "0"]


def _rounds_stored(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("SELECT count(*) FROM events WHERE kind='sweep-round'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _default_sigint() -> None:
    """A background job of a non-interactive shell inherits SIGINT ignored (POSIX), and Python
    then installs no KeyboardInterrupt handler: the child gets Ctrl-C's default back, so this
    test means the same in a terminal, in CI and under `cmd &`."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_sweep_stopped_after_a_round_resumes_to_the_end(tmp_path):
    model = tm.bert_classifier(tmp_path / "bert")
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(80))
    common = ["--model", str(model), "--dataset", str(data), "--batch-size", "8", "--seq-len", "16"]
    args = [*common, "--infer-batches", "10", "--repeats", "3", *FAST]
    cands = ["--candidates", "onnx-runtime", "quantization:backend=ort"]
    db = Path(os.environ["WATTLAB_DATA_DIR"]) / "wattlab.db"
    proc = subprocess.Popen(
        [*WATTLAB, "sweep", *args, *cands],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - a signal disposition, nothing threaded
    )  # fmt: skip
    # Ctrl-C once round 2 starts: its progress line is printed after round 1 was stored. The
    # progress is read as it comes (a poll of the store from here could miss a short round).
    seen: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if "round 2/3" in line:
            break
    assert _rounds_stored(db) >= 1, "".join(seen)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert "Resume it with: wattlab sweep --resume" in err
    sweep_id = int(err.split("--resume ")[-1].split()[0])
    assert "[" in err and "round 1/3" in err  # the progress bar and the run about to start

    out = tmp_path / "out"
    r = subprocess.run(
        [*WATTLAB, "sweep", "--resume", str(sweep_id), "--out", str(out)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "resuming sweep" in r.stderr
    assert f"Sweep {sweep_id} (completed)" in r.stdout and "3 of 3 rounds" in r.stdout
    assert "Recommended:" in r.stdout and "Pareto front (energy-accuracy)" in r.stdout
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["rounds_completed"] == 3 and len(summary["comparisons"]) == 2
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [row["key"] for row in rows] == ["baseline", "onnx-runtime", "quantization:backend=ort"]
    assert all(row["energy_label"] == "estimated" for row in rows)  # no RAPL/GPU in CI
    assert (out / "sweep.pdf").read_bytes().startswith(b"%PDF")
    # Every counted round holds the baseline and both sets: 3 rounds x 3 runs.
    assert summary["counted_runs"] == 9
    # The stored sweep rebuilds its reports and shows itself, like a comparison.
    again = tmp_path / "again"
    r = subprocess.run(
        [*WATTLAB, "report", str(sweep_id), "--out", str(again)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (again / "sweep.pdf").exists() and (again / "sweep.csv").exists()
    r = subprocess.run(
        [*WATTLAB, "runs", "show", str(sweep_id)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0 and "Recommended:" in r.stdout, r.stderr


@pytest.mark.parametrize(
    "flags,needle",
    [
        ([], "nothing to sweep"),
        (["--auto", "--max-accuracy-loss", "-1"], "between 0 and 100"),
        (["--candidates", "nosuch"], "unknown technique"),
        (["--resume", "999"], "no sweep with id 999"),
        (["--resume", "1", "--auto"], "give no --auto"),
        (["--auto", "--model", "/nonexistent"], "model path does not exist"),
        (["--auto", "--max-fairness-gap", "1"], "needs --sensitive-column"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(flags, needle):
    r = subprocess.run(
        [*WATTLAB, "sweep", *flags], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
