"""Test isolation, the two test tiers, and the demo models trained once per session.

Tiers: ``e2e`` marks every test that starts a process (the worker, the ``wattlab`` CLI, any
subprocess); ``gui`` marks every Qt test. ``make test-fast`` runs ``-m "not e2e and not gui"``.
A test that starts a process without the ``e2e`` mark fails (see ``_process_guard``), so the fast
tier cannot quietly grow slow or start depending on processes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# -- marks for modules this file's maintainers do not own ----------------------------------------
# Modules that set ``pytestmark`` themselves (test_cli_engine, test_cli_run, test_compare,
# test_gui) are not listed. The modules below are edited by others in parallel with the worker
# code they test, so their marks live here, keyed by module file and test function name (not
# the parametrized id, so a new parameter keeps its mark). A name that no longer exists in its
# module is an error at collection: a renamed test must not silently lose its mark.
WHOLE_MODULE = object()
MARKS: dict[str, dict[str, object]] = {
    # every test drives SessionRunner, i.e. the worker process, or the worker module directly
    "test_sessions_e2e.py": {"e2e": WHOLE_MODULE},
    "test_techniques.py": {
        "e2e": {
            "test_worker_applies_techniques_and_reports_agreement",  # SessionRunner
            "test_lottery_ticket_rounds_raise_sparsity_and_report_energy",  # SessionRunner
            "test_work_folders_of_dead_workers_are_swept",  # a python subprocess that dies
        }
    },
    "test_early_exit.py": {
        "e2e": {
            "test_worker_reports_exit_histogram_for_the_measured_phase",
            "test_early_exit_runs_on_a_torch_int8_backbone",
        }
    },
    "test_rag.py": {
        "e2e": {
            "test_wattlab_rag_compares_and_writes_reports",  # the CLI
            "test_bad_rag_input_is_one_line_exit_2",  # the CLI
            "test_wattlab_rag_runs_on_user_models_and_a_folder_corpus",  # the CLI
        }
    },
    "test_store.py": {"e2e": {"test_writer_killed_mid_run_is_marked_interrupted"}},
    "test_energy_sampling.py": {
        "e2e": {"test_process_tree_is_rewalked_at_most_every_rescan_interval"}
    },
    "test_core_has_no_qt.py": {"e2e": {"test_importing_core_and_cli_loads_no_qt"}},
}


def _check_table(fname: str, module) -> None:
    for names in MARKS[fname].values():
        stale = [] if names is WHOLE_MODULE else sorted(n for n in names if not hasattr(module, n))
        if stale:
            raise pytest.UsageError(
                f"tests/conftest.py MARKS names tests that {fname} no longer has: "
                f"{', '.join(stale)}; update the table"
            )


def pytest_collection_modifyitems(config, items):
    checked: set[str] = set()
    for item in items:
        fname = item.path.name
        if fname in MARKS:
            if fname not in checked:
                checked.add(fname)
                _check_table(fname, item.module)
            name = getattr(item, "originalname", item.name)
            for mark, names in MARKS[fname].items():
                if names is WHOLE_MODULE or name in names:
                    item.add_marker(getattr(pytest.mark, mark))
        # Any test that uses Qt's application object is a gui test, wherever it lives.
        if {"qtbot", "qapp"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)


# -- the guard: a process started by a test without the e2e mark fails that test -----------------
_current: dict[str, object] = {"item": None}
_violations = pytest.StashKey[list]()
_real_popen_init = subprocess.Popen.__init__


def _guarded_popen_init(self, args, *a, **kw):
    item = _current["item"]
    if item is not None and item.get_closest_marker("e2e") is None:
        msg = (
            f"{item.nodeid} started a process ({args!r}) but is not marked e2e: mark it "
            "(pytestmark in its module, or MARKS in tests/conftest.py) so `make test-fast` "
            "stays free of processes"
        )
        item.stash.setdefault(_violations, []).append(msg)
        raise RuntimeError(msg)
    _real_popen_init(self, args, *a, **kw)


def pytest_sessionstart(session):
    # platform.processor() runs `uname -p` once per interpreter, then caches it: run it before
    # the guard, so a test that reads the hardware manifest is not flagged depending on order.
    platform.processor()
    subprocess.Popen.__init__ = _guarded_popen_init
    _leftovers_before.update(_wattlab_temp_folders())


def pytest_sessionfinish(session):
    subprocess.Popen.__init__ = _real_popen_init
    problems = _leftovers(session)
    if problems:
        print("\n" + "\n".join(problems), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- after the whole suite: no temp folder left, no worker outliving its parent -------------------
_leftovers_before: set[Path] = set()


def _wattlab_temp_folders() -> set[Path]:
    import tempfile

    from wattlab.core.tempdirs import PREFIXES

    root = Path(tempfile.gettempdir())
    return {p for prefix in PREFIXES for p in root.glob(f"{prefix}*")}


def _suite_workers(base: Path) -> list:
    """Worker processes started by this suite (their data dir is under the suite's temp root)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if "wattlab.core.worker" not in " ".join(proc.cmdline()):
                continue
            if str(base) in proc.environ().get("WATTLAB_DATA_DIR", ""):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _leftovers(session) -> list[str]:
    """What the suite left behind: folders created during it whose owner is gone or was ours,
    and workers still alive 10 s after the last test (the lifeline gives them 5 s)."""
    import psutil

    from wattlab.core.tempdirs import PREFIXES, owner_pid

    base = session.config._tmp_path_factory.getbasetemp()  # noqa: SLF001 - the suite's root
    _, alive = psutil.wait_procs(_suite_workers(base), timeout=10)
    problems = [f"worker PID {p.pid} outlived the suite: {' '.join(p.cmdline())}" for p in alive]
    for p in alive:
        p.kill()
    for folder in sorted(_wattlab_temp_folders() - _leftovers_before):
        pids = [owner_pid(folder, prefix) for prefix in PREFIXES]
        pid = next((x for x in pids if x is not None), None)
        if pid is None or not psutil.pid_exists(pid) or pid == os.getpid():
            problems.append(f"temp folder left by the suite: {folder}")
    return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # Set for the whole protocol, so module-scoped fixtures built during this item's setup (a
    # comparison shared by several tests) are checked against the item that needs them.
    _current["item"] = item
    try:
        yield
    finally:
        _current["item"] = None


@pytest.fixture(autouse=True)
def _process_guard(request):
    yield
    # The RuntimeError the guard raised may have been caught by the code under test (a sensor
    # probe, a thread): fail here as well, so the violation is never swallowed.
    found = request.node.stash.get(_violations, [])
    if found:
        pytest.fail(found[0], pytrace=False)


# -- torch in this process: one intra-op thread --------------------------------------------------
# In-process model code (tiny trainings, techniques, RAG sessions) on this project's 2 shared
# cores: torch's OpenMP pool spins at every barrier, and with a neighbour on the other core a
# 20-step tiny training took 13-16 s instead of 2 s. One thread removes that. Worker processes
# are untouched: they set their own thread count from the spec, which is what they measure.
def pytest_runtest_setup(item):
    torch = sys.modules.get("torch")  # never imported here: a test that needs it has
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# -- isolation -------------------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _session_isolation(tmp_path_factory):
    """Module- and session-scoped fixtures run before the per-test isolation below: they get a
    session-wide data and config dir, never the user's. Restored when the session ends."""
    root = tmp_path_factory.mktemp("session-dirs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATTLAB_DATA_DIR", str(root / "wattlab-data"))
        mp.setenv("WATTLAB_CONFIG_DIR", str(root / "wattlab-config"))
        mp.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
        if "QT_QPA_PLATFORM" not in os.environ:
            mp.setenv("QT_QPA_PLATFORM", "offscreen")
        yield


@pytest.fixture(autouse=True)
def _isolated_data_dir(request, tmp_path, monkeypatch):
    """No test ever writes the user's real run store, settings or Qt settings. A test that
    uses the tiny RAG demo finds its models already trained (once per session)."""
    d = tmp_path / "wattlab-data"
    monkeypatch.setenv("WATTLAB_DATA_DIR", str(d))
    monkeypatch.setenv("WATTLAB_CONFIG_DIR", str(tmp_path / "wattlab-config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    if "tiny_rag_demo" in request.fixturenames:
        # The cache key hashes the definition's content, not its path: the copy is found by
        # the test's own definition file. A test whose definition differs trains its own.
        trained = request.getfixturevalue("_trained_tiny_rag_demo")
        shutil.copytree(trained, d / "models" / trained.name)
    return d


# -- demo models, trained once per session ------------------------------------------------------
def tiny_rag_definition() -> dict:
    from tests.test_rag import TINY_RAG

    return TINY_RAG


@pytest.fixture
def tiny_rag_demo(tmp_path, monkeypatch):
    """The RAG demo at test size (the same definition test_rag.py's fixture of this name
    writes, so the trained cache is shared with it)."""
    p = tmp_path / "rag_demo.json"
    p.write_text(json.dumps(tiny_rag_definition()))
    monkeypatch.setenv("WATTLAB_RAG_DEMO_DEFINITION", str(p))
    return p


@pytest.fixture(scope="session")
def _trained_tiny_rag_demo(tmp_path_factory) -> Path:
    """The tiny RAG demo's encoder and generator, trained once in this process by the same
    ``prepare`` the worker calls on first use; tests get a copy in their own data dir."""
    import torch

    from wattlab.core.worker import rag_demo

    torch.set_num_threads(1)  # as for every test (pytest_runtest_setup), before it trains

    root = tmp_path_factory.mktemp("rag-demo")
    definition = root / "rag_demo.json"
    definition.write_text(json.dumps(tiny_rag_definition()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(rag_demo.ENV_DEFINITION, str(definition))
        folder = rag_demo.prepare(torch.device("cpu"), lambda _msg: None, root / "data")
        assert rag_demo.is_cached(folder)
    return folder


# -- the main window, for Qt tests -----------------------------------------------------------------
@pytest.fixture
def window(qtbot, tmp_path):
    """A main window on its own store, with settings that keep sessions short; its background
    work (if a test started any) has ended before the next test."""
    from wattlab.app.main_window import MainWindow
    from wattlab.core.measure.store import RunStore
    from wattlab.core.settings import Settings

    fast = Settings(interval_s=0.05, idle_s=0.1, cooldown_s=0.0, min_measure_s=0.5)
    w = MainWindow(RunStore(tmp_path / "wattlab.db"), fast, [])
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    yield w
    w.controller.wait(5)
