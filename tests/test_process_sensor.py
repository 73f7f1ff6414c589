"""The process sensor's fast Linux paths agree with psutil's portable ones: the kernel's
children lists give the same tree, and one /proc/PID/stat read the same CPU time and RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from wattlab.core.measure.sensors.process import ProcessSensor, _member_usage
from wattlab.core.measure.sensors.proctree import ProcessTree, _linux_descendants

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the /proc paths are Linux's")


@pytest.mark.e2e
def test_the_kernels_children_lists_give_psutils_tree():
    proc = subprocess.Popen(["sh", "-c", "sleep 5 & sleep 5 & wait"])
    try:
        deadline = time.monotonic() + 5
        while len(psutil.Process(proc.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = {p.pid for p in psutil.Process().children(recursive=True)}
        assert set(_linux_descendants(os.getpid()) or []) == expected
        assert len(expected) >= 3  # sh and its two sleeps
        assert {p.pid for p in ProcessTree(os.getpid()).refresh()} == {os.getpid(), *expected}
    finally:
        proc.kill()
        proc.wait()


def test_one_stat_read_gives_psutils_cpu_time_and_rss():
    sum(i * i for i in range(300_000))  # some CPU time to read
    me = psutil.Process()
    key, cpu_s, rss = _member_usage(me)
    ct = me.cpu_times()
    assert key[0] == os.getpid()
    assert cpu_s == pytest.approx(ct.user + ct.system, abs=0.05)
    assert rss == pytest.approx(me.memory_info().rss, rel=0.05)
    assert _member_usage(psutil.Process(1)) is not None or not os.path.exists("/proc/1/stat")


def test_utilisation_comes_from_the_same_counters_as_contention():
    sensor = ProcessSensor(ProcessTree(os.getpid()))
    first = sensor.read()
    sum(i * i for i in range(2_000_000))
    second = sensor.read()
    assert first["sys.cpu_util_pct"] is None  # no previous reading yet: unknown, not 0
    assert 0.0 < second["sys.cpu_util_pct"] <= 100.0
    assert second["sys.mem_used_bytes"] == first["sys.mem_used_bytes"]  # read at most every 5 s
