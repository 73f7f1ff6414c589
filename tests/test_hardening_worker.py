"""Hardening of the worker's side: a diverging run is kept and says so, the worker never outlives
its parent, temporary folders never outlive their process, and host out-of-memory is the user's
batch size, not an internal error."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import tiny_models as tm
from wattlab.core.spec import RunSpec
from wattlab.core.tempdirs import SPEC_PREFIX, TECH_PREFIX, owned_tempdir, sweep_dead
from wattlab.core.worker.events import CancelToken, Emitter


# -- diverged training ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nan_bert(tmp_path_factory):
    """A classifier folder whose head weights are NaN: every loss is NaN from the first batch."""
    import torch
    from transformers import BertForSequenceClassification

    folder = tm.bert_classifier(tmp_path_factory.mktemp("nan") / "bert")
    model = BertForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _prepared(folder: Path):
    from wattlab.core.models.hf import load_hf_folder
    from wattlab.core.worker.prepared import PreparedData

    lm = load_hf_folder(folder, None, 2, for_training=True)
    rows = tm.sentences(64)
    ids = lm.tokenizer([t for t, _ in rows], truncation=True, max_length=16)["input_ids"]
    y = [1 if lab == "pos" else 0 for _, lab in rows]
    data = PreparedData("classify", ids[:48], ids[48:], y[:48], y[48:], 0, 2, "tiny")
    return lm, data


def test_a_diverged_training_stops_at_once_and_says_where(nan_bert):
    import torch

    from wattlab.core.worker.prepared import TrainSettings
    from wattlab.core.worker.train import train

    lm, data = _prepared(nan_bert)
    spec = RunSpec(mode="train", epochs=5, batch_size=8, learning_rate=1e-3)
    stream = io.StringIO()
    out = train(
        lm.model,
        data,
        TrainSettings.from_spec(spec, torch.device("cpu")),
        Emitter(stream),
        CancelToken(),
    )
    assert out.diverged is not None
    assert out.diverged.startswith("diverged at epoch 1: the training loss became non-finite")
    assert len(out.epochs) == 1 and out.steps == 1  # stopped after the first poisoned batch
    epoch = out.epochs[0]
    assert epoch["accuracy"] is None and epoch["macro_f1"] is None  # argmax of NaN means nothing
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    sent = next(e for e in events if e["event"] == "epoch")
    assert sent["eval_loss"] is None  # NaN travels as null, and the event is valid JSON
    assert any("training stopped: diverged" in e.get("message", "") for e in events)


@pytest.mark.e2e
def test_a_diverged_session_is_kept_as_completed_with_the_warning(nan_bert, tmp_path):
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner

    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(40))
    store = RunStore(tmp_path / "w.db")
    spec = RunSpec(
        model=str(nan_bert), dataset=str(data), mode="train", epochs=3, batch_size=8, seq_len=16
    )
    fast = MeasureSettings(interval_s=0.05, idle_s=0.2, min_measure_s=0)
    final = SessionRunner(spec, store, fast).run()
    assert final["status"] == "completed"
    assert final["session"]["diverged"].startswith("diverged at epoch 1")
    assert any(w.startswith("training diverged at epoch 1") for w in final["warnings"])
    assert final["measured_phase"]["gross_j"] > 0  # what it measured is kept
    assert store.run(final["run_id"]).status == "completed"


# -- host out-of-memory --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "message",
    [
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)",
        "CUDA out of memory. Tried to allocate 2.00 GiB",
        "[Errno 12] Cannot allocate memory",
    ],
)
def test_out_of_memory_on_host_or_device_is_the_users_batch(message):
    from wattlab.core.worker.main import is_out_of_memory

    assert is_out_of_memory(message)


def test_other_runtime_errors_are_not_taken_for_out_of_memory():
    from wattlab.core.worker.main import is_out_of_memory

    assert not is_out_of_memory("mat1 and mat2 shapes cannot be multiplied (8x32 and 64x2)")


# -- the worker's lifeline -----------------------------------------------------------------------
def test_the_watchdog_cancels_cleans_up_and_exits_when_the_parent_is_gone(tmp_path, monkeypatch):
    from wattlab.core.worker import lifeline

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    mine = tmp_path / f"{TECH_PREFIX}{os.getpid()}-x"
    other = tmp_path / f"{TECH_PREFIX}1-x"  # PID 1 is alive: not ours, never touched
    for d in (mine, other):
        d.mkdir()
    cancel, exits = CancelToken(), []
    not_my_parent = os.getppid() + 1_000_000
    th = lifeline.watch_parent(
        cancel, not_my_parent, poll_s=0.01, grace_s=0.0, exit_now=exits.append
    )
    th.join(5)
    assert cancel.cancelled and exits == [lifeline.ORPHAN_EXIT_CODE]
    assert not mine.exists() and other.exists()


def test_the_watchdog_leaves_a_worker_with_a_living_parent_alone():
    from wattlab.core.worker import lifeline

    cancel, exits = CancelToken(), []
    th = lifeline.watch_parent(
        cancel, os.getppid(), poll_s=0.01, grace_s=0.0, exit_now=exits.append
    )
    time.sleep(0.1)
    assert th.is_alive() and not cancel.cancelled and exits == []


def test_the_expected_parent_comes_from_the_runner(monkeypatch):
    from wattlab.core.worker import lifeline

    monkeypatch.setenv(lifeline.PARENT_ENV, "4242")
    assert lifeline.expected_parent_pid() == 4242
    monkeypatch.setenv(lifeline.PARENT_ENV, "not a pid")
    assert lifeline.expected_parent_pid() == os.getppid()


def test_an_emitter_whose_reader_died_drops_events_instead_of_raising():
    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    emit = Emitter(Closed())
    emit.log("first")  # would raise BrokenPipeError, and the session's cleanup would not run
    emit.log("second")
    assert emit.broken


# -- temporary folders ---------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.e2e
def test_owned_tempdirs_are_removed_on_any_exit_and_swept_when_their_owner_died(tmp_path):
    dead = tmp_path / f"{SPEC_PREFIX}{_dead_pid()}-abc"
    dead.mkdir()
    (dead / "spec.json").write_text("{}")
    foreign = tmp_path / "wattlab-spec-k66lv_we"  # no PID in the name: not ours to judge
    foreign.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with owned_tempdir(SPEC_PREFIX, tmp_path) as folder:
            assert folder.name.startswith(f"{SPEC_PREFIX}{os.getpid()}-")
            assert not dead.exists()  # swept on the way in
            (folder / "stderr.log").write_text("x")
            raise KeyboardInterrupt
    assert not folder.exists() and foreign.exists()
    assert sweep_dead(SPEC_PREFIX, tmp_path) == []


# -- a CLI that dies never leaves its worker behind ----------------------------------------------
@pytest.fixture(scope="module")
def long_training(tmp_path_factory):
    root = tmp_path_factory.mktemp("orphan")
    bert = tm.bert_classifier(root / "bert")
    data = tm.write_csv(root / "d.csv", tm.sentences(80))
    return [
        "run",
        "--model",
        str(bert),
        "--dataset",
        str(data),
        "--mode",
        "train",
        "--epochs",
        "500",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--idle",
        "0.2",
    ]


def _start_cli(args: list[str], tmp: Path) -> tuple[subprocess.Popen, psutil.Process]:
    """The CLI in its own temp dir, and its worker once it is training."""
    env = dict(os.environ, TMPDIR=str(tmp))
    cli = subprocess.Popen(
        [sys.executable, "-m", "wattlab.core.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for child in psutil.Process(cli.pid).children(recursive=True):
            try:
                if "wattlab.core.worker" in " ".join(child.cmdline()):
                    time.sleep(3)  # past the start-up, into the session's loops
                    return cli, child
            except psutil.NoSuchProcess:
                continue
        assert cli.poll() is None, cli.stderr.read() if cli.stderr else ""
        time.sleep(0.2)
    cli.kill()
    raise AssertionError("the worker never started")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP], ids=["KILL", "TERM", "HUP"]
)
def test_the_worker_exits_when_its_cli_dies(long_training, tmp_path, sig):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    cli, worker = _start_cli(long_training, tmp)
    cli.send_signal(sig)
    cli.wait(30)
    worker.wait(15)  # psutil.TimeoutExpired here is the orphan
    assert not worker.is_running()
    if sig != signal.SIGKILL:  # a catchable signal: the CLI cleans up and keeps the run
        assert cli.returncode == 128 + sig
        from wattlab.core.measure.store import RunStore

        last = RunStore.open_default().runs(limit=1)[0]
        assert last.status == "cancelled", (last.status, last.message)
        assert not list(tmp.glob("wattlab-*")), list(tmp.glob("wattlab-*"))
    else:  # SIGKILL leaves the CLI's folder; the next WattLab process sweeps it
        assert sweep_dead(SPEC_PREFIX, tmp) and not list(tmp.glob("wattlab-*"))


# -- a stop during the idle baseline -------------------------------------------------------------
@pytest.mark.parametrize("stop", [KeyboardInterrupt(), "SIGTERM"], ids=["ctrl-c", "sigterm"])
def test_a_stop_during_the_idle_baseline_keeps_the_run_as_cancelled(tmp_path, monkeypatch, stop):
    from wattlab.core.cli.signals import Terminated
    from wattlab.core.measure import meter
    from wattlab.core.measure.sensors import SensorSet
    from wattlab.core.measure.sensors.process import ProcessTree, probe_process
    from wattlab.core.measure.store import RunStore

    tree = ProcessTree(os.getpid())
    proc, pst = probe_process(tree)
    store = RunStore(tmp_path / "w.db")
    m = meter.Measurement(
        store,
        "session",
        {},
        "x",
        meter.MeasureSettings(0.05, 5.0),
        SensorSet([proc], [pst], proc, tree),
    )
    monkeypatch.setattr(m, "_wait_until_settled", lambda: {"settled": True})
    exc = Terminated(signal.SIGTERM) if stop == "SIGTERM" else stop

    def interrupted_sleep(seconds: float) -> None:
        raise exc

    monkeypatch.setattr(meter.time, "sleep", interrupted_sleep)
    with pytest.raises(KeyboardInterrupt):
        with m:
            pytest.fail("the idle baseline was interrupted: the block never runs")
    row = store.run(m.run_id)
    assert row.status == "cancelled"
    assert row.message == ("stopped by SIGTERM" if stop == "SIGTERM" else "interrupted (Ctrl-C)")
    import threading

    assert not [t for t in threading.enumerate() if t.name == "wattlab-sampler"]  # stopped


# -- other sessions and busy processes -----------------------------------------------------------
class FakeProc:
    def __init__(self, pid: int, name: str, percent: float, cmdline: list[str] | None = None):
        self.pid, self._name, self._percent = pid, name, percent
        self._cmd = cmdline or [name]

    def name(self) -> str:
        return self._name

    def cmdline(self) -> list[str]:
        return self._cmd

    def cpu_percent(self, interval=None) -> float:
        return self._percent


def test_another_session_and_a_busy_process_are_named_before_the_start():
    from wattlab.core.run.neighbours import survey

    procs = [
        FakeProc(10, "python3", 3.0, ["python3", "-m", "wattlab.core.worker", "/tmp/s.json"]),
        FakeProc(11, "ffmpeg", 180.0),
        FakeProc(12, "sshd", 0.4),  # quiet: not named
        FakeProc(13, "mine", 100.0),  # this process tree: never counted
    ]
    crowd = survey(procs, window_s=0.0, exclude={13}, cores=2)
    assert [(n.pid, n.wattlab_session) for n in crowd.found] == [(10, True), (11, False)]
    text = crowd.warning()
    assert text is not None
    assert "another WattLab session is running (PID 10)" in text
    assert "ffmpeg (PID 11, 180% of a core)" in text and "of 2 cores" in text
    assert crowd.to_dict()["processes"][1] == {
        "pid": 11,
        "name": "ffmpeg",
        "core_share": 1.8,
        "wattlab": False,
    }


def test_a_quiet_machine_gives_no_warning():
    from wattlab.core.run.neighbours import survey

    crowd = survey([FakeProc(12, "sshd", 1.0)], window_s=0.0, exclude=set(), cores=2)
    assert crowd.found == [] and crowd.warning() is None


@pytest.mark.e2e
def test_a_session_started_beside_a_busy_process_warns_and_records_it(tmp_path):
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner

    # Started through a shell that exits, so the busy loop is not in this process tree (a
    # neighbour, as another user's job would be).
    launched = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    hog = psutil.Process(int(launched.stdout.strip()))
    try:
        time.sleep(0.5)
        folder = tm.bert_classifier(tmp_path / "bert")
        data = tm.write_csv(tmp_path / "d.csv", tm.sentences(40))
        spec = RunSpec(model=str(folder), dataset=str(data), mode="infer", batch_size=8)
        events: list[dict] = []
        runner = SessionRunner(
            spec,
            RunStore(tmp_path / "w.db"),
            MeasureSettings(interval_s=0.05, idle_s=0.2, min_measure_s=0),
            on_event=events.append,
        )
        final = runner.run()
    finally:
        hog.kill()
        hog.wait(10)
    said = [e["message"] for e in events if e.get("event") == "log"]
    assert any(f"PID {hog.pid}" in m and m.startswith("warning:") for m in said)
    assert any(f"PID {hog.pid}" in w for w in final["warnings"])
    assert hog.pid in [p["pid"] for p in final["neighbours"]["processes"]]
