"""The engine's CLI end to end, as a user runs it (real subprocesses, real store)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # every test runs the CLI in a subprocess

WATTLAB = [sys.executable, "-m", "wattlab.core.cli.main"]
BURN = [sys.executable, "-m", "wattlab.resources.workloads.cpu_burn"]


def wl(*args, env=None, **kw):
    return subprocess.run(
        [*WATTLAB, *args], capture_output=True, text=True, env=env or os.environ, timeout=120, **kw
    )


def test_sensors_json_explains_missing_sources():
    r = wl("sensors", "--json")
    assert r.returncode == 0, r.stderr
    by = {s["name"]: s for s in json.loads(r.stdout)["sensors"]}
    assert by["process"]["available"] and by["estimate"]["available"]
    if not by["nvml"]["available"]:
        assert by["nvml"]["reason"]
    if not by["rapl"]["available"]:
        assert by["rapl"]["reason"]


def test_profile_writes_files_and_stores_run(tmp_path):
    out = tmp_path / "p"
    r = wl("profile", "--idle", "0.5", "--out", str(out), "--", *BURN, "--seconds", "1.5", "--json")
    assert r.returncode == 0, r.stderr
    assert "estimated" in r.stdout and '"units_per_s"' in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    cpu = next(e for e in summary["energy"] if e["source"] == "cpu")
    assert cpu["label"] == "estimated" and cpu["gross_j"] > 0 and cpu["net_j"] > 0
    own_cpu = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("{")))["cpu_s"]
    # the kernel's figure for the reaped child covers the workload's own count plus start-up
    assert own_cpu <= summary["cpu_time_s"] <= own_cpu + 1.0
    assert summary["power_model"]["name"] == "wattlab-cpu-v2"
    with open(out / "samples.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"t_s", "phase", "proc.cpu_time_s", "est.cpu_power_w"} <= set(rows[0])
    assert {"idle", "run"} <= {r["phase"] for r in rows}
    listed = wl("runs", "list")
    assert f"{summary['run_id']:>5}  profile  completed" in listed.stdout
    shown = wl("runs", "show", str(summary["run_id"]), "--json")
    assert json.loads(shown.stdout)["result"]["total"]["label"] == "estimated"


def test_profile_passes_exit_code_through():
    r = wl("profile", "--idle", "0", "--", sys.executable, "-c", "import sys; sys.exit(7)")
    assert r.returncode == 7
    assert "failed" in wl("runs", "list").stdout


def test_missing_command_is_one_line_127():
    r = wl("profile", "--idle", "0", "--", "definitely-not-a-command-xyz")
    assert r.returncode == 127
    assert r.stderr.strip() == "wattlab: command not found: definitely-not-a-command-xyz"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["profile"], "no command to profile"),
        (
            ["profile", "--interval", "0.001", "--", "true"],
            "sampling interval (--interval) must be between 0.01",
        ),
        (["runs", "show", "999"], "no run with id 999"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args, needle):
    r = wl(*args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_kill_9_leaves_readable_store_with_interrupted_run():
    p = subprocess.Popen(
        [*WATTLAB, "profile", "--idle", "0.2", "--", *BURN, "--seconds", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    db = Path(os.environ["WATTLAB_DATA_DIR"]) / "wattlab.db"
    deadline = time.time() + 20
    while time.time() < deadline and not db.exists():
        time.sleep(0.1)
    time.sleep(1.5)
    os.killpg(p.pid, signal.SIGKILL)  # the profiler and its workload, like a crash would
    p.wait()
    r = wl("runs", "list")
    assert r.returncode == 0 and "interrupted" in r.stdout


def test_cli_defaults_come_from_the_settings_file(tmp_path):
    from wattlab.core.settings import Settings

    Settings(interval_s=0.05, idle_s=0.3).save()  # in WATTLAB_CONFIG_DIR (conftest)
    out = tmp_path / "p"
    r = wl("profile", "--out", str(out), "--", sys.executable, "-c", "pass")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())["sampling"]
    assert (s["interval_s"], s["idle_s"]) == (0.05, 0.3)
    r = wl(
        "profile",
        "--interval",
        "0.2",
        "--idle",
        "0",
        "--out",
        str(out),
        "--",
        sys.executable,
        "-c",
        "pass",
    )
    s = json.loads((out / "summary.json").read_text())["sampling"]
    assert (s["interval_s"], s["idle_s"]) == (0.2, 0.0)  # flags win
