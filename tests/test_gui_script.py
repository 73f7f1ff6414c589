"""The app's Script workload (issue 14, "In the app"): a researcher's own script or command line,
measured once (``wattlab profile``) or against a second command line (``wattlab bench``), with
live power and the script's markers, its results, its history, and Stop without orphans.

The first tests need no process (core's command-line rules, the panel, refusals); those that run
a command are marked e2e and kept short (a tiny script, ``cpu_burn`` for a fraction of a second,
one round, the conftest window's fast settings).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from wattlab.core.run import script

E2E = pytest.mark.e2e
BURN = f"{sys.executable} -m wattlab.resources.workloads.cpu_burn"
MARKED = """\
import time
import wattlab

print("tiny script starts", flush=True)
with wattlab.track() as t:
    t.phase("load")
    time.sleep(0.3)
    t.phase("work")
    for _ in range(12):
        sum(range(100_000))
        t.step(items=4)
        time.sleep(0.04)
print("tiny script done", flush=True)
"""
LONG = """\
import subprocess, sys, time
import wattlab

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(f"pids {child.pid}", flush=True)
with wattlab.track() as t:
    t.phase("work")
    while True:
        time.sleep(0.05)
        t.step(items=1)
"""


def _script(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _use_script(w, command: str, compare: str = "", rounds: int = 1) -> None:
    wl = w.workload
    wl.mode.setCurrentIndex(wl.mode.findData("script"))
    wl.script.command.setText(command)
    wl.script.compare.setText(compare)
    wl.repeats.setValue(rounds)


def _run(qtbot, w, button, timeout_ms: int = 30_000) -> None:
    with qtbot.waitSignal(
        w.controller.busy_changed, timeout=timeout_ms, check_params_cb=lambda b: b is False
    ):
        qtbot.mouseClick(button, Qt.LeftButton)


def _column(table, c: int) -> list[str]:
    return [table.item(r, c).text() for r in range(table.rowCount())]


def _row_text(table, first: str) -> list[str]:
    r = _column(table, 0).index(first)
    return [table.item(r, c).text() for c in range(table.columnCount())]


# -- core's rules for the fields (no Qt, no process) ----------------------------------------------
def test_a_py_file_runs_with_this_python_and_arguments_split_like_a_shell():
    argv = script.command_argv("train.py", "--name 'two words' -n 3")
    assert argv == (sys.executable, "train.py", "--name", "two words", "-n", "3")
    assert script.shown(argv) == "python train.py --name 'two words' -n 3"
    assert script.command_argv("sh -c 'echo hi'") == ("sh", "-c", "echo hi")


def test_the_working_folder_defaults_to_the_scripts_own(tmp_path):
    s = _script(tmp_path, "job.py", "print(1)\n")
    plan = script.build_plan(str(s), "", "")
    assert plan.cwd == str(tmp_path) and plan.compare is None
    bench = script.build_plan(str(s), "--a", str(tmp_path), compare="job.py --b").bench_plan(2, 0)
    assert [c.text for c in bench.commands] == ["python " + str(s) + " --a", "python job.py --b"]
    assert (bench.runs, bench.warmup) == (2, 0)


@pytest.mark.parametrize(
    ("command", "folder", "compare", "field", "words"),
    [
        ("", "", None, "command", "no script or command given"),
        ("no-such-program-wattlab", "", None, "command", "command not found"),
        ("missing.py", "HERE", None, "command", "script not found: missing.py"),
        ("python3 -c pass", "HERE/nope", None, "folder", "is not a folder"),
        ("python3 -c 'pass", "", None, "command", "no closing quotation"),
        ("python3 -c pass", "", "  ", "compare", "nothing to compare with"),
        ("python3 -c pass", "", "nope-nope-wattlab x", "compare", "command not found"),
    ],
)
def test_what_cannot_run_is_refused_naming_its_field(
    tmp_path, command, folder, compare, field, words
):
    with pytest.raises(script.ScriptInputError) as err:
        script.build_plan(command, "", folder.replace("HERE", str(tmp_path)), compare)
    assert err.value.field == field and words in str(err.value)


def test_a_stored_command_or_two_command_bench_gives_its_fields_back():
    prof = script.from_stored("profile", {"command": ["python3", "a b.py", "-n", "1"], "cwd": "/w"})
    assert (prof.command, prof.folder, prof.compare) == ("python3 'a b.py' -n 1", "/w", None)
    commands = [{"text": t, "argv": ["python3", t]} for t in ("a.py", "b.py")]
    bench = script.from_stored("bench", {"commands": commands, "runs": 3})
    assert (bench.command, bench.compare, bench.rounds) == ("python3 a.py", "python3 b.py", 3)
    with pytest.raises(script.ScriptInputError, match="bench of 4 commands"):
        script.from_stored("bench", {"commands": commands * 2})


def test_a_commands_peak_rss_never_counts_the_measuring_process_s_own():
    import resource

    from wattlab.core.run.profile import peak_rss

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak_rss(12e6, own) == 12e6  # ru_maxrss at our own peak: the fork's, not its own
    assert peak_rss(None, own) is None  # unknown, never our figure
    assert peak_rss(12e6, own + 2**30) == own + 2**30  # above it: the command's own


def test_markers_reach_the_live_view_as_events_stamped_by_the_script():
    import json

    from wattlab.core.run.profile_hooks import RelayingReader

    events, phases = [], []
    reader = RelayingReader(lambda n, t: phases.append(n), lambda *a: None, events.append)
    line = {"pid": 7, "mono": 100.0}
    reader.feed(json.dumps({**line, "event": "phase", "name": "train"}))
    reader.feed(json.dumps({**line, "event": "step", "steps": 3, "items": 12, "mono": 100.5}))
    reader.feed(json.dumps({**line, "event": "step", "steps": 5, "items": 20, "mono": 101.0}))
    reader.feed(json.dumps({**line, "event": "metric", "name": "acc", "value": 0.9}))
    assert phases == ["train"]
    assert events[0] == {"event": "phase", "name": "train", "mono": 100.0}
    steps = [e for e in events if e["event"] == "step"]
    assert [(e["items"], e["mono"]) for e in steps] == [(12, 100.5), (20, 101.0)]
    assert events[-1] == {"event": "log", "message": "metric acc = 0.9"}


# -- the panel ------------------------------------------------------------------------------------
def test_script_mode_shows_its_fields_and_greys_out_what_it_does_not_use(window):
    from wattlab.app.widgets.workload import NOT_IN_SCRIPT

    wl = window.workload
    assert not wl.script.command.isVisibleTo(window)  # a session's panel is as it was
    wl.mode.setCurrentIndex(wl.mode.findData("script"))
    for field in (wl.script.command, wl.script.arguments, wl.script.folder, wl.script.compare):
        assert field.isVisibleTo(window) and field.isEnabled()
    assert wl.script.open_btn.isEnabled() and wl.script.folder_btn.isEnabled()
    for w in (wl.model, wl.dataset, wl.batch, wl.epochs, wl.seq_len, wl.infer_batches):
        assert not w.isEnabled() and w.toolTip() == NOT_IN_SCRIPT
    assert not wl.device.isEnabled() and "picks its own device" in wl.device.toolTip()
    assert wl.repeats.isEnabled() and "rounds" in wl.repeats.toolTip()
    assert not window.techniques.isEnabled() and "Compare with" in window.techniques.toolTip()
    assert "wattlab bench" in window.run_both.toolTip()
    wl.script.command.setText("train.py")
    assert wl.script.preview.full_text() == "Runs: python train.py"
    wl.mode.setCurrentIndex(wl.mode.findData("infer"))
    assert wl.model.isEnabled() and wl.batch.isEnabled() and window.techniques.isEnabled()
    assert wl.model.toolTip() == "" and not wl.script.command.isVisibleTo(window)


def test_a_missing_command_is_one_message_and_nothing_is_stored(window, qtbot):
    _use_script(window, "no-such-program-wattlab --flag")
    qtbot.mouseClick(window.run_once, Qt.LeftButton)
    assert not window.controller.busy
    text = window.error.text()
    assert window.error.isVisible()
    assert text.startswith("Script or command: command not found: no-such-program-wattlab")
    assert "Traceback" not in text and "\n" not in text
    window.workload.script.command.setText("python3 -c pass")
    assert not window.error.isVisibleTo(window)  # the message goes with the input it was about
    qtbot.mouseClick(window.run_both, Qt.LeftButton)  # nothing to compare with
    assert window.error.text().startswith("Compare with: nothing to compare with")
    assert not window.controller.busy and window.store.runs() == []


def test_re_run_puts_a_stored_command_back_and_checks_it_first(window):
    window.rerun_command("profile", {"command": ["no-such-program-wattlab", "-x"], "cwd": ""})
    assert window.workload.is_script()
    assert window.workload.script.command.text() == "no-such-program-wattlab -x"
    assert window.error.text().startswith("Script or command: command not found")
    assert not window.controller.busy and window.store.runs() == []


@pytest.mark.parametrize("size", [(1024, 700), (1920, 1080)])
def test_script_mode_fits_the_window_with_its_controls_on_screen(window, size):
    _use_script(window, "train.py", "train.py --bf16")
    window.resize(*size)
    QApplication.processEvents()
    assert window.width() <= size[0] and window.height() <= size[1]
    inside = window.rect()
    for w in (window.run_both, window.run_once, window.stop_btn, window.workload.script.command):
        top_left = w.mapTo(window, QPoint(0, 0))
        assert inside.contains(top_left) and inside.contains(
            top_left + QPoint(w.width() - 1, w.height() - 1)
        )


# -- running commands -----------------------------------------------------------------------------
@E2E
def test_a_marked_script_runs_once_and_results_show_its_energy_and_phases(window, qtbot, tmp_path):
    s = _script(tmp_path, "tiny.py", MARKED)
    _use_script(window, str(s))
    _run(qtbot, window, window.run_once)
    assert not window.error.isVisible(), window.error.text()
    (row,) = window.store.runs()
    assert (row.kind, row.status, row.spec["cwd"]) == ("profile", "completed", str(tmp_path))
    res = window.store.result(row.id)
    assert res["markers"]["items"] == 48 and res["exit_code"] == 0
    r = window.results
    assert r.headline.text() == f"Run {row.id}: completed (exit code 0)"
    label = res["total"]["label"]
    energy = _row_text(r.table, "Energy (whole command, gross)")
    assert energy[1].endswith(f"J [{label}]") and energy[5] == label
    per_item = _row_text(r.table, "Energy per item")
    assert per_item[1].endswith(f"J [{label}]")
    assert _row_text(r.table, "Peak memory (RSS)")[1].endswith("MiB")
    assert r.table_tabs.isTabVisible(2)  # Phases
    phases = {c[0]: c for c in (_row_text(r.phases_table, p) for p in ("load", "work"))}
    assert phases["work"][4] == "48" and phases["load"][4] == "-"
    assert _column(r.phases_table, 0)[-2:] == ["load", "work"]  # in the order they ran
    assert phases["work"][2].endswith(f"[{label}]")
    log = window.log.toPlainText()
    assert "phase work" in log and "output: tiny script done" in log
    assert window.live.run.phase in ("work", "post")  # the script's phases reached the view
    assert len(window.live.run.throughput.series) > 0  # and its steps, as throughput
    assert window.live.side.text().startswith("Last run\nfinished: completed")


@E2E
def test_two_command_lines_are_compared_as_a_bench_and_open_from_the_runs_tab(
    window, qtbot, tmp_path
):
    _use_script(window, BURN, compare="", rounds=1)
    window.workload.script.arguments.setText("--seconds 0.2")
    window.workload.script.compare.setText(f"{BURN} --seconds 0.6")
    _run(qtbot, window, window.run_both)
    assert not window.error.isVisible(), window.error.text()
    kinds = sorted(r.kind for r in window.store.runs())
    assert kinds == ["bench", "profile", "profile"]
    r = window.results
    assert r.table_tabs.isTabVisible(3) and not r.table_tabs.isTabVisible(0)
    assert _column(r.bench_table, 0) == ["#1", "#2"]
    assert "#1" in r.details.text() and "--seconds 0.6" in r.details.text()
    assert r.bench_runs_table.rowCount() == 2
    first = _row_text(r.bench_table, "#1")
    assert first[1] == "1/1" and first[8] == "reference"
    (bench,) = [row for row in window.store.runs() if row.kind == "bench"]
    profile = next(row for row in window.store.runs() if row.kind == "profile")
    window.history.refresh()
    window.open_stored(profile.id)  # what a double-click in the Runs tab does
    assert r.table_tabs.isTabVisible(0) and "exit code 0" in r.headline.text()
    window.open_stored(bench.id)
    assert r.bench_table.rowCount() == 2 and r.table_tabs.isTabVisible(3)
    names = {f.name for f in window.export_to(tmp_path / "report")}
    assert {"bench.csv", "bench.json", "bench.pdf"} <= names


@E2E
def test_stop_ends_a_long_script_keeps_it_cancelled_and_leaves_no_process(window, qtbot, tmp_path):
    s = _script(tmp_path, "long.py", LONG)
    _use_script(window, str(s))
    qtbot.mouseClick(window.run_once, Qt.LeftButton)
    qtbot.waitUntil(lambda: "output: pids" in window.log.toPlainText(), timeout=20_000)
    qtbot.waitUntil(lambda: len(window.live.run.throughput.series) > 0, timeout=10_000)
    line = next(x for x in window.log.toPlainText().splitlines() if "output: pids" in x)
    grandchild = psutil.Process(int(line.split()[-1]))
    script_proc = grandchild.parent()
    began = time.monotonic()
    with qtbot.waitSignal(
        window.controller.busy_changed, timeout=15_000, check_params_cb=lambda b: b is False
    ):
        qtbot.mouseClick(window.stop_btn, Qt.LeftButton)
    assert time.monotonic() - began < 6
    (row,) = window.store.runs()
    assert row.status == "cancelled"
    assert window.results.headline.text().startswith(f"Run {row.id}: cancelled")
    for p in (script_proc, grandchild):
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, p


@E2E
def test_stop_during_a_bench_keeps_it_cancelled_with_what_completed(window, qtbot):
    _use_script(window, f"{BURN} --seconds 0.2", compare=f"{BURN} --seconds 30", rounds=2)
    qtbot.mouseClick(window.run_both, Qt.LeftButton)
    qtbot.waitUntil(lambda: "#2 (compared)" in window.live.side.text(), timeout=20_000)
    qtbot.waitUntil(lambda: window.controller.ring() is not None, timeout=10_000)
    with qtbot.waitSignal(
        window.controller.busy_changed, timeout=15_000, check_params_cb=lambda b: b is False
    ):
        qtbot.mouseClick(window.stop_btn, Qt.LeftButton)
    rows = {r.kind: r for r in window.store.runs()}
    assert rows["bench"].status == "cancelled"
    statuses = sorted(r.status for r in window.store.runs() if r.kind == "profile")
    assert statuses == ["cancelled", "completed"]
    r = window.results
    assert r.status_line.text().startswith("Bench cancelled")
    assert r.headline.text().startswith("Cancelled after 2 of 4 runs")  # the stopped one too
