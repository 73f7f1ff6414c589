"""Serve this node's sensors in Prometheus's text format (``wattlab exporter``).

Why: a job spread over several machines draws energy on each of them. Each node runs this
exporter; the machine that launches the run scrapes them directly or asks a Prometheus server
that does (``core/measure/nodes.py``), and the run records every node's joules.

One integrator: the exporter runs the same :class:`Sampler` and :class:`EnergyAccumulator` a
run uses, ticking every ``interval_s`` (``wattlab exporter --interval``, default 1 s). Each tick
stores a snapshot; a scrape only formats the latest one, so a scrape never touches the hardware
and a slow sensor never slows a scrape (its cost: ``benchmarks/exporter_cost.py``).

Metrics (WattLab's names):
- ``wattlab_energy_joules_total{source,label}``: joules since the exporter started, per source
  (gpu0, cpu, ram); a monotonic counter (a reading that would go back, when a counter that was
  failing returns and its delta replaces the power integrated meanwhile, is held at the last
  value). ``label`` is the source's label as its channels define it (measured, integrated,
  estimated) and never changes while the exporter runs: a changing label would split the series
  and break ``increase()``. A source whose total currently includes energy integrated from power
  because its counter stopped answering shows ``wattlab_energy_degraded{source} 1``.
- ``wattlab_power_watts{source,label}``: mean power over the last sampling interval, i.e. the
  energy counter's own rate.
- ``wattlab_gpu_utilization_percent``, ``wattlab_gpu_memory_used_bytes``,
  ``wattlab_gpu_memory_total_bytes`` (labels ``source``, ``uuid``).
- ``wattlab_exporter_interval_seconds``: how often the counters move; a reader's window edges
  are only this precise.
- ``wattlab_run_info{run_id,kind,phase} 1``: the newest run ``running`` in this node's run store
  (the ``--data-dir`` one), read at most every ``RUN_INFO_TTL_S``. Absent when none runs or no
  store exists. Gap: runs recorded in another store (another data folder) are not seen.

DCGM-exporter's names, for dashboards built on them (labels ``gpu`` = NVML index, ``UUID``,
``device`` = nvidiaN, ``modelName``, ``Hostname``, as dcgm-exporter sets them):
``DCGM_FI_DEV_POWER_USAGE`` (W, the driver's power reading),
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ, NVML's raw counter since the driver loaded; only
GPUs that have one), ``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_DEV_FB_USED`` (MiB). The energy
series is typed ``untyped``: prometheus_client writes a counter's TYPE line as ``NAME_total``,
which would no longer be DCGM's name; the sample name and value are DCGM's. Do not sum
WattLab's and DCGM's names: they are one GPU twice.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from wattlab.core.errors import UserError
from wattlab.core.measure.sampling import Sample, Sampler
from wattlab.core.measure.sensors import SensorSet
from wattlab.core.measure.sensors.base import Reading, weakest_label
from wattlab.core.measure.store import RunStore, StoreError

RUN_INFO_TTL_S = 5.0
EXPORTER_PHASE = "exporter"
_MIB = float(1 << 20)


class ExporterError(UserError):
    """The exporter cannot serve (port taken, address not on this machine)."""


@dataclass(frozen=True)
class Snapshot:
    """What one sampler tick left for scrapes: cumulative joules and mean power per source."""

    t: float
    energy_j: dict[str, float]
    power_w: dict[str, float | None]
    degraded: dict[str, bool]
    values: Reading


@dataclass(frozen=True)
class GpuIdentity:
    """The labels DCGM puts on a GPU's series."""

    source: str  # gpu0 (CUDA order, WattLab's name)
    nvml_index: int
    uuid: str
    model: str


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    kind: str
    phase: str


class RunInfoReader:
    """The newest running run of a store, re-read at most every ``ttl_s``: a scrape must not
    query SQLite each time. A store that does not exist yet is not created (nor later, unless
    another command creates it)."""

    def __init__(
        self,
        store_path: Path,
        ttl_s: float = RUN_INFO_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store_path = store_path
        self._ttl_s = ttl_s
        self._clock = clock
        self._store: RunStore | None = None
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._info: RunInfo | None = None

    def current(self) -> RunInfo | None:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl_s:
                self._read_at = now
                self._info = self._read()
            return self._info

    def _read(self) -> RunInfo | None:
        try:
            if self._store is None:
                if not self.store_path.exists():
                    return None
                self._store = RunStore(self.store_path)
            running = [r for r in self._store.runs(limit=20) if r.status == "running"]
            if not running:
                return None
            row = running[0]  # newest first: a session inside a sweep shows, not the sweep
            phases = [d.get("name") for _, kind, d in self._store.events(row.id) if kind == "phase"]
            return RunInfo(row.id, row.kind, str(phases[-1]) if phases else "")
        except StoreError:
            return None  # a damaged store: no run info, never a failed scrape

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def gpu_identities(sensors: SensorSet) -> list[GpuIdentity]:
    from wattlab.core.measure.sensors.nvml import NvmlSensor

    return [
        GpuIdentity(g.label, g.nvml_index, g.uuid, g.name)
        for s in sensors.sensors
        if isinstance(s, NvmlSensor)
        for g in s.gpus
    ]


class NodeExporter:
    """This node's sensors, sampled in the background and served at ``/metrics``.

    In-process use (tests, benchmarks): ``start(host, 0)`` returns the port bound; ``render()``
    gives the text a scrape would; ``stop()`` ends the server and the sampler."""

    def __init__(
        self,
        sensors: SensorSet,
        interval_s: float,
        run_info: RunInfoReader | None = None,
        hostname: str | None = None,
    ) -> None:
        self.sensors = sensors
        self.interval_s = interval_s
        self.run_info = run_info
        self.hostname = hostname or socket.gethostname()
        channels = sensors.channels()
        self.labels = {
            src: weakest_label([c.label for c in channels if c.source == src]) or "estimated"
            for src in dict.fromkeys(c.source for c in channels)
        }
        self.gpus = gpu_identities(sensors)
        self.sampler = Sampler(
            sensors.sensors,
            interval_s,
            channels=channels,
            ring_capacity=2,
            on_batch=self._on_tick,
            batch_size=1,
        )
        self.sampler.mark_phase(EXPORTER_PHASE)
        self.snapshot: Snapshot | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sampling = False

    # -- sampling ------------------------------------------------------------------------------
    def _on_tick(self, batch: list[Sample]) -> None:
        """Runs in the sampler thread after each tick: cumulative joules per source, kept
        monotonic, and the mean power since the previous tick."""
        sample = batch[-1]
        prev = self.snapshot
        energy: dict[str, float] = {}
        degraded: dict[str, bool] = {}
        for r in self.sampler.energy.results(sample.t):
            before = prev.energy_j.get(r.source, 0.0) if prev else 0.0
            energy[r.source] = max(before, r.gross_j)
            degraded[r.source] = r.label != self.labels.get(r.source, r.label)
        power: dict[str, float | None] = {}
        for src, j in energy.items():
            dt = sample.t - prev.t if prev else 0.0
            power[src] = (j - prev.energy_j.get(src, 0.0)) / dt if prev and dt > 0 else None
        self.snapshot = Snapshot(sample.t, energy, power, degraded, dict(sample.values))

    # -- serving -------------------------------------------------------------------------------
    def start(self, host: str, port: int) -> int:
        """Start sampling, then serve; returns the port bound (``port=0`` picks a free one)."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise ExporterError(f"cannot serve metrics on {host}:{port}: {why}") from None
        self._server, self._thread = server, thread
        self.sampler.start()
        self._sampling = True
        self.sampler.wait_first_sample()
        return int(server.server_address[1])

    def render(self) -> str:
        """The text a scrape of ``/metrics`` returns now."""
        return generate_latest(self.registry).decode()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sampling:
            self._sampling = False
            self.sampler.stop()
        if self.run_info is not None:
            self.run_info.close()


class _Collector:
    """Turns the exporter's latest snapshot into metric families at scrape time."""

    def __init__(self, exporter: NodeExporter) -> None:
        self.x = exporter

    def collect(self) -> Iterator[Metric]:
        x = self.x
        interval = GaugeMetricFamily(
            "wattlab_exporter_interval_seconds", "How often the energy counters are updated (s)."
        )
        interval.add_metric([], x.interval_s)
        yield interval
        snap = x.snapshot
        if snap is not None:
            yield from self._energy(snap)
            yield from self._gpu(snap)
            yield from self._dcgm(snap)
        info = x.run_info.current() if x.run_info is not None else None
        if info is not None:
            run = GaugeMetricFamily(
                "wattlab_run_info",
                "The run this node's store is recording now (1 while it runs).",
                labels=["run_id", "kind", "phase"],
            )
            run.add_metric([str(info.run_id), info.kind, info.phase], 1.0)
            yield run

    def _energy(self, snap: Snapshot) -> Iterator[Metric]:
        labels = self.x.labels
        energy = CounterMetricFamily(
            "wattlab_energy_joules",
            "Energy since the exporter started, per source (J); label: how it was obtained.",
            labels=["source", "label"],
        )
        power = GaugeMetricFamily(
            "wattlab_power_watts",
            "Mean power over the last sampling interval, per source (W).",
            labels=["source", "label"],
        )
        degraded = GaugeMetricFamily(
            "wattlab_energy_degraded",
            "1 while a source's total includes power integrated for a counter that stopped.",
            labels=["source"],
        )
        for src, j in snap.energy_j.items():
            label = labels.get(src, "estimated")
            energy.add_metric([src, label], j)
            w = snap.power_w.get(src)
            if w is not None:
                power.add_metric([src, label], w)
            degraded.add_metric([src], 1.0 if snap.degraded.get(src) else 0.0)
        yield from (energy, power, degraded)

    def _gpu(self, snap: Snapshot) -> Iterator[Metric]:
        if not self.x.gpus:
            return
        v = snap.values
        fields = (
            ("wattlab_gpu_utilization_percent", "GPU utilisation (%).", "util_pct", 1.0),
            ("wattlab_gpu_memory_used_bytes", "GPU memory in use (bytes).", "mem_used_bytes", 1.0),
            ("wattlab_gpu_memory_total_bytes", "GPU memory (bytes).", "mem_total_bytes", 1.0),
        )
        for name, doc, key, scale in fields:
            fam = GaugeMetricFamily(name, doc, labels=["source", "uuid"])
            for g in self.x.gpus:
                value = v.get(f"{g.source}.{key}")
                if value is not None:
                    fam.add_metric([g.source, g.uuid], value * scale)
            yield fam

    def _dcgm(self, snap: Snapshot) -> Iterator[Metric]:
        if not self.x.gpus:
            return
        v = snap.values
        names = ["gpu", "UUID", "device", "modelName", "Hostname"]
        fields = (
            ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_w", 1.0),
            (
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                "unknown",
                "Total energy consumption since boot (in mJ).",
                "energy_mj",
                1.0,
            ),
            ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "util_pct", 1.0),
            (
                "DCGM_FI_DEV_FB_USED",
                "gauge",
                "Framebuffer memory used (in MiB).",
                "mem_used_bytes",
                1 / _MIB,
            ),
        )
        for name, typ, doc, key, scale in fields:
            fam = Metric(name, doc, typ)
            for g in self.x.gpus:
                value = v.get(f"{g.source}.{key}")
                if value is None:
                    continue
                labels = [
                    str(g.nvml_index),
                    g.uuid,
                    f"nvidia{g.nvml_index}",
                    g.model,
                    self.x.hostname,
                ]
                fam.add_sample(name, dict(zip(names, labels, strict=True)), value * scale)
            if fam.samples:
                yield fam
