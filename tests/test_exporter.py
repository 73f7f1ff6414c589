"""`wattlab exporter`: what it serves (WattLab's and DCGM's names), the run it reports, how it
refuses a port and how it stops."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.fake_power import ConstantPowerSensor, fake_gpu_set, sensor_set
from wattlab.core.cli.main import main
from wattlab.core.measure.exporter import NodeExporter, RunInfo, RunInfoReader
from wattlab.core.measure.store import RunStore


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


@pytest.fixture
def gpu_exporter():
    x = NodeExporter(fake_gpu_set(watts=100.0), interval_s=0.02, hostname="node-a")
    x.start("127.0.0.1", 0)
    yield x
    x.stop()


def test_text_parses_and_has_dcgm_names_for_a_fake_gpu(gpu_exporter):
    time.sleep(0.2)
    got = samples(gpu_exporter.render())
    (power,) = got["DCGM_FI_DEV_POWER_USAGE"]
    assert power.value == pytest.approx(100.0)
    assert power.labels == {
        "gpu": "0",
        "UUID": "GPU-fake-0",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "node-a",
    }
    assert got["DCGM_FI_DEV_FB_USED"][0].value == 1024.0  # the fake's 1 GiB, in MiB
    assert got["DCGM_FI_DEV_GPU_UTIL"][0].value == 87.0
    # DCGM's counter is NVML's raw total in mJ: the fake's is 100 W x its clock
    (mj,) = got["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]
    assert mj.value == pytest.approx(100.0 * time.monotonic() * 1000, rel=1e-3)
    (energy,) = got["wattlab_energy_joules_total"]
    assert energy.labels == {"source": "gpu0", "label": "measured"}
    assert got["wattlab_gpu_memory_used_bytes"][0].value == float(1 << 30)


def test_energy_counter_is_power_times_time_and_monotonic(gpu_exporter):
    def joules() -> float:
        return samples(gpu_exporter.render())["wattlab_energy_joules_total"][0].value

    t0, j0 = time.monotonic(), joules()
    time.sleep(0.5)
    t1, j1 = time.monotonic(), joules()
    # counters move every tick (20 ms): the window's edges are off by at most one tick each
    assert j1 - j0 == pytest.approx(100.0 * (t1 - t0), abs=100.0 * 0.05)
    assert samples(gpu_exporter.render())["wattlab_power_watts"][0].value == pytest.approx(
        100.0, rel=0.05
    )
    with urllib.request.urlopen(
        f"http://127.0.0.1:{gpu_exporter._server.server_address[1]}/metrics"
    ) as r:
        assert b"wattlab_energy_joules_total" in r.read()


def test_labels_come_from_the_sensors_and_no_gpu_means_no_dcgm_names():
    x = NodeExporter(
        sensor_set(
            ConstantPowerSensor("cpu", 40.0, "measured"),
            ConstantPowerSensor("ram", 5.0, "estimated"),
        ),
        interval_s=0.02,
    )
    x.start("127.0.0.1", 0)
    try:
        time.sleep(0.1)
        got = samples(x.render())
    finally:
        x.stop()
    labels = {s.labels["source"]: s.labels["label"] for s in got["wattlab_energy_joules_total"]}
    assert labels == {"cpu": "measured", "ram": "estimated"}
    assert not any(name.startswith("DCGM_") for name in got)


def test_run_info_is_the_newest_running_run(tmp_path):
    path = tmp_path / "wattlab.db"
    reader = RunInfoReader(path, ttl_s=0.0)
    assert reader.current() is None and not path.exists()  # no store: none created
    store = RunStore(path)
    done = store.create_run("session", {})
    store.finish_run(done, "completed", {})
    rid = store.create_run("session", {})
    store.add_event(rid, 1.0, "phase", {"name": "idle"})
    store.add_event(rid, 2.0, "phase", {"name": "train"})
    assert reader.current() == RunInfo(rid, "session", "train")

    x = NodeExporter(sensor_set(ConstantPowerSensor()), interval_s=0.02, run_info=reader)
    x.start("127.0.0.1", 0)
    try:
        (info,) = samples(x.render())["wattlab_run_info"]
    finally:
        x.stop()
    assert info.labels == {"run_id": str(rid), "kind": "session", "phase": "train"}
    store.finish_run(rid, "completed", {})
    assert reader.current() is None


def test_run_info_is_cached_between_scrapes(tmp_path):
    now = [0.0]
    store = RunStore(tmp_path / "wattlab.db")
    reader = RunInfoReader(tmp_path / "wattlab.db", ttl_s=5.0, clock=lambda: now[0])
    assert reader.current() is None
    rid = store.create_run("profile", {})
    assert reader.current() is None  # within the TTL: the store is not read again
    now[0] = 5.0
    assert reader.current() == RunInfo(rid, "profile", "")


def test_busy_port_is_one_line_exit_2(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["exporter", "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("wattlab: ")
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--port", "70000"], "port (--port) must be an integer from 0 to 65535"),
        (["--port", "http"], "not a port number"),
        (["--interval", "0"], "sampling interval (--interval) must be"),
        (["--host", "no-such-host.invalid"], "cannot serve metrics on no-such-host.invalid"),
    ],
)
def test_bad_flags_are_one_line_exit_2(capsys, argv, needle):
    code = main(["exporter", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert needle in err[0]


def _default_sigint() -> None:
    """A background job of a non-interactive shell inherits SIGINT ignored (POSIX), and Python
    then installs no KeyboardInterrupt handler: the child gets Ctrl-C's default back, so this
    test means the same in a terminal, in CI and under `cmd &`."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_command_serves_then_stops_cleanly(sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattlab.core.cli.main", "exporter", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - a signal disposition, nothing threaded
    )
    try:
        line = proc.stdout.readline()
        url = line.split("serving ", 1)[1].split(" ", 1)[0]
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        assert "wattlab_energy_joules_total" in text
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)  # a loaded CI machine: stopping joins threads
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert err.strip() == "wattlab exporter: stopped"
