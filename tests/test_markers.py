"""Markers: a script under ``wattlab profile`` tells the measuring parent its phases, steps and
metrics; it never measures itself there, and a gone parent never stops it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from wattlab.core import markers
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.protocol import END_PHASE
from wattlab.core.run.profile import profile_command

FAST = MeasureSettings(interval_s=0.05, idle_s=0.2)


def _lines(sock: socket.socket) -> list[dict]:
    sock.settimeout(1.0)
    data = b""
    while not data.endswith(b"\n"):
        data += sock.recv(65536)
    return [json.loads(x) for x in data.decode().splitlines()]


# -- the script's end, in this process ------------------------------------------------------------
def test_socket_sends_stamped_lines_and_step_totals():
    ours, theirs = socket.socketpair()
    out = markers.MarkerSocket(theirs)
    out.phase("train")
    out.step(items=4, tokens=None)  # the first step goes at once (throttle: none sent yet)
    out.step(items=4, tokens=None)  # throttled: sent with the next phase
    out.metric("loss", 0.5)
    evs = _lines(ours)
    assert [e["event"] for e in evs] == ["phase", "step", "step", "metric"]
    assert all(isinstance(e["mono"], float) and e["pid"] == os.getpid() for e in evs)
    assert evs[0]["name"] == "train"
    assert (evs[1]["steps"], evs[1]["items"], evs[2]["steps"], evs[2]["items"]) == (1, 4, 2, 8)
    assert evs[3] == {**evs[3], "name": "loss", "value": 0.5}
    ours.close()
    theirs.close()


def test_a_gone_parent_turns_markers_off_without_raising():
    ours, theirs = socket.socketpair()
    out = markers.MarkerSocket(theirs)
    ours.close()  # the parent is gone
    for _ in range(3):
        out.phase("train")
        out.step(items=1, tokens=1)
        out.metric("x", 1)
    assert not out.working and "gone" in (out.why_not or "")


def test_a_stalled_parent_never_blocks_the_script(monkeypatch):
    monkeypatch.setattr(markers, "MAX_PENDING_BYTES", 4096)
    ours, theirs = socket.socketpair()
    out = markers.MarkerSocket(theirs)
    for i in range(20_000):  # far more than the socket buffer holds; nobody reads
        out.metric("m", i)
    assert not out.working and "stopped reading" in (out.why_not or "")
    ours.close()


def test_env_without_the_parents_socket_gives_markers_that_are_off(tmp_path):
    assert markers.from_env({}) is None  # no measuring parent: the script measures itself
    r, w = os.pipe()
    try:
        for env in (
            {markers.ENV_FD: "not a number"},
            {markers.ENV_FD: "987"},  # closed
            {markers.ENV_FD: str(w)},  # open, but a pipe, not the parent's socket
        ):
            got = markers.from_env(env)
            assert got is not None and not got.working and got.why_not
    finally:
        os.close(r)
        os.close(w)
    a, b = socket.socketpair()
    stranger = {markers.ENV_FD: str(b.fileno()), markers.ENV_INODE: "1"}  # another socket
    got = markers.from_env(stranger)
    assert got is not None and not got.working
    mine = markers.from_env(markers.child_env(b, base={}))
    assert mine is not None and mine.working
    a.close()


# -- the parent's end -----------------------------------------------------------------------------
def test_reader_counts_steps_per_phase_from_running_totals_per_process():
    marks: list[tuple[str, float | None]] = []
    reader = markers.MarkerReader(lambda n, t: marks.append((n, t)))
    feed = [
        {"event": "step", "pid": 1, "steps": 2, "items": None, "tokens": None},  # before a mark
        {"event": "phase", "pid": 1, "mono": 5.0, "name": "train"},
        {"event": "step", "pid": 1, "steps": 5, "items": 24, "tokens": 100},
        {"event": "step", "pid": 2, "steps": 1, "items": 8, "tokens": None},  # a forked helper
        {
            "event": "step",
            "pid": 1,
            "steps": 5,
            "items": 24,
            "tokens": 100,
        },  # a repeat: nothing new
        {"event": "phase", "pid": 1, "mono": 6.0, "name": "eval"},
        {"event": "step", "pid": 1, "steps": 7, "items": 40, "tokens": 100},
        {"event": "metric", "pid": 1, "mono": 6.5, "name": "accuracy", "value": 0.75},
        {"event": "phase", "pid": 1, "mono": 7.0, "name": END_PHASE},
    ]
    for ev in feed:
        reader.feed(json.dumps(ev))
    reader.feed("not json")
    reader.feed(json.dumps({"event": "result"}))  # the worker's vocabulary, not a marker
    t = reader.tally
    assert marks == [("train", 5.0), ("eval", 6.0), (END_PHASE, 7.0)]
    assert t.phases == ["train", "eval"] and t.ended
    by = {p: (c.steps, c.items, c.tokens) for p, c in t.by_phase.items()}
    assert by == {"run": (2, None, None), "train": (4, 32, 100), "eval": (2, 16, 0)}
    assert t.metrics == {"accuracy": 0.75}
    assert (t.events, t.dropped_lines) == (9, 2)
    assert t.work_phases() == (("run", "train", "eval"), "phases with steps")


@pytest.mark.parametrize(
    ("bad", "why"),
    [("idle", "WattLab's own"), ("", "non-empty"), ("x" * 201, "at most"), (3, "string")],
)
def test_reserved_or_bad_phase_names_are_refused_in_one_line(bad, why):
    with pytest.raises(ValueError, match=why) as err:
        markers.check_phase_name(bad)
    assert "\n" not in str(err.value)


# -- through `wattlab profile` -------------------------------------------------------------------
SCRIPT = """
import time, sys
import wattlab

def busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(2000))

busy(0.3)  # start-up: not part of the marked work
with wattlab.track(label="marked") as t:
    assert not t.measuring and t.energy_j is None, "it must not measure under a parent"
    for phase in ("train", "eval"):
        t.phase(phase)
        for _ in range(10):
            busy(0.04)
            t.step(items=8 if phase == "train" else 4, tokens=64)
    t.metric("accuracy", 0.75)
busy(0.3)  # teardown: not part of it either
print("script done", flush=True)
"""


@pytest.mark.e2e
def test_profiled_scripts_markers_reach_the_parent(tmp_path, capfd):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    store = RunStore(tmp_path / "w.db")
    out = profile_command([sys.executable, str(script)], store, FAST, label="marked")
    assert out.exit_code == 0 and "script done" in capfd.readouterr().out
    r = out.result
    mk = r["markers"]
    assert mk["phases"] == ["tracked", "train", "eval"]
    assert (mk["steps"], mk["items"], mk["tokens"]) == (20, 120, 1280)
    assert mk["metrics"] == {"accuracy": 0.75} and mk["energy_basis"] == "phases with steps"
    for phase in ("train", "eval"):
        assert r["phases"][phase] == pytest.approx(0.4, abs=0.3)
        assert r["phase_energy"][phase]["gross_j"] > 0
    assert r["phase_energy"]["train"]["items"] == 80
    pe = r["measured_phase"]
    assert pe["phases"] == ["train", "eval"]
    assert pe["gross_j"] == pytest.approx(
        r["phase_energy"]["train"]["gross_j"] + r["phase_energy"]["eval"]["gross_j"]
    )
    assert r["energy_per_item_j"] == pytest.approx(pe["gross_j"] / 120)
    assert r["energy_per_token_j"] == pytest.approx(pe["gross_j"] / 1280)
    # start-up ("run") and teardown ("post") are measured but are not the marked work
    assert r["phases"]["run"] >= 0.2 and r["phases"][END_PHASE] >= 0.2
    assert pe["duration_s"] < r["duration_s"] - 0.4
    stored = store.result(r["run_id"])
    assert (
        stored["markers"]["items"] == 120 and stored["energy_per_item_j"] == r["energy_per_item_j"]
    )
    assert [e["name"] for _, k, e in store.events(r["run_id"]) if k == "metric"] == ["accuracy"]
    assert [row.id for row in store.runs()] == [r["run_id"]]  # the script stored no run of its own


@pytest.mark.e2e
def test_a_command_without_markers_is_measured_as_before(tmp_path):
    store = RunStore(tmp_path / "w.db")
    out = profile_command([sys.executable, "-c", "print('hi')"], store, FAST)
    r = out.result
    assert out.exit_code == 0 and r["markers"]["events"] == 0
    assert "measured_phase" not in r and "energy_per_item_j" not in r
    assert set(r["phases"]) == {"settle", "idle", "run"}


GONE_PARENT = """
import sys, wattlab
with wattlab.track(label="orphan") as t:
    for i in range(200):
        t.phase(f"p{i % 3}")
        t.step(items=1)
        t.metric("i", i)
    print("measuring:", t.measuring, "|", t.why_not_measuring, flush=True)
print("still running", flush=True)
"""


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["closed", "foreign"])
def test_a_script_whose_parent_is_gone_keeps_running(tmp_path, how):
    """The parent's end closed before the script writes (``closed``), or a variable that names
    no socket of ours (``foreign``: a grandchild whose descriptors were closed): the script runs
    to its end, quietly, and starts no sampler of its own."""
    script = tmp_path / "orphan.py"
    script.write_text(GONE_PARENT)
    ours, theirs = socket.socketpair()
    env = markers.child_env(theirs)
    env["WATTLAB_DATA_DIR"] = str(tmp_path / "data")
    if how == "foreign":
        env[markers.ENV_FD] = "0"  # stdin: open, but not the parent's socket
    ours.close()
    proc = subprocess.run(
        [sys.executable, str(script)],
        pass_fds=(theirs.fileno(),),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    theirs.close()
    assert proc.returncode == 0, proc.stderr
    assert "measuring: False" in proc.stdout and "still running" in proc.stdout
    assert not (tmp_path / "data").exists()  # no run store: nothing measured itself


def test_profile_prints_the_marked_phases_with_their_label_and_energy_per_item():
    from wattlab.core.cli.printing import marker_lines

    result = {
        "phase_energy": {
            "train": {
                "duration_s": 2.0,
                "gross_j": 10.0,
                "label": "measured",
                "items": 640,
                "energy_per_item_j": 10.0 / 640,
            },
        },
        "markers": {"energy_basis": "phases with steps"},
        "energy_per_item_j": 10.0 / 640,
        "measured_phase": {"label": "measured"},
    }
    lines = marker_lines(result)
    assert "train" in lines[1] and "10.00 J measured" in lines[1] and "640" in lines[1]
    assert lines[-1] == "energy per item 0.01562 J over phases with steps (measured)"
    assert marker_lines({"markers": {}}) == []  # a script without markers prints nothing more
